"""Every scenario under processes/scenarios/ runs, as the designer wrote it."""
import pytest

from engine.scenarios import Scenario, ScenarioFailure, find_scenarios, run_scenario
from tests.conftest import ROOT

SCENARIOS = find_scenarios(ROOT / "processes" / "scenarios")


def test_every_shipped_process_has_scenarios():
    from engine.deploy import executable_processes, read_process_dir
    processes = set(executable_processes(read_process_dir(ROOT / "processes")))
    covered = {p.parent.name for p in SCENARIOS}
    assert processes <= covered, f"processes without scenarios: {sorted(processes - covered)}"


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_scenario(service, clock, path):
    run_scenario(service, clock, Scenario.load(path))


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
    run_scenario(service, clock, _petition([{"expect_due": {"task": "decide", "in": "P15D"}},
                                            {"advance": "P5D"},
                                            {"expect_due": {"task": "decide", "in": "P10D"}},
                                            {"advance": "P11D"},
                                            {"expect_due": {"task": "decide", "in": "-P1D"}}]))


@pytest.mark.parametrize("spec,message", [
    ({"task": "decide", "in": "P16D"},
     "'decide' is due 2026-03-17T08:30:00+00:00 (in P15D), expected in P16D (2026-03-18T08:30:00+00:00)"),
    ({"task": "decide", "in": "PT359H"}, "(in P15D), expected in PT359H"),
    ({"task": "decide", "in": "none"}, "'decide' is due ['2026-03-17T08:30:00+00:00'], expected no due date"),
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
    run_scenario(service, clock, _petition([{"advance": "P15DT1M"},
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
