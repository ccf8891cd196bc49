"""The designer's service (engine/designer.py): library, check, deploy as a new
version with who/when, diff, refusals; files from Camunda Modeler; the OMG MIWG
reference files give a report, never a traceback."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.designer import Designer, diff_files
from engine.errors import InvalidInput, PermissionDenied
from engine.models import Notification, ProcessVersion, User, WorkItem
from engine.service import WorkflowService
from tests.conftest import FIXTURES, ROOT
from tests.test_deploy import MIWG as MIWG_DIR
from tests.helpers import REPORT, work

DESIGNER, ADMIN, WORKER, AUDITOR, LEADER = "cf_sj", "admin", "lx_wgy1", "lxx_dc", "lx_wgz1"
GRID = "linxi-xinguang-g1"


def user_id(db, username):
    with db.read_session() as s:
        return s.scalar(select(User.id).where(User.username == username))


def notices_of(db, item_id):
    with db.read_session() as s:
        return list(s.scalars(select(Notification).where(Notification.work_item_id == item_id)))
MIWG = sorted(MIWG_DIR.glob("*.bpmn"))
LOOP = (FIXTURES / "loop.bpmn").read_text(encoding="utf-8")
CAMUNDA = (FIXTURES / "camunda_report.bpmn").read_text(encoding="utf-8")


def unique_loop(task_name="Progress report"):
    key = f"dz_{uuid.uuid4().hex[:8]}"
    text = LOOP.replace('id="loop"', f'id="{key}"').replace('name="Progress report"', f'name="{task_name}"')
    return key, text


@pytest.fixture
def svc(clean_db, clock, fixture_forms):
    return WorkflowService(clean_db, forms=fixture_forms)


@pytest.fixture
def designer(svc):
    return Designer(svc)


def version_count(db) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(ProcessVersion))


# ------------------------------------------------------------------ library

def test_library_lists_every_process_with_versions_and_running_cases(svc, designer):
    view = svc.start_case("grid_matter", GRID, REPORT, WORKER)
    library = {entry.key: entry for entry in designer.library(DESIGNER)}
    assert {"grid_matter", "petition", "leader_case", "mediation", "consultation"} <= set(library)
    grid = library["grid_matter"]
    latest = grid.latest
    assert latest.id == view.case.process_version_id
    assert latest.open_cases == 1 and latest.all_cases == 1 and grid.open_cases == 1
    assert len(latest.content_hash) == 64 and latest.deployed_by == "tests" and latest.deployed_at is not None
    # its DMN and the called mediation process with its DMN belong to the version
    assert latest.files == ["dispatch_rules.dmn", "grid_matter.bpmn", "mediation.bpmn", "mediation_channel.dmn"]
    # the auditor may read the library too
    assert {e.key for e in designer.library(AUDITOR)} == set(library)


def test_version_detail_has_the_files_and_main_file(designer):
    detail = designer.version(DESIGNER, "grid_matter")
    assert detail.main_file == "grid_matter.bpmn"
    assert "<bpmn:definitions" in detail.files["grid_matter.bpmn"] or "definitions" in detail.files["grid_matter.bpmn"]
    with pytest.raises(Exception) as exc:
        designer.version(DESIGNER, "grid_matter", 999)
    assert exc.value.code == "not_found"
    with pytest.raises(Exception) as exc:
        designer.version(DESIGNER, "grid_matter", "x")
    assert exc.value.code == "not_found"


# -------------------------------------------------------------- permissions

@pytest.mark.parametrize("who", [WORKER, LEADER, "lxz_pd"])
def test_officials_may_not_read_the_library(designer, who):
    with pytest.raises(PermissionDenied):
        designer.library(who)


@pytest.mark.parametrize("who", [WORKER, AUDITOR, "lxz_pd"])
def test_only_designers_and_admins_check_or_deploy(designer, clean_db, who):
    key, text = unique_loop()
    before = version_count(clean_db)
    with pytest.raises(PermissionDenied):
        designer.check(who, {"x.bpmn": text})
    with pytest.raises(PermissionDenied):
        designer.deploy(who, {"x.bpmn": text})
    assert version_count(clean_db) == before
    assert not designer.may_edit(who)


def test_admin_may_deploy(designer):
    key, text = unique_loop()
    outcome = designer.deploy(ADMIN, {f"{key}.bpmn": text})
    assert outcome.check.ok and [(v.process_key, v.version, v.deployed_by) for v in outcome.created] == [(key, 1, "admin")]
    assert designer.may_edit(ADMIN) and designer.may_edit(DESIGNER)


# ------------------------------------------------------- check and deploy

def test_edit_deploys_a_new_version_and_running_cases_stay_on_theirs(svc, designer, clock, clean_db):
    key, text = unique_loop()
    name = f"{key}.bpmn"
    first = designer.deploy(DESIGNER, {name: text})
    assert [v.version for v in first.created] == [1]
    running = svc.start_case(key, GRID, {}, WORKER)

    clock.advance(timedelta(hours=2))
    edited = text.replace('name="Progress report"', 'name="每周进展报告"')
    assert designer.check(DESIGNER, {name: edited}).ok
    second = designer.deploy(DESIGNER, {name: edited})
    assert [(v.version, v.deployed_by, v.deployed_at) for v in second.created] == [(2, DESIGNER, clock.now())]

    entry = designer.process(DESIGNER, key)
    assert [(v.version, v.open_cases) for v in entry.versions] == [(2, 0), (1, 1)]
    # the running case stays on v1 with v1's task name; a new case starts on v2
    assert svc.get_case(running.business_key).case.process_version_id == first.created[0].id
    assert svc.get_case(running.business_key).open_items[0].name == "Progress report"
    fresh = svc.start_case(key, GRID, {}, WORKER)
    assert fresh.case.process_version_id == second.created[0].id and fresh.open_items[0].name == "每周进展报告"

    # the same text again creates nothing
    again = designer.deploy(DESIGNER, {name: edited})
    assert again.check.ok and again.created == [] and again.unchanged == [key]


def test_problems_name_the_element_and_nothing_is_stored(designer, clean_db):
    key, text = unique_loop()
    broken = text.replace('<bpmn:flowNodeRef>report</bpmn:flowNodeRef>', '').replace(
        'value="progress_report"', 'value="no_such_form"')
    before = version_count(clean_db)
    result = designer.check(DESIGNER, {"broken.bpmn": broken})
    assert not result.ok
    by_element = {(p.element, p.file) for p in result.problems}
    assert ("report", "broken.bpmn") in by_element
    messages = " ".join(p.message for p in result.problems)
    assert "in no lane" in messages and "no_such_form" in messages
    assert all(p.fix for p in result.problems)
    outcome = designer.deploy(DESIGNER, {"broken.bpmn": broken})
    assert not outcome.check.ok and outcome.created == []
    assert version_count(clean_db) == before


def test_an_unreachable_element_is_reported_at_that_element(designer):
    key, text = unique_loop()
    orphan = text.replace('<bpmn:endEvent id="end">', '<bpmn:task id="orphan" name="孤立任务"/><bpmn:endEvent id="end">')
    result = designer.check(DESIGNER, {"o.bpmn": orphan})
    assert [(p.element, "never be reached" in p.message) for p in result.problems] == [("orphan", True)]


@pytest.mark.parametrize("files, field, en, zh", [
    ({}, "files", "at least one", "至少提交一个"),
    ({"notes.txt": "hello"}, "notes.txt", "only .bpmn and .dmn", "只能部署"),
    ({"x.bpmn": b"\xff\xfe\x00garbage"}, "x.bpmn", "not UTF-8 text (byte 0, perhaps GBK)", "可能是 GBK 编码"),
    ({"x.bpmn": "<bpmn/>".encode("utf-8") + "流程".encode("gbk")}, "x.bpmn", "(byte 7, perhaps GBK)", "第 7 字节"),
    ({"x.bpmn": "   "}, "x.bpmn", "empty", "文件为空"),
    ({"x.bpmn": "<a>\x00</a>"}, "x.bpmn", "NUL characters", "空字符"),
    ({"x.bpmn": "<a>" + "x" * 2_000_001 + "</a>"}, "x.bpmn", "larger than", "文件超过"),
])
def test_bad_uploads_are_refused_whole(designer, clean_db, files, field, en, zh):
    """Refused with what was wrong in both languages, and nothing stored."""
    before = version_count(clean_db)
    with pytest.raises(InvalidInput) as exc:
        designer.deploy(DESIGNER, files)
    assert field in exc.value.fields
    assert en in exc.value.text("en") and zh in exc.value.text("zh")
    assert version_count(clean_db) == before


def test_a_bad_file_beside_a_good_one_deploys_nothing(designer, clean_db):
    key, good = unique_loop()
    before = version_count(clean_db)
    outcome = designer.deploy(DESIGNER, {"good.bpmn": good, "bad.bpmn": "<bpmn:definitions"})
    assert not outcome.check.ok and outcome.created == []
    assert [p.file for p in outcome.check.problems] == ["bad.bpmn"]
    assert "not well-formed" in outcome.check.problems[0].message
    assert version_count(clean_db) == before


def test_a_misspelt_decision_in_a_called_process_is_one_problem_though_checked_with_each_caller(designer):
    """mediation.bpmn is checked with grid_matter's, petition's and its own deployed files; each
    set offers other DMN ids, so the parser's messages differ only in that list. The designer
    sees one problem on the task, listing the ids every set offers."""
    text = (ROOT / "processes" / "mediation.bpmn").read_text(encoding="utf-8")
    bad = text.replace("calledDecisionId>mediation_channel<", "calledDecisionId>mediation_chanel<")
    assert bad != text
    problems = designer.check(DESIGNER, {"mediation.bpmn": bad}).problems
    assert [(p.file, p.element) for p in problems] == [("mediation.bpmn", "decide_channel")]
    assert problems[0].message.endswith("Available DMN ids are: mediation_channel.")
    assert "mediation_chanel" in problems[0].text("zh")[0] and problems[0].fix_zh


def test_a_decision_table_left_without_a_rule_for_some_form_values_is_noted_at_check(designer):
    """The modeler's check of the dispatch rules without their 其他 and default rules: no
    problem (it may be deployed), a note on the decision naming what would fail."""
    import re
    dmn = designer.version(DESIGNER, "grid_matter").files["dispatch_rules.dmn"]
    for rule_id in ("rule_24", "rule_25"):
        dmn = re.sub(rf'<rule id="{rule_id}">.*?</rule>\s*', "", dmn, flags=re.DOTALL)
    result = designer.check(DESIGNER, {"dispatch_rules.dmn": dmn})
    assert result.ok and result.problems == []
    assert [(n.file, n.element) for n in result.notes] == [("dispatch_rules.dmn", "dispatch_rules")]
    assert '"other"' in result.notes[0].message and "兜底规则" in result.notes[0].text("zh")[1]


def test_editing_a_decision_table_redeploys_the_processes_that_call_it(designer, clean_db):
    """The DMN is checked with the deployed BPMN that calls it; a broken table is refused."""
    dmn = designer.version(DESIGNER, "grid_matter").files["dispatch_rules.dmn"]
    broken = dmn.replace("<inputExpression", "<inputExpressionX", 1) if "<inputExpression" in dmn else dmn + "<"
    result = designer.check(DESIGNER, {"dispatch_rules.dmn": broken})
    assert not result.ok and result.problems[0].file == "dispatch_rules.dmn"
    unchanged = designer.deploy(DESIGNER, {"dispatch_rules.dmn": dmn})
    assert unchanged.check.ok and unchanged.created == [] and "grid_matter" in unchanged.unchanged


# ------------------------------------------------------------------- diff

def test_diff_lists_added_removed_and_changed_elements(designer):
    key, text = unique_loop()
    name = f"{key}.bpmn"
    designer.deploy(DESIGNER, {name: text})
    edited = (text.replace('name="Progress report"', 'name="每周进展报告"')
              .replace('<bpmn:scriptTask id="count" name="Count"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>\n'
                       '      <bpmn:script>iterations = iterations + 1 if \'iterations\' in dir() else 1</bpmn:script></bpmn:scriptTask>',
                       '<bpmn:scriptTask id="tally" name="Tally"><bpmn:incoming>f3</bpmn:incoming><bpmn:outgoing>f4</bpmn:outgoing>'
                       '<bpmn:script>iterations = iterations + 1 if \'iterations\' in dir() else 1</bpmn:script></bpmn:scriptTask>')
              .replace('sourceRef="report" targetRef="count"', 'sourceRef="report" targetRef="tally"')
              .replace('sourceRef="count" targetRef="more"', 'sourceRef="tally" targetRef="more"')
              .replace('<bpmn:flowNodeRef>count</bpmn:flowNodeRef>', '<bpmn:flowNodeRef>tally</bpmn:flowNodeRef>'))
    assert designer.deploy(DESIGNER, {name: edited}).created
    diff = designer.diff(DESIGNER, key, 1, 2)
    assert [(c.element, c.kind) for c in diff.added] == [("tally", "scriptTask")]
    assert [(c.element, c.kind) for c in diff.removed] == [("count", "scriptTask")]
    changed = {c.element: c for c in diff.changed}
    assert "name: Progress report → 每周进展报告" in changed["report"].details
    assert {"f3", "f4", "report", "lane_worker"} <= set(changed)
    assert not diff.same
    same = designer.diff(DESIGNER, key, 2, 2)
    assert same.same and not same.layout_only


def test_diff_tells_layout_moves_apart_from_model_changes():
    moved = CAMUNDA.replace('<dc:Bounds x="240" y="80"', '<dc:Bounds x="250" y="90"')
    added, removed, changed, layout = diff_files({"c.bpmn": CAMUNDA}, {"c.bpmn": moved})
    assert (added, removed, changed) == ([], [], []) and layout == ["Task_Verify"]
    # a modeler's save rewrites whitespace and empty labels: nothing moved
    resaved = CAMUNDA.replace("<dc:Bounds ", "\n        <dc:Bounds ").replace("</bpmndi:BPMNShape>",
                                                                           "<bpmndi:BPMNLabel/></bpmndi:BPMNShape>")
    assert resaved != CAMUNDA and diff_files({"c.bpmn": CAMUNDA}, {"c.bpmn": resaved}) == ([], [], [], [])


def test_diff_shows_what_a_property_condition_or_script_was_and_is():
    """"extensionElements changed" told a designer nothing."""
    gm = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
    edited = (gm.replace('name="dueDate" value="grid_days"', 'name="dueDate" value="P5D"')
              .replace('handling_level == "grid"', 'handling_level in ("grid", "community")'))
    _added, _removed, changed, layout = diff_files({"g.bpmn": gm}, {"g.bpmn": edited})
    details = {c.element: c.details for c in changed}
    assert details["micro_mediation"] == ["dueDate: grid_days → P5D"]
    assert details["flow_to_grid"] == ["conditionExpression: 'handling_level == \"grid\"' → "
                                       "'handling_level in (\"grid\", \"community\")'"]
    assert layout == []


# --------------------------------------------------- files from other modelers

def test_camunda_modeler_file_deploys_and_runs(clean_db, clock):
    """candidateGroups named as people say them (网格员, 乡镇派单员), a Camunda form reference,
    a literal assignee and a dueDate: the task lands in the right inbox with its due date."""
    svc = WorkflowService(clean_db)
    designer = Designer(svc)
    key = f"cam_{uuid.uuid4().hex[:8]}"
    text = CAMUNDA.replace('id="camunda_report"', f'id="{key}"').replace('bpmnElement="camunda_report"',
                                                                       f'bpmnElement="{key}"')
    outcome = designer.deploy(DESIGNER, {f"{key}.bpmn": text})
    assert outcome.check.ok, outcome.check.problems
    view = svc.start_case(key, GRID, {}, WORKER)
    item = view.open_items[0]
    assert (item.spec_id, item.role, item.form_key) == ("Task_Verify", "grid_worker", "verify_on_site")
    assert item.due_at == clock.now() + timedelta(days=3) and not item.unresolved
    view = work(svc, WORKER, "Task_Verify", {"verified": True, "verification_note": "已核查"})
    record = view.open_items[0]
    with clean_db.read_session() as s:
        leader_id = s.scalar(select(WorkItem.assignee_id).where(WorkItem.id == record.id))
    assert record.spec_id == "Task_Record" and leader_id is not None
    view = work(svc, LEADER, "Task_Record", {"result_note": "已办结"})
    town = view.open_items[0]
    assert (town.spec_id, town.lane, town.role, town.unresolved) == ("Task_Town", "town.center_dispatcher",
                                                                      "center_dispatcher", False)
    view = work(svc, "lxz_pd", "Task_Town", {"result_note": "复核通过"})
    assert view.status == "completed"


def test_a_literal_assignee_is_judged_against_the_active_accounts_at_check_and_deploy(designer, clean_db):
    """The Camunda file's `camunda:assignee="lx_wgz1"` names an account: no note. A name no
    account has, or a deactivated official's, is noted on the task at the check and at a
    deploy (the task would go to its lane's holders instead), and deploys all the same."""
    from engine.deploy import deploy_files

    def assignee_notes(result):
        return [(n.element, n.message) for n in result.notes if "the assignee of" in n.message]

    assert assignee_notes(designer.check(DESIGNER, {"c.bpmn": CAMUNDA})) == []
    unknown = designer.check(DESIGNER, {"c.bpmn": CAMUNDA.replace('camunda:assignee="lx_wgz1"',
                                                                   'camunda:assignee="lx_wgz9"')})
    assert unknown.ok and assignee_notes(unknown) == [(
        "Task_Record", "the assignee of '记录处置结果' is 'lx_wgz9', which is neither a case field this version "
        "sets nor an active account: every case's task goes to its lane's holders instead (without a lane, to "
        "the centre dispatchers as unassigned)")]
    def set_active(active):
        with clean_db.unit_of_work() as s:
            s.scalar(select(User).where(User.username == LEADER)).active = active
    set_active(False)
    try:
        assert [e for e, _m in assignee_notes(designer.check(DESIGNER, {"c.bpmn": CAMUNDA}))] == ["Task_Record"]
        key = f"cam_{uuid.uuid4().hex[:8]}"
        text = CAMUNDA.replace('id="camunda_report"', f'id="{key}"').replace('bpmnElement="camunda_report"',
                                                                           f'bpmnElement="{key}"')
        with clean_db.unit_of_work() as s:
            deployed = deploy_files(s, {f"{key}.bpmn": text}, designer.form_keys(), actor=DESIGNER)
    finally:
        set_active(True)   # the organisation outlives the test
    assert [v.process_key for v in deployed.created] == [key]
    assert [n.element for n in deployed.notes if "the assignee of" in n.message] == ["Task_Record"]


def test_camunda_group_that_maps_to_no_role_is_a_clear_problem(designer):
    text = CAMUNDA.replace('camunda:candidateGroups="网格员"', 'camunda:candidateGroups="accounting"')
    result = designer.check(DESIGNER, {"c.bpmn": text})
    assert [(p.element, p.message.startswith("candidate group 'accounting'"), "网格员" in p.fix)
            for p in result.problems] == [("Task_Verify", True, True)]


@pytest.mark.parametrize("path", MIWG, ids=[p.name for p in MIWG])
def test_every_miwg_reference_file_gives_a_report(designer, clean_db, path):
    before = version_count(clean_db)
    files = {path.name: path.read_bytes()}
    result = designer.check(DESIGNER, files)
    outcome = designer.deploy(DESIGNER, files)
    # none of these runs here as it stands: each is a report naming the file, what and how to fix
    assert not result.ok and result.problems == outcome.check.problems
    for problem in result.problems:
        assert problem.file == path.name and problem.message and problem.fix
    assert outcome.created == [] and version_count(clean_db) == before


def test_several_candidate_groups_all_reach_the_task(clean_db, clock):
    """candidateGroups="网格员,乡镇派单员": the grid's workers and the town's dispatchers may
    each take the task (and are told of it); a worker of another grid may not."""
    svc = WorkflowService(clean_db)
    key = f"cam_{uuid.uuid4().hex[:8]}"
    text = (CAMUNDA.replace('id="camunda_report"', f'id="{key}"')
            .replace('bpmnElement="camunda_report"', f'bpmnElement="{key}"')
            .replace('camunda:candidateGroups="网格员"', 'camunda:candidateGroups="网格员, 乡镇派单员"'))
    outcome = Designer(svc).deploy(DESIGNER, {f"{key}.bpmn": text})
    assert outcome.check.ok, outcome.check.problems
    item = svc.start_case(key, GRID, {}, WORKER).open_items[0]
    assert (item.spec_id, item.lane, item.role, item.unresolved) == (
        "Task_Verify", "grid_worker,town.center_dispatcher", "grid_worker", False)
    for user in (WORKER, "lxz_pd"):
        assert [r.item.id for r in svc.inbox(user) if r.item.id == item.id] == [item.id], user
        assert svc.may_work(user, item.id), user
    assert not svc.may_work("wy_wgy1", item.id)                       # another county's grid worker
    told = {n.user_id for n in notices_of(clean_db, item.id)}
    assert {user_id(clean_db, WORKER), user_id(clean_db, "lxz_pd")} <= told
    view = work(svc, "lxz_pd", "Task_Verify", {"verified": True, "verification_note": "镇里核查"})
    assert view.open_items[0].spec_id == "Task_Record"


def test_each_candidate_group_that_names_no_role_is_reported(designer):
    text = CAMUNDA.replace('camunda:candidateGroups="网格员"', 'camunda:candidateGroups="网格员,accounting,乡镇派单员"')
    result = designer.check(DESIGNER, {"c.bpmn": text})
    assert [(p.element, p.message.startswith("candidate group 'accounting'")) for p in result.problems] == [
        ("Task_Verify", True)]
    assert "auditor" not in result.problems[0].fix          # the roles offered are the ones that work tasks
    auditors = designer.check(DESIGNER, {"c.bpmn": CAMUNDA.replace('camunda:candidateGroups="网格员"',
                                                                   'camunda:candidateGroups="督查"')})
    [problem] = auditors.problems
    assert problem.message.startswith("candidate group 'auditor'") and "的候选组“auditor”" in problem.zh


def test_a_lane_named_for_people_defers_to_the_tasks_candidate_groups(clean_db, clock):
    """A Camunda pool's lane named '现场组' (no role) around a task with candidateGroups="网格员":
    the candidate groups decide, the file deploys and the task reaches the grid worker."""
    svc = WorkflowService(clean_db)
    key = f"cam_{uuid.uuid4().hex[:8]}"
    lanes = ('<bpmn:laneSet id="ls"><bpmn:lane id="lane_people" name="现场组">'
             '<bpmn:flowNodeRef>Task_Verify</bpmn:flowNodeRef></bpmn:lane>'
             '<bpmn:lane id="lane_rest" name="其他"><bpmn:flowNodeRef>StartEvent_1</bpmn:flowNodeRef>'
             '<bpmn:flowNodeRef>Task_Record</bpmn:flowNodeRef><bpmn:flowNodeRef>Task_Town</bpmn:flowNodeRef>'
             '<bpmn:flowNodeRef>EndEvent_1</bpmn:flowNodeRef></bpmn:lane></bpmn:laneSet>')
    text = (CAMUNDA.replace('id="camunda_report"', f'id="{key}"')
            .replace('bpmnElement="camunda_report"', f'bpmnElement="{key}"')
            .replace('isExecutable="true">', 'isExecutable="true">' + lanes, 1))
    outcome = Designer(svc).deploy(DESIGNER, {f"{key}.bpmn": text})
    assert outcome.check.ok, outcome.check.problems
    item = svc.start_case(key, GRID, {}, WORKER).open_items[0]
    assert (item.spec_id, item.role, item.unresolved) == ("Task_Verify", "grid_worker", False)


def test_diff_says_which_elements_a_lane_or_a_node_gained_and_lost():
    """A task moved from one lane into another, and a flow added before an end event: each
    lane and node lists what came and went (-x, +y); a lane gaining one task read
    "flowNodeRef: '' → 'assist'", gaining two "flowNodeRef changed"."""
    hv = (ROOT / "processes" / "household_visit.bpmn").read_text(encoding="utf-8")
    moved = (hv.replace("<bpmn:flowNodeRef>assist</bpmn:flowNodeRef>", "")
             .replace("<bpmn:flowNodeRef>end_assisted</bpmn:flowNodeRef>", "")
             .replace("<bpmn:flowNodeRef>end_recorded</bpmn:flowNodeRef>",
                      "<bpmn:flowNodeRef>end_recorded</bpmn:flowNodeRef><bpmn:flowNodeRef>assist</bpmn:flowNodeRef>"
                      "<bpmn:flowNodeRef>end_assisted</bpmn:flowNodeRef>")
             .replace("<bpmn:incoming>flow_assisted</bpmn:incoming>\n    </bpmn:endEvent>",
                      "<bpmn:incoming>flow_assisted</bpmn:incoming><bpmn:incoming>flow_x</bpmn:incoming>"
                      "<bpmn:incoming>flow_y</bpmn:incoming>\n    </bpmn:endEvent>"))
    _added, _removed, changed, _layout = diff_files({"h.bpmn": hv}, {"h.bpmn": moved})
    details = {c.element: c.details for c in changed}
    assert details["lane_grid_worker"] == ["flowNodeRef: +assist, +end_assisted"]
    assert details["lane_grid_leader"] == ["flowNodeRef: -assist, -end_assisted"]
    assert details["end_assisted"] == ["incoming: +flow_x, +flow_y"]
