"""Deployment versions and validation messages (API and `gridflow` CLI)."""
import re
import uuid
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main as cli
from engine.deploy import DeployError, deploy_files, read_process_dir, validate_files
from engine.models import ProcessVersion
from engine.service import WorkflowService, _due_at
from forms import FormRegistry
from tests.conftest import FIXTURES, ROOT

LOOP = (FIXTURES / "loop.bpmn").read_text(encoding="utf-8")


def renamed_loop(key: str, task_name: str = "Progress report") -> str:
    return LOOP.replace('id="loop"', f'id="{key}"').replace('name="Progress report"', f'name="{task_name}"')


def versions(db, key):
    with db.read_session() as s:
        return list(s.scalars(select(ProcessVersion).where(ProcessVersion.process_key == key)
                              .order_by(ProcessVersion.version)))


def test_unchanged_files_create_nothing_changed_file_a_new_version(clean_db, clock, fixture_forms):
    key = f"vtest_{uuid.uuid4().hex[:8]}"
    with clean_db.unit_of_work() as s:
        first = deploy_files(s, {"v.bpmn": renamed_loop(key)}, fixture_forms.keys())
    assert [v.version for v in first.created] == [1]
    with clean_db.unit_of_work() as s:
        again = deploy_files(s, {"v.bpmn": renamed_loop(key)}, fixture_forms.keys())
    assert again.created == [] and again.unchanged == [key]

    service = WorkflowService(clean_db, forms=fixture_forms)
    old_case = service.start_case(key, "linxi-xinguang-g1", {}, "lx_wgy1")

    with clean_db.unit_of_work() as s:
        changed = deploy_files(s, {"v.bpmn": renamed_loop(key, "每周进展报告")}, fixture_forms.keys())
    assert [v.version for v in changed.created] == [2]
    new_case = service.start_case(key, "linxi-xinguang-g1", {}, "lx_wgy1")

    v1, v2 = versions(clean_db, key)
    assert old_case.case.process_version_id == v1.id and new_case.case.process_version_id == v2.id
    assert old_case.open_items[0].name == "Progress report"
    assert new_case.open_items[0].name == "每周进展报告"
    # the running case stays on v1 and finishes there
    view = service.complete_task(old_case.open_items[0].id, {"again": False}, "lx_wgy1")
    assert view.status == "completed" and view.case.process_version_id == v1.id

    # v1's files again: a rollback, v3 with v1's content, which new cases start on
    with clean_db.unit_of_work() as s:
        rolled_back = deploy_files(s, {"v.bpmn": renamed_loop(key)}, fixture_forms.keys())
    assert [v.version for v in rolled_back.created] == [3] and rolled_back.unchanged == []
    v3 = versions(clean_db, key)[-1]
    assert v3.content_hash == v1.content_hash
    assert service.start_case(key, "linxi-xinguang-g1", {}, "lx_wgy1").open_items[0].name == "Progress report"
    with clean_db.unit_of_work() as s:
        assert deploy_files(s, {"v.bpmn": renamed_loop(key)}, fixture_forms.keys()).unchanged == [key]


def test_shipped_processes_deploy_with_their_decisions(clean_db):
    shipped = versions(clean_db, "grid_matter")
    # its own file, its DMN, and the called mediation process with that process's DMN
    assert shipped and sorted(shipped[-1].files) == ["dispatch_rules.dmn", "grid_matter.bpmn", "mediation.bpmn",
                                                     "mediation_channel.dmn"]
    assert shipped[-1].properties["startRoles"] == "grid_worker"
    assert shipped[-1].properties["startForm"] == "grid_matter_report"


BAD_LANE = LOOP.replace('name="grid.grid_worker"', 'name="town.dispatcher_of_things"')
BAD_FORM = LOOP.replace('value="progress_report"', 'value="no_such_form"')
UNREACHABLE = LOOP.replace("</bpmn:process>", '<bpmn:task id="orphan" name="孤立任务"/></bpmn:process>')


def test_validate_reports_lane_with_unknown_role():
    problems = validate_files({"loop.bpmn": BAD_LANE}, {"progress_report"})
    assert [(p.file, p.element) for p in problems] == [("loop.bpmn", "report")]
    assert "town.dispatcher_of_things" in problems[0].message and "no known role" in problems[0].message
    assert "center_dispatcher" in problems[0].fix


@pytest.mark.parametrize("role", ["auditor", "designer", "admin"])
def test_validate_reports_a_lane_whose_role_works_no_tasks(role):
    """Auditors only read; designers and administrators hold their roles for the workbench:
    a task in such a lane would have nobody to work it."""
    problems = validate_files({"loop.bpmn": BAD_LANE.replace("town.dispatcher_of_things", f"county.{role}")},
                              {"progress_report"})
    assert [(p.file, p.element) for p in problems] == [("loop.bpmn", "report")]
    assert f"names the role {role}, whose holders work no tasks" in problems[0].message
    assert "center_dispatcher" in problems[0].fix and "auditor" not in problems[0].fix and "不办理任务" in problems[0].zh


def test_validate_reports_missing_form():
    problems = validate_files({"loop.bpmn": BAD_FORM}, {"progress_report"})
    assert [(p.file, p.element) for p in problems] == [("loop.bpmn", "report")]
    assert "no_such_form" in problems[0].message and "forms/no_such_form.yaml" in problems[0].fix


NOW = datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)


def with_due(due: str) -> str:
    return LOOP.replace('<spiffworkflow:property name="formKey"',
                        f'<spiffworkflow:property name="dueDate" value="{due}"/><spiffworkflow:property name="formKey"')


@pytest.mark.parametrize("due, what", [("P3天", "an ISO 8601 duration"), ("P3X", "an ISO 8601 duration"),
                                       ("P 3D", "an ISO 8601 duration"), ("3天", "a date"),
                                       ("2026-13-01", "a date"), ("add_days(deadline,", "an expression")])
def test_validate_reports_a_time_limit_the_engine_cannot_read(due, what):
    """Such a dueDate gave the tasks no due date at all, silently."""
    assert _due_at(due, {}, NOW) is None
    problems = validate_files({"loop.bpmn": with_due(due)}, {"progress_report"})
    assert [(p.file, p.element) for p in problems] == [("loop.bpmn", "report")]
    assert f"'{due}'" in problems[0].message and f"is not {what}" in problems[0].message
    assert "P3D" in problems[0].fix and "办理时限" in problems[0].zh


@pytest.mark.parametrize("due, data", [
    ("P3D", {}), ("PT12H", {}), ("p3d", {}), ("P1Y2M", {}), ("2026-12-01T18:00:00+08:00", {}),
    ("grid_days", {"grid_days": 3}), ("petition_days", {"petition_days": 60}), ("${grid_days}", {"grid_days": 3}),
    ("add_days(handle_deadline, extension_days)", {"handle_deadline": "2026-12-01", "extension_days": 30})])
def test_validate_accepts_every_time_limit_the_engine_reads(due, data):
    assert _due_at(due, data, NOW) is not None
    assert validate_files({"loop.bpmn": with_due(due)}, {"progress_report"}) == []


