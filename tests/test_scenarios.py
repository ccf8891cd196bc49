"""Every scenario under processes/scenarios/ runs, as the designer wrote it, and together
they take every sequence flow of every shipped process."""
import pytest
from lxml import etree
from sqlalchemy import delete, select

from engine.bpmn import BPMN_NS
from engine.models import AuditEvent
from engine.scenarios import Scenario, ScenarioFailure, find_scenarios, run_scenario
from tests.conftest import CASE_TABLES, ROOT

SCENARIOS = find_scenarios(ROOT / "processes" / "scenarios")
# what the scenarios of this run passed through: (the element come from, the element) pairs
_PASSED: set = set()
_RUN: set = set()


def test_every_shipped_process_has_scenarios():
    from engine.deploy import executable_processes, read_process_dir
    processes = set(executable_processes(read_process_dir(ROOT / "processes")))
    covered = {p.parent.name for p in SCENARIOS}
    assert processes <= covered, f"processes without scenarios: {sorted(processes - covered)}"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_scenario(service, clock, path, monkeypatch):
    _check_next_timers_after_each_transition(service, monkeypatch)
    run_scenario(service, clock, Scenario.load(path))
    _record_path(service, path)


def _check_next_timers_after_each_transition(service, monkeypatch):
    """After every committed transition of the scenario (start, completion, timer firing), each
    case's `next_timer_at`, which the timer worker polls, is the earliest timer its saved state
    waits on: a timer of a branch the step cancelled (a leader case's missed-report timers once
    the unit submits its work, in a petition that called it too) made the worker fire the case
    for nothing."""
    from tests.helpers import assert_next_timers_true
    transition = service._commit_guarded

    def checked(fn, *args):
        result = transition(fn, *args)
        assert_next_timers_true(service)
        return result
    monkeypatch.setattr(service, "_commit_guarded", checked)


def _record_path(service, path):
    with service.db.read_session() as session:   # every case of the run: a called process's too
        _PASSED.update(session.execute(select(AuditEvent.flow_from, AuditEvent.bpmn_id)
                                       .where(AuditEvent.bpmn_id.is_not(None))).all())
    _RUN.add(path)


def test_a_broken_scenario_names_the_step_that_broke(service, clock):
    scenario = Scenario.load(SCENARIOS[0])
    scenario.steps = [{"task": "no_such_task", "as": "lx_wgy1", "data": {}}]
    with pytest.raises(ScenarioFailure) as err:
        run_scenario(service, clock, scenario)
    assert err.value.step == "step 1 (no_such_task as lx_wgy1)" and "not in lx_wgy1's inbox" in err.value.message
    assert err.value.text("zh")[0] == "第 1 步（lx_wgy1 办理 no_such_task）"
    assert "不在 lx_wgy1 的收件箱中" in err.value.text("zh")[1]


@pytest.mark.parametrize("advance", ["P99999999D", "soon"])
def test_an_advance_the_calendar_cannot_reach_is_named(service, clock, advance):
    scenario = Scenario.load(SCENARIOS[0])
    scenario.steps = [{"advance": advance}]
    with pytest.raises(ScenarioFailure) as err:
        run_scenario(service, clock, scenario)
    assert err.value.step == f"step 1 (advance {advance})" and "is not an ISO duration" in err.value.message
    assert "不是可用的 ISO 时长" in err.value.text("zh")[1]


@pytest.mark.parametrize("old, new, en, zh", [
    ("  path: [start, decide_dispatch, gw_level, micro_mediation, gw_mediated, record_result, set_resolved_grid, end_grid]",
     "  path: start", "expect: 'path' must be a list of BPMN ids in brackets, e.g. path: [start, decide_dispatch]; "
     "it is 'start'", "expect（最终检查）：path 须为方括号中的 BPMN 标识列表，如 path: [start, decide_dispatch]；现为 'start'"),
    ("  open_tasks: []", "  open_tasks: record_result", "expect: 'open_tasks' must be a list", "expect（最终检查）：open_tasks"),
    ("  open_tasks: []", "  path_includes: end_grid", "expect: 'path_includes' must be a list", "expect（最终检查）：path_includes"),
    ("    data: {result_note: 已化解，双方签字确认}", "    data: {result_note: 已化解，双方签字确认}\n  - expect_tasks: end_grid",
     "step 6: 'expect_tasks' must be a list", "第 6 步：expect_tasks 须为方括号中的 BPMN 标识列表"),
    ("expect:\n", "expect: completed\nafter:\n", "'expect' must be a mapping", "expect 须为键值结构"),
])
def test_a_list_written_as_a_text_is_a_malformed_scenario(tmp_path, old, new, en, zh):
    """`path: start` was compared letter by letter with the path taken ('path was [...], expected
    ['s', 't', 'a', 'r', 't']'); it is refused when the scenario is read, saying how to write it."""
    from engine.scenarios import ScenarioFileError
    text = (ROOT / "processes" / "scenarios" / "grid_matter" / "resolved_in_grid.yaml").read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "resolved_in_grid.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    with pytest.raises(ScenarioFileError) as err:
        Scenario.load(path)
    assert str(err.value).startswith(f"resolved_in_grid.yaml: {en}"), str(err.value)
    assert err.value.zh.startswith(f"resolved_in_grid.yaml：{zh}"), err.value.zh


