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

On PostgreSQL these writes are pipelined (psycopg's pipeline mode): sent one after the other
without waiting for each answer, the answers read together with the transaction's next
statement of SQLAlchemy's or, at its end, with the COMMIT queued after them. A versioned
UPDATE's row count is then checked by the server (`_guarded`). The whole write transaction
runs in one pipeline, its BEGIN sent with its first statement: see the section below and
docs/engine.md. On an idle machine a round trip costs ~75 µs; a completion makes two.
"""
from __future__ import annotations

import weakref

import psycopg
from sqlalchemy import bindparam, event, exc, insert, inspect, update
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
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

    __slots__ = ("sql", "order", "processors", "fixed")

    def __init__(self, statement, dialect, column_keys=None):
        # for_executemany: no RETURNING of generated keys, which nothing here reads back
        compiled = statement.compile(dialect=dialect, column_keys=column_keys, for_executemany=True)
        self.sql = str(compiled)
        self.order = tuple(compiled.positiontup) if compiled.positional else None
        self.processors = {name: processor for name, bind in compiled.binds.items()
                           if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect)) is not None}
        self.fixed = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}

    def driver_params(self, params: dict):
        processors = self.processors
        if processors:
            params = {name: (processors[name](value) if name in processors else value)
                      for name, value in params.items()}
        return params if self.order is None else tuple(params[name] for name in self.order)


def execute(session: Session, statement, params, column_keys: tuple | None = None,
            expect_rows: int | None = None) -> None:
    """Run a Core statement built once and kept (one dict of parameters, or a list:
    executemany) in the session's transaction by the driver's cursor. An INSERT names its
    `column_keys`. `expect_rows`: how many rows it must change, or `StaleDataError` (at
    once; on PostgreSQL when the pipeline's answers arrive, before the transaction commits)."""
    connection = session.connection()
    dialect = connection.dialect
    key = (statement, dialect.name, column_keys)  # the statement itself: an id could be reused
    compiled = _compiled.get(key)
    if compiled is None:
        compiled = _compiled[key] = _DriverStatement(statement, dialect, column_keys)
    many = isinstance(params, list)
    driver_params = [compiled.driver_params(p) for p in params] if many else compiled.driver_params(params)
    pipeline = _pipeline_for(session, connection) if dialect.name == "postgresql" else None
    sql = compiled.sql
    guarded = False
    if pipeline is not None and pipeline.transactional and expect_rows is not None:
        # the COMMIT goes in the same round trip as this write: the server checks the row count
        if expect_rows != (len(params) if many else 1):
            raise ValueError("a pipelined write expects exactly one row per set of parameters")
        sql, guarded = _guarded(sql), True
    cursor = connection.connection.dbapi_connection.cursor()
    if connection.dispatch.before_cursor_execute:  # statement counters and tracers still see it
        connection.dispatch.before_cursor_execute(connection, cursor, sql, driver_params, None, many)
    sent = False
    try:
        if many:
            cursor.executemany(sql, driver_params)
        else:
            cursor.execute(sql, driver_params)
        sent = True
    except dialect.loaded_dbapi.Error as error:
        # this statement's own (a guarded executemany may meet its stale row while sending);
        # an earlier pipelined write's refusal surfacing here is raised as that write's by
        # `PipelinedCursor`
        raise _answer_error(dialect, _Sent(cursor, sql, driver_params, many, None, guarded), error) from error
    finally:
        if pipeline is None or not sent:
            cursor.close()
    if pipeline is not None:
        pipeline.sent.append(_Sent(cursor, sql, driver_params, many, None if guarded else expect_rows, guarded))
    else:
        _check_rows(sql, cursor.rowcount, expect_rows)


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
# A write transaction on PostgreSQL (`Database.unit_of_work`) runs in one psycopg pipeline
# from its BEGIN to its COMMIT, on a connection in the driver's autocommit mode, so that
# psycopg sends no BEGIN of its own (it waits for the answer to that one alone). The BEGIN
# is queued when SQLAlchemy begins the transaction and reaches the server with the first
# statement: one round trip for both. Each statement of SQLAlchemy's is answered when
# SQLAlchemy asks for its result (`PipelinedCursor`); the driver writes here are only
# sent, and answered with the next statement of SQLAlchemy's (the server runs it after
# them) or, at the end, with the COMMIT queued after them. A completion makes two round
# trips: BEGIN with the lock, the writes with the COMMIT; a start three (its number is
# read between).

_PIPELINE = "gf_write_pipeline"   # Connection.info (its DBAPI connection's): the open pipeline
WRITE_TRANSACTION = "gf_write_transaction"   # execution option of the unit-of-work sessions
_pipelines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()   # DBAPI connection: _Pipeline


class _Sent:
    """A write sent in the pipeline, awaiting its answer."""

    __slots__ = ("cursor", "sql", "params", "many", "expect_rows", "guarded")

    def __init__(self, cursor, sql, params, many, expect_rows, guarded):
        self.cursor, self.sql, self.params, self.many = cursor, sql, params, many
        self.expect_rows, self.guarded = expect_rows, guarded


class _Pipeline:
    """psycopg's pipeline context, entered by hand: open for the whole write transaction
    (`transactional`) or, elsewhere, from the first write of a burst until `end_pipeline`.
    The writes' cursors stay open until their answers have been checked."""

    __slots__ = ("context", "pipeline", "dialect", "sent", "transactional", "syncs", "begin", "__weakref__")

    def __init__(self, connection, transactional: bool):
        dbapi_connection = connection.connection.dbapi_connection
        self.context = dbapi_connection.pipeline()
        self.pipeline = self.context.__enter__()
        self.dialect = connection.dialect
        self.sent: list[_Sent] = []
        self.transactional = transactional
        self.syncs = 0        # answers are complete for whatever was sent before sync number `syncs`
        self.begin = None     # the BEGIN's cursor, until it is answered
        _pipelines[dbapi_connection] = self

    def sync(self) -> None:
        """The answers to everything sent so far: a statement's of SQLAlchemy's and those of
        the writes sent before it, checked (`_settle`). A write's refusal is raised as that
        write's error, any other as psycopg's (SQLAlchemy wraps it as its statement's)."""
        self.syncs += 1
        _settle(self, self.dialect, self.pipeline.sync, unattributed=None)


class PipelinedCursor(psycopg.Cursor):
    """psycopg's cursor, which in a pipeline fills `description` and `rowcount` only once the
    statement's answer has arrived, while SQLAlchemy asks for them right after `execute`:
    asking here first syncs the pipeline, if the statement was sent since its last sync."""

    def execute(self, *args, **kwargs):
        return self._send(super().execute, args, kwargs)

    def executemany(self, *args, **kwargs):
        return self._send(super().executemany, args, kwargs)

    def _send(self, send, args, kwargs):
        pipeline = _pipelines.get(self.connection)
        self._gf_sync = pipeline.syncs if pipeline is not None else None
        try:
            return send(*args, **kwargs)
        except psycopg.Error as error:
            # sending reads the answers already there: an earlier write's refusal is that write's
            failed = _refused(pipeline, None) if pipeline is not None else None
            if failed is None:
                raise
            raise _answer_error(pipeline.dialect, failed, error) from error

    def _answered(self) -> None:
        sent_at = getattr(self, "_gf_sync", None)
        if sent_at is not None:
            pipeline = _pipelines.get(self.connection)
            if pipeline is not None and pipeline.syncs == sent_at:
                pipeline.sync()
            self._gf_sync = None

    @property
    def description(self):
        self._answered()
        return super().description

    @property
    def rowcount(self) -> int:
        self._answered()
        return super().rowcount

    def fetchall(self):
        self._answered()
        return super().fetchall()


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
    pipeline.begin = dbapi_connection.cursor()
    pipeline.begin.execute("BEGIN", prepare=False)


def _pipeline_for(session: Session, connection) -> _Pipeline:
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is None:
        pipeline = connection.info[_PIPELINE] = _Pipeline(connection, transactional=False)
        session.info[_PIPELINE] = True
    return pipeline


def _settle(pipeline: _Pipeline, dialect, how, unattributed: str | None = "COMMIT") -> None:
    """Wait for the answers of everything sent in the pipeline (`how` does the waiting) and
    check them: a refused write raised as SQLAlchemy's exception, a lost race on a row's
    version as `StaleDataError`. An error of no write's is the `unattributed` statement's
    (the BEGIN's or COMMIT's, the connection lost …), or re-raised as it is (None)."""
    try:
        try:
            how()
        except dialect.loaded_dbapi.Error as error:
            failed = _refused(pipeline, None)
            if failed is None:
                if unattributed is None:
                    raise
                raise _driver_error(dialect, unattributed, None, False, error) from error
            raise _answer_error(dialect, failed, error) from error
        for sent in pipeline.sent:
            _check_rows(sent.sql, sent.cursor.rowcount, sent.expect_rows)
    finally:
        _close_cursors(pipeline)


def _close_cursors(pipeline: _Pipeline) -> None:
    for sent in pipeline.sent:
        sent.cursor.close()
    pipeline.sent.clear()
    if pipeline.begin is not None:
        pipeline.begin.close()
        pipeline.begin = None


def settle_pipeline(connection) -> None:
    """Before a statement of SQLAlchemy's: a burst's pipeline ends, its writes answered. A
    transaction's stays open: the writes are answered with that statement (`_Pipeline.sync`),
    which the server runs after them, in the same transaction."""
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is not None and not pipeline.transactional:
        end_pipeline(connection)


def end_pipeline(connection, discard: bool = False) -> None:
    """Leave the pipeline on this SQLAlchemy connection, if any, waiting for the answers of
    what was sent in it and checking them (`_settle`). `discard`: the transaction is being
    rolled back; its errors do not matter any more."""
    pipeline = connection.info.pop(_PIPELINE, None)
    if pipeline is None:
        return
    dbapi_connection = connection.connection.dbapi_connection
    _pipelines.pop(dbapi_connection, None)
    leave = lambda: pipeline.context.__exit__(None, None, None)   # noqa: E731 -- Sync: every answer arrives
    if discard:
        try:
            leave()
        except connection.dialect.loaded_dbapi.Error:
            pass
        finally:
            _close_cursors(pipeline)
        return
    _settle(pipeline, connection.dialect, leave)


def _refused(pipeline: _Pipeline, otherwise):
    """The pipelined write the server refused: the one whose answer is an error (later ones
    were not run), else the first without an answer, else `otherwise`."""
    from psycopg import pq

    for sent in pipeline.sent:
        result = sent.cursor.pgresult
        if result is not None and result.status == pq.ExecStatus.FATAL_ERROR:
            return sent
    return next((sent for sent in pipeline.sent if sent.cursor.pgresult is None), otherwise)


def commit_session_pipeline(session: Session) -> None:
    """PostgreSQL, at the end of a unit of work: the ORM's last writes, then the COMMIT
    queued after the pipelined writes, answered with them in one round trip (a refused or
    stale write aborts the transaction, and the server skips the COMMIT). A burst's
    pipeline (outside a write transaction) just ends, its answers checked before the
    COMMIT as before."""
    flag = session.info.pop(_PIPELINE, False)
    if not session.in_transaction():
        return
    connection = session.connection()
    pipeline = connection.info.get(_PIPELINE)
    if pipeline is None:
        return
    if not pipeline.transactional:
        if flag:
            end_pipeline(connection)
        return
    session.flush()
    dialect = connection.dialect
    commit = connection.connection.dbapi_connection.cursor()
    try:
        try:
            # a write's refusal surfacing as the COMMIT is queued is raised as that write's
            # (`PipelinedCursor`); the rollback then ends the pipeline
            commit.execute("COMMIT", prepare=False)
        except dialect.loaded_dbapi.Error as error:
            raise _driver_error(dialect, "COMMIT", None, False, error) from error
        end_pipeline(connection)
    finally:
        commit.close()


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
    connection = session.connection()
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


def insert_new(session: Session, objects: list) -> None:
    """INSERT transient objects of one class by one statement; they join the session as
    persistent, with nothing pending. Column defaults the objects left unset are applied
    here (and set on them), so no attribute needs reloading."""
    if not objects:
        return
    mapper = inspect(objects[0]).mapper
    columns = _columns(mapper)
    connection = session.connection()
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
        make_transient_to_detached(obj)
        session.add(obj)
        _fire(inspect(obj), "after_insert", connection)


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
