"""入户走访 through the pages, as a grid worker records a visit and the grid leader helps."""
from __future__ import annotations

from sqlalchemy import func, select

from engine.models import Case, WorkItem
from tests.helpers import csrf_token

GRID = "linxi-xinguang-g1"
VISIT = {"household": "7号楼3单元201 刘某", "address": "新光小区7号楼3单元201", "visit_kind": "key_group",
         "situation": "刘某82岁独居，暖气不热，取暖费未缴。", "visit_outcome": "needs_help",
         "need": "代缴取暖费并检修暖气"}


def _counts(service):
    with service.db.read_session() as session:
        return (session.scalar(select(func.count()).select_from(Case)),
                session.scalar(select(func.count()).select_from(WorkItem)))


def _record(client, **overrides):
    form = {"csrf_token": csrf_token(client, "/start/household_visit"), "grid": GRID, **VISIT, **overrides}
    return client.post("/start/household_visit", data=form, content_type="multipart/form-data")


def _case_key(response) -> str:
    """The business key of the case a start redirected to."""
    return response.headers["Location"].rstrip("/").split("/")[-1]


def test_a_grid_worker_records_a_visit_and_the_need_reaches_the_grid_leader(service, as_user):
    worker = as_user("lx_wgy1")
    assert "入户走访" in worker.get("/start").get_data(as_text=True)
    page = worker.get("/start/household_visit").get_data(as_text=True)
    assert "走访对象" in page and "重点人群走访" in page and "需网格长协调帮扶" in page
    response = _record(worker)
    assert response.status_code == 302
    key = _case_key(response)
    case = worker.get(f"/cases/{key}").get_data(as_text=True)
    assert "协调帮扶" in case and "刘某" in case
    leader = as_user("lx_wgz1").get("/inbox").get_data(as_text=True)
    assert "协调帮扶" in leader and key in leader


def test_a_visit_with_nothing_found_closes_at_once_and_nobody_gets_a_task(service, as_user):
    response = _record(as_user("lx_wgy1"), visit_outcome="nothing_found", need="")
    key = _case_key(response)
    assert service.get_case(key).status == "completed" and not service.get_case(key).open_items


def test_an_invalid_visit_is_shown_again_and_changes_nothing(service, as_user):
    worker = as_user("lx_wgy1")
    before = _counts(service)
    for bad in ({"situation": ""}, {"visit_kind": "gossip"}, {"household": "户" * 101}):
        response = _record(worker, **bad)
        assert response.status_code == 400, bad
        assert "走访" in response.get_data(as_text=True)
    response = _record(worker, need="")                 # a need to help with, but not described
    assert response.status_code == 400 and "按上面所作的选择，此项为必填。" in response.get_data(as_text=True)
    assert _counts(service) == before


def test_only_a_grid_worker_may_record_a_visit(service, as_user):
    before = _counts(service)
    for username in ("lx_wgz1", "lxz_pd", "lxx_dc"):      # grid leader, town dispatcher, auditor
        client = as_user(username)
        assert "入户走访" not in client.get("/start").get_data(as_text=True)
        assert client.get("/start/household_visit").status_code in (403, 404)
    assert _counts(service) == before


def test_a_matter_found_on_a_visit_is_reported_with_the_visit_filled_in(service, as_user):
    worker = as_user("lx_wgy1")
    key = _case_key(_record(worker, visit_outcome="resolved_on_spot", need="", people_met="刘某 13800000007"))
    case_page = worker.get(f"/cases/{key}").get_data(as_text=True)
    assert "据此上报网格事项" in case_page and f"/start/grid_matter?from_case={key}" in case_page
    form = worker.get(f"/start/grid_matter?from_case={key}").get_data(as_text=True)
    assert f"内容取自 {key}" in form
    assert VISIT["situation"] in form and VISIT["address"] in form and "13800000007" in form
    assert f'value="{GRID}" selected' in form
    views = [e.data for e in service.history(key) if e.event_type == "personal_data_viewed"]
    assert {"via": "report_form", "fields": ["people_met"]} in views      # the phone number seen, audited
    # who may not see the visit gets no form filled from it; nor does a case number that is not one
    assert as_user("lx_wgy3").get(f"/start/grid_matter?from_case={key}").status_code == 403
    assert worker.get("/start/grid_matter?from_case=LX-2026-999999").status_code == 404


def test_only_a_visit_offers_to_report_and_only_to_who_may_report(service, as_user):
    from tests.helpers import REPORT
    worker = as_user("lx_wgy1")
    matter = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    assert "据此上报网格事项" not in worker.get(f"/cases/{matter.business_key}").get_data(as_text=True)
    key = _case_key(_record(worker))
    leader = as_user("lx_wgz1").get(f"/cases/{key}").get_data(as_text=True)   # a grid leader reports nothing
    assert "协调帮扶" in leader and "据此上报网格事项" not in leader


def test_the_report_is_filled_in_for_the_visits_grid_when_another_grid_has_its_name(service, as_user):
    """Grids of different communities may share a name (第一网格): the visit's grid is found by
    its code. The worker also works a grid of 东升社区 that is given the visit grid's name."""
    from engine.models import JurisdictionNode, RoleAssignment, User

    with service.db.unit_of_work() as s:
        ours = s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == GRID))
        other = s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "linxi-dongsheng-g1"))
        worker_id = s.scalar(select(User.id).where(User.username == "lx_wgy1"))
        other_name, other.name = other.name, ours.name
        s.add(RoleAssignment(user_id=worker_id, role="grid_worker", node_id=other.id))
        other_id = other.id
    try:
        worker = as_user("lx_wgy1")
        key = _case_key(_record(worker, visit_outcome="resolved_on_spot", need=""))
        form = worker.get(f"/start/grid_matter?from_case={key}").get_data(as_text=True)
        assert form.count(f">{ours.name}</option>") == 2          # the two grids the worker may report in
        assert f'value="{GRID}" selected' in form and 'value="linxi-dongsheng-g1" selected' not in form
    finally:
        with service.db.unit_of_work() as s:
            for ra in s.scalars(select(RoleAssignment).where(RoleAssignment.user_id == worker_id,
                                                              RoleAssignment.node_id == other_id)):
                s.delete(ra)
            s.get(JurisdictionNode, other_id).name = other_name
