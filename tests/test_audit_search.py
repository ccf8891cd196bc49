"""Case search: every filter, the jurisdiction scope, paging, bad input; page and API."""
from datetime import date, timedelta

import pytest

from engine.errors import InvalidInput
from sqlalchemy import select

from engine.models import JurisdictionNode
from engine.search import CaseSearch, SearchFilters, path_range
from tests.helpers import REPORT, login, open_item

G1 = "linxi-xinguang-g1"
G2 = "linxi-xinguang-g2"
SONGSHAN = "songshan-fushanzhuang-g1"


def keys(page):
    return [r.case.business_key for r in page.rows]


@pytest.fixture(params=["narrow", "wide"])
def plan(request, monkeypatch):
    """Both ways the search can be planned on SQLite: driven by each filter's own index
    (few matches), or walking the created-at index (a probe of 1 row calls every filter wide)."""
    if request.param == "wide":
        monkeypatch.setattr("engine.search.PROBE", 1)
    return request.param


@pytest.fixture
def cases(service, clock, plan):
    """Four cases over three grids and two days; one closed in the grid by lx_wgz1."""
    made = {}
    made["g1_a"] = service.start_case("grid_matter", G1, REPORT, "lx_wgy1").business_key
    clock.advance(timedelta(hours=1))
    made["g2"] = service.start_case("grid_matter", G2, dict(REPORT, description="二网格楼道堆物"), "lx_wgy2")
    made["g2"] = made["g2"].business_key
    clock.advance(timedelta(days=1))
    made["g1_b"] = service.start_case("grid_matter", G1, dict(REPORT, description="第二天的邻里纠纷"), "lx_wgy1")
    made["g1_b"] = made["g1_b"].business_key
    item = open_item(service.get_case(made["g1_b"]), "micro_mediation")
    service.complete_task(item.id, {"resolved": True, "mediation_note": "双方达成谅解"}, "lx_wgz1")
    made["songshan"] = service.start_case("grid_matter", SONGSHAN, REPORT, "ss_wgy1").business_key
    return made


def search(service, actor, **kw):
    return CaseSearch(service).search(actor, SearchFilters(**kw))


def test_path_range_is_exactly_the_subtree():
    lo, hi = path_range("/1/4/")
    inside = ["/1/4/", "/1/4/9/", "/1/4/99/120/"]
    outside = ["/1/40/", "/1/41/", "/1/3/", "/1/5/", "/1/"]
    assert all(lo <= p < hi for p in inside)
    assert not any(lo <= p < hi for p in outside)


def test_auditor_sees_own_jurisdiction_newest_first(service, cases):
    page = search(service, "lxx_dc")
    assert keys(page) == [cases["g1_b"], cases["g2"], cases["g1_a"]]
    assert not page.has_more
    # the city auditor sees the other county too; the other city's auditor sees nothing
    assert set(keys(search(service, "cf_dc"))) == set(cases.values())
    assert keys(search(service, "by_dc")) == []
    # a department's people see only what is dispatched to them: the search shows them nothing
    assert keys(search(service, "lxz_cg")) == []


def test_filters(service, cases, clock):
    assert keys(search(service, "cf_dc", business_key=cases["g2"])) == [cases["g2"]]
    assert set(keys(search(service, "cf_dc", business_key=cases["g1_a"][:3].lower()))) == \
        {cases["g1_a"], cases["g2"], cases["g1_b"]}          # prefix, any case
    assert keys(search(service, "cf_dc", node="linxi-xinguang-g2")) == [cases["g2"]]
    assert set(keys(search(service, "cf_dc", node="songshan"))) == {cases["songshan"]}
    assert keys(search(service, "cf_dc", process_key="petition")) == []
    assert keys(search(service, "lxx_dc", process_key="grid_matter", status="completed")) == []
    # the grid-resolved case goes on to record_result; still open
    assert cases["g1_b"] in keys(search(service, "lxx_dc", status="open"))
    day1 = date(2026, 3, 2)
    assert set(keys(search(service, "lxx_dc", created_from=day1, created_to=day1))) == {cases["g1_a"], cases["g2"]}
    assert keys(search(service, "lxx_dc", created_from=day1 + timedelta(days=1))) == [cases["g1_b"]]
    assert keys(search(service, "lxx_dc", created_to=day1 - timedelta(days=1))) == []


def test_participant_and_task(service, cases):
    # lx_wgz1 completed micro_mediation of g1_b only
    assert keys(search(service, "lxx_dc", participant="lx_wgz1")) == [cases["g1_b"]]
    assert set(keys(search(service, "lxx_dc", participant="lx_wgy1"))) == {cases["g1_a"], cases["g1_b"]}
    assert keys(search(service, "lxx_dc", participant="lxz_pd")) == []
    assert keys(search(service, "lxx_dc", task="record_result")) == [cases["g1_b"]]
    by_name = search(service, "lxx_dc", task="网格微调处")
    assert set(keys(by_name)) == {cases["g1_a"], cases["g2"], cases["g1_b"]}
    assert keys(search(service, "lxx_dc", task="no_such_task")) == []


def test_paging(service, cases):
    first = search(service, "cf_dc", limit=2)
    second = search(service, "cf_dc", limit=2, offset=2)
    assert first.has_more and not second.has_more
    assert len(keys(first)) == 2 and len(keys(second)) == 2
    assert set(keys(first)) | set(keys(second)) == set(cases.values())


