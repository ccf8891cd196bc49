"""Personal data: marked in the form definitions, shown in full only to the case's
handlers (every such view audited), masked for everyone else: case page, task
page, API, trace, exports, search."""
import json

import pytest
from sqlalchemy import select

from engine.models import AuditEvent, Case
from engine.personal_data import VIEW_EVENT, mask_text, mask_value, personal_fields
from forms import FormDefinitionError, FormRegistry, parse_definition
from tests.helpers import login, open_item
from tests.test_audit_search import _token

PHONE, PHONE_MASKED = "13812345678", "138****5678"
ID, ID_MASKED = "150102199003071234", "150***********1234"
PETITION = {"channel": "walk_in", "petitioner_name": "张某", "petitioner_phone": PHONE, "petitioner_id_number": ID,
            "subject": "housing", "title": "屋顶漏水多年未修", "description": "顶层住户反映屋顶漏水，请求维修。",
            "repeat_of_rechecked": False}


@pytest.mark.parametrize("text, masked", [
    (PHONE, PHONE_MASKED),
    (ID, ID_MASKED),
    ("15010219900307123X", "150***********123X"),
    ("138 1234 5678", PHONE_MASKED),
    ("李某 13800000101；王某 13900000202", "李某 138****0101；王某 139****0202"),
    ("0476-5123456", "047****3456"),       # 11 digits with the area code: first 3, last 4
    ("5123456", "***3456"),                # a local number keeps its last 4
    ("3号楼2单元", "3号楼2单元"),            # short numbers are not personal data
    ("李某, 王某", "李某, 王某"),
])
def test_masking(text, masked):
    assert mask_text(text) == masked
    assert ID not in mask_value({"a": [ID]})["a"][0]


def test_fields_are_marked_in_the_form_definitions():
    personal = personal_fields(FormRegistry())
    assert personal["petitioner_phone"] == ("phone",)
    assert personal["petitioner_id_number"] == ("id_number",)
    assert set(personal["parties"]) == {"phone", "id_number"}
    assert set(personal["raiser_name"]) == {"phone", "id_number"}         # 反映人及联系方式 (协商议事)


def test_a_bad_personal_marker_is_a_definition_error():
    raw = {"key": "x", "fields": [{"name": "a", "type": "text", "personal": "passport"}]}
    with pytest.raises(FormDefinitionError, match="personal"):
        parse_definition(raw)
    raw["fields"][0]["personal"] = "phone|id_number"
    assert parse_definition(raw).fields[0].personal == ("phone", "id_number")


def _views(db, case_id=None):
    with db.read_session() as s:
        query = select(AuditEvent).where(AuditEvent.event_type == VIEW_EVENT)
        if case_id:
            query = query.where(AuditEvent.case_id == case_id)
        return list(s.scalars(query.order_by(AuditEvent.id)))


@pytest.fixture
def petition(service, clock):
    return service.start_case("petition", "linxi-xinguang-g1", PETITION, "lxx_xf")


def test_case_page_in_full_for_the_handler_and_the_view_is_audited(client, db, petition):
    login(client, "lxx_xf")
    page = client.get(f"/cases/{petition.business_key}").get_data(as_text=True)
    assert PHONE in page and ID in page
    views = _views(db, petition.case.id)
    assert len(views) == 1
    assert views[0].data == {"via": "case_page", "fields": ["petitioner_id_number", "petitioner_phone"]}
    assert views[0].actor_id == petition.case.created_by_id
    client.get(f"/cases/{petition.business_key}")
    assert len(_views(db, petition.case.id)) == 2           # every view


@pytest.mark.parametrize("user", ["lxx_dc", "lxx_pd", "cf_dc"])
def test_case_page_masked_for_others_and_nothing_audited(client, db, petition, user):
    login(client, user)
    page = client.get(f"/cases/{petition.business_key}").get_data(as_text=True)
    assert PHONE not in page and ID not in page
    assert PHONE_MASKED in page and ID_MASKED in page
    assert _views(db) == []


def test_task_page_of_another_official_is_masked(client, db, petition):
    task = open_item(petition, "decide").id
    login(client, "lxx_pd")                                  # county dispatcher: sees the case, not his task
    page = client.get(f"/tasks/{task}").get_data(as_text=True)
    assert PHONE not in page and PHONE_MASKED in page
    assert _views(db) == []
    login(client, "lxx_xf")                                  # the petition officer who decides
    page = client.get(f"/tasks/{task}").get_data(as_text=True)
    assert PHONE in page
    assert len(_views(db, petition.case.id)) == 1            # one event per page view


