"""The in-memory workflow cache (`engine.state.LiveWorkflowCache`).

A transition reuses the workflow its case's previous transition left in memory
instead of deserializing the stored state, but only while the stored state is
exactly the text that workflow was saved as. These tests prove that it is used,
that a case behaves the same with it as without it (every shipped scenario, step
by step), and that it never serves a workflow another writer or a failed
transaction made stale.
"""
from __future__ import annotations

import pytest
from sqlalchemy import delete, select
from SpiffWorkflow.util.task import TaskState

from engine import audit
from engine.errors import ProcessError
from engine.models import AuditEvent, Case, CaseState
from engine.scenarios import Scenario, find_scenarios, run_scenario
from engine.service import WorkflowService
from tests.conftest import CASE_TABLES, ROOT, deploy_fixture

GRID = "linxi-xinguang-g1"
WORKER = "lx_wgy1"
SCENARIOS = find_scenarios(ROOT / "processes" / "scenarios")


def _loop_service(db, forms):
    deploy_fixture(db, "loop.bpmn", forms=forms)
    return WorkflowService(db, forms=forms)


def _trail(db, case_id) -> list[tuple]:
    """What happened, without the ids and times that differ between two runs."""
    with db.read_session() as session:
        return [(e.event_type, e.bpmn_id, e.flow_from, e.actor_id)
                for e in session.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                         .order_by(AuditEvent.id))]


def _state(db, case_id) -> str:
    with db.read_session() as session:
        return session.get(CaseState, case_id).state


def test_a_looping_case_reuses_its_workflow_from_the_second_step(clean_db, clock, fixture_forms):
    svc = _loop_service(clean_db, fixture_forms)
    view = svc.start_case("loop", GRID, {}, WORKER)
    for _ in range(5):
        view = svc.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    assert (svc.live.hits, svc.live.misses) == (5, 0)
    assert len(svc.live) == 1


def test_a_cache_of_size_zero_always_restores_from_the_stored_state(clean_db, clock, fixture_forms):
    svc = _loop_service(clean_db, fixture_forms)
    svc.live.size = 0
    view = svc.start_case("loop", GRID, {}, WORKER)
    for _ in range(3):
        view = svc.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    assert (svc.live.hits, svc.live.misses, len(svc.live)) == (0, 3, 0)


def test_a_step_made_by_another_writer_is_never_overwritten_from_a_stale_workflow(clean_db, clock, fixture_forms):
    """Two web workers (two services, two caches) take turns on one case."""
    first = _loop_service(clean_db, fixture_forms)
    second = WorkflowService(clean_db, forms=fixture_forms)
    view = first.start_case("loop", GRID, {}, WORKER)
    view = first.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    view = second.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    state_after_second = _state(clean_db, view.id)
    hits_before = first.live.hits
    view = first.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    assert first.live.hits == hits_before  # its cached workflow was one step behind: not used
    assert _state(clean_db, view.id) != state_after_second
    reports = [t for t in _trail(clean_db, view.id) if t[0] == "task_completed"]
    assert len(reports) == 3
    assert len(view.open_items) == 1


def test_a_failed_transition_leaves_nothing_in_memory(clean_db, clock, fixture_forms, monkeypatch):
    svc = _loop_service(clean_db, fixture_forms)
    view = svc.start_case("loop", GRID, {}, WORKER)
    view = svc.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    item_id, case_id = view.open_items[0].id, view.id
    stored = _state(clean_db, case_id)

    def broken_append(*args, **kwargs):
        raise ProcessError("disk full", zh="磁盘已满")

    monkeypatch.setattr(audit, "append", broken_append)
    with pytest.raises(ProcessError):
        svc.complete_task(item_id, {"again": True}, WORKER)
    monkeypatch.undo()
    # the workflow was advanced in memory before the failure; it must not be reused
    assert len(svc.live) == 0 and _state(clean_db, case_id) == stored
    view = svc.complete_task(item_id, {"again": True}, WORKER)
    reports = [t for t in _trail(clean_db, case_id) if t[0] == "task_completed"]
    assert len(reports) == 2 and len(view.open_items) == 1


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_scenario_runs_the_same_with_and_without_the_cache(db, clock, path):
    """The same audit trail, step for step, and the same final figures; and the state
    each run stores after its last step restores to the same live tasks."""
    trails, summaries, live_specs = [], [], []
    start = clock.now()
    for size in (0, 256):
        _empty_cases(db)
        clock.set(start)
        svc = WorkflowService(db)
        svc.live.size = size
        result = run_scenario(svc, clock, Scenario.load(path))
        case_id = _case_id(db, result.business_key)
        trails.append(_trail(db, case_id))
        with db.read_session() as session:
            case = session.get(Case, case_id)
            summaries.append((case.status, case.summary, case.colour, case.category))
        live_specs.append(sorted(_live_task_specs(svc, case_id)))
        if size:
            assert svc.live.hits > 0 or len([t for t in trails[-1] if t[0] == "task_completed"]) < 2
    assert trails[0] == trails[1]
    assert summaries[0] == summaries[1]
    assert live_specs[0] == live_specs[1]


