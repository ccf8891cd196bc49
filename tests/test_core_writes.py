"""A single transition's writes by the driver (`engine/core_writes.py`).

They must do what the ORM's flush did: write exactly the changed columns, keep the
optimistic version check, apply column defaults, surface driver errors as SQLAlchemy's,
and leave nothing for the flush at commit to write a second time."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified
from sqlalchemy.orm.exc import StaleDataError

from engine.core_writes import insert_new, insert_rows_now, update_changed_many
from engine.models import AuditEvent, Case, User, WorkItem
from tests.test_engine_service import REPORT

GRID = "linxi-xinguang-g1"


def _start(service):
    return service.start_case("grid_matter", GRID, dict(REPORT), "lx_wgy1")


def _twin(item: WorkItem) -> WorkItem:
    """A new work item with an existing one's id: the server refuses it."""
    return WorkItem(**{c.key: getattr(item, c.key) for c in WorkItem.__table__.columns})


def _probe(case: Case) -> list[dict]:
    """An audit row to look for afterwards."""
    return [{"case_id": case.id, "event_type": "probe", "at": case.created_at, "data": {}}]


def _statements(db, fn):
    seen = []

    def record(_conn, _cursor, statement, *_args):
        # PostgreSQL: a versioned UPDATE pipelined with the COMMIT is guarded by the server
        # (`WITH changed AS (UPDATE … RETURNING 1) SELECT CASE …`): the UPDATE is what was written
        text = " ".join(statement.split()).lower()
        if text.startswith("with changed as ("):
            text = text.removeprefix("with changed as (").rsplit(" returning 1)", 1)[0]
        seen.append(text)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        result = fn()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    return seen, result


def test_a_completion_writes_each_row_once(service):
    view = _start(service)
    item = view.open_items[0]
    seen, after = _statements(service.db, lambda: service.complete_task(
        item.id, {"resolved": False, "mediation_note": "未化解"}, "lx_wgz1"))
    case_updates = [s for s in seen if s.startswith("update gf_case")]
    item_updates = [s for s in seen if s.startswith("update work_item")]
    state_updates = [s for s in seen if s.startswith("update case_state")]
    assert len(case_updates) == 1 and "row_version" in case_updates[0]
    assert len(item_updates) == 1 and len(state_updates) == 1
    # what was written is what a fresh read finds
    with service.db.read_session() as session:
        case = session.get(Case, view.case.id)
        done = session.get(WorkItem, item.id)
        assert case.row_version == after.case.row_version == view.case.row_version + 1
        assert case.audit_head == after.case.audit_head
        leader = session.scalars(select(User).where(User.username == "lx_wgz1")).one()
        assert (done.status, done.completed_by_id) == ("completed", leader.id)
        assert done.completed_at is not None
        new = session.scalars(select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.status == "open")).all()
        assert [i.id for i in new] == [i.id for i in after.open_items]
        assert new[0].urge_count == 0 and after.open_items[0].urge_count == 0   # the column default, applied


def test_a_moved_version_is_a_stale_write_and_nothing_is_written(service):
    view = _start(service)
    db = service.db
    with pytest.raises(StaleDataError):
        with db.unit_of_work() as session:
            case = session.get(Case, view.case.id)
            # the row changes under the loaded object (as another writer's commit would change it)
            session.execute(update(Case).where(Case.id == case.id).values(row_version=Case.row_version + 1)
                            .execution_options(synchronize_session=False))
            case.title = "changed by a loser"
            update_changed_many(session, [case])
    with db.read_session() as session:
        assert session.get(Case, view.case.id).title != "changed by a loser"


def test_only_changed_columns_are_written_and_a_change_in_place_counts(service):
    view = _start(service)
    db = service.db
    with db.unit_of_work() as session:
        case = session.get(Case, view.case.id)
        case.colour = case.colour            # the same value: nothing to write
        seen, _ = _statements(db, lambda: update_changed_many(session, [case]))
        assert seen == []
        case.summary["note"] = "补充"         # changed in place, flagged as the ORM requires
        flag_modified(case, "summary")
        seen, _ = _statements(db, lambda: update_changed_many(session, [case]))
        assert len(seen) == 1 and "summary" in seen[0] and "colour" not in seen[0]
        assert not session.dirty             # the commit's flush has nothing left to write
    with db.read_session() as session:
        assert session.get(Case, view.case.id).summary["note"] == "补充"