@pytest.mark.parametrize("kw, field", [
    ({"status": "lost"}, "status"),
    ({"node": "no-such-node"}, "node"),
    ({"node": "linxi-zjj"}, "node"),                  # a department: no case lies under it
    ({"process_key": "nosuch"}, "process_key"),       # a typo must not read as "no cases"
    ({"participant": "nobody"}, "participant"),
    ({"created_from": date(2026, 3, 5), "created_to": date(2026, 3, 1)}, "created_to"),
    ({"created_from": "2026-03-01"}, "created_from"),
    ({"created_from": date.min}, "created_from"),     # its China-time day starts before year 1 in UTC
    ({"created_to": date.max}, "created_to"),         # the day after it is past the calendar
    ({"limit": 0}, "limit"),
    ({"limit": 5000}, "limit"),
    ({"offset": -1}, "offset"),
    ({"business_key": "bad\x00"}, "business_key"),
])
def test_invalid_filters_are_refused_by_field(service, cases, kw, field):
    with pytest.raises(InvalidInput) as info:
        search(service, "lxx_dc", **kw)
    assert field in info.value.fields


def test_search_masks_personal_data_in_summaries(service, clock):
    service.start_case("grid_matter", G1, dict(REPORT, parties="李某 13812345678"), "lx_wgy1")
    row = search(service, "lxx_dc").rows[0]
    assert row.summary["parties"] == "李某 138****5678"
    # even for the reporter: lists never show personal data
    assert search(service, "lx_wgy1").rows[0].summary["parties"] == "李某 138****5678"


# ------------------------------------------------------------------ web page and API

def test_search_page(client, cases):
    login(client, "lxx_dc")
    html = client.get("/audit/cases").get_data(as_text=True)
    assert "案件查询" in html and cases["g1_a"] not in html         # no search until asked
    html = client.get(f"/audit/cases?go=1&node={G2}").get_data(as_text=True)
    assert cases["g2"] in html and cases["g1_a"] not in html and "/trace" in html
    department = client.get("/audit/cases?node=linxi-zjj")
    assert department.status_code == 400 and "不能选职能部门" in department.get_data(as_text=True)
    response = client.get("/audit/cases?participant=nobody")
    assert response.status_code == 400
    assert "找不到该用户" in response.get_data(as_text=True)
    response = client.get("/audit/cases?from=2026-13-01")
    assert response.status_code == 400 and "有效的日期" in response.get_data(as_text=True)


def test_search_page_outside_jurisdiction_is_empty(client, cases):
    login(client, "by_dc")
    html = client.get("/audit/cases?go=1").get_data(as_text=True)
    assert not any(k in html for k in cases.values())
    assert "没有符合条件的案件" in html


def _token(client, username):
    response = client.post("/api/v1/auth/token", json={"username": username, "password": "demo123"})
    return {"Authorization": f"Bearer {response.get_json()['token']}"}


def test_search_api(client, cases):
    headers = _token(client, "lxx_dc")
    body = client.get("/api/v1/cases?limit=2", headers=headers).get_json()
    assert [c["business_key"] for c in body["items"]] == [cases["g1_b"], cases["g2"]]
    assert body["has_more"] is True
    body = client.get("/api/v1/cases?participant=lx_wgz1&task=micro_mediation", headers=headers).get_json()
    assert [c["business_key"] for c in body["items"]] == [cases["g1_b"]]
    bad = client.get("/api/v1/cases?status=lost&limit=0", headers=headers)
    assert bad.status_code == 400 and {"status", "limit"} <= set(bad.get_json()["fields"])
    bad = client.get("/api/v1/cases?participant=nobody", headers=headers)
    assert bad.status_code == 400 and "participant" in bad.get_json()["fields"]
    assert client.get("/api/v1/cases").status_code == 401
    other = client.get("/api/v1/cases", headers=_token(client, "by_dc")).get_json()
    assert other["items"] == []


def test_search_api_in_openapi(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "get" in spec["paths"]["/api/v1/cases"] and "post" in spec["paths"]["/api/v1/cases"]
    assert "get" in spec["paths"]["/api/v1/cases/{ref}/trace"]


def test_plan_calls_filters_wide_only_when_they_match_many(service, cases, monkeypatch):
    search_ = CaseSearch(service)
    f = SearchFilters(business_key="LX", process_key="grid_matter", participant="lx_wgy1", task="micro_mediation")
    with service.db.read_session() as s:
        user = service._user(s, "lxx_dc")
        resolved = search_._check(s, f)
        resolved["task_ids"] = ["micro_mediation"]
        scope = search_.scope_paths(user)
        monkeypatch.setattr("engine.search.PROBE", 10 ** 6)
        few = search_.plan(s, f, resolved, scope)
        monkeypatch.setattr("engine.search.PROBE", 1)
        many = search_.plan(s, f, resolved, scope)
        one_grid = dict(resolved, node=s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == G1)))
        monkeypatch.setattr("engine.search.PROBE", 10 ** 6)
        grid_only = search_.plan(s, SearchFilters(node=G1), one_grid, scope)
    if service.db.engine.dialect.name != "sqlite":
        assert few == many == set()        # PostgreSQL plans from its own statistics
        return
    assert few == {"path"}                 # a county is more than 5 % of the demo's grids
    assert many == {"path", "business_key", "process_key", "participant", "task"}
    assert grid_only == {"path"}           # one grid of the demo's handful is still over 5 %
