"""Pooled PostgreSQL connections: one that rested in the pool is tested before use, so a
server restart or a dropped connection never fails the next official's request; one handed
back a moment ago is used without a ping (a round trip saved on every transaction)."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import OperationalError

from engine import db as db_module
from engine.db import Database


@pytest.fixture
def pg(db):
    if not db.is_postgres:
        pytest.skip("connection pinging is PostgreSQL's (SQLite has no server connection to lose)")
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
