"""`gridflow demo`: a history made through the engine, spread over the months."""
from __future__ import annotations

from datetime import timedelta

from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main as cli
from engine.demo_history import DemoHistory
from engine.metrics import compute
from engine.models import AuditEvent, Case
from engine.rollup import RECORD_PROCESSES


def test_demo_history_goes_through_the_engine(service, clock):
    end = clock.now()
    report = DemoHistory(service, seed=3).run(30, months=3, end=end)
    assert report.started == 30 and report.steps >= 60
    with service.db.read_session() as session:
        cases = session.scalars(select(Case)).all()
        assert len(cases) == 30
        assert min(c.created_at for c in cases) >= end - timedelta(days=92)
        months = {c.created_at.strftime("%Y-%m") for c in cases}
        assert len(months) >= 3                                     # spread over the period
        assert {c.process_key for c in cases} >= {"grid_matter"}
        # every case was started by an official through the service, every step is in the trail
        started = session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.event_type == "case_started", AuditEvent.actor_id.is_not(None)))
        completed = session.scalar(select(func.count()).select_from(AuditEvent)
                                   .where(AuditEvent.event_type == "task_completed", AuditEvent.actor_id.is_not(None)))
        assert started == 30 and completed == report.steps
        closed = [c for c in cases if c.closed_at]
        assert closed and all(c.closed_at <= end for c in closed)
        figures = compute(session, None, end - timedelta(days=92), end + timedelta(days=1), now=end)
    matters = sum(c.process_key not in RECORD_PROCESSES for c in cases)     # 入户走访 are not matters
    assert 0 < matters < 30 and "household_visit" in {c.process_key for c in cases}
    assert figures["headline"]["registered"] == matters
    assert figures["headline"]["closed"] > 0 and figures["headline"]["resolved"] > 0
    assert sum(m["registered"] for m in figures["monthly"]) == matters
    assert clock.now() == end                                       # the caller's clock is given back


def test_the_same_seed_makes_the_same_choices(service):
    first, second = DemoHistory(service, seed=5), DemoHistory(service, seed=5)
    assert [first._delay("department_handle") for _ in range(5)] == [second._delay("department_handle") for _ in range(5)]


def test_demo_command_if_empty_leaves_a_seeded_database_alone(service, monkeypatch):
    from tests.helpers import REPORT
    service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    monkeypatch.setenv("DATABASE_URL", str(service.db.engine.url.render_as_string(hide_password=False)))
    result = CliRunner().invoke(cli, ["demo", "--cases", "5", "--if-empty"])
    assert result.exit_code == 0, result.output
    assert "1 cases already there, nothing added" in result.output
    with service.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 1
