"""The timer worker: fires on the day, catches up after downtime in due order,
never fires a case twice with two workers, and turns a failing timer into an incident."""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.models import AuditEvent, Case, Incident
from engine.service import WorkflowService
from engine.timers import TimerWorker
from tests.conftest import deploy_fixture

GRID = "linxi-xinguang-g1"


@pytest.fixture
def timed(clean_db, clock, fixture_forms):
    deploy_fixture(clean_db, "timed.bpmn", "timer_fail.bpmn", forms=fixture_forms)
    return WorkflowService(clean_db, forms=fixture_forms)


def fired_events(db, case_id=None):
    with db.read_session() as s:
        query = select(AuditEvent.case_id).where(AuditEvent.event_type == "timers_fired")
        if case_id is not None:
            query = query.where(AuditEvent.case_id == case_id)
        return list(s.scalars(query.order_by(AuditEvent.id)))


def test_deadline_fires_on_its_day_and_not_before(timed, clock):
    case = timed.start_case("timed", GRID, {}, "lx_wgy1")
    assert case.case.next_timer_at == clock.now() + timedelta(days=2)
    worker = TimerWorker(timed)
    clock.advance(days=1, hours=23)
    assert worker.run_once().fired == 0
    clock.advance(hours=1, minutes=1)
    assert worker.run_once().fired == 1
    view = timed.get_case(case.business_key)
    assert [i.spec_id for i in view.open_items] == ["escalated"]
    assert [r.item.spec_id for r in timed.inbox("lxz_pd")] == ["escalated"]
    assert view.case.next_timer_at is None
    assert worker.run_once().fired == 0                      # nothing is fired twice
    assert fired_events(timed.db, case.id) == [case.id]


def test_a_worker_that_was_down_fires_the_backlog_in_due_order(timed, clock):
    cases = []
    for _ in range(5):
        cases.append(timed.start_case("timed", GRID, {}, "lx_wgy1").id)
        clock.advance(hours=3)
    clock.advance(days=3)                                    # the worker was stopped for 3 days
    stats = TimerWorker(timed, batch=2).run_once()
    assert stats.fired == 5 and stats.failed == 0
    assert fired_events(timed.db) == cases                   # oldest deadline first


def test_a_completed_task_cancels_its_deadline(timed, clock):
    case = timed.start_case("timed", GRID, {}, "lx_wgy1")
    timed.complete_task(case.open_items[0].id, {"again": False}, "lx_wgy1")
    assert timed.get_case(case.business_key).case.next_timer_at is None
    clock.advance(days=5)
    assert TimerWorker(timed).run_once().fired == 0


def test_two_workers_fire_each_due_case_exactly_once(timed, clock):
    count = 1000 if timed.db.is_postgres else 200
    ids = [timed.start_case("timed", GRID, {}, "lx_wgy1").id for _ in range(count)]
    clock.advance(days=2, minutes=1)
    totals, errors = [], []

    def work():
        try:
            totals.append(TimerWorker(timed, batch=50).run_once().fired)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors
    assert sum(totals) == count
    fired = fired_events(timed.db)
    assert sorted(fired) == sorted(ids) and len(set(fired)) == count   # each exactly once
    with timed.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Case).where(Case.next_timer_at.is_not(None))) == 0


def test_a_failing_timer_is_retried_then_becomes_an_incident(timed, clock):
    case = timed.start_case("timer_fail", GRID, {}, "lx_wgy1")
    worker = TimerWorker(timed, max_failures=5, backoff=timedelta(minutes=1))
    clock.advance(days=2, minutes=1)
    for attempt in range(1, 6):
        stats = worker.run_once()
        assert stats.failed == 1 and stats.fired == 0
        with timed.db.read_session() as s:
            row = s.get(Case, case.id)
            assert row.timer_failures == attempt
            assert (row.next_timer_at is None) == (attempt == 5)
            if row.next_timer_at is not None:
                assert row.next_timer_at == clock.now() + timedelta(minutes=2 ** (attempt - 1))
        clock.advance(minutes=2 ** attempt)
    with timed.db.read_session() as s:
        incident = s.scalar(select(Incident).where(Incident.case_id == case.id))
        assert incident.kind == "timer" and incident.attempts == 5 and "division by zero" in incident.error
    assert [e.event_type for e in timed.history(case.business_key)].count("incident") == 1
    # the case itself is untouched: its task still waits, nothing half-applied
    assert [i.spec_id for i in timed.get_case(case.business_key).open_items] == ["handle"]
    assert worker.run_once().failed == 0                      # no more retries until resolved