def test_a_refused_step_says_why_in_chinese_too(service, clock):
    scenario = Scenario.load(ROOT / "processes" / "scenarios" / "grid_matter" / "resolved_in_grid.yaml")
    scenario.steps = [{"task": "micro_mediation", "as": "lx_wgz1", "data": {"resolved": "maybe"}}]
    with pytest.raises(ScenarioFailure) as err:
        run_scenario(service, clock, scenario)
    assert "refused: invalid" in err.value.message
    assert "被拒绝（invalid）：部分内容填写有误" in err.value.text("zh")[1]


def test_cli_runs_scenarios_and_fails_on_a_broken_one(tmp_path, monkeypatch):
    import shutil
    from click.testing import CliRunner
    from engine.cli import main
    monkeypatch.chdir(ROOT)
    ok = CliRunner().invoke(main, ["scenarios", str(SCENARIOS[0])])
    assert ok.exit_code == 0 and ok.output.startswith("PASS ") and "1 passed, 0 failed" in ok.output
    broken = tmp_path / "grid_matter" / "broken.yaml"
    broken.parent.mkdir()
    shutil.copy(SCENARIOS[0], broken)
    broken.write_text(broken.read_text(encoding="utf-8").replace("status: completed", "status: cancelled"),
                      encoding="utf-8")
    bad = CliRunner().invoke(main, ["scenarios", str(broken)])
    assert bad.exit_code == 1 and "FAIL grid_matter/broken  at expect: status is completed" in bad.output


PETITION_START = {"as": "lxx_xf", "grid": "linxi-xinguang-g1", "data": {
    "channel": "walk_in", "petitioner_name": "张某", "subject": "housing", "title": "屋顶漏水",
    "description": "顶层住户反映屋顶漏水多年未修。", "repeat_of_rechecked": False}}


def _petition(steps):
    return Scenario(name="due_check", process="petition", title="due", start=PETITION_START, steps=steps, expect={})


def test_expect_due_passes_on_the_legal_limit(service, clock):
    # registered 3-02 16:30 China time: the 15 days end 3-17 24:00 China time
    run_scenario(service, clock, _petition([{"expect_due": {"task": "decide", "in": "P15DT7H30M"}},
                                            {"advance": "P5D"},
                                            {"expect_due": {"task": "decide", "in": "P10DT7H30M"}},
                                            {"advance": "P11D"},
                                            {"expect_due": {"task": "decide", "in": "-PT16H30M"}}]))


@pytest.mark.parametrize("spec,message", [
    ({"task": "decide", "in": "P16D"},
     "'decide' is due 2026-03-17T16:00:00+00:00 (in P15DT7H30M), expected in P16D (2026-03-18T08:30:00+00:00)"),
    ({"task": "decide", "in": "PT366H"}, "(in P15DT7H30M), expected in PT366H"),
    ({"task": "decide", "in": "none"}, "'decide' is due ['2026-03-17T16:00:00+00:00'], expected no due date"),
    ({"task": "handle", "in": "P60D"}, "no open 'handle'; open tasks: ['decide']"),
    ({"task": "decide", "in": "fifteen days"}, "'in: fifteen days' is not an ISO duration"),
    ({"task": "decide"}, "expect_due needs 'task' (a BPMN id) and 'in'"),
])
def test_a_wrong_expect_due_fails_naming_the_step(service, clock, spec, message):
    with pytest.raises(ScenarioFailure) as err:
        run_scenario(service, clock, _petition([{"expect_tasks": ["decide"]}, {"expect_due": spec}]))
    assert err.value.step == f"step 2 (expect_due {spec['task']})"
    assert message in err.value.message
    assert str(err.value).startswith("due_check: step 2 (expect_due ")


