"""The dashboard page, its exports and its API: the same figures everywhere, and
only for leaders, centre dispatchers and auditors within their jurisdiction."""
from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

import pytest
from openpyxl import load_workbook

from engine.metrics import Dashboards, Metrics, Scope
from tests.helpers import REPORT, login, work

V1 = "/api/v1"
UTC = timezone.utc
CHINA = timezone(timedelta(hours=8))
PERIOD = "start=2026-03-01&end=2026-03-31"


@pytest.fixture
def matters(service, clock):
    """Two grid matters in 新光社区第一网格: one resolved in the grid, one still open at the town."""
    service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    work(service, "lx_wgz1", "micro_mediation", {"resolved": True, "mediation_note": "双方和解",
                                                 "grid_leader_present": True})
    work(service, "lx_wgy1", "record_result", {"result_note": "双方签订调解协议"})
    service.start_case("grid_matter", "linxi-xinguang-g1", {**REPORT, "category": "environment", "colour": "yellow",
                                                            "description": "垃圾堆放影响通行"}, "lx_wgy1")
    return service


def token(client, username):
    r = client.post(f"{V1}/auth/token", json={"username": username, "password": "demo123"})
    assert r.status_code == 200
    return {"Authorization": f"Bearer {r.get_json()['token']}"}


def engine_figures(service, username, node, start="2026-03-01", end="2026-03-31"):
    s = datetime.fromisoformat(start).replace(tzinfo=CHINA)
    e = datetime.fromisoformat(end).replace(tzinfo=CHINA) + timedelta(days=1)
    return Dashboards(service.db).figures(username, node, s, e)


# ------------------------------------------------------------------ the page

def test_page_shows_charts_kpis_and_drill_down(client, matters):
    login(client, "lxx_ld1")
    page = client.get(f"/dashboard?{PERIOD}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "统计看板 · 林西县" in html
    assert html.count("<svg class=\"chart\"") >= 3            # monthly, children, category …
    assert 'data-kpi="closure_rate"' in html and 'data-kpi="overdue"' in html
    headline = engine_figures(matters, "lxx_ld1", "linxi")
    in_grid = next(r["cases"] for r in headline["resolution"] if r["level"] == "grid")
    assert f"格内化解 {in_grid} / 已化解 {headline['headline']['resolved']}" in html   # both numbers, as the other cards
    # drill-down: 林西县 → 林西镇 → 新光社区 → the grid
    assert 'href="/dashboard?node=linxizhen&amp;start=2026-03-01&amp;end=2026-03-31" class="drill"' in html
    html = client.get(f"/dashboard?node=linxizhen&{PERIOD}").get_data(as_text=True)
    assert 'node=linxi-xinguang&amp;start=2026-03-01&amp;end=2026-03-31" class="drill"' in html
    html = client.get(f"/dashboard?node=linxi-xinguang&{PERIOD}").get_data(as_text=True)
    assert 'node=linxi-xinguang-g1&amp;start=2026-03-01&amp;end=2026-03-31" class="drill"' in html
    grid = client.get(f"/dashboard?node=linxi-xinguang-g1&{PERIOD}").get_data(as_text=True)
    assert "新光社区第一网格" in grid
    # the breadcrumb leads back up, but not above the leader's county
    assert 'href="/dashboard?node=linxi&amp;start=2026-03-01&amp;end=2026-03-31">林西县</a>' in grid
    assert 'node=chifeng' not in grid
    # every table has its exports
    for name in ("children", "headline", "petitions", "workers", "evaluation", "by_category"):
        assert f"/dashboard/export/{name}.csv?" in html and f"/dashboard/export/{name}.xlsx?" in html


def test_categories_of_every_chain_are_named(client, matters):
    """A consultation's category is named from its own form, not shown as its stored value."""
    matters.start_case("consultation", "linxi-xinguang-g1", {
        "title": "小区公共收益用于加装健身器材", "background": "居民希望用小区广告公共收益加装健身器材。",
        "raised_by": "party_group", "category": "public_funds"}, "lx_wgy1")
    login(client, "lxx_ld1")
    html = client.get(f"/dashboard?{PERIOD}").get_data(as_text=True)
    assert "公共收益与维修资金" in html and ">public_funds<" not in html
    assert "矛盾纠纷" in html   # the grid matter's wording still wins for its own values


def test_a_forms_latest_revision_names_its_categories(service, tmp_path):
    from engine.form_store import VersionedForms, load_revision
    from tests.conftest import ROOT
    from web import create_app
    from web.dashboard import category_labels
    shipped = (ROOT / "forms" / "grid_matter_report.yaml").read_text(encoding="utf-8")
    service.forms = VersionedForms()
    for number, wording in ((2, "矛盾纠纷（旧）"), (3, "邻里矛盾纠纷")):
        key = f"grid_matter_report@{number}"
        service.forms.add_revision(key, load_revision(shipped.replace("zh: 矛盾纠纷", f"zh: {wording}"), key))
    app = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "SERVICE": service,
                      "UPLOAD_FOLDER": str(tmp_path)})
    with app.test_request_context():
        labels = category_labels()
    assert labels["dispute"] == "邻里矛盾纠纷" and labels["public_funds"] == "公共收益与维修资金"