def test_a_batch_fires_many_cases_in_one_transaction_with_their_tasks_notices_and_chains(timed, clock):
    from engine import audit
    from engine.models import Notification, WorkItem
    ids = [timed.start_case("timed", GRID, {}, "lx_wgy1").id for _ in range(12)]
    clock.advance(days=2, minutes=1)
    commits = []
    from sqlalchemy import event as sa_event
    listener = lambda conn: commits.append(1)  # noqa: E731
    sa_event.listen(timed.db.engine, "commit", listener)
    try:
        stats = TimerWorker(timed, per_transaction=12).run_once()
    finally:
        sa_event.remove(timed.db.engine, "commit", listener)
    assert (stats.fired, stats.failed) == (12, 0)
    assert len(commits) == 1                                 # one transaction for the whole batch
    assert sorted(fired_events(timed.db)) == sorted(ids)
    with timed.db.read_session() as s:
        escalated = s.scalars(select(WorkItem.case_id).where(WorkItem.spec_id == "escalated",
                                                             WorkItem.status == "open")).all()
        assert sorted(escalated) == sorted(ids)              # each case moved on exactly once
        assert s.scalar(select(func.count()).select_from(Notification).where(
            Notification.kind == "new_task", Notification.case_id.in_(ids))) >= 12
        assert audit.verify(s)[1] == []                      # every case's chain is intact


def test_a_failing_case_in_a_batch_does_not_hold_up_the_others(timed, clock):
    good = [timed.start_case("timed", GRID, {}, "lx_wgy1").id for _ in range(3)]
    bad = timed.start_case("timer_fail", GRID, {}, "lx_wgy1")
    good.append(timed.start_case("timed", GRID, {}, "lx_wgy1").id)
    trail_before = [(e.event_type, e.bpmn_id) for e in timed.history(bad.business_key)]
    clock.advance(days=2, minutes=1)
    stats = TimerWorker(timed, per_transaction=10).run_once()
    assert (stats.fired, stats.failed) == (4, 1)
    assert sorted(fired_events(timed.db)) == sorted(good)
    with timed.db.read_session() as s:
        assert s.get(Case, bad.id).timer_failures == 1
    # nothing of the failed firing was kept: the batch rolled back, the retry failed alone
    assert [(e.event_type, e.bpmn_id) for e in timed.history(bad.business_key)] == trail_before


def test_a_case_due_exactly_now_waits_for_the_next_look_instead_of_spinning(timed, clock):
    """SpiffWorkflow fires a timer only once its time is strictly past: the worker must not
    take (and re-take, forever) a case due exactly now."""
    case = timed.start_case("timed", GRID, {}, "lx_wgy1")
    clock.advance(days=2)                                     # exactly the deadline
    assert timed.get_case(case.business_key).case.next_timer_at == clock.now()
    stats = TimerWorker(timed).run_once()                     # returns (it used to loop forever)
    assert (stats.fired, stats.failed) == (0, 0)
    clock.advance(seconds=1)
    assert TimerWorker(timed).run_once().fired == 1


def test_the_worker_keeps_sqlites_planner_statistics(timed, monkeypatch):
    """SQLite never gathers its planner's statistics itself (without them the inbox at 10^6
    tasks is a 1 s scan); the worker's hourly round does. PostgreSQL's autovacuum does it
    there, so the worker leaves it alone."""
    db = timed.db
    timed.start_case("timed", GRID, {}, "lx_wgy1")
    if db.is_postgres:
        assert db.refresh_statistics() is False
        return
    with db.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE IF EXISTS sqlite_stat1")
    stop = threading.Event()
    monkeypatch.setattr(threading.Event, "wait", lambda self, timeout=None: stop.set())
    TimerWorker(timed).run_forever(stop, interval=0.01)     # one round: its first includes the hourly work
    with db.engine.connect() as conn:
        analysed = {row[0] for row in conn.exec_driver_sql("SELECT DISTINCT tbl FROM sqlite_stat1")}
    assert {"work_item", "gf_case", "audit_event"} <= analysed   # (an empty table gets no row)


def test_a_failed_statistics_refresh_does_not_stop_the_worker(timed, monkeypatch, caplog):
    def busy():
        raise RuntimeError("database is locked")

    monkeypatch.setattr(timed.db, "refresh_statistics", busy)
    stop = threading.Event()
    monkeypatch.setattr(threading.Event, "wait", lambda self, timeout=None: stop.set())
    with caplog.at_level("WARNING", logger="gridflow.timers"):
        TimerWorker(timed).run_forever(stop, interval=0.01)     # returns: the round went on
    assert "planner statistics not refreshed" in caplog.text and "database is locked" in caplog.text


def test_the_worker_outlives_a_database_outage(service, monkeypatch, caplog):
    """A round that meets an unreachable database is logged and retried after the interval;
    the worker goes on (before, the error ended the worker and with it every deadline)."""
    import logging

    from sqlalchemy.exc import OperationalError

    from engine.timers import RunStats
    worker = TimerWorker(service)
    stop, rounds = threading.Event(), []

    def outage_then_back(now=None):
        rounds.append(now)
        if len(rounds) == 1:
            raise OperationalError("SELECT …", {}, Exception('connection to server at "127.0.0.1" failed'))
        stop.set()
        return RunStats()
    monkeypatch.setattr(worker, "run_once", outage_then_back)
    with caplog.at_level(logging.ERROR, logger="gridflow.timers"):
        worker.run_forever(stop, interval=0.01)
    assert len(rounds) == 2
    assert "database unavailable, retrying in 0 s: connection to server at" in caplog.text
