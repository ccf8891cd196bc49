"""Pooled PostgreSQL connections: one that rested in the pool is tested before use, so a
server restart or a dropped connection never fails the next official's request; one handed
back a moment ago is used without a ping (a round trip saved on every transaction). Reads
run outside a transaction, so that they never end in the ROLLBACK at which psycopg forgets
the statements it prepared for the transitions."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from engine import db as db_module
from engine.db import Database


@pytest.fixture
def pg(db):
    if not db.is_postgres:
        pytest.skip("pooled server connections are PostgreSQL's (SQLite has no server connection)")
    pool = Database(db.url, pool_size=1)
    yield pool
    pool.dispose()


def _backend_pid(pool: Database) -> int:
    with pool.engine.connect() as conn:
        return conn.execute(select(func.pg_backend_pid())).scalar()


def _kill(db, pid: int) -> None:
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
        conn.commit()


def test_a_rested_connection_that_died_is_replaced_before_use(pg, db, monkeypatch):
    first = _backend_pid(pg)
    _kill(db, first)
    monkeypatch.setattr(db_module, "IDLE_BEFORE_PING", 0.0)   # it has rested "long enough"
    assert _backend_pid(pg) != first                           # pinged, found dead, replaced: no error


def test_a_connection_just_handed_back_is_not_pinged(pg, db, monkeypatch):
    """The other side of the saving: without the ping a dead connection does fail its next
    use (and the pool then replaces it), which is what the ping of rested connections avoids."""
    first = _backend_pid(pg)
    _kill(db, first)
    monkeypatch.setattr(db_module, "IDLE_BEFORE_PING", 3600.0)
    with pytest.raises(OperationalError):
        _backend_pid(pg)
    assert _backend_pid(pg) != first


def _prepared_statements(pool: Database) -> int:
    """What the pool's connection has prepared on the server (read in autocommit, so that
    asking does not itself end in the ROLLBACK that would forget them)."""
    with pool.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar()


def test_a_read_leaves_no_transaction_open(pg):
    from psycopg.pq import TransactionStatus
    with pg.read_session() as session:
        assert session.execute(select(func.count()).select_from(text("gf_case"))).scalar() >= 0
        assert session.connection().connection.dbapi_connection.info.transaction_status == TransactionStatus.IDLE


def test_a_read_between_transitions_keeps_their_prepared_statements(pg):
    """psycopg prepares a statement on its fifth use and forgets all it prepared at a
    ROLLBACK. A read session used to end in one, so a page read between two completions
    had the second one's statements parsed and planned again."""
    from engine.models import User
    for _ in range(6):
        with pg.unit_of_work() as session:
            session.execute(select(User.id).where(User.id == 1)).all()
    assert _prepared_statements(pg) >= 1
    with pg.read_session() as session:
        session.execute(select(User.username).where(User.id == 1)).all()
    assert _prepared_statements(pg) >= 1
