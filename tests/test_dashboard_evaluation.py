"""逆向考评: the monthly timer start event, started exactly once per person and
period by the timer workers, and the scores reaching the dashboard."""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select

from engine.metrics import compute
from engine.models import (NO_DUE_DATE, Case, EvaluationScore, JurisdictionNode, RoleAssignment, ScheduledStart,
                           WorkItem)
from engine.scheduled_starts import Schedule, ScheduledStarts, read_schedule
from engine.service import InboxFilters
from engine.timers import TimerWorker
from tests.conftest import ROOT

UTC = timezone.utc
CHINA = timezone(timedelta(hours=8))
PROCESS = "reverse_evaluation"


@pytest.fixture
def starts(service):
    with service.db.unit_of_work() as session:
        session.execute(delete(ScheduledStart))
        session.execute(delete(EvaluationScore))
    yield service
    with service.db.unit_of_work() as session:
        session.execute(delete(ScheduledStart))
        session.execute(delete(EvaluationScore))


def grid_workers(db) -> set[int]:
    with db.read_session() as session:
        return set(session.scalars(select(RoleAssignment.user_id).join(JurisdictionNode)
                                   .where(RoleAssignment.role == "grid_worker", JurisdictionNode.level == "grid")))


def evaluation_cases(db) -> list[Case]:
    with db.read_session() as session:
        return list(session.scalars(select(Case).where(Case.process_key == PROCESS).order_by(Case.id)))


def node(db, code) -> JurisdictionNode:
    with db.read_session() as session:
        return session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code))


def test_the_shipped_schedule_is_read_from_the_start_event():
    files = {"reverse_evaluation.bpmn": (ROOT / "processes" / "reverse_evaluation.bpmn").read_text(encoding="utf-8")}
    schedule = read_schedule(PROCESS, files)
    assert schedule == Schedule(PROCESS, datetime(2026, 1, 1, 1, 0, tzinfo=CHINA), "P1M", "grid_worker")
    assert read_schedule("other", files) is None


def test_the_latest_period_by_calendar_months():
    schedule = Schedule(PROCESS, datetime(2026, 1, 1, 1, 0, tzinfo=CHINA), "P1M", "grid_worker")
    assert schedule.latest(datetime(2025, 12, 31, 16, 59, tzinfo=UTC)) is None            # 00:59 on Jan 1 in China
    assert schedule.latest(datetime(2025, 12, 31, 17, 0, tzinfo=UTC)) == (
        datetime(2025, 12, 1, 1, 0, tzinfo=CHINA), datetime(2026, 1, 1, 1, 0, tzinfo=CHINA))
    prev, moment = schedule.latest(datetime(2026, 3, 2, 8, 30, tzinfo=UTC))
    assert (prev, moment) == (datetime(2026, 2, 1, 1, 0, tzinfo=CHINA), datetime(2026, 3, 1, 1, 0, tzinfo=CHINA))
    assert schedule.latest(datetime(2026, 12, 31, tzinfo=UTC))[1] == datetime(2026, 12, 1, 1, 0, tzinfo=CHINA)


def _handled_in_february(service):
    """A grid matter of lx_wgy1 on which 林西镇城管中队 completed a task in February."""
    view = service.start_case("grid_matter", "linxi-xinguang-g1",
                              {"category": "environment", "colour": "blue", "description": "垃圾堆放影响通行",
                               "location": "新光社区"}, "lx_wgy1")
    cg = node(service.db, "linxizhen-cg")
    with service.db.unit_of_work() as session:
        at = datetime(2026, 2, 10, tzinfo=UTC)
        session.add(WorkItem(id=str(uuid.uuid4()), case_id=view.case.id, process_key="grid_matter",
                             spec_id="department_handle", name="部门处置", grid_path=view.case.grid_path,
                             role="department_handler", candidate_node_id=cg.id, status="completed", created_at=at,
                             sort_due=NO_DUE_DATE, completed_at=at))
    return cg


def test_two_workers_start_one_evaluation_per_grid_worker_per_month(starts, clock):
    service = starts
    cg = _handled_in_february(service)
    first, second = ScheduledStarts(service), ScheduledStarts(service)
    workers = grid_workers(service.db)
    assert first.run_once() == len(workers) == 7
    assert second.run_once() == 0                 # the other worker finds every key taken
    assert first.run_once() == 0
    cases = evaluation_cases(service.db)
    assert sorted(c.created_by_id for c in cases) == sorted(workers)
    with service.db.read_session() as session:
        periods = set(session.scalars(select(ScheduledStart.period)))
        assert periods == {"2026-03-01T01:00"}
        assert session.scalar(select(func.count()).select_from(ScheduledStart)
                              .where(ScheduledStart.case_id.is_(None))) == 0

    # each task goes to the worker alone, due in 10 days
    mine = [r for r in service.inbox("lx_wgy1", InboxFilters(process_key=PROCESS))]
    assert len(mine) == 1 and mine[0].item.due_at == clock.now() + timedelta(days=10)
    assert [r for r in service.inbox("lx_wgy2", InboxFilters(process_key=PROCESS))][0].item.id != mine[0].item.id
    data = service.case_data(mine[0].business_key)
    town, community = node(service.db, "linxizhen"), node(service.db, "linxi-xinguang")
    assert data["period"] == "2026-02" and data["evaluator"] == "lx_wgy1" and data["matters"] == 1
    assert (data["town_node_id"], data["community_node_id"]) == (town.id, community.id)
    assert data["dept_chengguan_node_id"] == cg.id and data["departments"] == "林西镇城管中队"
    assert "dept_zhujian_node_id" not in data
    assert set(data) <= ScheduledStarts.START_DATA_KEYS   # what the deploy notes count as set

    # a month later: one more each, the same exactly-once
    clock.advance(timedelta(days=31))
    assert second.run_once() == 7 and first.run_once() == 0
    assert len(evaluation_cases(service.db)) == 14


