"""Moving running cases to a later version (engine/migration.py): dry run first,
which cases move and which cannot and why; apply; open tasks re-synced; timers keep
their deadlines; every move is an audit event; only designers and admins."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from engine.designer import Designer
from engine.errors import InvalidInput, PermissionDenied
from engine.migration import Migrator
from engine.models import AuditEvent, Case, CaseState, WorkItem
from engine.service import WorkflowService
from tests.conftest import FIXTURES, ROOT
from tests.helpers import REPORT, work

DESIGNER, ADMIN, WORKER, AUDITOR, DISPATCHER = "cf_sj", "admin", "lx_wgy1", "lxx_dc", "lxz_pd"
GRID = "linxi-xinguang-g1"
TIMED = (FIXTURES / "timed.bpmn").read_text(encoding="utf-8")

ADD_STEP_AFTER_HANDLE = (
    '<bpmn:sequenceFlow id="f2" sourceRef="handle" targetRef="end"/>',
    '<bpmn:sequenceFlow id="f2" sourceRef="handle" targetRef="note"/>'
    '<bpmn:scriptTask id="note" name="Note the result"><bpmn:incoming>f2</bpmn:incoming><bpmn:outgoing>f2b</bpmn:outgoing>'
    '<bpmn:script>noted = True</bpmn:script></bpmn:scriptTask>'
    '<bpmn:sequenceFlow id="f2b" sourceRef="note" targetRef="end"/>')


@pytest.fixture
def svc(clean_db, clock, fixture_forms):
    return WorkflowService(clean_db, forms=fixture_forms)


@pytest.fixture
def timed_key(svc):
    key = f"mg_{uuid.uuid4().hex[:8]}"
    assert Designer(svc).deploy(DESIGNER, {f"{key}.bpmn": TIMED.replace('id="timed"', f'id="{key}"')}).created
    return key


def deploy_edit(svc, key, *replacements):
    text = TIMED.replace('id="timed"', f'id="{key}"')
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    outcome = Designer(svc).deploy(DESIGNER, {f"{key}.bpmn": text})
    assert outcome.check.ok, outcome.check.problems
    return outcome.created[0]


def migrations(db, case_id):
    with db.read_session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id,
                                                       AuditEvent.event_type == "case_migrated")))


def snapshot(db, case_id):
    with db.read_session() as s:
        case = s.get(Case, case_id)
        items = sorted((i.id, i.status, i.name) for i in s.scalars(select(WorkItem).where(WorkItem.case_id == case_id)))
        events = len(list(s.scalars(select(AuditEvent.id).where(AuditEvent.case_id == case_id))))
        return case.process_version_id, s.get(CaseState, case_id).state, items, events


def test_dry_run_then_apply_moves_the_case_and_keeps_its_deadline(svc, timed_key, clock, clean_db):
    view = svc.start_case(timed_key, GRID, {}, WORKER)
    svc.claim(view.open_items[0].id, WORKER)
    deadline = svc.get_case(view.business_key).case.next_timer_at
    clock.advance(timedelta(days=1))
    new = deploy_edit(svc, timed_key, ('name="Handle in the grid"', 'name="网格内处置"'), ADD_STEP_AFTER_HANDLE)

    migrator = Migrator(svc)
    before = snapshot(clean_db, view.id)
    plan = migrator.plan(DESIGNER, timed_key, 1, 2)
    assert [(c.business_key, c.movable, c.open_tasks) for c in plan.cases] == [(view.business_key, True, ["handle"])]
    assert "handle" in plan.cases[0].changed
    assert snapshot(clean_db, view.id) == before           # the dry run changed nothing

    result = migrator.apply(DESIGNER, timed_key, 1, 2)
    assert result.moved == [view.business_key] and result.not_moved == {}
    moved = svc.get_case(view.business_key)
    assert moved.case.process_version_id == new.id
    assert [(i.spec_id, i.name) for i in moved.open_items] == [("handle", "网格内处置")]
    assert moved.open_items[0].id == view.open_items[0].id        # the same task, re-read on v2
    assert moved.open_items[0].assignee_id is not None            # the claim stays
    assert moved.case.next_timer_at == deadline                   # the legal deadline did not restart
    [event] = migrations(clean_db, view.id)
    assert (event.data["from_version"], event.data["to_version"], event.at) == (1, 2, clock.now())
    with clean_db.read_session() as s:
        assert s.get(Case, view.id).created_by_id is not None and event.actor_id is not None

    # the case runs on the new definition: the added step is on its path
    done = work(svc, WORKER, "handle", {"again": False})
    assert done.status == "completed"
    assert "note" in [b for _, b in svc.path(view.business_key)]
    assert svc.case_data(view.business_key)["noted"] is True


def test_the_old_deadline_still_fires_after_moving(svc, timed_key, clock):
    view = svc.start_case(timed_key, GRID, {}, WORKER)
    deploy_edit(svc, timed_key, ('name="Town takes over"', 'name="乡镇接办"'))
    assert Migrator(svc).apply(DESIGNER, timed_key, 1, 2).moved == [view.business_key]
    clock.advance(timedelta(days=2, minutes=1))
    fired = svc.fire_timers(view.business_key)
    assert [(i.spec_id, i.name) for i in fired.open_items] == [("escalated", "乡镇接办")]


def test_cases_on_a_removed_element_cannot_move_and_say_why(svc, timed_key, clean_db):
    at_handle = svc.start_case(timed_key, GRID, {}, WORKER)
    deploy_edit(svc, timed_key, ('id="handle"', 'id="handle_v2"'), ('>handle<', '>handle_v2<'),
                ('attachedToRef="handle"', 'attachedToRef="handle_v2"'), ('sourceRef="handle"', 'sourceRef="handle_v2"'),
                ('targetRef="handle"', 'targetRef="handle_v2"'))
    before = snapshot(clean_db, at_handle.id)
    plan = Migrator(svc).plan(DESIGNER, timed_key, 1, 2)
    [blocked] = plan.blocked
    assert blocked.business_key == at_handle.business_key and not plan.movable
    assert any("Handle in the grid (handle)" in r and "removed" in r for r in blocked.reasons)
    result = Migrator(svc).apply(DESIGNER, timed_key, 1, 2)
    assert result.moved == [] and result.not_moved[at_handle.business_key] == blocked.reasons
    assert snapshot(clean_db, at_handle.id) == before and migrations(clean_db, at_handle.id) == []


def test_a_changed_waiting_timer_blocks_the_move(svc, timed_key):
    view = svc.start_case(timed_key, GRID, {}, WORKER)
    deploy_edit(svc, timed_key, ('"P2D"', '"P5D"'))
    [blocked] = Migrator(svc).plan(DESIGNER, timed_key, 1, 2).blocked
    assert blocked.business_key == view.business_key
    assert any("waiting 'Grid deadline (deadline)' changed" in r for r in blocked.reasons)


def test_an_open_task_that_changes_type_blocks_the_move(svc, timed_key, app):
    from web.designer import migration_reason
    svc.start_case(timed_key, GRID, {}, WORKER)
    deploy_edit(svc, timed_key, ('<bpmn:userTask id="handle" name="Handle in the grid">', '<bpmn:scriptTask id="handle" name="Handle in the grid">'),
                ('<bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>',
                 '<bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>'
                 '<bpmn:script>again = False</bpmn:script></bpmn:scriptTask>'))
    [blocked] = Migrator(svc).plan(DESIGNER, timed_key, 1, 2).blocked
    [reason] = [r for r in blocked.reasons if "changes type" in r]
    with app.test_request_context():       # the page, in Chinese
        assert migration_reason(reason) == "案件正在“Handle in the grid (handle)”，新版本把它从用户任务改为脚本任务"


def test_only_open_cases_of_the_source_version_are_listed(svc, timed_key):
    done = svc.start_case(timed_key, GRID, {}, WORKER)
    work(svc, WORKER, "handle", {"again": False})
    assert svc.get_case(done.business_key).status == "completed"
    deploy_edit(svc, timed_key, ('name="Town takes over"', 'name="乡镇接办"'))
    running = svc.start_case(timed_key, GRID, {}, WORKER)   # already on v2
    plan = Migrator(svc).plan(DESIGNER, timed_key, 1, 2)
    assert plan.cases == [] and running.case.process_version_id != done.case.process_version_id


def test_versions_must_exist_and_go_forward(svc, timed_key):
    deploy_edit(svc, timed_key, ('name="Town takes over"', 'name="乡镇接办"'))
    with pytest.raises(InvalidInput):
        Migrator(svc).plan(DESIGNER, timed_key, 2, 1)
    with pytest.raises(InvalidInput):
        Migrator(svc).plan(DESIGNER, timed_key, 2, 2)
    for bad in ((1, 9), ("x", 2)):
        with pytest.raises(Exception) as exc:
            Migrator(svc).plan(DESIGNER, timed_key, *bad)
        assert exc.value.code == "not_found"


@pytest.mark.parametrize("who", [WORKER, AUDITOR, DISPATCHER])
def test_only_designers_and_admins_migrate(svc, timed_key, clean_db, who):
    view = svc.start_case(timed_key, GRID, {}, WORKER)
    deploy_edit(svc, timed_key, ('name="Town takes over"', 'name="乡镇接办"'))
    before = snapshot(clean_db, view.id)
    with pytest.raises(PermissionDenied):
        Migrator(svc).plan(who, timed_key, 1, 2)
    with pytest.raises(PermissionDenied):
        Migrator(svc).apply(who, timed_key, 1, 2)
    assert snapshot(clean_db, view.id) == before
    assert Migrator(svc).apply(ADMIN, timed_key, 1, 2).moved == [view.business_key]


def test_a_shipped_chain_with_decisions_and_many_timers_moves(clean_db, clock):
    """grid_matter (DMN dispatch, reminders and escalations on every level) under a new key (its
    file keeps its name: its subprocess ids must not clash with the deployed grid_matter):
    a case in the grid leader's hands moves to a version with a renamed task and finishes there."""
    svc = WorkflowService(clean_db)
    key = f"gm_{uuid.uuid4().hex[:8]}"
    bpmn = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
    dmn = (ROOT / "processes" / "dispatch_rules.dmn").read_text(encoding="utf-8")
    first = bpmn.replace('id="grid_matter"', f'id="{key}"').replace('bpmnElement="grid_matter"', f'bpmnElement="{key}"')
    designer = Designer(svc)
    assert designer.deploy(DESIGNER, {"grid_matter.bpmn": first, "dispatch_rules.dmn": dmn}).check.ok
    view = svc.start_case(key, GRID, REPORT, WORKER)
    assert [i.spec_id for i in view.open_items] == ["micro_mediation"]
    deadline = svc.get_case(view.business_key).case.next_timer_at
    second = first.replace('name="网格微调处"', 'name="网格内调处"')
    assert second != first
    assert designer.deploy(DESIGNER, {"grid_matter.bpmn": second}).created
    plan = Migrator(svc).plan(DESIGNER, key, 1, 2)
    assert [c.movable for c in plan.cases] == [True], plan.cases[0].reasons
    Migrator(svc).apply(DESIGNER, key, 1, 2)
    moved = svc.get_case(view.business_key)
    assert [(i.spec_id, i.name) for i in moved.open_items] == [("micro_mediation", "网格内调处")]
    assert moved.case.next_timer_at == deadline
    work(svc, "lx_wgz1", "micro_mediation", {"resolved": True, "mediation_note": "双方达成谅解"})
    final = work(svc, WORKER, "record_result", {"result_note": "已化解"})
    assert final.status == "completed"