def test_a_driver_error_is_sqlalchemys_and_rolls_back(service):
    view = _start(service)
    db = service.db
    existing = view.open_items[0]
    with pytest.raises(IntegrityError):
        with db.unit_of_work() as session:
            insert_rows_now(session, AuditEvent.__table__, _probe(view.case))
            twin = _twin(existing)
            insert_new(session, [twin])
    with db.read_session() as session:
        assert session.scalars(select(AuditEvent).where(AuditEvent.event_type == "probe")).all() == []


def test_rows_that_name_different_columns_go_in_together(service):
    view = _start(service)
    db = service.db
    with db.unit_of_work() as session:
        insert_rows_now(session, AuditEvent.__table__, [
            {"case_id": view.case.id, "event_type": "probe", "at": view.case.created_at},
            {"case_id": view.case.id, "event_type": "probe", "at": view.case.created_at, "bpmn_id": "x"}])
    with db.read_session() as session:
        rows = session.scalars(select(AuditEvent).where(AuditEvent.event_type == "probe")
                               .order_by(AuditEvent.id)).all()
        assert [(r.bpmn_id, r.data) for r in rows] == [(None, {}), ("x", {})]   # `data` got its default


def test_a_batch_of_rows_is_one_statement_and_one_moved_version_fails_it(service):
    db = service.db
    ids = [_start(service).case.id for _ in range(3)]
    with db.unit_of_work() as session:
        cases = [session.get(Case, i) for i in ids]
        for case in cases:
            case.title = "batch"
        seen, written = _statements(db, lambda: update_changed_many(session, cases))
        assert written == 3 and len(seen) == 1 and not session.dirty
    with pytest.raises(StaleDataError):
        with db.unit_of_work() as session:
            cases = [session.get(Case, i) for i in ids]
            session.execute(update(Case).where(Case.id == ids[1]).values(row_version=Case.row_version + 1)
                            .execution_options(synchronize_session=False))
            for case in cases:
                case.title = "lost"
            update_changed_many(session, cases)
    with db.read_session() as session:
        assert [session.get(Case, i).title for i in ids] == ["batch"] * 3


# ------------------------------------------------------------ PostgreSQL: pipelined writes

@pytest.fixture
def pg_service(service):
    if not service.db.is_postgres:
        pytest.skip("the write pipeline is psycopg's (SQLite runs in process: no round trips to save)")
    return service


def _round_trips(service, monkeypatch, transition):
    """(the statements `transition` sent, whether the driver was in autocommit for each and
    whether it went by the pipeline (not SQLAlchemy's: psycopg runs those on a round trip of
    their own), the pipeline's round trips: "sync" for each answer awaited, "end" for the
    last, with the COMMIT)."""
    from engine import core_writes

    sent, trips = [], []

    def record(conn, cursor, statement, *_args):
        sent.append((" ".join(statement.split()).lower(), conn.connection.dbapi_connection.autocommit,
                     cursor is None))

    real_sync = core_writes._Pipeline.sync

    def sync(pipeline):
        trips.append("end" if any(item.sql == "COMMIT" for item in pipeline.sent) else "sync")
        return real_sync(pipeline)

    monkeypatch.setattr(core_writes._Pipeline, "sync", sync)
    event.listen(service.db.engine, "before_cursor_execute", record)
    try:
        result = transition()
    finally:
        event.remove(service.db.engine, "before_cursor_execute", record)
        monkeypatch.undo()
    return result, sent, trips


_DRIVER_WRITES = ("insert into", "with changed as")


def test_a_completion_is_two_round_trips_to_postgresql(pg_service, monkeypatch):
    """A completion's transaction runs in one pipeline: the BEGIN reaches the server with the
    lock statement (one round trip), the six writes (case, item, state, new item, its notice,
    the audit rows) with the COMMIT (the second). psycopg sends no BEGIN or COMMIT of its own."""
    view = _start(pg_service)
    item = view.open_items[0]
    after, sent, trips = _round_trips(pg_service, monkeypatch, lambda: pg_service.complete_task(
        item.id, {"resolved": False, "mediation_note": "未化解"}, "lx_wgz1"))
    reads = [sql for sql, _, _ in sent if not sql.startswith(_DRIVER_WRITES)]
    # a round trip for the lock, with the BEGIN (here also one for the organisation's rows, by
    # SQLAlchemy, which a busy server has cached), one for the writes and the COMMIT, none else
    assert trips == ["sync", "end"]
    assert [by_driver for sql, _, by_driver in sent if sql in reads] == [True] + [False] * (len(reads) - 1)
    assert all(autocommit for _sql, autocommit, _ in sent)   # the BEGIN and COMMIT are ours, in the pipeline
    assert sent[0][0].startswith("select work_item.id")    # the lock: the first statement, with the BEGIN
    writes = [sql.split(" (")[0].split(" set ")[0] for sql, _, _ in sent[len(reads):]]
    assert set(writes) == {"with changed as", "insert into work_item", "insert into notification",
                           "insert into audit_event"}
    assert writes.count("with changed as") == 3   # case, item and state: versioned, checked by the server
    with pg_service.db.read_session() as session:
        assert session.get(WorkItem, item.id).status == "completed"
        assert [i.id for i in session.scalars(select(WorkItem).where(
            WorkItem.case_id == view.case.id, WorkItem.status == "open"))] == [i.id for i in after.open_items]