def test_api_masks_for_others_and_audits_the_handler(client, db, petition):
    ref = petition.business_key
    body = client.get(f"/api/v1/cases/{ref}", headers=_token(client, "lxx_dc")).get_json()
    text = json.dumps(body, ensure_ascii=False)
    assert PHONE not in text and ID not in text and body["data"]["petitioner_phone"] == PHONE_MASKED
    assert body["history"][0]["data"]["petitioner_id_number"] == ID_MASKED
    task = open_item(petition, "decide").id
    body = client.get(f"/api/v1/tasks/{task}", headers=_token(client, "lxx_pd")).get_json()
    assert body["form"]["readonly"]["petitioner_phone"] == PHONE_MASKED
    assert _views(db) == []
    body = client.get(f"/api/v1/cases/{ref}", headers=_token(client, "lxx_xf")).get_json()
    assert body["data"]["petitioner_phone"] == PHONE
    assert body["summary"]["petitioner_phone"] == PHONE_MASKED       # lists and summaries: always masked
    with db.read_session() as s:
        summary = s.scalar(select(Case.summary).where(Case.business_key == ref))
    assert summary["petitioner_phone"] == PHONE_MASKED                # the stored summary holds no personal value
    assert PHONE not in json.dumps(summary) and ID not in json.dumps(summary, ensure_ascii=False)
    assert [v.data["via"] for v in _views(db)] == ["api_case"]
    body = client.get(f"/api/v1/tasks/{task}", headers=_token(client, "lxx_xf")).get_json()
    assert body["form"]["readonly"]["petitioner_phone"] == PHONE
    assert [v.data["via"] for v in _views(db)] == ["api_case", "api_task"]


def test_exports_masked_for_auditor_full_for_handler_with_audit(client, db, petition):
    login(client, "lxx_dc")
    for fmt in ("csv", "json"):
        body = client.get(f"/audit/cases/{petition.business_key}/trace.{fmt}").get_data(as_text=True)
        assert PHONE not in body and ID not in body and ID_MASKED in body
        body = client.get(f"/audit/cases/export.{fmt}").get_data(as_text=True)
        # the JSON search export carries the case summary, which never holds a personal value
        # (CSV carries the page's columns only, no summary)
        assert petition.business_key in body and PHONE not in body
        assert (PHONE_MASKED in body) == (fmt == "json")
    assert _views(db) == []
    login(client, "lxx_xf")
    body = client.get(f"/audit/cases/{petition.business_key}/trace.json").get_data(as_text=True)
    assert ID in body and json.loads(body)["personal_data_masked"] is False
    assert [v.data["via"] for v in _views(db)] == ["trace_export_json"]
    body = client.get("/audit/cases/export.csv").get_data(as_text=True)   # a list: masked even for the handler
    assert PHONE not in body


def test_trace_lists_views_of_personal_data(client, service, db, petition):
    login(client, "lxx_xf")
    client.get(f"/cases/{petition.business_key}")
    from engine.trace import CaseTrace
    trace = CaseTrace(service).trace("lxx_dc", petition.business_key)
    viewed = [s for s in trace.steps if s.kind == VIEW_EVENT]
    assert len(viewed) == 1 and viewed[0].actor_username == "lxx_xf"
    # ... but the officials' history does not grow by being read
    detail_events = [e.event_type for e in service.view_case("lxx_xf", petition.business_key).events]
    page = client.get(f"/api/v1/cases/{petition.business_key}", headers=_token(client, "lxx_xf")).get_json()
    assert VIEW_EVENT not in [e["type"] for e in page["history"]] and VIEW_EVENT in detail_events


def test_mediation_parties_masked_inside_free_text(client, service, clock):
    data = {"dispute_type": "neighbour", "parties": "李某 13800000101\n王某 13900000202",
            "description": "两户因排水沟发生争执", "amount_in_dispute": 0, "complex_case": False}
    view = service.start_case("mediation", "linxi-xinguang-g1", data, "lx_wgy1")
    login(client, "lxx_dc")
    page = client.get(f"/cases/{view.business_key}").get_data(as_text=True)
    assert "李某 138****0101" in page and "13800000101" not in page