def with_process_properties(**props) -> str:
    lines = "".join(f'<spiffworkflow:property name="{k}" value="{v}"/>' for k, v in props.items())
    return LOOP.replace('isExecutable="true">', 'isExecutable="true"><bpmn:extensionElements><spiffworkflow:properties>'
                        f'{lines}</spiffworkflow:properties></bpmn:extensionElements>', 1)


@pytest.mark.parametrize("props, said", [
    ({"startForm": "no_such_form"}, "start form 'no_such_form' of process 'loop' does not exist"),
    ({"startRoles": "grid_worker,grid_wroker"}, "start role 'grid_wroker' of process 'loop' is not a known role"),
    ({"startRoles": "auditor"}, "start role 'auditor' of process 'loop': auditors only read cases"),
    ({"businessKeyPrefix": "lx"}, "case number prefix 'lx'"),
    ({"businessKeyPrefix": "LX-2026"}, "case number prefix 'LX-2026'"),
    ({"businessKeyPrefix": "XINFANGJU"}, "case number prefix 'XINFANGJU'"),   # 9: case_sequence.prefix holds 8
])
def test_validate_reports_process_properties_that_would_fail_every_start(props, said):
    problems = validate_files({"loop.bpmn": with_process_properties(**props)}, {"progress_report"})
    assert [(p.file, p.element) for p in problems] == [("loop.bpmn", "loop")]
    assert said in problems[0].message and problems[0].zh and problems[0].fix


def test_validate_accepts_good_process_properties():
    good = with_process_properties(startForm="progress_report", startRoles="grid_worker, mediator",
                                   businessKeyPrefix="XF2")
    assert validate_files({"loop.bpmn": good}, {"progress_report"}) == []


def test_validate_reports_unreachable_node_and_missing_decision():
    [orphan] = validate_files({"loop.bpmn": UNREACHABLE}, {"progress_report"})
    assert (orphan.element, "never be reached" in orphan.message) == ("orphan", True)
    assert re.match(r"^[\u4e00-\u9fff]+“", orphan.zh), orphan.zh   # its kind in Chinese, not userTask
    gm = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
    problems = validate_files({"grid_matter.bpmn": gm}, FormRegistry().keys())
    assert problems and any("dispatch_rules" in p.message for p in problems)
    assert all("Traceback" not in str(p) for p in problems)


def test_validate_reports_broken_xml_with_line():
    problems = validate_files({"broken.bpmn": LOOP[:400]}, set())
    assert len(problems) == 1 and problems[0].element.startswith("line ")
    assert "not well-formed" in problems[0].message


def test_a_bad_file_deploys_nothing(clean_db, fixture_forms):
    key = f"vbad_{uuid.uuid4().hex[:8]}"
    with clean_db.read_session() as s:
        before = s.scalar(select(func.count()).select_from(ProcessVersion))
    with pytest.raises(DeployError) as err:
        with clean_db.unit_of_work() as s:
            deploy_files(s, {"good.bpmn": renamed_loop(key), "bad.bpmn": BAD_LANE.replace('id="loop"', 'id="x1"')},
                         fixture_forms.keys())
    assert err.value.problems[0].file == "bad.bpmn"
    with clean_db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(ProcessVersion)) == before


