"""The dashboard roll-ups (engine/rollup.py) give exactly the figures of the cases.

A random history of several hundred cases over the demo tree and fifteen months
(grid matters, petitions with their tasks, mediations; open, closed, cancelled;
time limits, petition tasks and closings falling in the very month of the end of
the period and of now), then every figure of every scope and period compared:
from the cases, from the roll-ups just built, after cases changed and new ones
came (not yet refreshed: corrected live), after the refresh, and after a rebuild.
"""
from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select, update

from engine import rollup
from engine.metrics import compute
from engine.models import (NO_DUE_DATE, Case, JurisdictionNode, ProcessVersion, RollupCase, RollupCases, RollupDims,
                           RollupReports, RollupTasks, User, WorkItem)

UTC = timezone.utc
CHINA = timezone(timedelta(hours=8))
NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)   # the tests' frozen clock
FIRST = datetime(2025, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)
PETITION_STEPS = ("decide", "handle", "handle_extended", "approve_extension", "notify_extension", "written_reply",
                  "review_request", "recheck_request")

# the months are China months (engine/rollup.py `month_of`): a UTC midnight bound lies 8 hours into one
PERIODS = [
    (datetime(2025, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)),      # months up to today (now inside)
    (datetime(2025, 4, 1, tzinfo=CHINA), datetime(2026, 3, 3, tzinfo=CHINA)),  # the web's China-time days
    (datetime(2025, 7, 15, 10, tzinfo=UTC), datetime(2026, 1, 20, tzinfo=UTC)),  # both ends mid-month, past
    (datetime(2026, 2, 3, tzinfo=UTC), datetime(2026, 2, 17, 12, tzinfo=UTC)),  # inside one month
    (datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)),      # whole months, end after now
    (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, 8, 30, tzinfo=UTC)),  # ends exactly now
]
NODES = [None, "chifeng", "linxi", "linxizhen", "linxi-xinguang", "linxi-xinguang-g1", "bayannur", "wuyuan"]
NOWS = [NOW, NOW - timedelta(days=47, hours=5)]