def test_a_start_writes_its_case_row_once(pg_service, monkeypatch):
    """A start takes the case's number (a statement whose answer is needed at once), then
    writes the new case's row once, number, title and time limit in it, with the rest of
    the transition's writes: inserted early and updated at the end, every start left a dead
    row version and an entry in each of the case table's indexes. The reads take a round
    trip each; the writes go with the COMMIT."""
    _start(pg_service)   # the organisation's rows cached
    view, sent, trips = _round_trips(pg_service, monkeypatch, lambda: _start(pg_service))
    statements = [sql.split(" (")[0].split(" set ")[0] for sql, _, _ in sent]
    assert statements.count("insert into gf_case") == 1
    assert not [sql for sql, _, _ in sent if "update gf_case" in sql]
    assert statements.index("update case_sequence") < statements.index("insert into gf_case")
    assert statements.index("insert into gf_case") < statements.index("insert into case_state")
    assert all(by_driver for _sql, _, by_driver in sent)
    answered = [sql for sql, _, _ in sent if not sql.startswith(_DRIVER_WRITES)]
    assert trips == ["sync"] * len(answered) + ["end"]
    with pg_service.db.read_session() as session:
        case = session.get(Case, view.case.id)
        assert case.business_key == view.case.business_key and not case.business_key.startswith("~")
        assert case.title and case.due_at is not None and case.row_version == 1


def test_a_statement_after_pipelined_writes_sees_them(pg_service):
    view = _start(pg_service)
    with pg_service.db.unit_of_work() as session:
        case = session.get(Case, view.case.id)
        case.title = "写入后即可读到"
        update_changed_many(session, [case])
        insert_rows_now(session, AuditEvent.__table__, _probe(case))
        # the ORM's own query: the server runs it after both writes, in the same transaction
        assert session.scalar(select(Case.title).where(Case.id == case.id)) == "写入后即可读到"
        assert session.scalar(select(AuditEvent.event_type).where(AuditEvent.event_type == "probe")) == "probe"


@pytest.mark.parametrize("then_read", [False, True], ids=["answered-at-commit", "answered-with-a-read"])
def test_a_refused_pipelined_write_names_its_statement_and_commits_nothing(pg_service, then_read):
    """The refusal comes back with the COMMIT or, when a read follows the writes, with the
    read's answer: either way it is the refused write's error."""
    view = _start(pg_service)
    db = pg_service.db
    existing = view.open_items[0]
    with pytest.raises(IntegrityError) as refused:
        with db.unit_of_work() as session:
            case = session.get(Case, view.case.id)
            case.title = "不应保存"
            update_changed_many(session, [case])
            twin = _twin(existing)
            insert_new(session, [twin])      # the same id: refused by the server
            insert_rows_now(session, AuditEvent.__table__, _probe(case))
            if then_read:
                session.scalar(select(Case.title).where(Case.id == case.id))
    assert "INSERT INTO work_item" in str(refused.value)
    with db.read_session() as session:
        assert session.get(Case, view.case.id).title != "不应保存"
        assert session.scalars(select(AuditEvent).where(AuditEvent.event_type == "probe")).all() == []
    # the pooled connection is usable again
    assert pg_service.complete_task(existing.id, {"resolved": True, "mediation_note": "已化解"}, "lx_wgz1")