def test_cli_validate_exit_codes_and_lines(tmp_path):
    bad = tmp_path / "loop.bpmn"
    bad.write_text(BAD_LANE, encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("loop.bpmn:report: lane 'town.dispatcher_of_things'")
    good = CliRunner().invoke(cli, ["validate", str(ROOT / "processes" / "grid_matter.bpmn")])
    assert good.exit_code == 0, good.output


def test_cli_scenarios_names_files_that_are_no_scenario(tmp_path):
    """GBK, broken YAML, a missing start, steps that are no list: each one FAIL line, exit 1."""
    scenario = (ROOT / "processes" / "scenarios" / "grid_matter").glob("*.yaml").__next__()
    (tmp_path / "gbk.yaml").write_bytes(scenario.read_text(encoding="utf-8").encode("gbk"))
    (tmp_path / "broken.yaml").write_text("a: [\n", encoding="utf-8")
    (tmp_path / "no_start.yaml").write_text("process: grid_matter\n", encoding="utf-8")
    (tmp_path / "steps.yaml").write_text("process: grid_matter\nstart: {as: lx_wgy1}\nsteps: 5\n", encoding="utf-8")
    out = CliRunner().invoke(cli, ["scenarios", str(tmp_path), str(scenario)])
    assert out.exit_code == 1 and "Traceback" not in out.output, out.output
    lines = out.output.splitlines()
    for name, why in (("gbk", "not UTF-8"), ("broken", "not valid YAML"), ("no_start", "needs 'process' and 'start'"),
                      ("steps", "'steps' a list of mappings")):
        assert any(line.startswith(f"FAIL {tmp_path.name}/{name} ") and why in line for line in lines), (name, lines)
    assert f"PASS grid_matter/{scenario.stem}" in out.output and "1 passed, 4 failed" in out.output


def test_cli_names_a_file_that_is_not_utf8_and_changes_nothing(tmp_path, clean_db):
    """A modeler that saved GBK: one line naming the file and the way out, never a traceback."""
    gbk = tmp_path / "grid_matter.bpmn"
    gbk.write_bytes((ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8").encode("gbk"))
    (tmp_path / "folder.bpmn").mkdir()   # a folder with a model's name is passed over
    env = {"DATABASE_URL": clean_db.url}
    with clean_db.read_session() as s:
        before = s.scalar(select(func.count()).select_from(ProcessVersion))
    for args in (["validate", str(gbk)], ["validate", str(tmp_path)], ["deploy", str(tmp_path)]):
        out = CliRunner().invoke(cli, args, env=env)
        assert out.exit_code == 1 and "Traceback" not in out.output, (args, out.output)
        assert "grid_matter.bpmn:byte " in out.output and "not UTF-8" in out.output and "iconv" in out.output
    with clean_db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(ProcessVersion)) == before
    scenarios = CliRunner().invoke(cli, ["scenarios", "--processes", str(tmp_path), "--org", str(ROOT / "demo" / "org.yaml"),
                                         str(ROOT / "processes" / "scenarios" / "grid_matter")])
    assert scenarios.exit_code == 1 and "not UTF-8" in scenarios.output and "Traceback" not in scenarios.output
    empty = CliRunner().invoke(cli, ["validate", str(tmp_path / "folder.bpmn")])
    assert empty.exit_code == 1 and "no .bpmn or .dmn files" in empty.output


# beside the checkout (/work/main) or beside the worktrees folder (/work/wt/<name>)
MIWG = next((p for p in (ROOT.parent / "shared" / "miwg", ROOT.parent.parent / "shared" / "miwg") if p.is_dir()),
            ROOT.parent / "shared" / "miwg")


def test_reference_files_are_present():
    assert len(list(MIWG.glob("*.bpmn"))) >= 20, f"expected the OMG MIWG reference files in {MIWG}"


@pytest.mark.parametrize("path", sorted(MIWG.glob("*.bpmn")), ids=lambda p: p.name)
def test_reference_files_never_crash_validation(path):
    problems = validate_files({path.name: path.read_text(encoding="utf-8")}, FormRegistry().keys())
    for p in problems:
        assert p.file and p.message and "Traceback" not in p.message


EVENT_SUBPROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:error id="err1" name="E" errorCode="E1"/>
  <bpmn:process id="esp" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="work"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>x = 1</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work"/>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end"/>
    <bpmn:subProcess id="esub" name="On trouble" triggeredByEvent="true">
      <bpmn:startEvent id="estart" isInterrupting="false"><bpmn:outgoing>g1</bpmn:outgoing>{definition}</bpmn:startEvent>
      <bpmn:scriptTask id="handler"><bpmn:incoming>g1</bpmn:incoming><bpmn:outgoing>g2</bpmn:outgoing>
        <bpmn:script>handled = True</bpmn:script></bpmn:scriptTask>
      <bpmn:endEvent id="eend"><bpmn:incoming>g2</bpmn:incoming></bpmn:endEvent>
      <bpmn:sequenceFlow id="g1" sourceRef="estart" targetRef="handler"/>
      <bpmn:sequenceFlow id="g2" sourceRef="handler" targetRef="eend"/>
    </bpmn:subProcess>
  </bpmn:process>
</bpmn:definitions>"""


@pytest.mark.parametrize("definition, kind", [
    ('<bpmn:errorEventDefinition errorRef="err1"/>', "an error"),
    ("<bpmn:escalationEventDefinition/>", "an escalation"),
    ("<bpmn:compensateEventDefinition/>", "a compensation"),
])
def test_event_subprocess_starts_the_engine_would_run_at_once_are_refused(definition, kind):
    """SpiffWorkflow 3.2 parses these as plain start events: the handler would run when the
    case starts. Refused at deploy, pointing at the start event."""
    from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
    from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
    from lxml import etree
    text = EVENT_SUBPROCESS.format(definition=definition)
    parser = SpiffBpmnParser()
    parser.add_bpmn_xml(etree.fromstring(text.encode()), filename="esp.bpmn")
    wf = BpmnWorkflow(parser.get_spec("esp"), parser.get_subprocess_specs("esp"))
    wf.do_engine_steps()
    assert wf.data.get("handled") or any(t.task_spec.bpmn_id == "handler" and t.has_state(64)
                                         for t in wf.get_tasks())  # the behaviour we guard against

    problems = validate_files({"esp.bpmn": text})
    assert [(p.file, p.element) for p in problems] == [("esp.bpmn", "estart")]
    assert f"starts on {kind} event" in problems[0].message and "boundary event" in problems[0].fix


def test_event_subprocess_with_a_timer_start_is_accepted():
    timer = ('<bpmn:timerEventDefinition><bpmn:timeDuration>"P1D"</bpmn:timeDuration>'
             '</bpmn:timerEventDefinition>')
    assert validate_files({"esp.bpmn": EVENT_SUBPROCESS.format(definition=timer)}) == []


# ------------------------------------------------------------ decision tables

GRID_MATTER = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
MEDIATION = (ROOT / "processes" / "mediation.bpmn").read_text(encoding="utf-8")
CHANNEL = (ROOT / "processes" / "mediation_channel.dmn").read_text(encoding="utf-8")
RULES = (ROOT / "processes" / "dispatch_rules.dmn").read_text(encoding="utf-8")


def grid_matter_with(rules: str) -> list:
    return validate_files({"grid_matter.bpmn": GRID_MATTER, "mediation.bpmn": MEDIATION,
                           "mediation_channel.dmn": CHANNEL, "dispatch_rules.dmn": rules}, FormRegistry().keys())


def test_shipped_decision_tables_are_valid():
    assert grid_matter_with(RULES) == []


@pytest.mark.parametrize("cell, why", [
    ('"red" ++ (', "never closed"),                        # a syntax error
    (">= ", "syntax"),                                     # an operator with nothing to compare
    ('__import__("os").getcwd()', "invalid variable name"),  # what the sandbox refuses at run time
    ("colour.__class__", "invalid attribute name"),
])
def test_a_broken_rule_cell_is_reported_on_the_cell(cell, why):
    broken = RULES.replace('<inputEntry id="rule_01_colour"><text>"red"</text>',
                           f'<inputEntry id="rule_01_colour"><text>{cell.replace("<", "&lt;")}</text>')
    assert broken != RULES
    problems = grid_matter_with(broken)
    assert [(p.file, p.element) for p in problems] == [("dispatch_rules.dmn", "rule_01_colour")]
    assert "rule 1, input '风险等级颜色'" in problems[0].message and why in problems[0].message
    assert "- for any value" in problems[0].fix


@pytest.mark.parametrize("cell", ['"red"', '> 2', 'in ["red", "orange"]', 'not in ["blue"]',
                                  '? in ["red"] or ? == "orange"', '"why?"', "-", ""])
def test_valid_rule_cells_pass(cell):
    changed = RULES.replace('<inputEntry id="rule_01_colour"><text>"red"</text>',
                            f'<inputEntry id="rule_01_colour"><text>{cell}</text>')
    assert grid_matter_with(changed) == []


def test_broken_input_expression_and_output_cell_are_reported():
    broken = (RULES.replace("<text>category</text>", "<text>category +</text>", 1)
              .replace('<outputEntry id="rule_01_level"><text>"town"</text>',
                       '<outputEntry id="rule_01_level"><text>case.__dict__</text>'))
    problems = grid_matter_with(broken)
    elements = {p.element: p for p in problems}
    assert set(elements) == {"input_category_expr", "rule_01_level"}, problems
    assert "input '事项类别'" in elements["input_category_expr"].message
    assert "rule 1, output" in elements["rule_01_level"].message
    # the input's cells are not checked against a broken input: one finding, not one per rule
    assert not any(p.element.endswith("_category") for p in problems)


@pytest.mark.parametrize("value, flagged", [('"sifasou"', True), ('"Sifasuo"', True), ('"sifasuo"', False),
                                            ('""', False), ("None", False), ('"si" + "fasuo"', False)])
def test_a_department_output_that_is_no_department_type_is_reported_on_the_cell(value, flagged):
    """The lanes of department tasks read `department`: a typo would leave every such task
    without a holder. A plain value is checked; an expression is not judged."""
    shipped = '<outputEntry id="rule_01_department"><text>"sifasuo"</text>'
    assert shipped in RULES
    changed = RULES.replace(shipped, f'<outputEntry id="rule_01_department"><text>{value}</text>')
    problems = grid_matter_with(changed)
    if not flagged:
        assert problems == []
        return
    assert [(p.file, p.element) for p in problems] == [("dispatch_rules.dmn", "rule_01_department")]
    assert f"rule 1, output 'department': {value.replace(chr(34), chr(39))} is no department type" \
        in problems[0].message
    assert "sifasuo" in problems[0].fix and "不是部门类型" in problems[0].text("zh")[0]


def test_a_broken_decision_deploys_nothing(clean_db):
    broken = RULES.replace('<text>"red"</text>', '<text>"red" ++ (</text>', 1)
    with clean_db.read_session() as s:
        before = s.scalar(select(func.count()).select_from(ProcessVersion))
    with pytest.raises(DeployError) as err:
        with clean_db.unit_of_work() as s:
            deploy_files(s, {"grid_matter.bpmn": GRID_MATTER, "mediation.bpmn": MEDIATION,
                             "mediation_channel.dmn": CHANNEL, "dispatch_rules.dmn": broken},
                         FormRegistry().keys())
    assert [p.element for p in err.value.problems] == ["rule_01_colour"]
    with clean_db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(ProcessVersion)) == before


def test_every_finding_of_our_own_checks_has_its_chinese_for_the_designer():
    """The designer's pages show problems in Chinese (Problem.text("zh")); the CLI keeps English."""
    broken_rules = RULES.replace('<text>"red"</text>', '<text>"red" ++ (</text>', 1).replace(
        "<text>category</text>", "<text>category +</text>", 1)
    findings = (validate_files({"loop.bpmn": BAD_LANE}, {"progress_report"})
                + validate_files({"loop.bpmn": BAD_FORM}, {"progress_report"})
                + validate_files({"loop.bpmn": UNREACHABLE}, {"progress_report"})
                + validate_files({"broken.bpmn": LOOP[:400]}, set())
                + grid_matter_with(broken_rules))
    assert len(findings) == 6
    for p in findings:
        message, fix = p.text("zh")
        assert p.zh and p.fix_zh and any("\u4e00" <= ch <= "\u9fff" for ch in message + fix), p
        assert p.text("en") == (p.message, p.fix)


# ---------------------------------------------------------------- the dashboard's elements

def grid_matter_renamed(old: str, new: str) -> str:
    """grid_matter.bpmn with the element `old` given the id `new` wherever the id is used
    (its form key, a value of its own, stays)."""
    text = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
    for before, after in ((f'id="{old}"', f'id="{new}"'), (f">{old}<", f">{new}<"),
                          (f'Ref="{old}"', f'Ref="{new}"'), (f'bpmnElement="{old}"', f'bpmnElement="{new}"')):
        text = text.replace(before, after)
    return text


def test_the_shipped_processes_hold_every_element_the_dashboard_reads():
    from engine import metrics
    from engine.notes import dashboard_notes
    read = {element for elements in metrics.DASHBOARD_ELEMENTS.values() for element in elements}
    # every id the figures name is in the contract the deployment checks
    named = (set(metrics.VERIFY_TASKS) | set(metrics.REWORK_STEPS) | set(metrics.FOLLOW_UP_TASKS)
             | set(metrics.VISIT_TASKS) | set(metrics.ESCALATION_STEPS) | set(metrics.SUPERVISION_TASKS)
             | set(metrics.PETITION_TASKS) | {metrics.GRID_START_TASK})
    assert named <= read, named - read
    assert dashboard_notes(read_process_dir(ROOT / "processes")) == []


def test_every_case_data_key_in_the_dashboard_contract_feeds_a_case_column():
    """The keys `DASHBOARD_DATA` names are the ones engine/case_facts.py copies into the
    columns the figures aggregate: a key that fed nothing would make its notes false alarms."""
    from datetime import datetime, timezone

    from engine import case_facts, metrics
    from engine.models import Case
    columns = ("due_at", "resolved_level", "satisfaction", "outcome")

    def facts(summary):
        case = Case(created_at=datetime(2026, 3, 2, tzinfo=timezone.utc), grid_path="/1/2/", summary=summary)
        case_facts.fill(case)
        return tuple(getattr(case, c) for c in columns)

    # an escalated grid matter (to the city, still open there) with every key set: leaving
    # out any one of them changes what the figures aggregate
    escalated = {"deadline_days": 5, "handling_level": "grid", "current_level": "city", "town_days": 10,
                 "county_days": 20, "city_days": 30, "satisfaction": "satisfied", "outcome": "closed"}
    resolved = {**escalated, "resolved_level": "city"}
    keys = {key for data in metrics.DASHBOARD_DATA.values() for key in data}
    assert keys <= resolved.keys(), keys - resolved.keys()
    for key in keys:
        case = resolved if key == "resolved_level" else escalated
        assert facts({k: v for k, v in case.items() if k != key}) != facts(case), key


def deploys_with_notes_and_validates(db, tmp_path, files, notes):
    """`files` deploy (in a transaction rolled back: the other tests run the shipped
    grid_matter) a new grid_matter with `notes`; the CLI's validate of its grid_matter.bpmn,
    beside the files it calls, exits 0. Returns what the CLI printed."""
    shipped = [v.id for v in versions(db, "grid_matter")]
    session = db.Session()
    try:
        result = deploy_files(session, files, FormRegistry().keys(), actor="tests")
        assert [v.process_key for v in result.created] == ["grid_matter"]
        assert [n for n in result.notes if n in notes] == notes   # (with what else the change broke)
    finally:
        session.rollback()
        session.close()
    assert [v.id for v in versions(db, "grid_matter")] == shipped
    for name in ("grid_matter.bpmn", "dispatch_rules.dmn", "mediation.bpmn", "mediation_channel.dmn"):
        (tmp_path / name).write_text(files[name], encoding="utf-8")
    out = CliRunner().invoke(cli, ["validate", str(tmp_path / "grid_matter.bpmn")])
    assert out.exit_code == 0, out.output
    return out.output


def _processes_with(**changes):
    files = read_process_dir(ROOT / "processes")
    for name, (before, after) in changes.items():
        name = name.replace("_bpmn", ".bpmn").replace("_dmn", ".dmn")
        assert before in files[name], (name, before)
        files[name] = files[name].replace(before, after)
    return files


def test_case_data_the_dashboard_reads_no_longer_set_is_a_note_not_a_refusal(clean_db, tmp_path):
    """A grid matter version whose scripts no longer set `resolved_level` still deploys, with
    a note naming the key, the figure and how to keep it; the CLI prints it and exits 0."""
    from engine.notes import dashboard_notes
    files = _processes_with(grid_matter_bpmn=("resolved_level = ", "where_resolved = "))
    assert validate_files(files, FormRegistry().keys()) == []
    notes = dashboard_notes(files)
    assert [(n.file, n.element) for n in notes] == [("grid_matter.bpmn", "grid_matter")]
    assert "'resolved_level'" in notes[0].message and "小事不出格" in notes[0].message
    assert "a script, a decision's output or a form field" in notes[0].fix
    assert "化解层级" in notes[0].text("zh")[0] and "resolved_level" in notes[0].text("zh")[1]
    printed = deploys_with_notes_and_validates(clean_db, tmp_path, files, notes)
    assert "note: grid_matter.bpmn:grid_matter: the dashboard reads the case data 'resolved_level'" in printed
    # beside a problem the CLI prints the problem only, as the designer does: notes are about
    # a version that could be deployed
    (tmp_path / "grid_matter.bpmn").write_text(files["grid_matter.bpmn"].replace(
        'name="网格长 (grid.grid_leader)"', 'name="网格长 (grid.nobody)"'), encoding="utf-8")
    out = CliRunner().invoke(cli, ["validate", str(tmp_path / "grid_matter.bpmn")])
    assert out.exit_code == 1, out.output
    assert "grid_matter.bpmn:micro_mediation: lane '网格长 (grid.nobody)'" in out.output
    assert "note:" not in out.output


def test_case_data_is_set_by_scripts_decisions_and_forms_and_a_called_process_gives_back_its_outputs_only():
    from dataclasses import replace

    from engine.notes import dashboard_notes

    def unset(files, forms=None):
        return [n.message.split("'")[1] for n in dashboard_notes(files, forms=forms)]

    # a decision's output: the dispatch rules' deadline_days renamed
    assert unset(_processes_with(dispatch_rules_dmn=('name="deadline_days"', 'name="days_allowed"'))) \
        == ["deadline_days"]
    # a form's field: the satisfaction visit's form without its `satisfaction` field

    class Forms:
        def __init__(self, drop=None, missing=None):
            self.shipped, self.drop, self.missing = FormRegistry(), drop, missing

        def get(self, key):
            form = self.shipped.get(key)
            if key == self.missing:
                return None
            if key == self.drop and form is not None:
                form = replace(form, fields=[f for f in form.fields if f.name != self.drop])
            return form
    shipped = read_process_dir(ROOT / "processes")
    assert unset(shipped, Forms()) == []
    assert unset(shipped, Forms(drop="satisfaction")) == ["satisfaction"]
    # a form that cannot be read: it may set anything, so nothing is noted
    assert unset(_processes_with(grid_matter_bpmn=("resolved_level = ", "where_resolved = ")),
                 Forms(missing="satisfaction")) == []
    # a petition whose own scripts no longer set `outcome`: the mediation it calls sets an
    # `outcome` of its own, but gives back only its data outputs (mediation_outcome …)
    assert unset(_processes_with(petition_bpmn=("outcome = ", "result = "))) == ["outcome"]
    # a process that declares data outputs itself (as one meant to be called does) still sets
    # all its own scripts, decisions and forms set
    outputs = ('<bpmn:ioSpecification id="io_grid_matter"><bpmn:dataOutput id="resolution" name="r"/>'
               '<bpmn:inputSet id="in_none"/><bpmn:outputSet id="out_resolution">'
               '<bpmn:dataOutputRefs>resolution</bpmn:dataOutputRefs></bpmn:outputSet></bpmn:ioSpecification>')
    declaring = dict(shipped)
    declaring["grid_matter.bpmn"] = shipped["grid_matter.bpmn"].replace("<bpmn:laneSet", outputs + "<bpmn:laneSet", 1)
    assert validate_files(declaring, FormRegistry().keys()) == []
    assert unset(declaring) == []


def _without_rules(text: str, *rule_ids: str) -> str:
    for rule_id in rule_ids:
        text, n = re.subn(rf'<rule id="{rule_id}">.*?</rule>\s*', "", text, flags=re.DOTALL)
        assert n == 1, rule_id
    return text


def test_a_decision_without_a_rule_for_some_form_values_is_a_note_not_a_refusal(clean_db, tmp_path):
    """The dispatch rules without their rule for 其他 (other, any colour) and their default
    (rules 24 and 25): an 'other' matter reported blue or yellow gets no handling level, and
    the report would fail on submission. It deploys, with a note on the decision naming the
    combinations and the fix; the CLI prints it for the DMN file and exits 0."""
    from engine.notes import decision_gap_notes
    shipped = read_process_dir(ROOT / "processes")
    assert decision_gap_notes(shipped) == []
    files = {**shipped, "dispatch_rules.dmn": _without_rules(shipped["dispatch_rules.dmn"], "rule_24", "rule_25")}
    assert validate_files(files, FormRegistry().keys()) == []
    notes = decision_gap_notes(files)
    assert [(n.file, n.element) for n in notes] == [("dispatch_rules.dmn", "dispatch_rules")]
    message, fix = notes[0].text("en")
    assert "has no rule for 2 of the 28 combinations" in message
    assert '(category = "other", colour = "blue"; category = "other", colour = "yellow")' in message
    assert "handling_level, department" in message and "a last rule with - in every input" in fix
    message_zh, fix_zh = notes[0].text("zh")
    assert "决策“分级分类派单规则”对表单可选值的 28 种组合中的 2 种没有匹配的规则" in message_zh and "兜底规则" in fix_zh

    session = clean_db.Session()
    try:   # rolled back: the other tests run the shipped dispatch rules
        result = deploy_files(session, files, FormRegistry().keys(), actor="tests")
        assert sorted(v.process_key for v in result.created) == ["grid_matter"] and notes[0] in result.notes
    finally:
        session.rollback()
        session.close()
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    out = CliRunner().invoke(cli, ["validate", str(tmp_path / "dispatch_rules.dmn")])
    assert out.exit_code == 0, out.output
    assert "note: dispatch_rules.dmn:dispatch_rules: decision '分级分类派单规则' has no rule for 2 of" in out.output

    # the default rule alone covers what rule 24 did: nothing to note
    assert decision_gap_notes({**shipped, "dispatch_rules.dmn": _without_rules(
        shipped["dispatch_rules.dmn"], "rule_24")}) == []
    # the petition routing without its default and its rule for 民间纠纷: that subject of
    # the register form's is the one left without a rule
    routing = _without_rules(shipped["petition_routing.dmn"], "rule_10", "rule_11")
    [subjects] = [f.choice_values for f in FormRegistry().get("petition_register").fields if f.name == "subject"]
    [note] = decision_gap_notes({**shipped, "petition_routing.dmn": routing})
    assert note.element == "petition_routing"
    assert f'has no rule for 1 of the {len(subjects)} combinations of the values the forms offer (subject = "civil_dispute")' \
        in note.message
    # a table with an input no form offers fixed values for (an amount) is not judged: the
    # mediation channel without its default rule says nothing
    assert decision_gap_notes({**shipped, "mediation_channel.dmn": _without_rules(
        shipped["mediation_channel.dmn"], "rule_06")}) == []


def test_a_gateway_with_no_way_out_for_some_form_values_is_a_note_not_a_refusal():
    """受理决定? without its default flow, its third flow testing a value the form does not
    offer ("reject" for "not_accept"): a petition not accepted would stop at the gateway."""
    from engine.notes import gateway_gap_notes
    shipped = read_process_dir(ROOT / "processes")
    assert gateway_gap_notes(shipped) == []
    flow = '<bpmn:sequenceFlow id="flow_not_accept" name="不予受理" sourceRef="gw_acceptance" targetRef="mark_not_accepted" />'
    tested = flow.replace(" />", '><bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">acceptance == '
                                 '"reject"</bpmn:conditionExpression></bpmn:sequenceFlow>')
    files = _processes_with(petition_bpmn=(' default="flow_not_accept"', ""))
    files["petition.bpmn"] = files["petition.bpmn"].replace(flow, tested)
    assert validate_files(files, FormRegistry().keys()) == []
    [note] = gateway_gap_notes(files)
    assert (note.file, note.element) == ("petition.bpmn", "gw_acceptance")
    assert ("gateway '受理决定?' has no way out for 1 of the 3 combinations of the values the forms offer "
            '(acceptance = "not_accept") and no default flow') in note.message
    assert "make one outgoing flow the default" in note.fix and "没有可走的出口" in note.text("zh")[0]
    # the same flow testing the form's own value: every choice has a way out
    files["petition.bpmn"] = files["petition.bpmn"].replace('acceptance == "reject"', 'acceptance == "not_accept"')
    assert gateway_gap_notes(files) == []


def test_a_call_activity_whose_callee_needs_a_data_input_the_caller_never_sets_is_a_note():
    """Mediation asking for `complex_cases` (its data input renamed) from the grid matter and
    the petition that call it, neither of which sets it: SpiffWorkflow stops such a call."""
    from engine.notes import call_input_notes
    shipped = read_process_dir(ROOT / "processes")
    assert call_input_notes(shipped) == []
    files = {**shipped, "mediation.bpmn": shipped["mediation.bpmn"].replace("complex_case", "complex_cases")}
    assert validate_files(files, FormRegistry().keys()) == []
    notes = call_input_notes(files)
    assert [(n.file, n.element) for n in notes] == [("grid_matter.bpmn", "mediation"), ("petition.bpmn", "mediation")]
    assert "calls 'mediation', which needs the data input(s) 'complex_cases'; nothing in 'grid_matter' sets them" \
        in notes[0].message
    assert "take them out of the called process's data inputs" in notes[0].fix and "调用会出错停下" in notes[0].zh


def test_a_condition_or_timer_reading_a_name_nothing_sets_is_a_note_not_a_refusal(tmp_path):
    """A misspelt name in a gateway's condition passes the compile checks but stops the first
    case that reaches it: it is noted on its element, in both languages; the CLI prints it. A
    timer written as Camunda Modeler writes it (ISO 8601 without quotes) is sure to fail: refused."""
    from engine.deploy import _analyse, _closure_files
    from engine.notes import unset_name_notes, version_notes
    shipped = read_process_dir(ROOT / "processes")
    assert version_notes(shipped) == []
    analysis = _analyse(shipped)
    for pid in analysis.executable:   # as the designer checks them: each with its own files
        assert unset_name_notes(_closure_files(analysis, pid, shipped)) == [], pid

    files = _processes_with(grid_matter_bpmn=('handling_level == "grid"', 'handlinglevel == "grid"'))
    assert validate_files(files, FormRegistry().keys()) == []
    [note] = unset_name_notes(files)
    assert (note.file, note.element) == ("grid_matter.bpmn", "flow_to_grid")
    assert "the condition 'handlinglevel == \"grid\"' of '格内处置' reads 'handlinglevel'" in note.message
    assert "correct the name" in note.fix and "读取 'handlinglevel'" in note.text("zh")[0]

    # a timer as Camunda Modeler writes it fails every case that reaches it: a problem, not a note
    timer = _processes_with(grid_matter_bpmn=('>f"P{grid_days}D"</bpmn:timeDuration>', '>P7D</bpmn:timeDuration>'))
    assert unset_name_notes(timer) == []
    [problem] = validate_files(timer, FormRegistry().keys())
    assert problem.element == "grid_overdue" and "ISO 8601 text without quotes" in problem.message
    assert problem.fix.startswith('write it in quotes: "P7D"') and "未加引号" in problem.text("zh")[0]

    # a decision's input column that tests a name no form has (colour spelt color)
    color = _processes_with(dispatch_rules_dmn=("<text>colour</text>", "<text>color</text>"))
    [note] = unset_name_notes(color)
    assert (note.file, note.element) == ("dispatch_rules.dmn", "input_colour")
    assert "decision '分级分类派单规则', input '风险等级颜色': 'color' reads 'color'" in note.message
    assert "第一个使用该决策的案件会出错停下" in note.text("zh")[0]

    # what a message brings in counts as set
    reply = _processes_with(grid_matter_bpmn=('handling_level == "grid"', 'reply == "grid"'))
    assert [n.element for n in unset_name_notes(reply)] == ["flow_to_grid"]
    reply["grid_matter.bpmn"] = reply["grid_matter.bpmn"].replace(
        "</bpmn:definitions>", '<bpmn:message id="m_reply" name="reply"><bpmn:extensionElements>'
        "<spiffworkflow:messageVariable>reply</spiffworkflow:messageVariable></bpmn:extensionElements>"
        "</bpmn:message></bpmn:definitions>")
    assert unset_name_notes(reply) == []
    # a name read only where `dir()` says it is set
    guarded = _processes_with(grid_matter_bpmn=('handling_level == "grid"',
                                                '"reply" in dir() and reply == "grid"'))
    assert unset_name_notes(guarded) == []

    # what a condition binds itself, and what a scheduled start gives, are no unset names
    bound = _processes_with(grid_matter_bpmn=("len(departments) &gt; 0",
                                              'any(d != "" for d in departments) and (lambda n: n)(1) &gt; 0'))
    assert unset_name_notes(bound) == []

    for name in ("grid_matter.bpmn", "dispatch_rules.dmn", "mediation.bpmn", "mediation_channel.dmn"):
        (tmp_path / name).write_text(files[name], encoding="utf-8")
    out = CliRunner().invoke(cli, ["validate", str(tmp_path / "grid_matter.bpmn")])
    assert out.exit_code == 0, out.output
    assert "note: grid_matter.bpmn:flow_to_grid: the condition" in out.output


def test_an_element_the_dashboard_reads_renamed_is_a_note_not_a_refusal(clean_db, tmp_path):
    from engine.notes import dashboard_notes
    files = {**read_process_dir(ROOT / "processes"),
             "grid_matter.bpmn": grid_matter_renamed("micro_mediation", "grid_mediation")}
    assert validate_files(files, FormRegistry().keys()) == []
    notes = dashboard_notes(files)
    assert [(n.file, n.element) for n in notes] == [("grid_matter.bpmn", "micro_mediation")]
    assert "escalations into the town" in notes[0].message and "keep the element's id" in notes[0].fix
    assert "升级到镇" in notes[0].text("zh")[0] and "保留其 id" in notes[0].text("zh")[1]
    # the CLI: a note line, and the exit status is the problems' (none)
    printed = deploys_with_notes_and_validates(clean_db, tmp_path, files, notes)
    assert "note: grid_matter.bpmn:micro_mediation: the dashboard counts the element 'micro_mediation'" in printed
    # XML allows single quotes: a process written so is read as well
    single = files["grid_matter.bpmn"].replace('id="grid_matter"', "id='grid_matter'")
    assert [n.element for n in dashboard_notes({"grid_matter.bpmn": single})] == ["micro_mediation"]
    # an element it does not read renamed: no note
    quiet = {**files, "grid_matter.bpmn": grid_matter_renamed("grid_reminder", "grid_reminder_80")}
    assert dashboard_notes(quiet) == []


def test_an_assignee_or_candidate_users_that_can_name_nobody_is_a_note_not_a_refusal():
    """A misspelt case field in `assignee` (`${owning_leadr}`) or `candidateUsers`, or a bare
    name that is neither a field nor, by the accounts given, a user: every case's task would go
    to the lane's holders instead of whom the designer meant. Noted on the task, in both
    languages; a bare name is judged against accounts only when they are at hand."""
    from engine.notes import assignee_notes, version_notes
    shipped = read_process_dir(ROOT / "processes")
    nobody = lambda names: set()   # noqa: E731 -- no account has any name
    assert assignee_notes(shipped, find_users=nobody) == []   # every shipped assignee reads a field set earlier

    misspelt = _processes_with(leader_case_bpmn=('value="owning_leader" />', 'value="${owning_leadr}" />'))
    assert validate_files(misspelt, FormRegistry().keys()) == []
    note, _signoff = notes = assignee_notes(misspelt)   # both of the leader's tasks
    assert [(n.file, n.element) for n in notes] == [("leader_case.bpmn", "leader_study"), ("leader_case.bpmn", "signoff")]
    assert "reads the case field 'owning_leadr', which nothing in this version sets" in note.message
    assert "goes to its lane's holders instead" in note.message and "correct the name" in note.fix
    assert "改由泳道对应的人员办理" in note.text("zh")[0]
    assert note in version_notes(misspelt)

    listed = _processes_with(leader_case_bpmn=('value="owning_leader" />',
                                               'value="owning_leader" /><spiffworkflow:property '
                                               'name="candidateUsers" value="co_leaders" />'))
    note, _signoff = assignee_notes(listed)
    assert note.element == "leader_study" and "the candidateUsers of '包案领导研究案情' reads the case field " \
        "'co_leaders'" in note.message

    named = _processes_with(leader_case_bpmn=('value="owning_leader" />', 'value="wang_wu" />'))
    assert assignee_notes(named) == []   # no accounts at hand: a bare name is not judged
    note, _signoff = assignee_notes(named, find_users=nobody)
    assert note.element == "leader_study"
    assert "is 'wang_wu', which is neither a case field this version sets nor an active account" in note.message
    assert "name an active official's username" in note.fix and "在用的账号" in note.text("zh")[0]
    asked = []
    assert assignee_notes(named, find_users=lambda names: asked.append(names) or {"wang_wu"}) == []
    assert asked == [{"wang_wu"}]


@pytest.mark.parametrize("kind, text, said", [
    ("timeDuration", "P3X", "'P3X', which is not an ISO 8601 duration"),
    ("timeDuration", "R/P1D", "'R/P1D', which is not an ISO 8601 duration"),   # a cycle kept as a duration
    ("timeDuration", "", "'', a duration of nothing: it fires the moment a case gets there"),
    ("timeCycle", "R/P1X", "'R/P1X', which is not an ISO 8601 cycle"),
])
def test_validate_reports_a_timer_text_its_kind_cannot_read(kind, text, said):
    """A quoted timer SpiffWorkflow cannot parse passed the check and stopped every case at it."""
    import re
    files = read_process_dir(ROOT / "processes")
    files["grid_matter.bpmn"] = re.sub(rf"(<bpmn:{kind}[^>]*>)[^<]*(</bpmn:{kind}>)",
                                       lambda m: f"{m.group(1)}&quot;{text}&quot;{m.group(2)}",
                                       files["grid_matter.bpmn"], count=1)
    problems = validate_files(files, FormRegistry().keys())
    assert [p.file for p in problems] == ["grid_matter.bpmn"] and said in problems[0].message, problems
    assert problems[0].element in ("grid_reminder", "follow_up_daily") and "ISO 8601" in problems[0].fix_zh
    assert validate_files(read_process_dir(ROOT / "processes"), FormRegistry().keys()) == []


def test_a_time_limit_reading_a_field_nothing_sets_is_a_note():
    """dueDate="no_such_field_days": every such task silently had no due date."""
    from engine.notes import unset_name_notes
    files = _processes_with(grid_matter_bpmn=('name="dueDate" value="grid_days"',
                                              'name="dueDate" value="no_such_field_days"'))
    assert validate_files(files, FormRegistry().keys()) == []
    [note] = [n for n in unset_name_notes(files) if "time limit" in n.message]
    assert (note.file, note.element) == ("grid_matter.bpmn", "micro_mediation")
    assert "reads 'no_such_field_days', which nothing in this version sets" in note.message
    assert "never overdue" in note.message and "永远不会超期" in note.zh


def test_a_condition_with_a_syntax_error_says_so_and_how_to_write_it():
    """Was reported as 'not allowed' with the sandbox's rules as the fix."""
    files = _processes_with(grid_matter_bpmn=('handling_level == "grid"', 'handling_level == = "grid"'))
    problems = validate_files(files, FormRegistry().keys())
    assert len(problems) == 1 and "cannot be read" in problems[0].message and "SyntaxError" in problems[0].message
    assert "== to compare" in problems[0].fix and "有语法错误" in problems[0].zh and "import" not in problems[0].fix
    assert (problems[0].file, problems[0].element) == ("grid_matter.bpmn", "flow_to_grid")   # the flow, not its gateway


def test_an_id_two_elements_carry_is_named_with_both_elements(clean_db):
    """SpiffWorkflow said 'we found two items, perhaps a form has the same ID?' on another
    element (the gateway before); a designer needs the id and the elements that share it."""
    files = _processes_with(household_visit_bpmn=('<bpmn:endEvent id="end_recorded"', '<bpmn:endEvent id="assist"'))
    problems = validate_files(files, FormRegistry().keys())
    assert [(p.file, p.element) for p in problems] == [("household_visit.bpmn", "assist")]
    assert "carried by 2 elements (endEvent '走访已记录', userTask '协调帮扶')" in problems[0].message
    assert "结束事件“走访已记录”、用户任务“协调帮扶”" in problems[0].zh and problems[0].fix_zh
    with pytest.raises(DeployError):
        with clean_db.unit_of_work() as session:
            deploy_files(session, files, FormRegistry().keys(), actor="tests")


@pytest.mark.parametrize("tag", ["manualTask", "task"])
def test_a_task_nobody_is_given_is_refused(tag):
    """A plain or manual task deployed: SpiffWorkflow waits on it, no work item is made, and
    every case reaching it stopped for good (协调帮扶 as a manualTask)."""
    files = _processes_with(household_visit_bpmn=('<bpmn:userTask id="assist" name="协调帮扶">',
                                                  f'<bpmn:{tag} id="assist" name="协调帮扶">'))
    files["household_visit.bpmn"] = files["household_visit.bpmn"].replace(
        "</bpmn:userTask>", f"</bpmn:{tag}>")
    problems = validate_files(files, FormRegistry().keys())
    assert [(p.file, p.element) for p in problems] == [("household_visit.bpmn", "assist")]
    assert "is given to nobody" in problems[0].message and "make it a user task" in problems[0].fix
    assert "不会交给任何人办理" in problems[0].zh


def test_a_rule_missing_a_cell_is_refused_not_read_into_the_wrong_columns():
    """SpiffWorkflow reads a rule's cells by position: one missing output cell sent a red
    environment matter to department '1', every later time limit shifted one column."""
    files = _processes_with(dispatch_rules_dmn=('<outputEntry id="rule_03_department"><text>"chengguan"</text></outputEntry>', ""))
    problems = validate_files(files, FormRegistry().keys())
    assert [(p.file, p.element) for p in problems] == [("dispatch_rules.dmn", "rule_03")]
    assert "rule 3 has 8 output cells for 9 output columns" in problems[0].message
    assert "第 3 条规则有 8 个输出单元格，而表有 9 个输出列" in problems[0].zh


def test_a_flow_to_nothing_is_named_on_the_flow():
    """Was SpiffWorkflow's 'we found two items, perhaps a form has the same ID? (end_nowhere)' on the task before."""
    files = _processes_with(household_visit_bpmn=('targetRef="end_assisted"', 'targetRef="end_nowhere"'))
    problems = validate_files(files, FormRegistry().keys())
    flow = next(p for p in problems if p.element == "flow_assisted")
    assert "leads to 'end_nowhere', which is no element of its process" in flow.message
    assert "终点“end_nowhere”不是本流程中的元素" in flow.zh
    assert not [p for p in problems if "two items" in p.message]


def test_a_broken_output_cell_is_one_problem_named_on_the_cell():
    """Was two: the parser's 'Malformed Output Expression' in English and our own on the cell."""
    files = _processes_with(dispatch_rules_dmn=('<outputEntry id="rule_02_deadline"><text>1</text>',
                                                '<outputEntry id="rule_02_deadline"><text>1 +</text>'))
    problems = validate_files(files, FormRegistry().keys())
    assert [(p.file, p.element) for p in problems] == [("dispatch_rules.dmn", "rule_02_deadline")]
    assert "rule 2" in problems[0].message and "第 2 条规则" in problems[0].zh


def test_a_call_to_a_process_that_does_not_exist_is_named_on_the_call_activity():
    files = _processes_with(grid_matter_bpmn=('calledElement="mediation"', 'calledElement="mediatio"'))
    problems = validate_files(files, FormRegistry().keys())
    assert [(p.file, p.element) for p in problems] == [("grid_matter.bpmn", "mediation")]
    assert "'mediatio' was not found" in problems[0].message


def test_a_script_reading_a_name_nothing_sets_is_a_note_on_its_script_task():
    """A script task whose script reads a misspelt name (grid_dayz for grid_days) passed every
    check and stopped each case that reached it (NameError): noted on the script task like a
    condition. What a script binds itself, or reads only where `dir()` says it is set, is no
    unset name."""
    from engine.notes import unset_name_notes
    files = _processes_with(grid_matter_bpmn=("网格超过{grid_days}天未化解", "网格超过{grid_dayz}天未化解"))
    assert validate_files(files, FormRegistry().keys()) == []
    [note] = unset_name_notes(files)
    assert (note.file, note.element) == ("grid_matter.bpmn", "escalate_grid_overdue")
    assert "the script 'escalation_reason = f\"网格超过{grid_dayz}天未化解" in note.message
    assert "reads 'grid_dayz', which nothing in this version sets" in note.message
    assert "“超时上报镇级”的脚本" in note.text("zh")[0] and "读取 'grid_dayz'" in note.text("zh")[0]

    bound = _processes_with(grid_matter_bpmn=(
        '<bpmn:script>grid_reminded = True</bpmn:script>',
        '<bpmn:script>n = 0\nfor d in [1, 2]:\n    n = n + d\ntry:\n    x = int("1")\nexcept ValueError as e:\n'
        '    x = str(e)\nlate = reply if "reply" in dir() else None\ngrid_reminded = n &gt; 0</bpmn:script>'))
    assert validate_files(bound, FormRegistry().keys()) == []
    assert unset_name_notes(bound) == []


def test_a_condition_comparing_a_choice_with_a_value_no_form_offers_is_a_note():
    """受理决定's flow 转送 testing "forwarded" where the form offers "forward": the gateway has a
    default flow, so nothing stopped, and every petition to forward took the default way,
    silently. Noted on the flow with the values the forms offer; a yes/no field compared with
    text likewise. A name a script or decision also sets (handling_level) is not judged."""
    from engine.notes import choice_value_notes, version_notes
    shipped = read_process_dir(ROOT / "processes")
    assert choice_value_notes(shipped) == []
    files = _processes_with(petition_bpmn=('acceptance == "forward"', 'acceptance == "forwarded"'))
    assert validate_files(files, FormRegistry().keys()) == []
    [note] = choice_value_notes(files)
    assert (note.file, note.element) == ("petition.bpmn", "flow_forward")
    assert ("the condition 'acceptance == \"forwarded\"' of '转送' compares acceptance with \"forwarded\", which is "
            'none of the values the forms offer for it ("accept", "forward", "not_accept")') in note.message
    assert note.fix.endswith('"accept", "forward", "not_accept"') and "永远不成立" in note.text("zh")[0]
    assert note in version_notes(files)
    # `in` lists and the value on the left are read too; the form's own values are no note
    listed = _processes_with(petition_bpmn=('acceptance == "forward"', '"forward" == acceptance or acceptance in '
                                                                       '("accept", "fwd")'))
    assert [n.element for n in choice_value_notes(listed)] == ["flow_forward"] and "\"fwd\"" in \
        choice_value_notes(listed)[0].message
    # a yes/no field compared with text
    yes = _processes_with(grid_matter_bpmn=("verified == True", 'verified == "yes"'))
    assert {n.element for n in choice_value_notes(yes)} and all("(True, False)" in n.message
                                                              for n in choice_value_notes(yes))
    # a name a decision sets as well as a form: its values are not the forms' to judge
    level = _processes_with(grid_matter_bpmn=('handling_level == "grid"', 'handling_level == "gird"'))
    assert choice_value_notes(level) == []


def test_an_id_the_modeler_cannot_read_is_a_problem_naming_the_element():
    """协调帮扶 given the id 帮扶 (and a flow the id 1st): SpiffWorkflow runs it, so it was checked
    and deployed, but bpmn-js reads only ids of English letters, digits, _ - . ("illegal ID"):
    the modeler and the case page's diagram left the task out, and saving it in the modeler
    lost it. Refused per element, in both languages; nothing is stored."""
    files = _processes_with(household_visit_bpmn=('"assist"', '"帮扶"'))
    files["household_visit.bpmn"] = (files["household_visit.bpmn"].replace(">assist<", ">帮扶<")
                                     .replace('"flow_assisted"', '"1st"').replace(">flow_assisted<", ">1st<"))
    problems = validate_files(files, FormRegistry().keys())
    assert [(p.file, p.element) for p in problems] == [("household_visit.bpmn", "帮扶"), ("household_visit.bpmn", "1st")]
    assert problems[0].message.startswith("the id '帮扶' of userTask '协调帮扶' is not one the modeler can read")
    assert "visit_help" in problems[0].fix and "用户任务“协调帮扶”的编号“帮扶”建模器无法读取" in problems[0].text("zh")[0]
    assert problems[1].message.startswith("the id '1st' of sequenceFlow is not one")
    # what bpmn-js reads: letters, digits, _ - . and a prefix
    from engine.deploy import DIAGRAM_ID
    assert all(DIAGRAM_ID.fullmatch(i) for i in ("assist", "_x", "Task-1.a", "sid-5F0B", "ns:task"))
    assert not any(DIAGRAM_ID.fullmatch(i) for i in ("帮扶", "1st", "{0f88}", "a b", "visit\n", "-a"))
