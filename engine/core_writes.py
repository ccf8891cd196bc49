"""A transition's row writes, straight to the database driver.

A completion changes the case row, the completed work item and the state, and inserts
the next work item, its audit rows and notices. Measured on the loop bench, SQLAlchemy
spent more time around those six statements than the statements took: the unit of work
(every column's history of every dirty object, a dependency sort, the version check) and,
per statement, Core's execution context (~30 µs, against ~10 µs for the driver's own
`execute`).

So here: the attributes a transition changed are read from each object's own change
record and written by one UPDATE (versioned where the mapper is: a lost race is still a
`StaleDataError`), new rows by one INSERT or executemany, each statement compiled once per
database by SQLAlchemy (its SQL, the order of its parameters, the column types' bind
processors) and run on the transaction's own driver connection. The objects are then marked
committed, as a flush would leave them, so the ORM's flush has nothing left to do for
them and still writes anything else the transaction touched. A driver error is raised as
SQLAlchemy's exception (`IntegrityError` and so on), as from any other statement.

The mapper's flush events (`before_update`, `after_update`, `before_insert`, `after_insert`)
still run for the objects written here, as a flush runs them: `engine/case_facts.py` derives a
case's report columns and marks it for the dashboard roll-ups there. SQLAlchemy's
`before_cursor_execute` listeners still see these statements; its echo log does not.
A batch of timer firings writes all its cases' rows at its end, one executemany per table
(`WorkflowService.write_transitions`). Rows the ORM inserts (a new case and its state) stay
the ORM's.

On PostgreSQL these writes are pipelined (libpq's pipeline mode, driven here): sent one
after the other without waiting for each answer, the answers read together with the
transaction's next read or, at its end, with the COMMIT queued after them. A versioned
UPDATE's row count is then checked by the server (`_guarded`). The whole write transaction
runs in one pipeline, its BEGIN sent with its first statement: see the section below and
docs/engine.md. On an idle machine a round trip costs ~75 µs; a completion makes two.
"""
from __future__ import annotations

import itertools
import os
import re
import select
import time
import weakref

import psycopg
import psycopg.errors
from psycopg import pq
from psycopg.adapt import PyFormat, Transformer
from sqlalchemy import bindparam, event, exc, insert, inspect, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value
from sqlalchemy.orm.base import NO_VALUE
from sqlalchemy.orm.exc import StaleDataError

_columns_by_mapper: dict = {}
_updates: dict = {}
_inserts: dict = {}
_compiled: dict = {}


