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