# ------------------------------------------------------------------ pages

@pytest.fixture
def web(as_user, app, clean_db, fixture_forms):
    """as_user, with the fixtures' forms."""
    app.extensions["gridflow"].forms = fixture_forms
    return as_user


def test_migration_pages_dry_run_then_apply(web, service, clean_db):
    from tests.helpers import csrf_token
    key = f"mw_{uuid.uuid4().hex[:8]}"
    assert Designer(service).deploy(DESIGNER, {f"{key}.bpmn": TIMED.replace('id="timed"', f'id="{key}"')}).created
    view = service.start_case(key, GRID, {}, WORKER)
    deploy_edit(service, key, ('name="Town takes over"', 'name="乡镇接办"'))
    client = web(DESIGNER)
    assert f"/designer/processes/{key}/migrate" in client.get(f"/designer/processes/{key}").get_data(as_text=True)
    before = snapshot(clean_db, view.id)
    page = client.get(f"/designer/processes/{key}/migrate?from=1&to=2")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and f'data-case="{view.business_key}" class="movable"' in html
    assert snapshot(clean_db, view.id) == before
    token = csrf_token(client, f"/designer/processes/{key}/migrate?from=1&to=2")
    done = client.post(f"/designer/processes/{key}/migrate",
                       data={"csrf_token": token, "from": "1", "to": "2", "case": [view.business_key]})
    assert done.status_code == 200 and 'id="migration-result"' in done.get_data(as_text=True)
    assert len(migrations(clean_db, view.id)) == 1
    assert service.get_case(view.business_key).case.process_version_id != before[0]
    assert client.get(f"/designer/processes/{key}/migrate?from=2&to=1").status_code == 400
    assert client.get(f"/designer/processes/{key}/migrate?from=1&to=7").status_code == 404
    # nothing ticked: told so, nothing moved
    none = client.post(f"/designer/processes/{key}/migrate", data={"csrf_token": token, "from": "1", "to": "2"})
    assert none.status_code == 302 and "migrate?from=1&to=2" in none.headers["Location"]
    assert "请勾选要迁移的案件" in client.get(none.headers["Location"]).get_data(as_text=True)
    assert len(migrations(clean_db, view.id)) == 1


