"""One definition of an overdue task (超期任务), on the 督办台 and on the dashboard.

A town's tasks of every kind are built as rows; the board of the town's dispatcher, the
town's dashboard (live and from the roll-ups) and the definition written out here
(engine/supervision.py, "超期任务") must all give the same count. They once did not: the
dashboard also counted the county's tasks on the town's cases, and the board only the
tasks it listed."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from engine.metrics import Dashboards, compute
from engine.models import NO_DUE_DATE, Case, JurisdictionNode, ProcessVersion, WorkItem
from engine.supervision import Supervision

UTC = timezone.utc
NOW = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)   # the tests' frozen clock
HOUR = timedelta(hours=1)


class Tasks:
    def __init__(self, db):
        self.db = db
        with db.read_session() as session:
            self.nodes = {n.code: n for n in session.scalars(select(JurisdictionNode))}
            self.version = session.scalar(select(ProcessVersion.id).where(ProcessVersion.process_key == "grid_matter"))
        self.n = 0

    def add(self, session, grid: str, unit: str | None, due: datetime | None, status: str = "open",
            role: str | None = "center_dispatcher") -> WorkItem:
        self.n += 1
        node = self.nodes[grid]
        case = Case(business_key=f"O-{self.n:05d}", process_key="grid_matter", process_version_id=self.version,
                    grid_id=node.id, grid_path=node.path, status="open", title=f"事项 {self.n}", summary={},
                    created_at=NOW - 30 * 24 * HOUR, updated_at=NOW - 30 * 24 * HOUR)
        session.add(case)
        session.flush()
        item = WorkItem(id=str(uuid.uuid4()), case_id=case.id, process_key="grid_matter", spec_id=f"task_{self.n}",
                        name=f"任务 {self.n}", role=role if unit else None,
                        candidate_node_id=self.nodes[unit].id if unit else None, grid_path=node.path,
                        status=status, created_at=case.created_at, due_at=due, sort_due=due or NO_DUE_DATE,
                        completed_at=NOW - HOUR if status == "completed" else None)
        session.add(item)
        return item


@pytest.fixture
def town(service):
    """林西镇's tasks, and others around it; returns how many are overdue by the definition."""
    tasks = Tasks(service.db)
    with service.db.unit_of_work() as session:
        # overdue, and the town's: held by the town's centre, by a town department, named for someone
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", NOW - 5 * HOUR)
        tasks.add(session, "linxi-dongsheng-g1", "linxizhen-cg", NOW - 48 * HOUR, role="department_handler")
        tasks.add(session, "linxi-xinguang-g2", None, NOW - HOUR)
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", NOW - timedelta(seconds=1))
        # not overdue: due exactly now, due later, due soon, no due date, done late, withdrawn
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", NOW)
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", NOW + 3 * HOUR)
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", NOW + 72 * HOUR)
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", None)
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", NOW - 30 * HOUR, status="completed")
        tasks.add(session, "linxi-xinguang-g1", "linxizhen", NOW - 30 * HOUR, status="cancelled")
        # overdue, but not the town's: the county's task on a town case (县级知悉督办), another town's
        tasks.add(session, "linxi-xinguang-g1", "linxi", NOW - 10 * HOUR)
        tasks.add(session, "linxi-xinguang-g1", "linxi-cgj", NOW - 10 * HOUR, role="department_handler")
        tasks.add(session, "songshan-fushanzhuang-g1", "chutoulang", NOW - 10 * HOUR)
    return {"linxizhen": 4, "linxi": 6, None: 7}


def test_the_board_and_the_dashboard_count_the_same_overdue_tasks(service, town):
    board = Supervision(service).board("lxz_pd")
    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 4, 1, tzinfo=UTC)
    dashboard = Dashboards(service.db).figures("lxz_pd", "linxizhen", start, end)
    assert dashboard["headline"]["overdue_tasks"] == board.overdue == town["linxizhen"]
    assert board.due_soon == 2                      # due now, and in 3 hours
    # the county's figure adds its own tasks on the town's cases, as the county's board does
    assert Supervision(service).board("lxx_pd").overdue == town["linxi"]
    assert Dashboards(service.db).figures("lxx_pd", "linxi", start, end)["headline"]["overdue_tasks"] == town["linxi"]
    with service.db.read_session() as session:
        for code, expected in town.items():
            node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code)) if code else None
            for rollups in (False, True):
                figures = compute(session, node, start, end, now=NOW, rollups=rollups)
                assert figures["headline"]["overdue_tasks"] == expected, (code, rollups)


def test_a_cut_board_says_which_of_its_totals_are_lower_bounds(service, town, client, monkeypatch):
    """Past its limit the board does not count (a count scans every overdue task of the tree):
    its rows come most overdue first, so a list reaching a due-soon task holds every overdue
    one (exact), and a list of overdue tasks only says "at least"."""
    overdue = town["linxizhen"]
    board = Supervision(service).board("lxz_pd", limit=overdue + 1)
    assert board.truncated and board.total == overdue + 1
    assert (board.overdue, board.overdue_at_least) == (overdue, False)
    assert (board.due_soon, board.due_soon_at_least) == (1, True)
    board = Supervision(service).board("lxz_pd", limit=2)
    assert board.truncated and (board.overdue, board.overdue_at_least) == (2, True)
    whole = Supervision(service).board("lxz_pd")
    assert not whole.truncated and (whole.overdue, whole.due_soon) == (overdue, 2)
    assert not (whole.overdue_at_least or whole.due_soon_at_least)

    from tests.helpers import login
    login(client, "lxz_pd")
    board = Supervision.board
    monkeypatch.setattr(Supervision, "board", lambda self, actor: board(self, actor, limit=2))
    html = client.get("/supervision").get_data(as_text=True)
    assert "辖区内已超期至少 2 项（确切数字见统计看板）" in html and "仅显示最紧急的 2 项" in html


def test_the_board_page_says_the_counts(service, town, client):
    from tests.helpers import login
    login(client, "lxz_pd")
    html = client.get("/supervision").get_data(as_text=True)
    assert f"辖区内已超期 {town['linxizhen']} 项，24小时内到期 2 项" in html