class RandomHistory:
    def __init__(self, db, seed: int):
        self.db = db
        self.rng = random.Random(seed)
        with db.read_session() as session:
            self.grids = [(n.id, n.path) for n in session.scalars(
                select(JurisdictionNode).where(JurisdictionNode.level == "grid").order_by(JurisdictionNode.id))]
            self.versions = {v.process_key: v.id for v in session.scalars(select(ProcessVersion))}
            self.users = list(session.scalars(select(User.id).order_by(User.id)))[:12]
        self.n = 0

    def when(self, lo: datetime, hi: datetime) -> datetime:
        return lo + timedelta(seconds=self.rng.random() * (hi - lo).total_seconds())

    def some_time(self, created: datetime) -> datetime:
        """A moment after `created`, often in the month of now or of the periods' ends."""
        rng = self.rng
        if rng.random() < 0.25:
            anchor = rng.choice([NOW, datetime(2026, 1, 20, tzinfo=UTC), datetime(2026, 2, 17, 12, tzinfo=UTC),
                                 datetime(2026, 3, 3, tzinfo=UTC), NOWS[1]])
            at = anchor + timedelta(hours=rng.uniform(-240, 240))
            if at > created:
                return at
        return created + timedelta(days=rng.uniform(0, 60))

    def add_case(self, session) -> Case:
        rng = self.rng
        self.n += 1
        grid_id, path = rng.choice(self.grids)
        created = self.when(FIRST, NOW + 20 * DAY) if rng.random() < 0.9 else self.some_time(FIRST)
        process = rng.choices(["grid_matter", "petition", "mediation"], [70, 20, 10])[0]
        summary = {}
        if process == "grid_matter":
            level = rng.choice(["grid", "town", "county", "city", None])
            summary = {"deadline_days": rng.choice([3, 7, 15]), "handling_level": "grid", "grid_days": 7,
                       "town_days": 5, "county_days": 10, "city_days": 15}
            if level:
                summary["resolved_level"] = level
            if level and level != "grid" and rng.random() < 0.8:
                summary["satisfaction"] = rng.choice(["satisfied", "basically_satisfied", "unsatisfied"])
        elif process == "petition" and rng.random() < 0.6:
            summary = {"outcome": rng.choice(["closed_after_reply", "closed_after_review", "closed_after_recheck",
                                              "forwarded"])}
        status = rng.choices(["open", "completed", "cancelled"], [35, 60, 5])[0]
        closed = self.some_time(created) if status != "open" else None
        case = Case(business_key=f"R-{self.n:07d}", process_key=process, process_version_id=self.versions[process],
                    grid_id=grid_id, grid_path=path, status=status,
                    category=rng.choice(["dispute", "environment", "safety_hazard", None]) if process != "petition"
                    else None, colour=rng.choice(["blue", "yellow", "red", None]), summary=summary,
                    created_at=created, updated_at=closed or created, closed_at=closed,
                    created_by_id=rng.choice(self.users + [None]))
        session.add(case)
        session.flush()
        if process == "petition":
            for spec in rng.sample(PETITION_STEPS, rng.randint(0, 5)):
                for _ in range(rng.choice([1, 1, 2])):
                    self.add_item(session, case, spec)
        elif rng.random() < 0.3:
            self.add_item(session, case, rng.choice(["verify_on_site", "satisfaction"]))
        return case

    def add_item(self, session, case: Case, spec: str) -> WorkItem:
        rng = self.rng
        due = self.some_time(case.created_at) if rng.random() < 0.85 else None
        status = rng.choice(["open", "completed", "completed", "cancelled"])
        done = self.some_time(case.created_at) if status == "completed" else None
        item = WorkItem(id=str(uuid.UUID(int=rng.getrandbits(128))), case_id=case.id, process_key=case.process_key,
                        spec_id=spec, name=spec, grid_path=case.grid_path, status=status, created_at=case.created_at,
                        due_at=due, sort_due=due or NO_DUE_DATE, completed_at=done,
                        completed_by_id=rng.choice(self.users) if done else None)
        session.add(item)
        return item

    def change(self, session, cases: int) -> None:
        """What the engine does to cases between two refreshes: close, rate, reopen, move on a petition."""
        rng = self.rng
        ids = list(session.scalars(select(Case.id).order_by(Case.id)))
        for case_id in rng.sample(ids, min(cases, len(ids))):
            case = session.get(Case, case_id)
            choice = rng.random()
            summary = dict(case.summary or {})
            if case.status == "open" and choice < 0.5:
                case.status, case.closed_at = "completed", self.some_time(case.created_at)
                summary["resolved_level"] = rng.choice(["grid", "town", "county"])
            elif choice < 0.7:
                summary["satisfaction"] = rng.choice(["satisfied", "unsatisfied"])
                summary["current_level"] = rng.choice(["town", "county"])
            elif choice < 0.85:
                case.status, case.closed_at = "open", None
            else:
                case.colour = rng.choice(["orange", "blue"])
            case.summary = summary
            case.updated_at = NOW
            if case.process_key == "petition":
                for item in session.scalars(select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.status == "open")):
                    item.status, item.completed_at = "completed", self.some_time(case.created_at)
                self.add_item(session, case, rng.choice(PETITION_STEPS))


def all_figures(db, rollups: bool, now: datetime) -> dict:
    out = {}
    with db.read_session() as session:
        nodes = {code: session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code)) if code else None
                 for code in NODES}
        for code, node in nodes.items():
            for start, end in PERIODS:
                out[(code, start, end)] = compute(session, node, start, end, now=now, rollups=rollups)
    return out


def assert_same(db, now=NOW):
    raw = all_figures(db, False, now)
    rolled = all_figures(db, True, now)
    for key, figures in raw.items():
        differ = {name: (rolled[key][name], value) for name, value in figures.items() if rolled[key][name] != value}
        assert not differ, f"roll-ups differ from the cases for {key}: {differ}"
    assert any(f["headline"]["registered"] for f in raw.values())


def counts(db) -> dict:
    with db.read_session() as session:
        return {t.__tablename__: sorted(tuple(getattr(r, c.key) for c in t.__table__.columns)
                                        for r in session.scalars(select(t)))
                for t in (RollupCases, RollupDims, RollupTasks, RollupReports)}


# random histories of this size meet every dimension the figures group by (two seeds); a
# bigger one took each CI run a minute more
CASES, CHANGED, ADDED = 250, 50, 25