def test_a_process_with_one_version_has_nothing_to_migrate_to(web, service):
    key = f"mw_{uuid.uuid4().hex[:8]}"
    assert Designer(service).deploy(DESIGNER, {f"{key}.bpmn": TIMED.replace('id="timed"', f'id="{key}"')}).created
    client = web(DESIGNER)
    page = client.get(f"/designer/processes/{key}/migrate")
    assert page.status_code == 400 and "只有一个版本" in page.get_data(as_text=True)


@pytest.mark.parametrize("who", [WORKER, AUDITOR])
def test_migration_pages_refuse_others(web, service, clean_db, who):
    from tests.helpers import csrf_token
    key = f"mw_{uuid.uuid4().hex[:8]}"
    assert Designer(service).deploy(DESIGNER, {f"{key}.bpmn": TIMED.replace('id="timed"', f'id="{key}"')}).created
    view = service.start_case(key, GRID, {}, WORKER)
    deploy_edit(service, key, ('name="Town takes over"', 'name="乡镇接办"'))
    client = web(who)
    before = snapshot(clean_db, view.id)
    assert client.get(f"/designer/processes/{key}/migrate?from=1&to=2").status_code == 403
    token = csrf_token(client, "/inbox")
    refused = client.post(f"/designer/processes/{key}/migrate",
                          data={"csrf_token": token, "from": "1", "to": "2", "case": [view.business_key]})
    assert refused.status_code == 403 and snapshot(clean_db, view.id) == before


