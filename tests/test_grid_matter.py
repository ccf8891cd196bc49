"""Every path of processes/grid_matter.bpmn, driven through the engine service
as the demo officials, each finding their task in their own inbox. (The
escalation chain's timed paths are also walked by the scenarios in
processes/scenarios/grid_matter/, run by tests/test_scenarios.py.)"""
from datetime import timedelta

import pytest

from engine.models import JurisdictionNode
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
                {"handling_result": "已现场协调处理", "handled_at": "2026-03-02T14:00:00+08:00"})
    view = work(service, WORKER, "verify_on_site", {"verified": True, "verification_note": "现场已整改"})
    view = work(service, WORKER, "satisfaction", {"satisfaction": "satisfied"})
    assert view.status == "completed"
    assert view.case.summary["resolved_level"] == "town"
    assert view.case.summary["satisfaction"] == "satisfied"
    assert path_ids(service, case)[-6:] == ["set_resolved_town", "throw_resolved", "satisfaction", "gw_satisfaction",
                                            "gw_close_level", "end_town"]


def test_urgent_red_matter_goes_straight_to_the_town(service):
    case = start(service, category="public_order", colour="red")
    # no micro-mediation: the town dispatches, and the county is informed at the same time
    assert open_spec_ids(case) == ["county_supervise", "town_dispatch"]
    assert [r.item.spec_id for r in service.inbox("lxx_pd")] == ["county_supervise"]
    data = service.case_data(case.business_key)
    assert (data["handling_level"], data["department"], data["deadline_days"]) == ("town", "paichusuo", 1)
    assert case.case.colour == "red"
    view = work(service, DISPATCHER, "town_dispatch", {"department": "paichusuo"})
    # the 派出所 handler sees it; the 城管 handler does not
    assert not [r for r in service.inbox("lxz_cg") if r.item.spec_id == "department_handle"]
    work(service, "lxz_pcs", "department_handle",
         {"handling_result": "民警到场处置", "handled_at": "2026-03-02T12:00:00+08:00"})
    view = work(service, WORKER, "verify_on_site", {"verified": True, "verification_note": "秩序恢复"})
    # resolved: the county's supervision task is closed without anyone completing it
    assert open_spec_ids(view) == ["satisfaction"]
    assert not service.inbox("lxx_pd")
    view = work(service, WORKER, "satisfaction", {"satisfaction": "basically_satisfied"})
    assert view.status == "completed"
    assert view.case.summary["resolved_level"] == "town"


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
         {"handling_result": "彻底清理", "handled_at": "2026-03-02T15:00:00+08:00"})
    work(service, WORKER, "verify_on_site", {"verified": True, "verification_note": "已清理干净"})
    view = work(service, WORKER, "satisfaction", {"satisfaction": "unsatisfied", "feedback": "太慢"})
    # the first "unsatisfied" reopens it at the town, once; the second closes it as unsatisfied
    assert open_spec_ids(view) == ["town_dispatch"]
    work(service, DISPATCHER, "town_dispatch", {"department": "chengguan", "instructions": "群众不满意，请加快"})
    work(service, "lxz_cg", "department_handle",
         {"handling_result": "每日清运", "handled_at": "2026-03-02T16:00:00+08:00"})
    work(service, WORKER, "verify_on_site", {"verified": True, "verification_note": "已每日清运"})
    view = work(service, WORKER, "satisfaction", {"satisfaction": "unsatisfied", "feedback": "仍然太慢"})
    assert view.status == "completed"
    assert view.case.summary["satisfaction"] == "unsatisfied" and view.case.summary["reopen_count"] == 1
    assert view.case.summary["resolved_level"] == "town"
    assert view.case.summary["rework_count"] == 2
    # the path shows both rework loops, flow by flow
    path = service.path(case.business_key)
    assert path.count(("gw_verified", "count_rework")) == 2
    assert path.count(("count_rework", "department_handle")) == 2


@pytest.mark.parametrize("category,colour,level,department,days,chain", [
    # chain: grid_days, town_days, county_days, city_days, report_in_hours
    ("dispute", "yellow", "grid", "sifasuo", 7, (7, 5, 10, 15, 24)),
    ("environment", "blue", "grid", "chengguan", 3, (3, 5, 10, 15, 24)),
    ("livelihood", "blue", "grid", "minzheng", 5, (5, 5, 10, 15, 24)),
    ("safety_hazard", "blue", "town", "zhujian", 5, (3, 5, 10, 15, 24)),
    ("infrastructure", "orange", "town", "zhujian", 2, (1, 2, 3, 5, 4)),
    ("other", "red", "town", "chengguan", 1, (1, 1, 2, 3, 2)),
])
def test_dispatch_rules_decide_level_department_deadline(service, category, colour, level, department, days, chain):
    case = start(service, category=category, colour=colour)
    data = service.case_data(case.business_key)
    assert (data["handling_level"], data["department"], data["deadline_days"]) == (level, department, days)
    assert tuple(data[k] for k in ("grid_days", "town_days", "county_days", "city_days", "report_in_hours")) == chain
    # the deadline of the first handling level is the level's own time limit
    assert data[f"{level}_days"] == days
    if level == "grid":
        expected = ["micro_mediation"]
    elif colour in ("orange", "red"):
        expected = ["county_supervise", "town_dispatch"]      # urgent: the county is informed at once
    else:
        expected = ["town_dispatch"]
    assert open_spec_ids(case) == expected