def test_two_worker_threads_race_for_the_same_period(starts, clock):
    service = starts
    results = []
    barrier = threading.Barrier(2)

    def worker():
        barrier.wait()
        results.append(ScheduledStarts(service).run_once())

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 7
    assert len(evaluation_cases(service.db)) == 7


def test_a_key_taken_elsewhere_is_skipped_and_a_failed_start_is_retried(starts, clock, monkeypatch):
    service = starts
    lx_wgy2 = service.get_user("lx_wgy2").id
    with service.db.unit_of_work() as session:   # another worker is starting lx_wgy2's right now
        session.add(ScheduledStart(process_key=PROCESS, period="2026-03-01T01:00", user_id=lx_wgy2,
                                   claimed_at=clock.now()))
    lx_wgy1 = service.get_user("lx_wgy1").id
    original = service.start_case

    def flaky(process_key, grid, data, actor):
        if actor == lx_wgy1:
            raise RuntimeError("database hiccup")
        return original(process_key, grid, data, actor)

    monkeypatch.setattr(service, "start_case", flaky)
    assert ScheduledStarts(service).run_once() == 5                  # 7 − lx_wgy2 (taken) − lx_wgy1 (failed)
    monkeypatch.setattr(service, "start_case", original)
    assert ScheduledStarts(service).run_once() == 1                  # lx_wgy1's key was given back
    assert sorted(c.created_by_id for c in evaluation_cases(service.db)) == sorted(grid_workers(service.db) - {lx_wgy2})


def test_nothing_before_the_first_period(starts, clock):
    clock.set(datetime(2025, 12, 31, 16, 0, tzinfo=UTC))
    assert ScheduledStarts(starts).run_once() == 0


def test_the_timer_worker_loop_starts_them(starts, clock, monkeypatch):
    stop = threading.Event()
    calls = []
    from engine import scheduled_starts
    original = scheduled_starts.ScheduledStarts.run_safely

    def once_then_stop(self):
        calls.append(original(self))
        stop.set()
        return calls[-1]

    monkeypatch.setattr(scheduled_starts.ScheduledStarts, "run_safely", once_then_stop)
    TimerWorker(starts).run_forever(stop, interval=0.01)
    assert calls == [7]


def test_scores_reach_the_dashboard(starts, clock):
    service = starts
    cg = _handled_in_february(service)
    ScheduledStarts(service).run_once()
    for username, scores in (("lx_wgy1", {"community_score": 90, "town_score": 80, "dept_chengguan_score": 70,
                                          "dept_zhujian_score": 10}),          # 住建 did not handle: ignored
                             ("lx_wgy2", {"community_score": 70, "town_score": 60})):
        row = service.inbox(username, InboxFilters(process_key=PROCESS))[0]
        service.complete_task(row.item.id, scores, username)
    # invalid scores change nothing
    row = service.inbox("lx_wgy3", InboxFilters(process_key=PROCESS))[0]
    from engine.errors import InvalidInput
    for bad in ({"community_score": -1, "town_score": 50}, {"town_score": 50}, {"community_score": "好", "town_score": 1}):
        with pytest.raises(InvalidInput):
            service.complete_task(row.item.id, bad, "lx_wgy3")
    linxi = node(service.db, "linxi")
    with service.db.read_session() as session:
        scored = session.scalars(select(EvaluationScore).order_by(EvaluationScore.id)).all()
        assert sorted((s.unit_kind, s.score) for s in scored) == [
            ("community", 70), ("community", 90), ("department", 70), ("town", 60), ("town", 80)]
        assert {s.period for s in scored} == {"2026-02"}
        figures = compute(session, linxi, datetime(2026, 3, 1, tzinfo=UTC),
                          datetime(2026, 4, 1, tzinfo=UTC))
    rows = {(r["code"], r["kind"]): (r["average"], r["scores"]) for r in figures["evaluation"]}
    assert rows == {("linxizhen", "town"): (70.0, 2), ("linxi-xinguang", "community"): (80.0, 2),
                    ("linxizhen-cg", "department"): (70.0, 1)}
    assert cg.id in {r["node_id"] for r in figures["evaluation"]}