def test_page_in_english(client, matters):
    login(client, "lxx_dc")
    client.post("/lang/en", data={"csrf_token": _csrf(client)})
    html = client.get(f"/dashboard?{PERIOD}").get_data(as_text=True)
    assert "Dashboard" in html and "On-time closure rate" in html


def _csrf(client):
    from tests.helpers import csrf_token
    return csrf_token(client, "/inbox")


def test_nav_link_only_for_dashboard_roles(client, service):
    login(client, "lxz_pd")
    assert 'href="/dashboard"' in client.get("/inbox").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": _csrf(client)})
    login(client, "lx_wgy1")
    assert 'href="/dashboard"' not in client.get("/inbox").get_data(as_text=True)


def test_a_department_is_no_jurisdiction_to_count_by(client, service):
    """The 信访局 lies inside the leader's county: the refusal said it did not; it is a department,
    which the dashboard does not count by."""
    login(client, "lxx_ld1")
    r = client.get("/dashboard?node=linxi-xfj")
    page = r.get_data(as_text=True)
    assert r.status_code == 400 and "职能部门" in page and "不在您的辖区内" not in page


@pytest.mark.parametrize("username,url", [
    ("lx_wgy1", "/dashboard"),                              # a grid worker
    ("lxz_cg", "/dashboard"),                               # a department handler
    ("cf_sj", "/dashboard"),                                # the designer
    ("lxz_pd", "/dashboard?node=linxi"),                    # a town dispatcher, the county's figures
    ("lxx_dc", "/dashboard?node=wuyuan"),                   # an auditor, another county
    ("lxx_ld1", "/dashboard?node=bayannur"),                # a leader, another city
    ("lxx_dc", "/dashboard/export/headline.csv?node=wuyuan"),
    ("lx_wgy1", "/dashboard/export/all.xlsx"),
])
def test_refusals(client, service, username, url):
    login(client, username)
    r = client.get(url)
    assert r.status_code == 403
    assert "无权" in r.get_data(as_text=True) or "仅供" in r.get_data(as_text=True)


def test_anonymous_is_sent_to_login(client, service):
    r = client.get("/dashboard")
    assert r.status_code == 302 and "/login" in r.headers["Location"]


@pytest.mark.parametrize("query,expected", [
    ("start=2026-13-01", "日期格式"), ("end=yesterday", "日期格式"), ("start=2026-03-10&end=2026-03-01", "结束日期"),
    ("end=9999-12-31", "日期应在 2000-01-01 至 2099-12-31 之间"), ("end=0001-01-01", "日期应在"),
    ("start=0001-01-01&end=0001-01-02", "日期应在"),
    ("node=../../etc", "找不到该辖区"), ("node=no-such-node", "找不到该辖区"),
])
def test_bad_input_says_what_to_do(client, service, query, expected):
    login(client, "lxx_ld1")
    r = client.get(f"/dashboard?{query}")
    assert r.status_code in (400, 404)
    assert expected in r.get_data(as_text=True)


