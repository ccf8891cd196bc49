"""A transition's first read, straight from the database driver.

Every completion, claim and release begins by reading its work item and case (locking
the case row) and, for a completion, the case's state and its other open tasks: one
SELECT of whole rows of four tables. Through the ORM (`session.execute(select(WorkItem,
Case, …))`) that read cost 0.36 ms of CPU on PostgreSQL, more than twice what the driver
needs to run the statement and fetch its row: SQLAlchemy's execution context, the
cursor's 73 column descriptions, the ORM's row loading (docs/performance.md, session 10).

`DriverRead` is such a SELECT, compiled once per database, run on the transaction's
own driver connection, its rows turned into the session's persistent objects as the ORM
would load them: an object the session already holds is overwritten with what was read
(`populate_existing`), a row the outer join did not find is None. Column types' result
processing (UTC datetimes, JSON) is applied as SQLAlchemy would. SQLAlchemy's
`before_cursor_execute` listeners still see the statement, and a driver error is raised
as SQLAlchemy's exception, the connection invalidated when the server went away.
"""
from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import instance_state, set_committed_value

from .core_writes import _DriverStatement, attach_persistent, connection_of, new_row_object, send_query


class Rows:
    """The whole row of a mapped class, from its table or an alias of it."""

    __slots__ = ("model", "table")

    def __init__(self, model, table=None):
        self.model = model
        self.table = table if table is not None else model.__table__


class DriverRead:
    """A SELECT of whole rows of mapped classes (`Rows`) and single values (SQL
    expressions). `build(columns)` makes the statement around its columns (joins, WHERE,
    FOR UPDATE), which must select exactly those columns in that order."""

    __slots__ = ("parts", "statement", "_plans")

    def __init__(self, parts: list, build):
        self.parts = parts
        columns = [column for part in parts
                   for column in (part.table.columns if isinstance(part, Rows) else [part])]
        self.statement = build(columns)
        self._plans: dict = {}

    def _plan(self, dialect):
        plan = self._plans.get(dialect.name)
        if plan is None:
            steps = []
            for part in self.parts:
                if isinstance(part, Rows):
                    mapper = inspect(part.model)
                    keys = [(mapper.get_property_by_column(part.model.__table__.columns[c.key]).key,
                             _processor(c, dialect)) for c in part.table.columns]
                    pk_at = [i for i, c in enumerate(part.table.columns) if c.primary_key]
                    steps.append((mapper, keys, pk_at))
                else:
                    steps.append((None, [(None, _processor(part, dialect))], None))
            plan = self._plans[dialect.name] = (_DriverStatement(self.statement, dialect), steps)
        return plan

    def rows(self, session: Session, params: dict) -> list[tuple]:
        """The rows, each a tuple of persistent objects (None for a row not found) and values."""
        return self.send(session, params)()

    def send(self, session: Session, params: dict):
        """Send the statement; returns a function that waits for `rows` (the caller may work
        while PostgreSQL answers)."""
        connection = connection_of(session)
        compiled, steps = self._plan(connection.dialect)
        receive = send_query(session, connection, compiled, params)
        return lambda: [self._objects(session, steps, row) for row in receive()]

    @staticmethod
    def _objects(session: Session, steps, row) -> tuple:
        out, at = [], 0
        for mapper, keys, pk_at in steps:
            values = row[at:at + len(keys)]
            at += len(keys)
            if mapper is None:
                processor = keys[0][1]
                out.append(processor(values[0]) if processor is not None else values[0])
                continue
            if all(values[i] is None for i in pk_at):
                out.append(None)   # the outer join found no row
                continue
            loaded = {key: (processor(value) if processor is not None else value)
                      for (key, processor), value in zip(keys, values)}
            out.append(_persistent(session, mapper, loaded, [values[i] for i in pk_at]))
        return tuple(out)


def _processor(column, dialect):
    return column.type.dialect_impl(dialect).result_processor(dialect, None)


def _persistent(session: Session, mapper, loaded: dict, pk: list):
    """The session's object for this row, holding what was read and no pending change."""
    key = mapper.identity_key_from_primary_key(pk)
    identity_map = session.identity_map
    existing = identity_map.get(key)
    if existing is not None:
        for name, value in loaded.items():
            set_committed_value(existing, name, value)
        return existing
    obj = new_row_object(mapper.class_, **loaded)
    attach_persistent(session, instance_state(obj), key)
    return obj
