"""Every path of processes/grid_matter.bpmn, driven through the engine service
as the demo officials, each finding their task in their own inbox."""
import pytest

from tests.helpers import REPORT, open_spec_ids, path_ids, work

GRID = "linxi-xinguang-g1"
WORKER, LEADER, DISPATCHER = "lx_wgy1", "lx_wgz1", "lxz_pd"


def start(service, **overrides):
    return service.start_case("grid_matter", GRID, {**REPORT, **overrides}, WORKER)


def test_small_matter_resolved_in_the_grid(service):
    case = start(service)
    assert case.business_key.startswith("LX-2026-")
    assert open_spec_ids(case) == ["micro_mediation"]
    data = service.case_data(case.business_key)
    assert (data["handling_level"], data["department"], data["deadline_days"]) == ("grid", "sifasuo", 7)

    work(service, LEADER, "micro_mediation", {"resolved": True, "mediation_note": "双方达成谅解，重新确认边界"})
    view = work(service, WORKER, "record_result", {"result_note": "已化解，双方签字确认"})

    assert view.status == "completed"
    assert view.case.summary["resolved_level"] == "grid"
    assert path_ids(service, case) == [
        "start", "decide_dispatch", "gw_level", "micro_mediation", "gw_mediated",
        "record_result", "set_resolved_grid", "end_grid"]


def test_grid_fails_then_town_department_verify_and_satisfaction(service):
    case = start(service)
    view = work(service, LEADER, "micro_mediation", {"resolved": False, "mediation_note": "双方分歧较大"})
    assert open_spec_ids(view) == ["town_dispatch"]
    view = work(service, DISPATCHER, "town_dispatch", {"department": "chengguan", "instructions": "请城管中队核实"})
    assert open_spec_ids(view) == ["department_handle"]
    view = work(service, "lxz_cg", "department_handle",
                {"handling_result": "已现场协调处理", "handled_at": "2026-03-03T10:00:00+08:00"})
    view = work(service, WORKER, "verify_on_site", {"verified": True, "verification_note": "现场已整改"})
    view = work(service, WORKER, "satisfaction", {"satisfaction": "satisfied"})
    assert view.status == "completed"
    assert view.case.summary["resolved_level"] == "town"
    assert view.case.summary["satisfaction"] == "satisfied"
    assert path_ids(service, case)[-3:] == ["satisfaction", "set_resolved_town", "end_town"]


def test_urgent_red_matter_goes_straight_to_the_town(service):
    case = start(service, category="public_order", colour="red")
    assert open_spec_ids(case) == ["town_dispatch"]
    data = service.case_data(case.business_key)
    assert (data["handling_level"], data["department"], data["deadline_days"]) == ("town", "paichusuo", 1)
    assert case.case.colour == "red"
    view = work(service, DISPATCHER, "town_dispatch", {"department": "paichusuo"})
    # the 派出所 handler sees it; the 城管 handler does not
    assert not [r for r in service.inbox("lxz_cg") if r.item.spec_id == "department_handle"]
    work(service, "lxz_pcs", "department_handle",
         {"handling_result": "民警到场处置", "handled_at": "2026-03-02T12:00:00+08:00"})
    work(service, WORKER, "verify_on_site", {"verified": True, "verification_note": "秩序恢复"})
    view = work(service, WORKER, "satisfaction", {"satisfaction": "basically_satisfied"})
    assert view.status == "completed"


def test_failed_verification_sends_it_back_to_the_department(service):
    case = start(service, category="environment", colour="yellow")
    assert open_spec_ids(case) == ["town_dispatch"]
    work(service, DISPATCHER, "town_dispatch", {"department": "chengguan"})
    for attempt in (1, 2):
        work(service, "lxz_cg", "department_handle",
             {"handling_result": f"第{attempt}次清理", "handled_at": "2026-03-02T12:00:00+08:00"})
        view = work(service, WORKER, "verify_on_site", {"verified": False, "verification_note": "仍有垃圾"})
        assert open_spec_ids(view) == ["department_handle"]
        assert service.case_data(case.business_key)["rework_count"] == attempt
    work(service, "lxz_cg", "department_handle",
         {"handling_result": "彻底清理", "handled_at": "2026-03-04T12:00:00+08:00"})
    work(service, WORKER, "verify_on_site", {"verified": True, "verification_note": "已清理干净"})
    view = work(service, WORKER, "satisfaction", {"satisfaction": "unsatisfied", "feedback": "太慢"})
    assert view.status == "completed"
    assert view.case.summary["rework_count"] == 2
    # the path shows both rework loops, flow by flow
    path = service.path(case.business_key)
    assert path.count(("gw_verified", "count_rework")) == 2
    assert path.count(("count_rework", "department_handle")) == 2


@pytest.mark.parametrize("category,colour,level,department,days", [
    ("dispute", "yellow", "grid", "sifasuo", 7),
    ("environment", "blue", "grid", "chengguan", 3),
    ("livelihood", "blue", "grid", "minzheng", 5),
    ("safety_hazard", "blue", "town", "zhujian", 5),
    ("infrastructure", "orange", "town", "zhujian", 2),
    ("other", "red", "town", "chengguan", 1),
])
def test_dispatch_rules_decide_level_department_deadline(service, category, colour, level, department, days):
    case = start(service, category=category, colour=colour)
    data = service.case_data(case.business_key)
    assert (data["handling_level"], data["department"], data["deadline_days"]) == (level, department, days)
    assert open_spec_ids(case) == (["micro_mediation"] if level == "grid" else ["town_dispatch"])