CALL_LOOP = (FIXTURES / "lr_call_loop.bpmn").read_text(encoding="utf-8")


def call_loop(key, *replacements):
    text = CALL_LOOP.replace('"lr_called"', f'"{key}_c"').replace('"lr_call_loop"', f'"{key}"')
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new)
    return {f"{key}.bpmn": text}


def test_a_case_inside_a_called_process_moves_with_it(svc, clean_db):
    key = f"mc_{uuid.uuid4().hex[:8]}"
    designer = Designer(svc)
    assert designer.deploy(DESIGNER, call_loop(key)).check.ok
    view = svc.start_case(key, GRID, {}, WORKER)
    assert [i.spec_id for i in view.open_items] == ["c_report"]
    assert designer.deploy(DESIGNER, call_loop(key, ('name="Progress report (called)"', 'name="被调用流程的进展报告"'))).created
    plan = Migrator(svc).plan(DESIGNER, key, 1, 2)
    assert [c.movable for c in plan.cases] == [True], plan.cases[0].reasons
    assert Migrator(svc).apply(DESIGNER, key, 1, 2).moved == [view.business_key]
    moved = svc.get_case(view.business_key)
    assert [(i.spec_id, i.name) for i in moved.open_items] == [("c_report", "被调用流程的进展报告")]
    assert work(svc, WORKER, "c_report", {"again": False}).status == "completed"


def test_a_case_inside_a_called_process_whose_task_was_removed_stays(svc, clean_db):
    key = f"mc_{uuid.uuid4().hex[:8]}"
    designer = Designer(svc)
    assert designer.deploy(DESIGNER, call_loop(key)).check.ok
    view = svc.start_case(key, GRID, {}, WORKER)
    # the report is dropped from the called process: start goes straight to the count
    assert _deploy_without_report(designer, key)
    before = snapshot(clean_db, view.id)
    [blocked] = Migrator(svc).plan(DESIGNER, key, 1, 2).blocked
    assert any("(c_report)" in r and "removed" in r for r in blocked.reasons), blocked.reasons
    assert Migrator(svc).apply(DESIGNER, key, 1, 2).moved == [] and snapshot(clean_db, view.id) == before


def _deploy_without_report(designer, key):
    files = call_loop(key, ('<bpmn:flowNodeRef>c_report</bpmn:flowNodeRef>', ''),
                      ('<bpmn:sequenceFlow id="c2" sourceRef="c_report" targetRef="c_count"/>', ''),
                      ('<bpmn:sequenceFlow id="c1" sourceRef="c_start" targetRef="c_report"/>',
                       '<bpmn:sequenceFlow id="c1" sourceRef="c_start" targetRef="c_count"/>'),
                      ('<bpmn:incoming>c2</bpmn:incoming><bpmn:outgoing>c3</bpmn:outgoing>',
                       '<bpmn:incoming>c1</bpmn:incoming><bpmn:outgoing>c3</bpmn:outgoing>'))
    text = next(iter(files.values()))
    start = text.index('    <bpmn:userTask id="c_report"')
    end = text.index("</bpmn:userTask>", start) + len("</bpmn:userTask>\n")
    files = {name: text[:start] + text[end:] for name in files}
    outcome = designer.deploy(DESIGNER, files)
    assert outcome.check.ok, outcome.check.problems
    return outcome.created
