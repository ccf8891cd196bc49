"""Database plumbing: one `Database` object owns the SQLAlchemy engine and sessions.

`unit_of_work()` is the one place transactions begin and end: the service opens
one per transition, commits on success and rolls back on any error, so a
failed step leaves no trace but its error.
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from .core_writes import (WRITE_TRANSACTION, commit_session_pipeline, connect_gridflow, insert_rows_now,
                          install_pipeline_listeners)

DEFAULT_SQLITE_PATH = Path("instance") / "gridflow.sqlite"


def database_url(url: str | None = None) -> str:
    """The URL in use: explicit argument, then DATABASE_URL, then the SQLite file."""
    if url:
        return url
    env = os.environ.get("DATABASE_URL")
    if env:
        return env
    DEFAULT_SQLITE_PATH.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{DEFAULT_SQLITE_PATH}"


def shown_url(url: str) -> str:
    """`url` with its password, if any, masked: for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 -- not a URL SQLAlchemy can read: show nothing of it
        return "(unreadable database URL)"


# The driver's errors that say the database is down, unreachable or busy past its wait (not a
# bug in a statement): the CLI, the timer worker and the web answer these as an outage.
DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)


def driver_message(exc: Exception, lines: int = 1) -> str:
    """What the database driver said (a SQLAlchemy error's `orig`), its first `lines` lines
    joined: for one-line messages and logs while the database is away."""
    said = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return " ".join(line.strip() for line in said[:lines])


def make_engine(url: str, pool_size: int = 10) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # Let Python's sqlite3 stop issuing its own BEGIN so ours (below) is the
            # only one; BEGIN IMMEDIATE takes the write lock up front, so two
            # writers queue instead of deadlocking on a read-then-write upgrade.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # executemany by psycopg's pipeline (one prepared statement, rows streamed), not one
    # multi-VALUES statement per batch, which psycopg re-parses every time (too long for its
    # query cache): ~5 % of a timer firing's CPU (docs/performance.md, session 4)
    engine = create_engine(url, pool_size=pool_size, max_overflow=20, use_insertmanyvalues=False)
    event.listen(engine, "do_connect", connect_gridflow)   # it hears when psycopg deallocates our statements
    _ping_when_idle(engine)
    install_pipeline_listeners(engine)   # a transition: two round trips (BEGIN + lock, writes + COMMIT)
    return engine


IDLE_BEFORE_PING = 2.0  # seconds a pooled connection may rest before it is tested


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, as `pool_pre_ping` but only for connections that
    rested in the pool: one handed back a moment ago was working then, and pinging it
    would cost a round trip on every transaction (three per API request). One that rested
    longer (the server restarted, a firewall dropped it) is tested, and replaced if dead,
    before any request uses it."""

    @event.listens_for(engine, "checkin")
    def _rested_since(_dbapi_conn, record):
        record.info["gf_checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping_if_rested(dbapi_conn, record, _proxy):
        if time.monotonic() - record.info.get("gf_checked_in", 0.0) < IDLE_BEFORE_PING:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
        except Exception as exc:  # noqa: BLE001 -- any failure: the pool retries with a new connection
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


class Database:
    def __init__(self, url: str | None = None, pool_size: int = 10):
        self.url = database_url(url)
        self.engine = make_engine(self.url, pool_size)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self.ReadSession = self.Session
        if self.is_postgres:
            # Write transactions in one pipeline each, from the BEGIN we queue to the COMMIT
            # (engine/core_writes.py): the driver in autocommit mode sends no BEGIN of its own,
            # which it would wait for on its own round trip.
            self.Session = sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT",
                                                                      **{WRITE_TRANSACTION: True}),
                                        expire_on_commit=False)
            # Reads outside a transaction. Under READ COMMITTED every statement takes its
            # own snapshot anyway, so a read sees what it saw inside one; what changes is
            # how a read ends. A transaction's end is a ROLLBACK, and psycopg forgets
            # every statement it had prepared on that connection at a ROLLBACK (and sends
            # DEALLOCATE ALL): the next transition's statements were parsed and planned
            # again. A page read between two completions cost the second one ~1 ms
            # (docs/performance.md, session 9). No autoflush: nothing a read session
            # touches is ever written.
            self.ReadSession = sessionmaker(self.engine.execution_options(isolation_level="AUTOCOMMIT"),
                                            expire_on_commit=False, autoflush=False)

    @property
    def shown_url(self) -> str:
        """The URL to print or log: its password, if any, masked."""
        return shown_url(self.url)

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def unit_of_work(self):
        session: Session = self.Session()
        try:
            yield session
            commit_session_pipeline(session)   # PostgreSQL: the COMMIT in the writes' round trip
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def read_session(self):
        session: Session = self.ReadSession()
        try:
            yield session
        finally:
            # close, not rollback: rollback would expire the objects we hand back
            session.close()

    def refresh_statistics(self) -> bool:
        """SQLite: gather the query planner's statistics (ANALYZE). SQLite never gathers
        them itself, and without them its plan for the inbox turned a 2 ms page into a
        1 s scan at 10^6 open tasks (docs/performance.md, "Inbox"). `analysis_limit`
        samples each index, so this takes milliseconds, not a scan of every table.
        PostgreSQL's autovacuum does this on its own: nothing to do. True if it ran."""
        if self.is_postgres:
            return False
        with self.engine.begin() as conn:
            conn.exec_driver_sql("PRAGMA analysis_limit=1000")
            conn.exec_driver_sql("ANALYZE")
        return True

    def dispose(self):
        self.engine.dispose()


# ------------------------------------------------------- batched inserts

_DEFERRED = "gf_deferred_inserts"


def insert_rows(session: Session, model, rows: list[dict]) -> None:
    """INSERT append-only rows (audit events, notifications) now, or, inside
    `deferred_inserts`, together with every other transition's rows of the batch."""
    if not rows:
        return
    pending = session.info.get(_DEFERRED)
    if pending is None:
        _insert_now(session, model, rows)
    else:
        pending.setdefault(model, []).extend(rows)


def _insert_now(session: Session, model, rows: list[dict]) -> None:
    """The ORM's pending writes first (the rows may refer to them), then one executemany
    by the driver: these rows are never read back as objects, so the ORM's bulk-insert
    machinery, or even Core's execution context, would only add cost."""
    session.flush()
    insert_rows_now(session, model.__table__, rows)


@contextmanager
def deferred_inserts(session: Session):
    """Within the block, `insert_rows` collects; at its end one multi-row INSERT per table
    (after the ORM's own pending writes, which the rows may refer to). Nothing is
    written if the block fails: the caller's transaction rolls back anyway."""
    pending: dict = {}
    session.info[_DEFERRED] = pending
    try:
        yield
    finally:
        session.info.pop(_DEFERRED, None)
    for model, rows in pending.items():
        _insert_now(session, model, rows)