def test_expect_due_none_passes_for_a_task_without_due_date(service, clock):
    # supervise_acceptance has no dueDate of its own
    run_scenario(service, clock, _petition([{"advance": "P15DT7H31M"},
                                            {"expect_due": {"task": "supervise_acceptance", "in": "none"}}]))


def test_cli_validate_processes_star_is_ok(monkeypatch):
    """`gridflow validate processes/*` as a shell expands it: every BPMN/DMN file plus the
    scenarios folder (a folder stands for its BPMN/DMN files, here none)."""
    from click.testing import CliRunner
    from engine.cli import main
    monkeypatch.chdir(ROOT)
    paths = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "processes").iterdir())
    assert "processes/scenarios" in paths
    result = CliRunner().invoke(main, ["validate", *paths])
    shipped = len(list((ROOT / "processes").glob("*.bpmn"))) + len(list((ROOT / "processes").glob("*.dmn")))
    assert result.exit_code == 0 and result.output.strip() == f"ok: {shipped} file(s) valid", result.output


# Flows no run can take, each with why; the test checks that they are indeed never taken.
# SpiffWorkflow ends what a non-interrupting boundary event started when the activity it is
# attached to completes: the open 每日跟踪记录 is cancelled when 网格员跟踪至解决 ends on the
# same 已办结 signal, before its own signal boundary (kept: BPMN's rule, for a modeler that
# follows it) can take it to 办结关闭.
NEVER_TAKEN_HERE = {("grid_matter.bpmn", "flow_daily_follow_up_closed")}


def test_the_scenarios_take_every_sequence_flow_of_every_shipped_process(service, clock):
    """Every BPMN path of every shipped process is walked: each sequence flow is taken by some
    scenario (a flow out of a boundary event: its target reached, as the engine records the
    step after a boundary event without where it came from). Scenarios this run left out are
    run here first."""
    for path in SCENARIOS:
        if path not in _RUN:
            with service.db.unit_of_work() as session:
                for table in CASE_TABLES:
                    session.execute(delete(table))
            run_scenario(service, clock, Scenario.load(path))
            _record_path(service, path)
    reached = {element for _came_from, element in _PASSED}
    missing, wrongly_listed = [], []
    for bpmn in sorted((ROOT / "processes").glob("*.bpmn")):
        root = etree.parse(str(bpmn)).getroot()
        boundary = {e.get("id") for e in root.iter(f"{{{BPMN_NS}}}boundaryEvent")}
        for flow in root.iter(f"{{{BPMN_NS}}}sequenceFlow"):
            source, target = flow.get("sourceRef"), flow.get("targetRef")
            taken = (source, target) in _PASSED or (source in boundary and target in reached)
            if (bpmn.name, flow.get("id")) in NEVER_TAKEN_HERE:
                if taken or target in reached:
                    wrongly_listed.append(f"{bpmn.name}:{flow.get('id')}")
            elif not taken:
                missing.append(f"{bpmn.name}:{flow.get('id')} ({source} -> {target})")
    assert not missing, f"sequence flows no scenario takes: {missing}"
    assert not wrongly_listed, f"taken after all, drop from NEVER_TAKEN_HERE: {wrongly_listed}"


def test_a_refused_start_names_the_field(service, clock):
    scenario = Scenario.load(ROOT / "processes" / "scenarios" / "grid_matter" / "resolved_in_grid.yaml")
    scenario.start = {**scenario.start, "data": {**scenario.start["data"], "colour": "purple"}}
    with pytest.raises(ScenarioFailure) as err:
        run_scenario(service, clock, scenario)
    assert err.value.step == "start" and "'colour'" in err.value.message
    assert err.value.text("zh")[0] == "发起" and "colour" in err.value.text("zh")[1]


def test_the_extension_notice_shows_the_reason_to_tell_the_petitioner(service, clock):
    """告知信访人延期 asks the officer to tell the petitioner the reason: the task shows it."""
    scenario = Scenario.load(ROOT / "processes" / "scenarios" / "petition" / "extension_approved_30_days.yaml")
    upto = next(i for i, step in enumerate(scenario.steps) if step.get("task") == "notify_extension")
    scenario.steps, scenario.expect = scenario.steps[:upto], {}
    key = run_scenario(service, clock, scenario).business_key
    [notice] = [i for i in service.get_case(key).open_items if i.spec_id == "notify_extension"]
    detail = service.task_detail("lxx_zj", notice.id)
    reason = service.case_data(key)["extension_reason"]
    assert reason and detail.case_data["extension_reason"] == reason
    assert "extension_reason" in [f.name for f in detail.form.fields if f.readonly]
    assert notice.due_at is not None                                  # the extended limit