@pytest.mark.parametrize("username,url,status,reason", [
    ("lxx_ld1", "/dashboard?start=2026-13-01&end=2026-03-31", 400, "日期格式应为"),
    ("lxx_ld1", "/dashboard?start=2026-03-10&end=2026-03-01", 400, "结束日期须晚于开始日期"),
    ("lxx_ld1", "/dashboard?start=2000-01-01&end=2026-03-01", 400, "统计区间不能超过十年"),
    ("lxx_ld1", "/dashboard?end=2100-01-01", 400, "日期应在 2000-01-01 至 2099-12-31 之间"),
    ("lxx_ld1", "/dashboard?node=../../etc", 400, "找不到该辖区"),
    ("lxx_ld1", "/dashboard?node=no-such-node", 404, "找不到该辖区"),
    ("lxx_ld1", "/dashboard?node=linxi-xfj", 400, "林西县信访局是职能部门"),          # a department as 辖区
    ("lxx_dc", "/dashboard?node=wuyuan&start=2026-03-01&end=2026-03-31", 403, "五原县不在您的辖区内"),
    ("lxz_pd", "/dashboard?node=linxi", 403, "林西县不在您的辖区内"),
    ("lxx_dc", "/dashboard/export/headline.csv?node=wuyuan", 403, "五原县不在您的辖区内"),
    ("lxx_ld1", "/dashboard/export/headline.csv?start=2026-03-10&end=2026-03-01", 400, "结束日期须晚于开始日期"),
    ("lxx_ld1", "/dashboard/export/nothing.csv", 400, "没有这张统计表"),
    ("lxx_ld1", "/dashboard/export/headline.pdf", 400, "导出格式只能是 CSV 或 XLSX"),
    ("lxx_ld1", "/dashboard/export/all.csv", 400, "全部统计表请导出为 XLSX"),
])
def test_a_refused_request_shows_the_dashboard_again_with_the_reason(client, service, username, url, status, reason):
    """Not the generic error page: the dashboard, why it shows no figures, and its form to ask again."""
    login(client, username)
    r = client.get(url)
    html = r.get_data(as_text=True)
    assert r.status_code == status
    assert "出错了" not in html and "<h1>统计看板</h1>" in html and 'role="search"' in html
    assert f'<p class="flash error" role="alert" id="refused">未显示统计：{reason}' in html


def test_a_refused_period_keeps_what_was_typed_and_the_node(client, service):
    login(client, "lxx_ld1")
    html = client.get("/dashboard?node=linxizhen&start=2026-03-10&end=2026-03-01").get_data(as_text=True)
    assert 'name="start" value="2026-03-10"' in html and 'name="end" value="2026-03-01"' in html
    assert '<input type="hidden" name="node" value="linxizhen">' in html and "<select" not in html


def test_a_refused_node_offers_the_officials_own_jurisdictions(client, service):
    login(client, "lxx_dc")
    html = client.get("/dashboard?node=wuyuan&start=2026-03-01&end=2026-03-31").get_data(as_text=True)
    assert '<select id="d-node" name="node" aria-invalid="true"' in html
    assert '<option value="linxi">林西县</option>' in html and 'value="wuyuan"' not in html
    assert 'name="start" value="2026-03-01"' in html          # the period as asked
    assert '<a href="/dashboard?node=linxi">林西县</a>' in html


def test_a_refusal_in_english(client, service):
    login(client, "lxx_dc")
    client.post("/lang/en", data={"csrf_token": _csrf(client)})
    r = client.get("/dashboard?node=wuyuan")
    html = r.get_data(as_text=True)
    assert r.status_code == 403 and "No figures shown: " in html and "is outside your jurisdiction" in html
    assert "Jurisdictions you may view" in html and "不在您的辖区内" not in html


# ------------------------------------------------------------------ exports

def test_csv_export_matches_the_figures(client, matters):
    login(client, "lxx_ld1")
    r = client.get(f"/dashboard/export/headline.csv?{PERIOD}")
    assert r.status_code == 200 and r.mimetype == "text/csv"
    assert "attachment" in r.headers["Content-Disposition"]
    text = r.get_data().decode("utf-8")
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text[1:])))
    assert rows[0] == ["指标", "数值"]
    values = dict(rows[1:])
    head = engine_figures(matters, "lxx_ld1", None)["headline"]
    assert values["登记事项"] == str(head["registered"]) == "2"
    assert values["办结率 %"] == ("" if head["closure_rate"] is None else str(head["closure_rate"]))
    children = list(csv.reader(io.StringIO(
        client.get(f"/dashboard/export/children.csv?{PERIOD}").get_data().decode("utf-8")[1:])))
    assert children[1][0] == "林西镇" and children[1][2] == "2"


def test_xlsx_export_of_one_and_of_all_tables(client, matters):
    login(client, "lxx_ld1")
    r = client.get(f"/dashboard/export/by_category.xlsx?{PERIOD}")
    assert r.status_code == 200 and r.mimetype.endswith("spreadsheetml.sheet")
    book = load_workbook(io.BytesIO(r.get_data()))
    sheet = book[book.sheetnames[0]]
    rows = [[c.value for c in row] for row in sheet.iter_rows(min_row=2)]
    assert rows[0] == ["类别", "事项"]
    assert sorted(rows[1:]) == [["环境卫生", 1], ["矛盾纠纷", 1]]
    everything = load_workbook(io.BytesIO(client.get(f"/dashboard/export/all.xlsx?{PERIOD}").get_data()))
    assert len(everything.sheetnames) == 12
    assert "信访事项" in everything.sheetnames and "逆向考评" in everything.sheetnames