def test_a_personal_field_without_numbers_reveals_nothing_and_records_nothing(client, db, service, clock):
    from tests.helpers import REPORT
    view = service.start_case("grid_matter", "linxi-xinguang-g1", dict(REPORT, parties="李某, 王某"), "lx_wgy1")
    login(client, "lx_wgy1")
    assert "李某, 王某" in client.get(f"/cases/{view.business_key}").get_data(as_text=True)
    assert _views(db) == []
    with_phone = service.start_case("grid_matter", "linxi-xinguang-g1", dict(REPORT, parties="李某 13800000101"),
                                    "lx_wgy1")
    client.get(f"/cases/{with_phone.business_key}")
    assert [v.case_id for v in _views(db)] == [with_phone.case.id]


def test_marking_follows_a_reloaded_registry(tmp_path):
    (tmp_path / "f.yaml").write_text("key: f\nfields:\n  - {name: tel, type: text}\n", encoding="utf-8")
    registry = FormRegistry(tmp_path)
    assert personal_fields(registry) == {}
    (tmp_path / "f.yaml").write_text("key: f\nfields:\n  - {name: tel, type: text, personal: phone}\n",
                                     encoding="utf-8")
    registry._forms = None                 # what a reload does
    assert personal_fields(registry) == {"tel": ("phone",)}


def test_the_trace_names_a_viewed_field_as_the_form_that_recorded_it(app, client, clean_db, clock, fixture_forms):
    """`contact` is 报案人电话 in the first form and 到场人员及电话 in the second: a view of the
    case reads it as the form whose value it showed, not as the version's first form."""
    from engine.service import WorkflowService
    from tests.conftest import deploy_fixture
    from tests.helpers import work
    deploy_fixture(clean_db, "pd_labels.bpmn", forms=fixture_forms)
    svc = WorkflowService(clean_db, forms=fixture_forms)
    app.extensions["gridflow"] = svc
    view = svc.start_case("pd_labels", "linxi-xinguang-g1", {}, "lx_wgy1")
    login(client, "lx_wgy1")
    work(svc, "lx_wgy1", "caller", {"contact": "王某 13800000101"}, claim=True)
    client.get(f"/cases/{view.business_key}")                 # shows the caller's phone
    work(svc, "lx_wgy1", "on_site", {"contact": "韩冬 13800000012"}, claim=True)
    client.get(f"/cases/{view.business_key}")                 # shows who went on site
    assert len(_views(clean_db, view.case.id)) == 2
    login(client, "lxx_dc")
    trace = client.get(f"/audit/cases/{view.business_key}/trace.json").get_json()
    viewed = [[row["value"] for row in s["submitted_label"] if row["key"] == "fields"]
              for s in trace["steps"] if s["event_type"] == VIEW_EVENT]
    assert viewed == [["报案人电话"], ["到场人员及电话"]]
    page = client.get(f"/audit/cases/{view.business_key}/trace").get_data(as_text=True)
    assert page.count("<dt>查看的字段</dt><dd class=\"pre-wrap\">到场人员及电话</dd>") == 1


def test_the_whistle_report_in_phone_is_personal_data(client, service, db, clock):
    """网格吹哨、部门报到: 到场人员及电话 holds the phone of who goes on site: masked for the
    auditor on the case page, the trace and its exports and the API, as other phone fields are;
    in full for the case's handlers, and their view audited."""
    from tests.helpers import REPORT, work
    case = service.start_case("grid_matter", "linxi-xinguang-g1",
                              dict(REPORT, category="environment", colour="yellow"), "lx_wgy1")
    work(service, "lxz_pd", "town_dispatch", {"department": "chengguan", "departments": ["chengguan", "paichusuo"]})
    work(service, "lxz_cg", "report_in", {"on_site_person": "马俊 13800000011"})
    ref, full, masked = case.business_key, "13800000011", "马俊 138****0011"
    login(client, "lxx_dc")
    for path in (f"/cases/{ref}", f"/audit/cases/{ref}/trace", f"/audit/cases/{ref}/trace.csv",
                 f"/audit/cases/{ref}/trace.json", "/audit/cases/export.json"):
        body = client.get(path).get_data(as_text=True)
        assert full not in body, path
        assert masked in body or path.endswith("export.json"), path
    body = json.dumps(client.get(f"/api/v1/cases/{ref}", headers=_token(client, "lxx_dc")).get_json(),
                      ensure_ascii=False)
    assert full not in body and masked in body
    assert _views(db) == []
    login(client, "lxz_cg")                                   # the department that reported in
    assert full in client.get(f"/cases/{ref}").get_data(as_text=True)
    assert [v.data for v in _views(db, case.case.id)] == [{"via": "case_page", "fields": ["on_site_person"]}]
    assert personal_fields(service.forms)["on_site_person"] == ("phone",)
