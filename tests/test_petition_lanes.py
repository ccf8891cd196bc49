"""Who gets a petition's tasks: the county departments of the demo organisation hold
their lanes (城管, 公安 in 林西县 and 五原县), and a department nobody holds still
gets the task, flagged, at the city centre's dispatchers."""
import pytest

from engine.models import JurisdictionNode
from engine.scenarios import Scenario, run_scenario
from tests.conftest import ROOT
from tests.helpers import open_item, work

SCENARIOS = ROOT / "processes" / "scenarios" / "petition"


def petition(service, officer, grid, subject):
    return service.start_case("petition", grid, {
        "channel": "walk_in", "petitioner_name": "测试信访人", "subject": subject, "title": "测试事项",
        "description": "信访人反映的事实和诉求。", "repeat_of_rechecked": False}, officer)


@pytest.mark.parametrize("officer,grid,subject,department,handler,unit", [
    ("lxx_xf", "linxi-xinguang-g1", "urban_management", "chengguan", "lxx_cg", "linxi-cgj"),
    ("lxx_xf", "linxi-dongsheng-g2", "public_security", "paichusuo", "lxx_ga", "linxi-gaj"),
    ("wyx_xf", "wuyuan-maojiaqiao-g1", "urban_management", "chengguan", "wyx_cg", "wuyuan-cgj"),
    ("wyx_xf", "wuyuan-maojiaqiao-g2", "public_security", "paichusuo", "wyx_ga", "wuyuan-gaj"),
])
def test_county_chengguan_and_police_hold_their_petitions(service, officer, grid, subject, department, handler, unit):
    case = petition(service, officer, grid, subject)
    assert service.case_data(case.business_key)["department"] == department      # petition_routing.dmn
    view = work(service, officer, "decide", {"acceptance": "accept", "department": department, "hard_case": False,
                                             "decision_reason": "受理并交办", "notice_method": "in_person"})
    item = open_item(view, "handle")
    assert not item.unresolved
    with service.db.read_session() as s:
        assert s.get(JurisdictionNode, item.candidate_node_id).code == unit
    assert [r.item.spec_id for r in service.inbox(handler)] == ["handle"]
    assert not [e for e in service.history(case.business_key) if e.event_type == "lane_unresolved"]


def test_a_department_nobody_holds_falls_back_to_the_city_dispatcher_flagged(service, clock):
    scenario = Scenario.load(SCENARIOS / "department_nobody_holds_falls_back_to_city.yaml")
    scenario.steps, scenario.expect = scenario.steps[:2], {}   # stop before the city dispatcher works it
    key = run_scenario(service, clock, scenario).business_key
    item = open_item(service.get_case(key), "handle")
    assert item.unresolved and item.role == "center_dispatcher"
    with service.db.read_session() as s:
        assert s.get(JurisdictionNode, item.candidate_node_id).code == "chifeng"
    assert [r.item.id for r in service.inbox("cf_pd")] == [item.id]
    assert not service.inbox("lxx_xfcb") and not service.inbox("lxx_zj")
    events = [e for e in service.history(key) if e.event_type == "lane_unresolved"]
    assert len(events) == 1 and "minzheng" in events[0].data["reason"]
