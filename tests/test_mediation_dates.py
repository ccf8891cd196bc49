"""The judicial-confirmation window (人民调解法 art. 33: the parties may apply "自调解协议生效之日
起三十日内") counts from the agreement's signing date, the day itself not counted, to 24:00 China
time of the 30th day: the due date shown and the timer that lets the window lapse are that one
moment, however long after the signing the agreement was recorded."""
from datetime import datetime, timezone

from engine.scenarios import Scenario, run_scenario
from engine.timers import TimerWorker
from tests.conftest import ROOT

LAPSES = ROOT / "processes" / "scenarios" / "mediation" / "no_application_lapses.yaml"


def test_the_confirmation_window_runs_from_the_signing_date_to_24_00_china_time(service, clock):
    scenario = Scenario.load(LAPSES)
    signed = next(i for i, step in enumerate(scenario.steps) if step.get("task") == "sign_four_party")
    scenario.steps = scenario.steps[:signed + 1]
    scenario.steps[signed]["data"]["signed_on"] = "2026-03-02"
    scenario.expect = {}
    clock.set(datetime(2026, 3, 5, 1, 0, tzinfo=timezone.utc))   # recorded 3 days later, 09:00 in China
    key = run_scenario(service, clock, scenario).business_key
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "apply_confirmation")
    # 3-02 + 30 days: 4-01 24:00 China (16:00 UTC), not 30×24 hours after the recording (4-04 09:00)
    assert item.due_at == datetime(2026, 4, 1, 16, 0, tzinfo=timezone.utc)
    worker = TimerWorker(service)
    clock.set(datetime(2026, 4, 1, 15, 59, 59, tzinfo=timezone.utc))
    assert worker.run_once().fired == 0
    assert [i.spec_id for i in service.get_case(key).open_items] == ["apply_confirmation"]
    clock.set(datetime(2026, 4, 1, 16, 0, 1, tzinfo=timezone.utc))
    assert worker.run_once().fired == 1
    assert [i.spec_id for i in service.get_case(key).open_items] == ["follow_up"]
    assert worker.run_once().fired == 0