class _DriverStatement:
    """One statement compiled for one dialect: the driver's SQL, the parameter names in
    the driver's order (positional drivers), each parameter's bind processor, and the
    values the statement binds itself (`fixed`: a literal such as 'open')."""

    __slots__ = ("sql", "order", "processors", "fixed", "_prepared")

    def __init__(self, statement, dialect, column_keys=None):
        # for_executemany: no RETURNING of generated keys, which nothing here reads back
        compiled = statement.compile(dialect=dialect, column_keys=column_keys, for_executemany=True)
        self.sql = str(compiled)
        self.order = tuple(compiled.positiontup) if compiled.positional else None
        self.processors = {name: processor for name, bind in compiled.binds.items()
                           if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        self.fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        self._prepared: dict = {}

    def prepared(self, sql: str) -> "_Prepared":
        """PostgreSQL: `sql` (this statement's, or it guarded) as a named prepared statement."""
        found = self._prepared.get(sql)
        if found is None:
            found = self._prepared[sql] = _Prepared(sql)
        return found

    def driver_params(self, params: dict):
        processors = self.processors
        if processors:
            params = {name: (processors[name](value) if name in processors else value)
                      for name, value in params.items()}
        return params if self.order is None else tuple(params[name] for name in self.order)


def execute(session: Session, statement, params, column_keys: tuple | None = None,
            expect_rows: int | None = None) -> None:
    """Run a Core statement built once and kept (one dict of parameters, or a list:
    executemany) in the session's transaction by the driver. An INSERT names its
    `column_keys`. `expect_rows`: how many rows it must change, or `StaleDataError` (at
    once; on PostgreSQL when the pipeline's answers arrive, before the transaction commits)."""
    connection = connection_of(session)
    dialect = connection.dialect
    compiled = _compiled_for(statement, dialect, column_keys)
    many = isinstance(params, list)
    rows = [compiled.driver_params(p) for p in params] if many else [compiled.driver_params(params)]
    pipeline = _pipeline_for(session, connection) if dialect.name == "postgresql" else None
    sql, guarded = compiled.sql, False
    if pipeline is not None and pipeline.transactional and expect_rows is not None:
        # the COMMIT goes in the same round trip as this write: the server checks the row count
        if expect_rows != len(rows):
            raise ValueError("a pipelined write expects exactly one row per set of parameters")
        sql, guarded = _guarded(sql), True
    if connection.dispatch.before_cursor_execute:  # statement counters and tracers still see it
        connection.dispatch.before_cursor_execute(connection, None, sql, rows if many else rows[0], None, many)
    if pipeline is not None:
        pipeline.statement(compiled, sql, rows, many, None if guarded else expect_rows, guarded)
        return
    cursor = connection.connection.dbapi_connection.cursor()
    try:
        if many:
            cursor.executemany(sql, rows)
        else:
            cursor.execute(sql, rows[0])
        changed = cursor.rowcount
    except dialect.loaded_dbapi.Error as error:
        raise _driver_error(dialect, sql, rows if many else rows[0], many, error) from error
    finally:
        cursor.close()
    _check_rows(sql, changed, expect_rows)


def _compiled_for(statement, dialect, column_keys) -> _DriverStatement:
    key = (statement, dialect.name, column_keys)  # the statement itself: an id could be reused
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compiled[key] = _DriverStatement(statement, dialect, column_keys)
    return compiled


def _guarded(sql: str) -> str:
    """The UPDATE as a statement that fails unless it changed exactly one row: a row changed
    by another transaction since it was read aborts the transaction before its COMMIT runs.
    The failure is a cast of a text naming the cause, so that the server's log says it."""
    return (f"WITH changed AS ({sql} RETURNING 1) SELECT CASE WHEN count(*) = 1 THEN 1 "
            f"ELSE ('{_STALE_MARK}: updated ' || count(*) || ' rows, expected 1')::integer END FROM changed")


_STALE_MARK = "gridflow stale row, changed by another transaction since it was read"


def _driver_error(dialect, sql, params, many, error):
    return exc.DBAPIError.instance(sql, params, error, dialect.loaded_dbapi.Error, dialect=dialect, ismulti=many)


def _answer_error(dialect, failed: "_Sent", error):
    """The exception for a write the server refused: a guarded UPDATE that found its row
    changed is a lost race (`StaleDataError`), anything else SQLAlchemy's (`IntegrityError` …)."""
    if failed.guarded and _STALE_MARK in str(error):
        return _stale(failed.sql.split()[4], 1, 0)   # WITH changed AS (UPDATE <table> …
    return _driver_error(dialect, failed.sql, failed.params, failed.many, error)


def _check_rows(sql: str, changed: int, expected: int | None) -> None:
    if expected is not None and changed != expected:
        raise _stale(sql.split()[1], expected, changed)


def _stale(table: str, expected: int, changed: int) -> StaleDataError:
    return StaleDataError(f"{table}: expected to update {expected} row(s), updated {changed}: "
                          f"changed by another transaction since it was read")


# ------------------------------------------------------------------ PostgreSQL pipeline
#
# A write transaction on PostgreSQL (`Database.unit_of_work`) runs in libpq's pipeline mode
# from its BEGIN to its COMMIT, driven here on the psycopg connection's own libpq connection
# (`pgconn`), on a connection in the driver's autocommit mode, so that psycopg sends no BEGIN
# of its own. The BEGIN is queued when SQLAlchemy begins the transaction and reaches the
# server with the first statement: one round trip for both. The statements here are the
# transition's hot ones (its lock read, its writes, a start's number): each is prepared once
# per connection under a name of ours and then only executed, its parameters sent as text
# (psycopg's dumpers) and its rows loaded by psycopg's loaders. The writes are sent, not
# waited for, and answered with the next read or, at the end, with the COMMIT queued after
# them. A completion makes two round trips: BEGIN with the lock, the writes with the COMMIT.
#
# Why not psycopg's own pipeline: per statement it runs a generator through its wait loop,
# ~40 µs of Python each; a completion's nine statements cost ~500 µs of CPU that way and
# ~120 µs here (docs/performance.md, session 12).
#
# A statement of SQLAlchemy's (the ORM's flush, a query) may come between: the pipeline is
# answered first and libpq leaves pipeline mode, so psycopg runs it as usual, in the same
# transaction; the next statement here enters pipeline mode again. A rollback is sent here
# too, so psycopg never sees one: psycopg deallocates every prepared statement of the
# connection after a ROLLBACK, ours with them (`GridflowConnection` hears of it anyway).

_PIPELINE = "gf_write_pipeline"   # Connection.info (its DBAPI connection's): the open pipeline
WRITE_TRANSACTION = "gf_write_transaction"   # execution option of the unit-of-work sessions
_CONNECTION = "gf_connection"   # Session.info: the connection of its transaction (`connection_of`)

_pipelines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # DBAPI connection: _Pipeline
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()    # DBAPI connection: {name}
_names = itertools.count(1)


def connection_of(session: Session):
    """`session.connection()`, kept in the session's info while it stays the transaction's:
    SQLAlchemy's call walks the session's transaction state each time (~5 µs), and a
    completion asks ten times. A transaction's end returns its connection to the pool
    (closed to the session): the next call asks SQLAlchemy again, which begins the next."""
    connection = session.info.get(_CONNECTION)
    if connection is None or connection.closed or connection.invalidated:
        connection = session.info[_CONNECTION] = session.connection()
    return connection


class GridflowConnection(psycopg.Connection):
    """psycopg's connection, which tells us when it deallocates every prepared statement of
    the connection (after a ROLLBACK, DROP or ALTER it ran), ours included."""

    def _deallocate(self, name):
        if name is None:
            _prepared.pop(self, None)
        return super()._deallocate(name)


def connect_gridflow(_dialect, _record, cargs, cparams):
    """SQLAlchemy's `do_connect`: our connection class."""
    return GridflowConnection.connect(*cargs, **cparams)


class _Prepared:
    """A statement's PostgreSQL form: numbered parameters, a name of its own."""

    __slots__ = ("name", "sql", "order")

    def __init__(self, sql: str):
        order: list[str] = []

        def number(match):
            if match.group(0) == "%%":
                return "%"
            if match.group(1) not in order:
                order.append(match.group(1))
            return f"${order.index(match.group(1)) + 1}"
        self.sql = re.sub(r"%%|%\(([^)]+)\)s", number, sql).encode()
        self.order = tuple(order)
        self.name = f"gf_{next(_names)}".encode()


class _Sent:
    """Something sent in the pipeline: `commands` commands, their answers in `results`."""

    __slots__ = ("sql", "params", "many", "expect_rows", "guarded", "commands", "results", "prepares")

    def __init__(self, sql, params, many=False, expect_rows=None, guarded=False, commands=1, prepares=None):
        self.sql, self.params, self.many = sql, params, many
        self.expect_rows, self.guarded, self.commands = expect_rows, guarded, commands
        self.prepares = prepares   # the statement name a PREPARE makes
        self.results: list = []


class _Pipeline:
    """libpq's pipeline mode on one connection: open for the whole write transaction
    (`transactional`) or, elsewhere, from the first write of a burst until `end_pipeline`."""

    __slots__ = ("dbapi", "pgconn", "dialect", "sent", "asked", "transactional", "dumper", "loader",
                 "__weakref__")

    def __init__(self, connection, transactional: bool):
        dbapi = connection.connection.dbapi_connection
        self.dbapi, self.pgconn, self.dialect = dbapi, dbapi.pgconn, connection.dialect
        self.sent: list[_Sent] = []         # sent since the last Sync
        self.asked: list[list[_Sent]] = []  # sent up to a Sync, the answers not read yet
        self.transactional = transactional
        self.dumper, self.loader = Transformer(dbapi), None
        _pipelines[dbapi] = self

    def _queue(self, sent: _Sent) -> None:
        if not self.pgconn.pipeline_status:
            self.pgconn.enter_pipeline_mode()
        self.sent.append(sent)

    def control(self, sql: bytes) -> None:
        """BEGIN, COMMIT or ROLLBACK."""
        self._queue(_Sent(sql.decode(), None))
        self.pgconn.send_query_params(sql, None)

    def statement(self, compiled: "_DriverStatement", sql: str, rows: list[dict], many: bool,
                  expect_rows=None, guarded=False, answer_now=False) -> _Sent:
        """Send a prepared statement for each set of parameters (prepared first on this
        connection if it is new here) and push it towards the server: it starts on it while
        we go on. `answer_now`: a read whose answer is wanted back as soon as it is ready (`ask`)."""
        prepared = compiled.prepared(sql)
        names = _prepared.get(self.dbapi)
        if names is None:
            names = _prepared[self.dbapi] = set()
        pgconn = self.pgconn
        if prepared.name not in names:
            self._queue(_Sent(f"PREPARE {sql}", None, prepares=prepared.name))
            pgconn.send_prepare(prepared.name, prepared.sql)
            names.add(prepared.name)
        sent = _Sent(sql, rows if many else rows[0], many, expect_rows, guarded, commands=len(rows))
        self._queue(sent)
        dump, order = self.dumper.dump_sequence, prepared.order
        formats = [PyFormat.TEXT] * len(order)
        for params in rows:
            pgconn.send_query_prepared(prepared.name, dump([params[name] for name in order], formats)
                                       if order else None)
        if answer_now:
            self.ask()
        else:
            self._flush()
        return sent

    def ask(self) -> None:
        """Send a Sync after what was sent, now: its answer (the server's ready-for-query)
        comes back with the statements', and `sync` reads them all when they are wanted
        without a round trip of its own."""
        self.asked.append(self.sent)
        self.sent = []
        self.pgconn.pipeline_sync()
        self._flush()

    def _flush(self) -> None:
        pgconn = self.pgconn
        while pgconn.flush():   # 1: the socket took part of it; send the rest when it can
            _wait(pgconn, select.POLLOUT | select.POLLIN)
            pgconn.consume_input()

    def sync(self) -> list[_Sent]:
        """Wait for the answers to everything sent so far and check them: a refused write
        raised as that write's error (SQLAlchemy's), a stale row as `StaleDataError`, any other
        error as the statement's that failed (the BEGIN's, the COMMIT's …). Returns what was
        sent, answered."""
        if self.sent or not self.asked:
            self.ask()
        batches, self.asked = self.asked, []
        pgconn = self.pgconn
        for batch in batches:   # each answered up to its Sync
            owners = (item for item in batch for _ in range(item.commands))
            while True:
                if pgconn.is_busy():
                    _wait(pgconn, select.POLLIN)
                    pgconn.consume_input()
                    continue
                result = pgconn.get_result()
                if result is None:
                    continue   # the end of one command's answer
                if result.status == pq.ExecStatus.PIPELINE_SYNC:
                    break
                next(owners).results.append(result)
        sent = [item for batch in batches for item in batch]
        names = _prepared.get(self.dbapi)
        failed, error = None, None
        for item in sent:
            for result in item.results:
                if result.status == pq.ExecStatus.FATAL_ERROR and failed is None:
                    failed, error = item, psycopg.errors.error_from_result(result, self.dbapi.info.encoding)
            if item.prepares is not None and names is not None and (
                    not item.results or item.results[0].status != pq.ExecStatus.COMMAND_OK):
                names.discard(item.prepares)
        if failed is not None:
            if failed.prepares is None and error.sqlstate == "26000" and names is not None:
                names.clear()   # our statements were deallocated behind our back: prepare them again
            raise _answer_error(self.dialect, failed, error) from error
        for item in sent:
            if item.expect_rows is not None:
                _check_rows(item.sql, sum(int(r.command_tuples or 0) for r in item.results), item.expect_rows)
        return sent

    @property
    def unanswered(self) -> bool:
        return bool(self.sent or self.asked)

    def rows(self, sent: _Sent) -> list[tuple]:
        """The rows of an answered statement, loaded as psycopg loads them."""
        loader = self.loader
        if loader is None:
            loader = self.loader = Transformer(self.dbapi)
        result = sent.results[0]
        loader.set_pgresult(result)
        return loader.load_rows(0, result.ntuples, tuple)

    def leave(self) -> None:
        """Out of pipeline mode (everything sent has been answered): psycopg may use the
        connection."""
        if self.pgconn.pipeline_status:
            self.pgconn.exit_pipeline_mode()


# How long a wait for the server's answer polls its socket before it sleeps
# (GRIDFLOW_PG_SPIN_US, µs; default 0: it sleeps at once). On a VM whose idle vCPU halts at
# once a sleeping client is woken late: 300 µs of polling took ~0.09 ms off a lone step
# (~4 %) for ~0.26 ms more CPU, which under load another request needs: HTTP throughput in
# turns 155/134 completions/s with it against 170/160/155 without (docs/performance.md, session 12).
SPIN_SECONDS = max(0, int(os.environ.get("GRIDFLOW_PG_SPIN_US", "0"))) / 1e6


def _wait(pgconn, events: int) -> None:
    poller = select.poll()
    poller.register(pgconn.socket, events)
    if SPIN_SECONDS:
        until = time.perf_counter() + SPIN_SECONDS
        while time.perf_counter() < until:
            if poller.poll(0):
                return
    poller.poll()


def begin_in_pipeline(connection) -> None:
    """Queue the BEGIN of a write transaction (SQLAlchemy's `begin` event) in the pipeline
    that will carry the transaction; it reaches the server with the first statement."""
    if not connection.get_execution_options().get(WRITE_TRANSACTION):
        return
    dbapi_connection = connection.connection.dbapi_connection
    if not dbapi_connection.autocommit:
        return   # an isolation level of its own was asked for: psycopg begins that transaction
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is None:
        pipeline = connection.info[_PIPELINE] = _Pipeline(connection, transactional=True)
    pipeline.transactional = True
    pipeline.control(b"BEGIN")


def _pipeline_for(session: Session, connection) -> _Pipeline | None:
    """The connection's pipeline, opened for a burst if it has none; None when psycopg runs
    the transaction itself (an isolation level asked for): its statements go the usual way."""
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is None:
        if not connection.connection.dbapi_connection.autocommit:
            return None
        pipeline = connection.info[_PIPELINE] = _Pipeline(connection, transactional=False)
        session.info[_PIPELINE] = True
    return pipeline


def answer(connection, pipeline: _Pipeline) -> list[_Sent]:
    """`pipeline.sync()`, a lost connection invalidated as SQLAlchemy would."""
    try:
        return pipeline.sync()
    except psycopg.OperationalError as error:
        if pipeline.pgconn.status == pq.ConnStatus.BAD:
            _forget(connection)
            connection.invalidate(error)
            raise exc.DBAPIError.instance("(pipeline)", None, error, psycopg.Error, dialect=pipeline.dialect,
                                          connection_invalidated=True) from error
        raise


def _forget(connection) -> None:
    pipeline = connection.info.pop(_PIPELINE, None)
    if pipeline is not None:
        _pipelines.pop(pipeline.dbapi, None)


def settle_pipeline(connection) -> None:
    """Before a statement of SQLAlchemy's: what was sent is answered and libpq leaves
    pipeline mode, so that psycopg runs the statement. A burst's pipeline ends; a
    transaction's stays, to enter pipeline mode again with its next statement here."""
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is None:
        return
    if not pipeline.transactional:
        end_pipeline(connection)
        return
    _answer_and_leave(connection, pipeline)


def _answer_and_leave(connection, pipeline: _Pipeline) -> None:
    if pipeline.unanswered:
        answer(connection, pipeline)
    pipeline.leave()


def end_pipeline(connection, discard: bool = False) -> None:
    """Leave the pipeline on this SQLAlchemy connection, if any, waiting for the answers of
    what was sent in it and checking them. `discard`: the transaction is being rolled back:
    the ROLLBACK is sent here (psycopg then finds nothing to roll back), errors no longer
    matter."""
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is None:
        return
    if discard:
        try:
            # a burst's writes outside a transaction have committed one by one: nothing to undo
            if pipeline.transactional or pipeline.pgconn.transaction_status != pq.TransactionStatus.IDLE:
                pipeline.control(b"ROLLBACK")
            try:
                pipeline.sync()
            except exc.SQLAlchemyError:
                pass   # a write's refusal: rolled back all the same
            pipeline.leave()
        except psycopg.Error:
            pass   # the connection is broken: SQLAlchemy's rollback finds it so
        finally:
            _forget(connection)
        return
    try:
        _answer_and_leave(connection, pipeline)
    finally:
        # a refusal leaves the pipeline for the rollback, which ends the transaction here
        if pipeline.pgconn.pipeline_status == pq.PipelineStatus.OFF:
            _forget(connection)


def commit_session_pipeline(session: Session) -> None:
    """PostgreSQL, at the end of a unit of work: the ORM's last writes, then the COMMIT
    queued after the pipelined writes, answered with them in one round trip (a refused or
    stale write aborts the transaction, and the server skips the COMMIT). A burst's
    pipeline (outside a write transaction) just ends, its answers checked before the
    COMMIT as before."""
    flag = session.info.pop(_PIPELINE, False)
    if not session.in_transaction():
        return
    connection = connection_of(session)
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is None:
        return
    if not pipeline.transactional:
        if flag:
            end_pipeline(connection)
        return
    session.flush()
    pipeline.control(b"COMMIT")
    end_pipeline(connection)


def query(session: Session, statement, params: dict) -> list[tuple]:
    """The rows of a Core statement (a SELECT, an UPDATE … RETURNING) built once and kept,
    run by the driver in the session's transaction: on PostgreSQL in its pipeline, answered
    at once together with the writes sent before it. Values as the driver loads them."""
    connection = connection_of(session)
    return send_query(session, connection, _compiled_for(statement, connection.dialect, None), params)()


def send_query(session: Session, connection, compiled: _DriverStatement, params: dict):
    """Send the statement and return a function that waits for its rows: on PostgreSQL the
    caller may work meanwhile (SQLite has answered already)."""
    dialect = connection.dialect
    # with the values the statement binds itself ('open', the generation row's id)
    driver_params = compiled.driver_params({**compiled.fixed, **params})
    if connection.dispatch.before_cursor_execute:
        connection.dispatch.before_cursor_execute(connection, None, compiled.sql, driver_params, None, False)
    pipeline = _pipeline_for(session, connection) if dialect.name == "postgresql" else None
    if pipeline is None:
        rows = _cursor_rows(connection, compiled.sql, driver_params)
        return lambda: rows
    sent = pipeline.statement(compiled, compiled.sql, [driver_params], False, answer_now=True)

    def receive() -> list[tuple]:
        answer(connection, pipeline)
        rows = pipeline.rows(sent)
        if not pipeline.transactional:
            end_pipeline(connection)
        return rows
    return receive


def _cursor_rows(connection, sql, params) -> list[tuple]:
    dialect = connection.dialect
    dbapi_connection = connection.connection.dbapi_connection
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(sql, params)
        return cursor.fetchall()
    except dialect.loaded_dbapi.Error as error:
        gone = dialect.is_disconnect(error, dbapi_connection, cursor)
        if gone:
            connection.invalidate(error)
        raise exc.DBAPIError.instance(sql, params, error, dialect.loaded_dbapi.Error,
                                      dialect=dialect, connection_invalidated=gone) from error
    finally:
        cursor.close()


def install_pipeline_listeners(engine) -> None:
    """A write transaction begins in its pipeline; a pipelined burst of writes is answered
    before anything else reaches the server on its connection: another statement
    (SQLAlchemy's own: `context` is set), the COMMIT, or the ROLLBACK."""

    @event.listens_for(engine, "begin")
    def _begin(connection):
        begin_in_pipeline(connection)

    @event.listens_for(engine, "before_cursor_execute")
    def _before_other_statement(connection, _cursor, _statement, _parameters, context, _many):
        if context is not None and _PIPELINE in connection.info:
            settle_pipeline(connection)

    @event.listens_for(engine, "commit")
    def _before_commit(connection):
        end_pipeline(connection)

    @event.listens_for(engine, "rollback")
    def _before_rollback(connection):
        # an invalidated connection (the server went away) has lost its pipeline with it
        if not connection.invalidated:
            end_pipeline(connection, discard=True)


def _columns(mapper) -> dict:
    """{attribute key: its Column} for the mapper's plain column attributes."""
    found = _columns_by_mapper.get(mapper)
    if found is None:
        found = {prop.key: prop.columns[0] for prop in mapper.column_attrs if len(prop.columns) == 1}
        _columns_by_mapper[mapper] = found
    return found


def _update_statement(mapper, keys: tuple[str, ...]):
    statement = _updates.get((mapper, keys))
    if statement is None:
        columns = _columns(mapper)
        (pk,) = mapper.primary_key
        statement = update(mapper.local_table).where(pk == bindparam("w_pk", type_=pk.type))
        values = {columns[key]: bindparam(f"w_{key}", type_=columns[key].type) for key in keys}
        version = mapper.version_id_col
        if version is not None:
            statement = statement.where(version == bindparam("w_version_was", type_=version.type))
            values[version] = bindparam("w_version_now", type_=version.type)
        statement = statement.values(values)
        _updates[(mapper, keys)] = statement
    return statement


def _mark_committed(session: Session, obj) -> None:
    """As a flush leaves a written object: no changes pending, not dirty. (SQLAlchemy has no
    public call for this; `set_committed_value` leaves the object on the session's dirty list.)"""
    state = inspect(obj)
    state._commit_all(state.dict, session.identity_map)


_ORM_ONLY = object()


def _planned_update(obj):
    """(mapper, changed keys, parameters) for the row of `obj`; None when nothing changed;
    _ORM_ONLY when only the ORM can write the change."""
    state = inspect(obj)
    mapper = state.mapper
    if not state.persistent or len(mapper.primary_key) != 1:
        return _ORM_ONLY
    if not state.committed_state:
        return None
    columns = _columns(mapper)
    version = mapper.version_id_col
    version_key = mapper.get_property_by_column(version).key if version is not None else None
    if version_key is not None and version_key not in state.dict:
        return _ORM_ONLY  # the version was never read: the ORM knows how to fetch it
    changed = {}
    for key, was in state.committed_state.items():
        if key not in columns or key == version_key or columns[key] is mapper.primary_key[0]:
            return _ORM_ONLY
        now = state.dict.get(key, NO_VALUE)
        if now is NO_VALUE:
            return _ORM_ONLY
        # was NO_VALUE: never loaded, or flagged as changed in place
        if was is NO_VALUE or was != now:
            changed[key] = now
    if not changed:
        return None
    params = {f"w_{key}": value for key, value in changed.items()}
    params["w_pk"] = state.identity[0]
    if version_key is not None:
        params["w_version_was"] = state.dict[version_key]
        params["w_version_now"] = state.dict[version_key] + 1
    return mapper, tuple(sorted(changed)), params


def _written(session: Session, obj, params: dict | None) -> None:
    state = inspect(obj)
    version = state.mapper.version_id_col
    if params is not None and version is not None:
        state.dict[state.mapper.get_property_by_column(version).key] = params["w_version_now"]
    _mark_committed(session, obj)


def update_changed_many(session: Session, objects: list) -> int:
    """UPDATE the rows of persistent objects with the attributes changed since they were
    loaded: one executemany for all the rows whose changes name the same columns (a batch of
    timer firings changes the same ones in each case). The objects only the ORM can write
    (a relationship changed, a version never read …) are left to it; returns how many were
    written here."""
    groups: dict[tuple, list] = {}
    unchanged = []
    connection = connection_of(session)
    for obj in objects:
        state = inspect(obj)
        if state.persistent:
            # the mapper's before_update listeners run as in a flush (engine/case_facts.py
            # derives the case's report columns there); they may change more attributes
            _fire(state, "before_update", connection)
        plan = _planned_update(obj)
        if plan is _ORM_ONLY:
            continue
        if plan is None:
            unchanged.append(obj)
        else:
            groups.setdefault(plan[:2], []).append((obj, plan[2]))
    for (mapper, keys), rows in groups.items():
        params = [p for _obj, p in rows]
        execute(session, _update_statement(mapper, keys), params if len(params) > 1 else params[0],
                expect_rows=len(rows))
    written = [(obj, None) for obj in unchanged] + [row for rows in groups.values() for row in rows]
    for obj, params in written:
        _written(session, obj, params)
        _fire(inspect(obj), "after_update", connection)
    return len(written)


def _fire(state, event_name: str, connection) -> None:
    """Run the mapper's listeners for a flush event (`before_update`, `after_insert` …) on
    an object written here, as the ORM's flush would have run them."""
    listeners = getattr(state.mapper.dispatch, event_name)
    if listeners:
        listeners(state.mapper, connection, state)


def new_row_object(model, **values):
    """A transient `model` object holding `values`, as `model(**values)` makes it but without
    an attribute event per value (~18 µs for a work item's 17): for the objects `insert_new`
    writes, which read their values and nothing else of a constructor."""
    obj = inspect(model).class_manager.new_instance()
    instance_state(obj).dict.update(values)
    return obj


def insert_new(session: Session, objects: list) -> None:
    """INSERT transient objects of one class by one statement; they join the session as
    persistent, with nothing pending. Column defaults the objects left unset are applied
    here (and set on them), so no attribute needs reloading."""
    if not objects:
        return
    mapper = inspect(objects[0]).mapper
    columns = _columns(mapper)
    connection = connection_of(session)
    rows = []
    for obj in objects:
        _fire(inspect(obj), "before_insert", connection)
        values = inspect(obj).dict
        row = {}
        for key, column in columns.items():
            value = values.get(key, NO_VALUE)
            if value is NO_VALUE:
                default = column.default
                value = default.arg if default is not None and default.is_scalar else None
                set_committed_value(obj, key, value)
            row[column.key] = value
        rows.append(row)
    insert_rows_now(session, mapper.local_table, rows)
    for obj in objects:
        state = instance_state(obj)
        state._commit_all(state.dict)   # as a flush leaves it: nothing pending
        attach_persistent(session, state, mapper.identity_key_from_primary_key(
            [state.dict[column.key] for column in mapper.primary_key]))
        _fire(state, "after_insert", connection)


def attach_persistent(session: Session, state, key) -> None:
    """A row's object (its `InstanceState`) into the session as the ORM's own loader attaches
    a row it read (sqlalchemy/orm/loading.py, `_instance`): identity and session set, into
    the identity map. `make_transient_to_detached` + `Session.add` did the same through the
    save-update cascade and the attach events: ~25 µs an object, four a completion."""
    state.key, state.identity_token, state.session_id = key, key[2], session.hash_key
    session.identity_map._add_unpresent(state, key)


def insert_rows_now(session: Session, table, rows: list[dict]) -> None:
    """INSERT plain rows by one statement (executemany for several). Columns with a
    Python-side default that a row leaves out get it here, as Core would give it."""
    if not rows:
        return
    statement = _inserts.get(table)
    if statement is None:
        statement = _inserts[table] = insert(table)
    keys = set().union(*rows)
    defaults = {column.key: column.default for column in table.columns
                if column.default is not None and column.key not in keys}
    column_keys = tuple(sorted(keys | defaults.keys()))
    if defaults:
        filled = []
        for row in rows:
            row = dict(row)
            for key, default in defaults.items():
                if not default.is_scalar and not default.is_callable:
                    raise ValueError(f"{table.name}.{key}: give it a value; its default is a SQL expression")
                row[key] = default.arg if default.is_scalar else default.arg(None)
            filled.append(row)
        rows = filled
    if any(len(row) != len(column_keys) for row in rows):
        # executemany needs every row to name the same columns
        rows = [{key: row.get(key) for key in column_keys} for row in rows]
    execute(session, statement, rows if len(rows) > 1 else rows[0], column_keys)
