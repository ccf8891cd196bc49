"""Every dashboard figure on a small history whose answer is known by hand.

Most histories are written as rows (cases, work items, audit events) with the
facts the processes leave, so that the expected figure can be counted on
fingers; one test drives a real matter through the engine to prove the engine
leaves those facts."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, select

from engine import audit, rollup
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.metrics import Dashboards, Metrics, Scope, compute, dashboard_roots, may_view, user_with_roles
from engine.models import (NO_DUE_DATE, Case, EvaluationScore, JurisdictionNode, ProcessVersion,
                           ScheduledStart, User, WorkItem)
from tests.helpers import REPORT, work

UTC = timezone.utc
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)   # the frozen clock of the tests


@pytest.fixture
def history(service):
    """A writer of hand-built history rows, in one session committed at the end of the test body."""
    db = service.db
    with db.unit_of_work() as session:
        session.execute(delete(EvaluationScore))
        session.execute(delete(ScheduledStart))
    builder = HistoryBuilder(db)
    yield builder
    with db.unit_of_work() as session:
        session.execute(delete(EvaluationScore))


class HistoryBuilder:
    def __init__(self, db):
        self.db = db
        self.n = 0
        with db.read_session() as session:
            self.nodes = {n.code: n for n in session.scalars(select(JurisdictionNode))}
            self.versions = {v.process_key: v.id for v in session.scalars(select(ProcessVersion))}
            self.users = {u.username: u.id for u in session.scalars(select(User))}

    def case(self, session, grid="linxi-xinguang-g1", created=START + timedelta(days=1), process="grid_matter",
             status="open", closed=None, summary=None, by="lx_wgy1", category="dispute", colour="blue") -> Case:
        self.n += 1
        node = self.nodes[grid]
        summary = {"deadline_days": 7, "handling_level": "grid", **(summary or {})}
        case = Case(business_key=f"T-{self.n:07d}", process_key=process, process_version_id=self.versions[process],
                    grid_id=node.id, grid_path=node.path, status=status, category=category, colour=colour,
                    summary=summary, created_at=created, updated_at=closed or created, closed_at=closed,
                    created_by_id=self.users.get(by))
        session.add(case)
        session.flush()
        return case

    def item(self, session, case: Case, spec_id: str, created: datetime, due: datetime | None = None,
             completed: datetime | None = None, by: str | None = None, status: str | None = None) -> WorkItem:
        item = WorkItem(id=str(uuid.uuid4()), case_id=case.id, process_key=case.process_key, spec_id=spec_id,
                        name=spec_id, grid_path=case.grid_path, status=status or ("completed" if completed else "open"),
                        created_at=created, due_at=due, sort_due=due or NO_DUE_DATE, completed_at=completed,
                        completed_by_id=self.users[by] if by else None)
        session.add(item)
        return item

    def event(self, session, case: Case, event_type: str, bpmn_id: str | None, at: datetime, data=None, actor=None):
        audit.record(session, case, event_type, at, bpmn_id=bpmn_id, data=data,
                     actor_id=self.users[actor] if actor else None)


def figures(db, code=None, start=START, end=END, now=NOW):
    """The figures from the cases — and, checked equal, from the roll-ups (engine/rollup.py)
    as they stand (every case written since the last refresh corrected live), then refreshed."""
    with db.read_session() as session:
        node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code)) if code else None
        raw = compute(session, node, start, end, now=now, rollups=False)
        assert compute(session, node, start, end, now=now, rollups=True) == raw
    with db.unit_of_work() as session:
        rollup.refresh(session, now)
    with db.read_session() as session:
        node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code)) if code else None
        assert compute(session, node, start, end, now=now, rollups=True) == raw
    return raw


# ------------------------------------------------------------- 办结率 / 按期办结率

def test_the_standards_denominator_example(service, history):
    """996 registered, 972 due to close, 911 closed, 737 on time → 93.72 % and 75.82 %."""
    day = timedelta(days=1)
    with service.db.unit_of_work() as session:
        created = START + timedelta(days=2)          # limit: 7 days → due on Jan 10
        for i in range(996):
            if i < 737:      # closed within the limit
                history.case(session, created=created, status="completed", closed=created + 3 * day)
            elif i < 911:    # closed after the limit
                history.case(session, created=created, status="completed", closed=created + 9 * day)
            elif i < 972:    # still open, limit passed
                history.case(session, created=created)
            else:            # still open, limit not reached by the end of the period (registered on Jan 28)
                history.case(session, created=START + timedelta(days=27))
        # outside the period or the subtree: not counted
        history.case(session, created=START - day, status="completed", closed=START + day)
        history.case(session, created=END, status="completed", closed=END + day)
        history.case(session, grid="wuyuan-maojiaqiao-g1", by="wy_wgy1")
    head = figures(service.db, "linxi")["headline"]
    assert (head["registered"], head["due"], head["closed"], head["on_time"]) == (996, 972, 911, 737)
    assert head["closure_rate"] == 93.72
    assert head["on_time_rate"] == 75.82
    # the whole tree sees the 五原 matter too; the city of 巴彦淖尔 only that one
    assert figures(service.db)["headline"]["registered"] == 997
    assert figures(service.db, "bayannur")["headline"]["registered"] == 1


def test_due_is_judged_at_the_end_of_the_period_or_now(service, history):
    with service.db.unit_of_work() as session:
        history.case(session, created=START + timedelta(days=28))   # due Feb 4
    assert figures(service.db, "linxi")["headline"]["due"] == 0          # period ends Feb 1
    later = figures(service.db, "linxi", end=datetime(2026, 2, 10, tzinfo=UTC))["headline"]
    assert (later["due"], later["closed"], later["closure_rate"]) == (1, 0, 0.0)
    # the same period seen on Feb 3 (before the limit): not yet due
    early = figures(service.db, "linxi", end=datetime(2026, 2, 10, tzinfo=UTC), now=datetime(2026, 2, 3, tzinfo=UTC))
    assert early["headline"]["due"] == 0 and early["headline"]["closure_rate"] is None


def test_escalated_matter_gets_the_limits_of_the_levels_it_reached(service, history):
    created = START + timedelta(days=1)
    with service.db.unit_of_work() as session:
        # 7 grid days + 10 town days: closed after 16 days is on time
        history.case(session, created=created, status="completed", closed=created + timedelta(days=16),
                     summary={"grid_days": 7, "town_days": 10, "county_days": 15, "resolved_level": "town"})
        # 7 + 10 + 15 = 32 days: closed after 33 is late
        history.case(session, created=created, status="completed", closed=created + timedelta(days=33),
                     summary={"grid_days": 7, "town_days": 10, "county_days": 15, "resolved_level": "county"})
    head = figures(service.db, "linxi", end=datetime(2026, 3, 1, tzinfo=UTC))["headline"]
    assert (head["due"], head["closed"], head["on_time"]) == (2, 2, 1)


def test_processes_without_a_time_limit_are_not_in_the_closure_rates(service, history):
    with service.db.unit_of_work() as session:
        history.case(session, process="mediation", summary={"deadline_days": None}, status="completed",
                     closed=START + timedelta(days=3))
    result = figures(service.db, "linxi")
    assert result["headline"]["registered"] == 1
    assert result["headline"]["due"] == 0 and result["headline"]["closure_rate"] is None
    assert result["by_process"] == [["mediation", 1]]
    assert result["by_status"] == [["completed", 1]]


# ------------------------------------------------ 满意率, 小事不出格, counts by dimension

def test_satisfaction_resolution_levels_and_counts(service, history):
    closed = START + timedelta(days=3)
    rows = [  # (satisfaction, resolved_level, category, colour)
        ("satisfied", "town", "dispute", "yellow"), ("satisfied", "town", "dispute", "yellow"),
        ("basically_satisfied", "county", "environment", "red"), ("unsatisfied", "city", "environment", "red"),
        (None, "grid", "dispute", "blue"), (None, "grid", "dispute", "blue"), (None, "grid", "dispute", "blue"),
        (None, "grid", "safety_hazard", "blue"),
    ]
    with service.db.unit_of_work() as session:
        for satisfaction, level, category, colour in rows:
            history.case(session, status="completed", closed=closed, category=category, colour=colour,
                         summary={"satisfaction": satisfaction, "resolved_level": level})
        history.case(session, category="other", colour="orange")   # open, unresolved, unrated
    result = figures(service.db, "linxi")
    head = result["headline"]
    assert (head["rated"], head["satisfied"], head["satisfaction_rate"]) == (4, 3, 75.0)
    assert (head["resolved"], head["grid_rate"]) == (8, 50.0)
    assert result["resolution"] == [
        {"level": "grid", "cases": 4, "share": 50.0}, {"level": "town", "cases": 2, "share": 25.0},
        {"level": "county", "cases": 1, "share": 12.5}, {"level": "city", "cases": 1, "share": 12.5}]
    assert result["by_category"] == [["dispute", 5], ["environment", 2], ["other", 1], ["safety_hazard", 1]]
    assert result["by_colour"] == [["blue", 4], ["red", 2], ["yellow", 2], ["orange", 1]]
    assert result["by_status"] == [["completed", 8], ["open", 1]]


# ----------------------------------------------------- 返工率, escalations, 督办, overdue

def test_rework_escalations_supervision_and_overdue(service, history):
    at = START + timedelta(days=5)
    with service.db.unit_of_work() as session:
        a = history.case(session)
        b = history.case(session)
        c = history.case(session, summary={"handling_level": "town"})
        for case in (a, a, a, b):
            history.event(session, case, "task_completed", "verify_on_site", at)
        history.event(session, a, "task_completed", "county_verify", at)
        history.event(session, a, "step", "count_rework", at)
        history.event(session, a, "step", "count_county_rework", at)
        history.event(session, a, "step", "count_rework", END + timedelta(days=1))   # after the period
        # a began in the grid: town_accept is an escalation; c began at the town: it is not
        history.item(session, a, "micro_mediation", at - timedelta(days=1), completed=at, by="lx_wgz1")
        for case in (a, c):
            history.event(session, case, "step", "town_accept", at)
        history.event(session, a, "step", "town_accept", at + timedelta(days=1))     # reopened: same case
        history.event(session, a, "step", "county_accept", at)
        history.event(session, b, "step", "county_accept", at)
        history.event(session, b, "step", "city_accept", at)
        history.event(session, a, "urged", None, at, data={"note": "请加快"}, actor="lxz_pd")
        history.event(session, b, "urged", None, at, data={"note": "请加快"}, actor="lxz_pd")
        history.item(session, b, "county_supervise", at)
        history.item(session, c, "department_handle", at, due=NOW - timedelta(hours=1))       # overdue now
        history.item(session, c, "verify_on_site", at, due=NOW + timedelta(hours=1))          # not yet
        history.item(session, b, "department_handle", at, due=NOW - timedelta(days=3), completed=NOW - timedelta(days=2),
                     by="lxz_cg")                                                               # done: not overdue
    result = figures(service.db, "linxi")
    head = result["headline"]
    assert (head["verifications"], head["failed"], head["rework_rate"]) == (5, 2, 40.0)
    assert result["escalations"] == {"town": 1, "county": 2, "city": 1}
    assert (head["urged"], head["supervision_tasks"]) == (2, 1)
    # open cases past their limit (all three: 7 days from Jan 2) and open tasks past due
    assert (head["overdue_cases"], head["overdue_tasks"]) == (3, 1)
    assert figures(service.db, "wuyuan")["headline"]["overdue_tasks"] == 0


# ------------------------------------------------------------------- petitions

def test_petition_figures(service, history):
    day = timedelta(days=1)
    t0 = START + day
    with service.db.unit_of_work() as session:
        def petition(outcome, status="completed"):
            return history.case(session, process="petition", status=status, closed=t0 + 90 * day
                                if status == "completed" else None, by="lxx_xf", category="housing", colour=None,
                                summary={"deadline_days": None, "outcome": outcome})
        p = [petition("closed_after_reply"), petition("closed_after_reply"), petition("closed_after_review"),
             petition("closed_after_recheck"), petition("not_accepted"), petition(None, status="open")]
        # acceptance decisions (15 days): 4 in time, 1 late, 1 still undecided past 15 days
        for case in p[:4]:
            history.item(session, case, "decide", t0, due=t0 + 15 * day, completed=t0 + 10 * day, by="lxx_xf")
        history.item(session, p[4], "decide", t0, due=t0 + 15 * day, completed=t0 + 16 * day, by="lxx_xf")
        history.item(session, p[5], "decide", t0, due=t0 + 15 * day)
        # handling (60 days): p0 in time; p1 extended and in time; p2 late; p3 extended, late in the extension
        h = t0 + 10 * day
        history.item(session, p[0], "handle", h, due=h + 60 * day, completed=h + 50 * day, by="lxx_zj")
        history.item(session, p[1], "handle", h, due=h + 60 * day, completed=h + 55 * day, by="lxx_zj")
        history.item(session, p[1], "approve_extension", h, completed=h + 56 * day, by="lxx_ld1")
        history.item(session, p[1], "notify_extension", h, completed=h + 57 * day, by="lxx_zj")
        history.item(session, p[1], "handle_extended", h, due=h + 85 * day, completed=h + 80 * day, by="lxx_zj")
        history.item(session, p[2], "handle", h, due=h + 60 * day, completed=h + 61 * day, by="lxx_zj")
        history.item(session, p[3], "handle", h, due=h + 60 * day, completed=h + 59 * day, by="lxx_zj")
        history.item(session, p[3], "approve_extension", h, completed=h + 59 * day, by="lxx_ld1")
        history.item(session, p[3], "notify_extension", h, completed=h + 59 * day, by="lxx_zj")
        history.item(session, p[3], "handle_extended", h, due=h + 70 * day, completed=h + 75 * day, by="lxx_zj")
        for case in p[:4]:
            history.item(session, case, "written_reply", h, completed=h + 80 * day, by="lxx_zj")
        for case in p[2:4]:
            history.item(session, case, "review_request", h, completed=h + 85 * day, by="cf_xf")
        history.item(session, p[3], "recheck_request", h, completed=h + 90 * day, by="cf_xf")
    pet = figures(service.db, "linxi", now=datetime(2026, 6, 1, tzinfo=UTC))["petitions"]
    assert pet["registered"] == 6
    assert (pet["decisions_due"], pet["decided_in_time"], pet["accepted_in_time_rate"]) == (6, 4, 66.67)
    assert (pet["handling_due"], pet["handled_in_time"], pet["handled_in_time_rate"]) == (4, 2, 50.0)
    assert (pet["extensions_requested"], pet["extensions_granted"]) == (2, 2)
    assert (pet["replied"], pet["reviews"], pet["review_rate"]) == (4, 2, 50.0)
    assert (pet["rechecks"], pet["recheck_rate"]) == (1, 50.0)
    assert (pet["closed"], pet["ceased"], pet["ceased_rate"]) == (4, 3, 75.0)


# ---------------------------------------------------------------- grid workers

def test_grid_worker_figures(service, history):
    at = START + timedelta(days=4)
    with service.db.unit_of_work() as session:
        mine = [history.case(session, by="lx_wgy1") for _ in range(3)]
        other = history.case(session, grid="linxi-xinguang-g2", by="lx_wgy2")
        history.case(session, process="mediation", by="lx_wgy2")              # not a grid matter report
        for _ in range(2):
            history.case(session, process="household_visit", by="lx_wgy1")     # 入户走访, not reports
        history.case(session, process="household_visit", by="lx_wgy1", created=END + timedelta(days=1))  # later
        history.case(session, process="household_visit", by="lx_wgy2", grid="linxi-xinguang-g2")
        history.item(session, mine[0], "verify_on_site", at, completed=at, by="lx_wgy1")
        history.item(session, mine[1], "county_verify", at, completed=at, by="lx_wgy1")
        history.item(session, mine[0], "satisfaction", at, completed=at, by="lx_wgy1")
        history.item(session, mine[2], "daily_follow_up", at, completed=at, by="lx_wgy1")
        history.item(session, mine[2], "daily_follow_up", at, completed=at + timedelta(days=1), by="lx_wgy1")
        history.item(session, mine[2], "daily_follow_up", at, status="cancelled")   # withdrawn: not counted
        history.item(session, other, "verify_on_site", at, completed=END + timedelta(days=1), by="lx_wgy2")  # later
    rows = {r["username"]: r for r in figures(service.db, "linxizhen")["workers"]}
    assert rows["lx_wgy1"] | {} == {**rows["lx_wgy1"], "reports": 3, "household_visits": 2, "visits": 1,
                                      "verifications": 2, "follow_ups": 2}
    assert (rows["lx_wgy2"]["reports"], rows["lx_wgy2"]["household_visits"], rows["lx_wgy2"]["verifications"]) \
        == (1, 1, 0)
    assert list(rows) == ["lx_wgy1", "lx_wgy2"]          # most reports first
    assert figures(service.db, "linxi-xinguang-g2")["workers"][0]["username"] == "lx_wgy2"


def test_records_of_routine_work_are_not_registered_matters(service, history):
    """入户走访 and 逆向考评 are cases, but not matters: 登记事项, the drill-down, the monthly
    trend and the breakdowns leave them out (on the roll-ups as from the cases)."""
    with service.db.unit_of_work() as session:
        history.case(session, by="lx_wgy1")
        history.case(session, grid="linxi-xinguang-g2", by="lx_wgy2", closed=START + timedelta(days=2))
        for _ in range(3):
            history.case(session, process="household_visit", by="lx_wgy1", closed=START + timedelta(days=1))
        history.case(session, process="reverse_evaluation", by="lx_wgy2")
    raw = figures(service.db, "linxi")
    assert raw["headline"]["registered"] == 2
    assert {process for process, _n in raw["by_process"]} == {"grid_matter"}
    assert sum(m["registered"] for m in raw["monthly"]) == 2 and sum(m["closed"] for m in raw["monthly"]) == 1
    assert sum(c["registered"] for c in raw["children"]) == 2
    assert {r["username"]: r["household_visits"] for r in raw["workers"]} == {"lx_wgy1": 3, "lx_wgy2": 0}


# ----------------------------------------------------------- reverse evaluation

def test_evaluation_scores_averaged_per_unit(service, history):
    nodes = history.nodes
    with service.db.unit_of_work() as session:
        for score, unit, kind, at in [(90, "linxizhen", "town", START + timedelta(days=1)),
                                      (70, "linxizhen", "town", START + timedelta(days=2)),
                                      (100, "linxizhen-cg", "department", START + timedelta(days=2)),
                                      (60, "linxizhen-cg", "department", END + timedelta(days=2)),   # later
                                      (50, "tianjitai", "town", START + timedelta(days=2))]:        # 五原
            case = history.case(session, process="consultation")
            session.add(EvaluationScore(case_id=case.id, period="2025-12", evaluator_id=history.users["lx_wgy1"],
                                        unit_node_id=nodes[unit].id, unit_kind=kind, score=score, scored_at=at))
    rows = figures(service.db, "linxi")["evaluation"]
    assert [(r["code"], r["kind"], r["average"], r["scores"]) for r in rows] == [
        ("linxizhen-cg", "department", 100.0, 1), ("linxizhen", "town", 80.0, 2)]
    assert len(figures(service.db)["evaluation"]) == 3


def test_finished_reverse_evaluation_case_copies_its_scores(service, history):
    nodes = history.nodes
    summary = {"period": "2026-01", "town_score": 85, "town_node_id": nodes["linxizhen"].id,
               "dept_chengguan_score": 60, "dept_chengguan_node_id": nodes["linxizhen-cg"].id,
               "dept_zhujian_node_id": nodes["linxi-zjj"].id}      # listed, but not scored: no row
    with service.db.unit_of_work() as session:
        case = history.case(session, process="consultation", summary=summary)
        case.process_key = "reverse_evaluation"
    with service.db.read_session() as session:
        assert session.scalars(select(EvaluationScore)).all() == []      # open: nothing yet
    with service.db.unit_of_work() as session:
        case = session.get(Case, case.id)
        case.status, case.closed_at = "completed", START + timedelta(days=3)
    with service.db.unit_of_work() as session:   # a second write replaces, never doubles
        session.get(Case, case.id).title = "改名"
    with service.db.read_session() as session:
        rows = sorted((s.unit_kind, s.score, s.period) for s in session.scalars(select(EvaluationScore)))
    assert rows == [("department", 60, "2026-01"), ("town", 85, "2026-01")]


# ---------------------------------------------------------- drill-down, trend

def test_children_drill_down_and_monthly_trend(service, history):
    closed = START + timedelta(days=3)
    with service.db.unit_of_work() as session:
        history.case(session, grid="linxi-xinguang-g1", status="completed", closed=closed,
                     summary={"resolved_level": "grid"})
        history.case(session, grid="linxi-xinguang-g2")
        history.case(session, grid="linxi-dongsheng-g1", status="completed", closed=closed,
                     summary={"resolved_level": "town", "satisfaction": "unsatisfied"})
        history.case(session, grid="linxi-dongsheng-g1", created=START + timedelta(days=40))
    year = figures(service.db, "linxizhen", end=datetime(2026, 3, 1, tzinfo=UTC))
    children = {c["code"]: c for c in year["children"]}
    assert set(children) == {"linxi-xinguang", "linxi-dongsheng"}
    assert (children["linxi-xinguang"]["registered"], children["linxi-xinguang"]["grid_rate"]) == (2, 100.0)
    assert (children["linxi-dongsheng"]["registered"], children["linxi-dongsheng"]["satisfaction_rate"]) == (2, 0.0)
    assert year["monthly"] == [{"month": "2026-01", "registered": 3, "closed": 2},
                               {"month": "2026-02", "registered": 1, "closed": 0}]
    grids = {c["code"] for c in figures(service.db, "linxi-xinguang")["children"]}
    assert grids == {"linxi-xinguang-g1", "linxi-xinguang-g2"}
    assert figures(service.db, "linxi-xinguang-g1")["children"] == []
    cities = {c["code"] for c in figures(service.db)["children"]}
    assert cities == {"chifeng"}


# ----------------------------------------------------- the engine leaves the facts

def test_a_matter_worked_through_the_engine(service, clock):
    """Grid → not resolved → town → failed verification → rework → verified → basically satisfied."""
    start = clock.now()
    view = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    work(service, "lx_wgz1", "micro_mediation", {"resolved": False, "mediation_note": "未谈拢"})
    work(service, "lxz_pd", "town_dispatch", {"department": "chengguan"})
    work(service, "lxz_cg", "department_handle", {"handling_result": "已处理", "handled_at": "2026-03-02T10:00:00+08:00",
                                                   "outcome": "resolved"})
    work(service, "lx_wgy1", "verify_on_site", {"verified": False, "verification_note": "未整改到位"})
    work(service, "lxz_cg", "department_handle", {"handling_result": "再次处理", "handled_at": "2026-03-02T15:00:00+08:00",
                                                   "outcome": "resolved"})
    clock.advance(timedelta(days=1))
    work(service, "lx_wgy1", "verify_on_site", {"verified": True, "verification_note": "已整改"})
    work(service, "lx_wgy1", "satisfaction", {"satisfaction": "basically_satisfied"})
    with service.db.read_session() as session:
        case = session.get(Case, view.case.id)
        node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "linxizhen"))
        assert (case.status, case.resolved_level, case.satisfaction) == ("completed", "town", "basically_satisfied")
        assert case.due_at == start + timedelta(days=7 + 5)      # grid 7 days + town 5 days
        assert [case.depth1_id, case.depth2_id, case.depth3_id] == node.ancestor_ids()
        result = Metrics(session, Scope(node, start, start + timedelta(days=30))).compute()
    head = result["headline"]
    assert (head["registered"], head["due"], head["closed"], head["on_time"]) == (1, 1, 1, 1)
    assert (head["verifications"], head["failed"], head["rework_rate"]) == (2, 1, 50.0)
    assert (head["satisfaction_rate"], head["grid_rate"]) == (100.0, 0.0)
    assert result["escalations"] == {"town": 1, "county": 0, "city": 0}
    worker = result["workers"][0]
    assert (worker["username"], worker["reports"], worker["verifications"], worker["visits"]) == ("lx_wgy1", 1, 2, 1)


# ------------------------------------------------------------------ who may see

def test_who_may_see_which_dashboard(service):
    db = service.db
    with db.read_session() as session:
        def roots(username):
            return [n.code for n in dashboard_roots(user_with_roles(session, username))]

        def may(username, code):
            node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code))
            return may_view(user_with_roles(session, username), node)

        assert roots("lxx_ld1") == ["linxi"] and roots("lxx_dc") == ["linxi"] and roots("lxz_pd") == ["linxizhen"]
        assert roots("lx_wgy1") == [] and roots("lxz_cg") == [] and roots("cf_sj") == []
        assert may("lxx_dc", "linxi-xinguang-g1") and may("lxz_pd", "linxi-xinguang")
        assert not may("lxz_pd", "linxi")                 # the town's dispatcher, not the county's
        assert not may("lxx_ld1", "bayannur") and not may("lxx_dc", "wuyuan")
        assert not may("lxx_dc", "linxizhen-cg")         # departments are not dashboard nodes


def test_dashboard_service_refuses_and_validates(service):
    dash = Dashboards(service.db)
    with pytest.raises(PermissionDenied) as exc:
        dash.figures("lx_wgy1", None, START, END)
    assert "仅供" in exc.value.zh
    with pytest.raises(PermissionDenied):
        dash.figures("lxz_pd", "linxi", START, END)
    with pytest.raises(PermissionDenied):
        dash.figures("lxx_dc", "wuyuan", START, END)
    with pytest.raises(NotFound):
        dash.figures("lxx_dc", "no-such-node", START, END)
    with pytest.raises(InvalidInput) as exc:
        dash.figures("lxx_dc", "linxi", END, START)
    assert "结束日期" in exc.value.zh
    with pytest.raises(InvalidInput):
        dash.figures("lxx_dc", "linxi", START.replace(tzinfo=None), END)
    with pytest.raises(InvalidInput):
        dash.figures("lxx_dc", "linxi", START - timedelta(days=4000), END)
    result = dash.figures("lxx_dc", None, START, END)
    assert result["scope"]["code"] == "linxi"
    assert [b["code"] for b in result["breadcrumb"]] == ["chifeng", "linxi"]
    assert [b["viewable"] for b in result["breadcrumb"]] == [False, True]
    assert dash.figures("cf_pd", "linxizhen", START, END)["scope"]["level"] == "town"


def test_the_migration_gives_existing_cases_their_facts(tmp_path):
    """Cases written before migration 0010 get the same facts the engine now writes."""
    from sqlalchemy import MetaData

    from engine import schema
    from engine.db import Database
    from engine.deploy import deploy_files, read_process_dir
    from engine.models import OrgChange
    from engine.org import load_org_file
    from forms import FormRegistry
    from tests.conftest import ROOT

    db = Database(f"sqlite:///{tmp_path / 'before.sqlite'}")
    schema.upgrade(db, "0008")
    with db.engine.begin() as conn:
        meta = MetaData()
        meta.reflect(bind=conn, only=["jurisdiction_node", "process_version", "gf_case"])
    # today's loader records its changes in org_change (migration 0014) and reads the accounts'
    # password_changed_at (0017): the table and the column are there while it loads, and gone
    # again before the upgrade creates them
    with db.engine.begin() as conn:
        OrgChange.__table__.create(conn)
        conn.exec_driver_sql("ALTER TABLE app_user ADD COLUMN password_changed_at DATETIME")
    with db.unit_of_work() as session:
        load_org_file(session, ROOT / "demo" / "org.yaml")
        deploy_files(session, read_process_dir(ROOT / "processes"), FormRegistry().keys(), actor="tests")
    with db.engine.begin() as conn:
        OrgChange.__table__.drop(conn)
        conn.exec_driver_sql("ALTER TABLE app_user DROP COLUMN password_changed_at")
    with db.engine.begin() as conn:
        grid = conn.execute(select(meta.tables["jurisdiction_node"].c.id, meta.tables["jurisdiction_node"].c.path)
                            .where(meta.tables["jurisdiction_node"].c.code == "linxi-xinguang-g1")).one()
        version = conn.execute(select(meta.tables["process_version"].c.id)
                               .where(meta.tables["process_version"].c.process_key == "grid_matter")).scalar()
        created = datetime(2026, 1, 5, 8, 0)
        conn.execute(meta.tables["gf_case"].insert().values(
            business_key="OLD-1", process_key="grid_matter", process_version_id=version, grid_id=grid.id,
            grid_path=grid.path, status="completed", title="", created_at=created, updated_at=created,
            closed_at=created, summary={"deadline_days": 5, "handling_level": "town",
                                        "resolved_level": "county", "county_days": 10, "satisfaction": "satisfied"},
            timer_failures=0, row_version=1))
    schema.upgrade(db)
    with db.read_session() as session:
        case = session.scalar(select(Case).where(Case.business_key == "OLD-1"))
        assert case.due_at == datetime(2026, 1, 20, 8, 0, tzinfo=UTC)      # 5 town + 10 county days
        assert (case.resolved_level, case.satisfaction) == ("county", "satisfied")
        assert [case.depth1_id, case.depth2_id, case.depth3_id, case.depth4_id] == \
            [int(p) for p in grid.path.strip("/").split("/")][:4]
    db.dispose()


# ------------------------------------------------------------- instants in another time zone

CHINA = timezone(timedelta(hours=8))


def test_a_china_time_day_counts_the_cases_of_that_day_on_every_database(service, history):
    """A case registered at 20:30 UTC on Jan 9 is Jan 10, 04:30 in China: it belongs to the
    China-time day Jan 10 and not to Jan 9. (SQLite once stored and compared an aware bound
    by its wall-clock digits, which put it on the wrong day.)"""
    late_evening_utc = datetime(2026, 1, 9, 20, 30, tzinfo=UTC)
    with service.db.unit_of_work() as session:
        history.case(session, created=late_evening_utc)
    jan9 = (datetime(2026, 1, 9, tzinfo=CHINA), datetime(2026, 1, 10, tzinfo=CHINA))
    jan10 = (datetime(2026, 1, 10, tzinfo=CHINA), datetime(2026, 1, 11, tzinfo=CHINA))
    assert figures(service.db, "linxi", *jan9)["headline"]["registered"] == 0
    assert figures(service.db, "linxi", *jan10)["headline"]["registered"] == 1


def test_an_aware_datetime_in_another_zone_is_stored_as_its_instant(service, history):
    """Whatever zone a datetime comes in, the column holds the instant: it reads back equal
    (as UTC) and compares in SQL as that instant."""
    four_thirty_china = datetime(2026, 1, 10, 4, 30, tzinfo=CHINA)     # = Jan 9, 20:30 UTC
    with service.db.unit_of_work() as session:
        case_id = history.case(session, created=four_thirty_china).id
    with service.db.read_session() as session:
        case = session.get(Case, case_id)
        assert case.created_at == four_thirty_china
        assert case.created_at.utcoffset() == timedelta(0)
        assert session.scalar(select(Case.id).where(Case.id == case_id,
                                                    Case.created_at < datetime(2026, 1, 9, 21, tzinfo=UTC)))
        assert session.scalar(select(Case.id).where(Case.id == case_id,
                                                    Case.created_at >= datetime(2026, 1, 10, 4, 0, tzinfo=CHINA)))


def test_the_monthly_trend_counts_by_china_months(service, history):
    """Officials' months are China months: a case reported 2026-03-31 20:00 UTC (April 1st,
    04:00 in China) is an April case; one reported 2026-03-31 15:59 UTC (23:59 in China) is a
    March case — live and from the roll-ups (`figures` checks both)."""
    with service.db.unit_of_work() as session:
        history.case(session, created=datetime(2026, 3, 31, 20, 0, tzinfo=UTC), status="completed",
                     closed=datetime(2026, 3, 31, 21, 0, tzinfo=UTC))
        history.case(session, created=datetime(2026, 3, 31, 15, 59, tzinfo=UTC))
        history.case(session, created=datetime(2026, 2, 28, 16, 0, tzinfo=UTC))   # March 1st, 00:00 China
    spring = (datetime(2026, 2, 1, tzinfo=CHINA), datetime(2026, 5, 1, tzinfo=CHINA))
    for code in ("linxi", "linxi-xinguang-g1"):   # a county reads roll-ups, a grid its cases
        assert figures(service.db, code, *spring, now=datetime(2026, 5, 2, tzinfo=UTC))["monthly"] == [
            {"month": "2026-03", "registered": 2, "closed": 0},
            {"month": "2026-04", "registered": 1, "closed": 1}]