def test_micro_mediation_is_due_at_the_grid_deadline(service, clock):
    case = start(service)                                    # blue dispute: grid_days 7
    assert case.open_items[0].due_at == clock.now() + timedelta(days=7)


def test_whistle_gives_each_summoned_department_its_own_instance_and_lane(service):
    """吹哨报到: a multi-instance subprocess over `departments`; each instance's
    `department` comes from its input item, so its tasks land with that department."""
    case = start(service, category="environment", colour="yellow")
    view = work(service, DISPATCHER, "town_dispatch",
                {"department": "chengguan", "departments": ["chengguan", "paichusuo", "sifasuo"]})
    assert open_spec_ids(view) == ["report_in"] * 3
    for handler in ("lxz_cg", "lxz_pcs", "lxz_sfs"):           # each sees exactly its own department's report-in
        assert [r.item.spec_id for r in service.inbox(handler)] == ["report_in"]
    with service.db.read_session() as s:
        units = sorted(s.get(JurisdictionNode, i.candidate_node_id).code for i in view.open_items)
    assert units == ["linxizhen-cg", "linxizhen-pcs", "linxizhen-sfs"]
    for handler, result in (("lxz_cg", "清理"), ("lxz_pcs", "巡逻"), ("lxz_sfs", "调解")):
        work(service, handler, "report_in", {"on_site_person": handler})
        view = work(service, handler, "handle_part", {"part_result": result})
    assert open_spec_ids(view) == ["verify_on_site"]
    data = service.case_data(case.business_key)
    assert data["department"] == "chengguan"                   # the lead department is kept
    assert data["part_reports"] == [{"department": "chengguan", "result": "清理"},
                                    {"department": "paichusuo", "result": "巡逻"},
                                    {"department": "sifasuo", "result": "调解"}]
    # a failed verification goes back to the lead department
    view = work(service, WORKER, "verify_on_site", {"verified": False, "verification_note": "仍有摊点"})
    assert open_spec_ids(view) == ["department_handle"]
    assert [r.item.spec_id for r in service.inbox("lxz_cg")] == ["department_handle"]


def test_the_people_who_act_see_what_they_act_on(service):
    """The grid leader mediating sees the parties; a department redoing its work after a failed
    on-site check sees why it failed; no conclusion is shown before the department gives one."""
    case = start(service, parties="张某、李某")
    mediation = service.task_detail("lx_wgz1", case.open_items[0].id)
    assert mediation.case_data["parties"] == "张某、李某"
    assert "parties" in [f.name for f in mediation.form.fields if f.readonly]
    work(service, "lx_wgz1", "micro_mediation", {"resolved": False, "mediation_note": "未谈拢"})
    work(service, "lxz_pd", "town_dispatch", {"department": "chengguan"})
    assert service.case_data(case.business_key).get("outcome") in (None, "")     # nobody concluded anything
    work(service, "lxz_cg", "department_handle", {"handling_result": "已处理", "handled_at": "2026-03-02T10:00:00+08:00"})
    work(service, "lx_wgy1", "verify_on_site", {"verified": False, "verification_note": "现场仍有垃圾未清理干净"})
    rework = next(i for i in service.get_case(case.business_key).open_items if i.spec_id == "department_handle")
    detail = service.task_detail("lxz_cg", rework.id)
    assert detail.case_data["verification_note"] == "现场仍有垃圾未清理干净"
    assert "verification_note" in [f.name for f in detail.form.fields if f.readonly]


def test_the_history_keeps_the_unit_of_a_closed_task(service):
    """生成任务 · 镇级派单 → 派单员 @ 林西镇 lost its unit once the task was done."""
    case = start(service, colour="yellow", category="environment")
    work(service, "lxz_pd", "town_dispatch", {"department": "chengguan"})
    view = service.view_case("lxx_dc", case.business_key)
    created = next(e for e in view.events if e.event_type == "task_created" and e.bpmn_id == "town_dispatch")
    assert not [i for i in view.open_items if i.spec_id == "town_dispatch"]
    assert view.node_names[created.data["node_id"]] == "林西镇"


def test_a_handling_time_after_now_is_refused_and_changes_nothing(service, clock):
    """办结时间 dated tomorrow would skew every time limit counted from it: refused on the field;
    the task stays open, nothing is recorded; once the day has come it is accepted."""
    from engine.errors import InvalidInput
    case = start(service, colour="yellow", category="environment")
    work(service, DISPATCHER, "town_dispatch", {"department": "chengguan"})
    before = len(service.history(case.business_key))
    with pytest.raises(InvalidInput) as err:
        work(service, "lxz_cg", "department_handle", {"handling_result": "已处理", "handled_at": "2026-03-03T10:00:00+08:00"})
    assert err.value.fields == {"handled_at": ["must not be in the future"]}
    assert open_spec_ids(service.get_case(case.business_key)) == ["department_handle"]
    assert len(service.history(case.business_key)) == before
    clock.advance(timedelta(days=1))
    view = work(service, "lxz_cg", "department_handle", {"handling_result": "已处理", "handled_at": "2026-03-03T10:00:00+08:00"})
    assert open_spec_ids(view) == ["verify_on_site"]