def test_a_stale_row_found_by_the_server_commits_none_of_the_writes_sent_with_it(pg_service):
    """The COMMIT travels with the writes, so the server checks the versioned UPDATE's row
    count itself: the UPDATE that finds its row changed fails, the server skips the COMMIT,
    and neither it nor the rows sent before it are kept."""
    view = _start(pg_service)
    db = pg_service.db
    with pytest.raises(StaleDataError, match="gf_case"):
        with db.unit_of_work() as session:
            case = session.get(Case, view.case.id)
            session.execute(update(Case).where(Case.id == case.id).values(row_version=Case.row_version + 1)
                            .execution_options(synchronize_session=False))
            insert_rows_now(session, AuditEvent.__table__, _probe(case))
            case.title = "changed by a loser"
            update_changed_many(session, [case])      # sent, not answered: the COMMIT follows it
    with db.read_session() as session:
        assert session.get(Case, view.case.id).title != "changed by a loser"
        assert session.scalars(select(AuditEvent).where(AuditEvent.event_type == "probe")).all() == []
    # the pooled connection is usable again
    item = view.open_items[0]
    assert pg_service.complete_task(item.id, {"resolved": True, "mediation_note": "已化解"}, "lx_wgz1")



def _probe_read():
    from sqlalchemy import bindparam
    return select(Case.business_key).where(Case.id == bindparam("id"))


PROBE_READ = _probe_read()


def test_our_prepared_statements_are_prepared_again_after_psycopg_deallocates_all(pg_service):
    """psycopg deallocates every prepared statement of a connection after a ROLLBACK it ran
    (ours too, by name): the connection tells us, and our statements are prepared again."""
    from engine.core_writes import _prepared, query

    view = _start(pg_service)
    with pg_service.db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")   # our statements go by the pipeline
        dbapi = conn.connection.dbapi_connection
        session = Session(bind=conn)
        assert query(session, PROBE_READ, {"id": view.case.id}) == [(view.case.business_key,)]
        assert _prepared[dbapi]
        session.close()
        dbapi.autocommit = False
        for _ in range(dbapi.prepare_threshold + 1):   # psycopg prepares a statement of its own
            dbapi.execute("SELECT 1 WHERE 1 = %s", (1,))
        dbapi.rollback()
        dbapi.execute("SELECT 1")                       # psycopg sends DEALLOCATE ALL first
        assert dbapi not in _prepared
        dbapi.rollback()
        dbapi.autocommit = True
        session = Session(bind=conn)
        assert query(session, PROBE_READ, {"id": view.case.id}) == [(view.case.business_key,)]
        session.close()


def test_statements_deallocated_behind_our_back_fail_once_then_work(pg_service):
    """A DEALLOCATE ALL no driver call of ours saw (a pooler's, an administrator's): the
    statement that finds its prepared statement gone fails, and the next prepares it again."""
    from sqlalchemy.exc import DBAPIError

    from engine.core_writes import query

    view = _start(pg_service)
    with pg_service.db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")   # our statements go by the pipeline
        dbapi = conn.connection.dbapi_connection
        session = Session(bind=conn)
        query(session, PROBE_READ, {"id": view.case.id})
        dbapi.pgconn.exec_(b"DEALLOCATE ALL")
        with pytest.raises(DBAPIError, match="does not exist"):
            query(session, PROBE_READ, {"id": view.case.id})
        assert query(session, PROBE_READ, {"id": view.case.id}) == [(view.case.business_key,)]
        session.close()
        conn.invalidate()   # psycopg's own statements went too, behind its back: not for the pool


def test_the_lock_is_answered_while_the_completion_runs_ahead(pg_service, monkeypatch):
    """The lock read goes with its Sync, so that its whole answer (the rows and the Sync's
    ready-for-query) comes back while the completion runs ahead: reading it is not a round
    trip of its own."""
    import select

    from engine import core_writes
    from engine.service import WorkflowService

    view = _start(pg_service)
    arrived = []
    real_run_ahead = WorkflowService._run_ahead

    def run_ahead(self, task_id, data):
        (pipeline,) = list(core_writes._pipelines.values())
        poller = select.poll()
        poller.register(pipeline.pgconn.socket, select.POLLIN)
        arrived.append((bool(poller.poll(5000)), len(pipeline.sent), len(pipeline.asked)))
        return real_run_ahead(self, task_id, data)

    monkeypatch.setattr(WorkflowService, "_run_ahead", run_ahead)
    after = pg_service.complete_task(view.open_items[0].id, {"resolved": False, "mediation_note": "未化解"},
                                     "lx_wgz1")
    assert arrived == [(True, 0, 1)]   # answered, nothing sent without its Sync
    assert after.open_items and after.open_items[0].id != view.open_items[0].id