@pytest.mark.parametrize("url,status", [
    ("/dashboard/export/nothing.csv", 400), ("/dashboard/export/headline.pdf", 400), ("/dashboard/export/all.csv", 400),
])
def test_export_refuses_unknown_tables_and_formats(client, service, url, status):
    login(client, "lxx_ld1")
    assert client.get(url).status_code == status


def test_xlsx_cells_never_become_formulas():
    from web.dashboard import _safe_cell
    assert _safe_cell("=HYPERLINK(\"x\")") == "'=HYPERLINK(\"x\")"
    assert _safe_cell("林西镇") == "林西镇" and _safe_cell(3) == 3


# ------------------------------------------------------------------ API

def test_api_gives_the_same_figures(client, matters):
    r = client.get(f"{V1}/dashboard?{PERIOD}&node=linxizhen", headers=token(client, "lxz_pd"))
    assert r.status_code == 200
    body = r.get_json()
    expected = engine_figures(matters, "lxz_pd", "linxizhen")
    assert body["headline"] == expected["headline"]
    assert body["children"] == expected["children"]
    assert body["headline"]["registered"] == 2
    assert body["period"] == {"start": "2026-03-01", "end": "2026-03-31"}
    assert body["scope"]["code"] == "linxizhen"


@pytest.mark.parametrize("username,query,status", [
    ("lx_wgy1", "", 403), ("lxz_pd", "node=linxi", 403), ("lxx_dc", "node=wuyuan", 403),
    ("lxx_dc", "start=03/01/2026", 400), ("lxx_dc", "colour=red", 400), ("lxx_dc", "node=nope", 404),
    ("lxx_dc", "end=0001-10-01&start=2702-07-25&node=C", 400),   # found by schemathesis: was a 500
])
def test_api_refusals_and_bad_input(client, service, username, query, status):
    r = client.get(f"{V1}/dashboard?{query}", headers=token(client, username))
    assert r.status_code == status
    assert r.get_json()["message"]


def test_api_needs_a_token(client, service):
    assert client.get(f"{V1}/dashboard").status_code == 401


def test_openapi_documents_the_dashboard(client, service):
    spec = client.get(f"{V1}/openapi.json").get_json()
    op = spec["paths"]["/api/v1/dashboard"]["get"]
    assert op["tags"] == ["dashboard"]
    assert {"200", "401", "403", "404"} <= set(op["responses"])


def test_page_api_and_exports_read_the_rollups_once_built(client, matters):
    """Once built (gridflow metrics refresh), the page, the API and the exports read the roll-ups:
    the same figures as from the cases, before and after the next refresh."""
    from engine import clock, rollup
    from engine.models import JurisdictionNode
    from sqlalchemy import select
    login(client, "lxx_ld1")
    before = client.get(f"{V1}/dashboard?{PERIOD}&node=linxi", headers=token(client, "lxx_ld1")).get_json()
    csv_before = client.get(f"/dashboard/export/children.csv?{PERIOD}&node=linxi").get_data()
    with matters.db.unit_of_work() as session:
        rollup.rebuild(session, clock.now())
    matters.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")   # not yet refreshed
    with matters.db.read_session() as session:
        node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "linxi"))
        start, end = datetime(2026, 3, 1, tzinfo=CHINA), datetime(2026, 4, 1, tzinfo=CHINA)
        raw = Metrics(session, Scope(node, start, end), rollups=False).compute()
    after = client.get(f"{V1}/dashboard?{PERIOD}&node=linxi", headers=token(client, "lxx_ld1")).get_json()
    assert after["headline"] == raw["headline"] and after["children"] == raw["children"]
    assert after["headline"]["registered"] == before["headline"]["registered"] + 1
    assert client.get(f"/dashboard?{PERIOD}&node=linxi").status_code == 200
    with matters.db.unit_of_work() as session:
        rollup.refresh(session, clock.now())
    again = client.get(f"{V1}/dashboard?{PERIOD}&node=linxi", headers=token(client, "lxx_ld1")).get_json()
    assert again["headline"] == raw["headline"] and again["by_category"] == raw["by_category"]
    assert client.get(f"/dashboard/export/children.csv?{PERIOD}&node=linxi").get_data() != csv_before  # one more
