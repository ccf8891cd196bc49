"""What a 督办 branch records is the case's while the case is open.

The petition's 60-day timer (non-interrupting) starts a branch beside 办理: 记录办理超期
sets `handling_overdue`/`overdue_stage`, the joint-conference office's 办理超期督办 form
records the measure and the note, and the branch ends while 办理 runs on. Its data lived
only in that ended branch (held by the process end, merged when the case closes): the case
page, GET /api/v1/cases/<ref> and the case summary lost the flag and the note the moment
the 督办 was submitted, so the handler never saw what the supervisor wrote."""
from __future__ import annotations

from engine.models import Case
from engine.scenarios import Scenario, run_scenario
from tests.helpers import login
from tests.test_petition_dates import START

NOTE = "超过60日办理期限，约谈承办单位负责人，限5日内办结"
PHONE = "13912345678"
TO_OVERDUE = [
    {"task": "decide", "as": "lxx_xf", "data": {"acceptance": "accept", "department": "xinfangju", "hard_case": False,
                                                "decision_reason": "受理", "notice_method": "in_person"}},
    {"advance": "P61D"},
    {"expect_tasks": ["handle", "supervise_handling"]},
    {"task": "supervise_handling", "as": "lxx_lxb",
     "data": {"supervision_measure": "interview", "supervision_note": NOTE}},
    {"expect_tasks": ["handle"]},
]
RECORDED = {"handling_overdue": True, "overdue_stage": "handling", "supervision_measure": "interview",
            "supervision_note": NOTE}


def _overdue_case(service, clock):
    start = {**START, "data": {**START["data"], "petitioner_phone": PHONE}}
    scenario = Scenario(name="overdue", process="petition", title="overdue", start=start, steps=TO_OVERDUE, expect={})
    return run_scenario(service, clock, scenario).business_key


def _summary(service, key):
    with service.db.read_session() as session:
        return session.query(Case).filter_by(business_key=key).one().summary


def test_the_overdue_flag_and_the_note_stay_in_the_case_data_after_the_supervision_ends(service, clock):
    key = _overdue_case(service, clock)
    data = service.case_data(key)
    assert {k: data.get(k) for k in RECORDED} == RECORDED
    summary = _summary(service, key)
    assert {k: summary.get(k) for k in RECORDED} == RECORDED
    # the report summary never holds a personal value, merged branches or not
    assert summary["petitioner_phone"] != PHONE and summary["petitioner_phone"].endswith("5678")
    # and after the main path moves on (办理 done, 书面答复 open) they are still the case's
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "handle")
    service.complete_task(item.id, {"handling_result": "已协调解决", "hard_case": False, "extension_days": 0}, "lxx_xfcb")
    assert [i.spec_id for i in service.get_case(key).open_items] == ["written_reply"]
    data = service.case_data(key)
    assert {k: data.get(k) for k in RECORDED} == RECORDED
    assert data["handling_result"] == "已协调解决"              # the main path's newer data kept as well
    assert {k: _summary(service, key).get(k) for k in RECORDED} == RECORDED


def test_the_handler_sees_the_flag_and_the_note_on_the_case_page_and_in_the_api(service, clock, app):
    key = _overdue_case(service, clock)
    api = app.test_client()
    token = api.post("/api/v1/auth/token", json={"username": "lxx_xfcb", "password": "demo123"}).get_json()["token"]
    body = api.get(f"/api/v1/cases/{key}", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert {k: body["data"].get(k) for k in RECORDED} == RECORDED
    assert {k: body["summary"].get(k) for k in RECORDED} == RECORDED
    page = app.test_client()
    login(page, "lxx_xfcb")
    html = page.get(f"/cases/{key}").get_data(as_text=True)
    assert NOTE in html


def test_a_supervision_submitted_after_the_main_path_moved_on_does_not_bring_back_older_values(service, clock):
    """The 督办 branch holds a copy of the case's data as it was when the 60 days passed; the
    main path changed a value since (办理 found the case hard: hard_case). A 督办 submitted
    after that must not put the old value back: as the join will merge them, an ended branch
    goes under the tasks still running."""
    start = {**START, "data": {**START["data"], "petitioner_phone": PHONE}}
    steps = TO_OVERDUE[:3] + [
        {"task": "handle", "as": "lxx_xfcb", "data": {"handling_result": "疑难复杂，需领导包案", "hard_case": True,
                                                      "extension_days": 0}},
        {"task": "supervise_handling", "as": "lxx_lxb",
         "data": {"supervision_measure": "interview", "supervision_note": NOTE}}]
    scenario = Scenario(name="late supervision", process="petition", title="t", start=start, steps=steps, expect={})
    key = run_scenario(service, clock, scenario).business_key
    data = service.case_data(key)
    assert data["hard_case"] is True and data["handling_result"] == "疑难复杂，需领导包案"
    assert {k: data.get(k) for k in RECORDED} == RECORDED
    assert _summary(service, key)["hard_case"] is True