@pytest.mark.parametrize("seed", [3, 11])
def test_rollups_give_the_figures_of_the_cases(service, seed):
    db = service.db
    history = RandomHistory(db, seed)
    with db.unit_of_work() as session:
        for _ in range(CASES):
            history.add_case(session)
    # before any refresh every case is dirty: the roll-ups (empty) are corrected by all of them
    assert_same(db)
    with db.unit_of_work() as session:
        assert rollup.refresh(session, NOW) == CASES
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Case).where(Case.rollup_dirty == True)) == 0  # noqa
        assert session.scalar(select(func.count()).select_from(RollupCases)) > 0
    for now in NOWS:
        assert_same(db, now)

    # the engine moves on: changed and new cases, not yet taken in — still exact
    with db.unit_of_work() as session:
        history.change(session, CHANGED)
        for _ in range(ADDED):
            history.add_case(session)
    with db.read_session() as session:
        dirty = session.scalar(select(func.count()).select_from(Case).where(Case.rollup_dirty == True))  # noqa
    assert dirty == CHANGED + ADDED
    assert_same(db)

    with db.unit_of_work() as session:
        assert rollup.refresh(session, NOW) == CHANGED + ADDED
    assert_same(db)
    incremental = counts(db)

    # refreshing again changes nothing; rebuilding from scratch gives the same rows
    with db.unit_of_work() as session:
        assert rollup.refresh(session, NOW) == 0
    assert counts(db) == incremental
    with db.unit_of_work() as session:
        assert rollup.rebuild(session, NOW) == CASES + ADDED
    assert counts(db) == incremental
    for now in NOWS:
        assert_same(db, now)


def test_every_write_through_the_engine_marks_the_case_and_refresh_takes_it_in(service, clock):
    from tests.helpers import REPORT, work
    db = service.db
    view = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")

    def state():
        with db.read_session() as session:
            case = session.get(Case, view.case.id)
            counted = session.scalar(select(func.sum(RollupCases.n)).where(
                RollupCases.level == 0, RollupCases.status == case.status))
            return case.rollup_dirty, counted

    assert state() == (True, None)
    with db.unit_of_work() as session:
        assert rollup.refresh(session, clock.now()) == 1
    assert state() == (False, 1)
    work(service, "lx_wgz1", "micro_mediation", {"resolved": True, "mediation_note": "已调解"})
    with db.read_session() as session:
        assert session.get(Case, view.case.id).rollup_dirty
    with db.unit_of_work() as session:
        assert rollup.refresh(session, clock.now()) == 1
        assert rollup.refresh(session, clock.now()) == 0
    with db.read_session() as session:
        case = session.get(Case, view.case.id)
        assert not case.rollup_dirty
        assert session.scalar(select(func.sum(RollupCases.n)).where(RollupCases.level == 0)) == 1
        assert session.scalar(select(RollupCases.status).where(RollupCases.level == 0)) == case.status


def test_a_refresh_leaves_a_case_written_meanwhile_dirty(service, clock):
    """The flag is cleared only if the case is still the version that was counted."""
    db = service.db
    history = RandomHistory(db, 5)
    with db.unit_of_work() as session:
        case_id = history.add_case(session).id
    with db.unit_of_work() as session:
        rollup.refresh(session, NOW)
    with db.unit_of_work() as session:
        session.get(Case, case_id).colour = "red"
    with db.read_session() as session:   # the refresh reads version 2 …
        rows = session.execute(rollup.case_key_select(session.bind.dialect.name).where(Case.id == case_id)).all()
    assert rows[0].row_version == 2
    with db.unit_of_work() as session:   # … version 3 commits before it marks the case counted
        session.get(Case, case_id).colour = "blue"
    with db.unit_of_work() as session:
        assert rollup.mark_counted(session, rows) == 0
    with db.read_session() as session:
        assert session.get(Case, case_id).rollup_dirty
    with db.unit_of_work() as session:
        assert rollup.refresh(session, NOW) == 1
    with db.read_session() as session:
        assert not session.get(Case, case_id).rollup_dirty
        assert session.scalar(select(RollupDims.value).where(RollupDims.level == 0, RollupDims.dim == "colour")) \
            == "blue"