def _case_id(db, business_key) -> int:
    with db.read_session() as session:
        return session.scalar(select(Case.id).where(Case.business_key == business_key))


def _live_task_specs(svc, case_id):
    with svc.db.read_session() as session:
        case = session.get(Case, case_id)
        parsed = svc.specs.for_case(session, case)
        workflow = svc._load(session, case, parsed)
        return [(t.task_spec.bpmn_id or t.task_spec.name, t.state) for wf in [workflow, *workflow.subprocesses.values()]
                for t in wf.tasks.values() if not t.has_state(TaskState.FINISHED_MASK)]


def _empty_cases(db):
    with db.unit_of_work() as session:
        for table in CASE_TABLES:
            session.execute(delete(table))


# ------------------------------------------------------------------ running ahead
#
# On PostgreSQL a completion works on the kept workflow while the server answers its locked
# read (`WorkflowService._run_ahead`); SQLite has answered before, and takes the same path.
# Whatever it did counts only once the read says the workflow is still the stored state.

def _put_marker_in_stored_state(db, case_id, marker):
    """Another writer changes the stored state and leaves the task open (as a non-interrupting
    timer or a message would): a marker in the workflow's own data."""
    import json

    with db.unit_of_work() as session:
        row = session.get(CaseState, case_id)
        state = json.loads(row.state)
        state["data"]["marker"] = marker
        row.state = json.dumps(state)


def _marker(db, case_id):
    import json

    return json.loads(_state(db, case_id))["data"].get("marker")


def test_a_run_ahead_on_a_workflow_whose_stored_state_changed_is_not_used(clean_db, clock, fixture_forms):
    svc = _loop_service(clean_db, fixture_forms)
    view = svc.start_case("loop", GRID, {}, WORKER)
    view = svc.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    task_id = view.open_items[0].id
    _put_marker_in_stored_state(clean_db, view.id, "changed elsewhere")
    hits, misses = svc.live.hits, svc.live.misses
    view = svc.complete_task(task_id, {"again": True}, WORKER)
    assert (svc.live.hits, svc.live.misses) == (hits, misses + 1)
    assert _marker(clean_db, view.id) == "changed elsewhere"   # worked on the stored state
    # and the next step runs ahead again, on what this one kept
    view = svc.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    assert svc.live.hits == hits + 1
    assert _marker(clean_db, view.id) == "changed elsewhere"


def test_a_run_ahead_for_an_official_who_may_not_work_the_task_changes_nothing(clean_db, clock, fixture_forms):
    from engine.errors import InvalidInput, PermissionDenied

    svc = _loop_service(clean_db, fixture_forms)
    view = svc.start_case("loop", GRID, {}, WORKER)
    view = svc.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    task_id = view.open_items[0].id
    state, trail = _state(clean_db, view.id), _trail(clean_db, view.id)
    with pytest.raises(PermissionDenied):
        svc.complete_task(task_id, {"again": False}, "lx_wgy2")   # another grid's worker
    with pytest.raises(InvalidInput):
        svc.complete_task(task_id, {"again": "perhaps"}, WORKER)  # a refused form
    assert (_state(clean_db, view.id), _trail(clean_db, view.id)) == (state, trail)
    view = svc.complete_task(task_id, {"again": False}, WORKER)
    assert view.status == "completed"   # the official's own answer, not the refused one's
    reports = [t for t in _trail(clean_db, view.id) if t[0] == "task_completed"]
    assert len(reports) == 2