def test_the_command_builds_then_refreshes_and_the_worker_keeps_them_current(service, clock, monkeypatch):
    import threading

    from click.testing import CliRunner

    from engine.cli import main as cli
    from engine.timers import TimerWorker
    from tests.helpers import REPORT, work
    db = service.db
    service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    stop = threading.Event()
    monkeypatch.setattr(threading.Event, "wait", lambda self, timeout=None: stop.set())
    TimerWorker(service).run_forever(stop, interval=0.01)   # not built: the worker leaves them alone
    with db.read_session() as session:
        assert not rollup.is_built(session)

    with db.read_session() as session:   # the report, and the monthly evaluations the worker started
        cases = session.scalar(select(func.count()).select_from(Case))
    monkeypatch.setenv("DATABASE_URL", str(db.engine.url.render_as_string(hide_password=False)))
    result = CliRunner().invoke(cli, ["metrics", "refresh"])
    assert result.exit_code == 0, result.output
    assert f"built from {cases} cases" in result.output
    work(service, "lx_wgz1", "micro_mediation", {"resolved": True, "mediation_note": "已调解"})
    result = CliRunner().invoke(cli, ["metrics", "refresh"])
    assert "refreshed with 1 cases" in result.output

    service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    stop.clear()
    TimerWorker(service).run_forever(stop, interval=0.01)
    with db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Case).where(Case.rollup_dirty == True)) == 0  # noqa
        assert session.scalar(select(func.sum(RollupCases.n)).where(RollupCases.level == 0)) == cases + 1


def test_a_refresh_in_rounds_takes_every_dirty_case_once(service):
    db = service.db
    history = RandomHistory(db, 7)
    with db.unit_of_work() as session:
        for _ in range(30):
            history.add_case(session)
    with db.unit_of_work() as session:
        rollup.rebuild(session, NOW)
        history.change(session, 25)
    taken = []
    while not taken or taken[-1]:
        with db.unit_of_work() as session:
            taken.append(rollup.refresh(session, NOW, batch=4, limit=10))
    assert taken[:-1] == [10, 10, 5] and taken[-1] == 0
    assert_same(db)


def test_upgrading_a_database_counts_its_rollups_again_by_china_months(service):
    """Roll-ups stored by the old rule (UTC months) are emptied by migration 0020: the dashboard
    reads the cases until `gridflow metrics refresh` builds them again, by China months."""
    from alembic import command

    from engine import schema
    db = service.db
    april_in_china = datetime(2026, 3, 31, 20, 0, tzinfo=UTC)
    history = RandomHistory(db, 13)
    with db.unit_of_work() as session:
        history.add_case(session).created_at = april_in_china
    with db.unit_of_work() as session:
        rollup.rebuild(session, NOW)
        # what a build before the fix stored: the case in its UTC month
        for table in (RollupCases, RollupDims, RollupReports, RollupTasks):
            session.execute(update(table).where(table.month == "2026-04").values(month="2026-03"))
        session.execute(update(RollupCase).values(month="2026-03"))
    spring = (datetime(2026, 3, 1, tzinfo=CHINA), datetime(2026, 5, 1, tzinfo=CHINA))

    def monthly(rollups):
        with db.read_session() as session:
            return compute(session, None, *spring, now=datetime(2026, 5, 2, tzinfo=UTC), rollups=rollups)["monthly"]

    assert [m["month"] for m in monthly(False)] == ["2026-04"]
    assert [m["month"] for m in monthly(None)] == ["2026-03"]      # the stale rows answer wrong

    with db.engine.begin() as conn:   # a database at 0019 with those rows, upgraded
        command.downgrade(schema.alembic_config(conn), "0019")
    schema.upgrade(db)
    with db.read_session() as session:
        assert not rollup.is_built(session)
        assert session.scalar(select(func.count()).select_from(RollupCases)) == 0
    assert [m["month"] for m in monthly(None)] == ["2026-04"]      # read from the cases meanwhile
    with db.unit_of_work() as session:
        assert rollup.refresh(session, NOW) == 1                   # not built: built afresh
    with db.read_session() as session:
        assert rollup.is_built(session)
    assert monthly(True) == monthly(False) and [m["month"] for m in monthly(True)] == ["2026-04"]
