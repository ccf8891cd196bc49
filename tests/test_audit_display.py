"""What an auditor reads: the trace's step data as labelled text (not JSON), the exports'
codes as the pages' labels, bad filters named on the search page and its exports, and a
jurisdiction the dropdown does not list kept as the chosen one."""
import json
import re

import pytest
from sqlalchemy import select

from engine.models import JurisdictionNode, User
from tests.helpers import REPORT, export_rows, csrf_token, login, open_item
from tests.test_access import PNG

G1 = "linxi-xinguang-g1"


def english(client):
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/inbox"), "next": "/inbox"})


def display_name(db, username):
    with db.read_session() as s:
        return s.scalar(select(User.display_name).where(User.username == username))


@pytest.fixture
def busy_case(client, service, clock):
    """A grid matter with a 督办 (a note with markup in it), a claim then 改派 back to the
    group, an upload and a handler's view of the personal data."""
    view = service.start_case("grid_matter", G1, dict(REPORT, parties="李某 13812345678"), "lx_wgy1")
    item = open_item(view, "micro_mediation")
    service.supervision.urge(item.id, "lxz_pd", "请尽快派单 <b>加急</b>")
    service.claim(item.id, "lx_wgz1")
    service.supervision.reassign(item.id, "", "孙某出差，退回组内", "lxz_pd")
    service.upload_attachment("lx_wgy1", "现场照片.png", PNG, view.business_key)
    login(client, "lx_wgy1")
    assert client.get(f"/cases/{view.business_key}").status_code == 200   # a personal_data_viewed event
    return view.business_key


def _steps_column(html):
    """The 提交/修改内容 cells of the trace table."""
    body = html.split('id="h-steps"', 1)[1]
    return re.findall(r'<td data-label="[^"]*">\s*(?:<dl class="summary">.*?</dl>|<code.*?</code>)', body, re.S)


def test_trace_page_shows_what_steps_carried_as_labelled_text(client, service, db, busy_case):
    login(client, "lxx_dc")
    html = client.get(f"/audit/cases/{busy_case}/trace").get_data(as_text=True)
    cells = "".join(_steps_column(html))
    # no JSON, no \u escapes, no raw keys
    assert "\\u" not in html and "{&#34;" not in html and '{"' not in cells
    for raw_key in ("holders", "node_id", "from_name", '"via"', "candidates", "assignee_id"):
        assert raw_key not in cells
    # 督办: the note in real Chinese, its markup escaped (never rendered), the urged holder by name
    holder = display_name(db, "lx_wgz1")
    assert "<dt>督办意见</dt><dd class=\"pre-wrap\">请尽快派单 &lt;b&gt;加急&lt;/b&gt;</dd>" in html
    assert "<b>加急</b>" not in html
    assert re.search(r"<dt>被督办人</dt><dd[^>]*>[^<]*" + holder, html)
    # 生成任务: the role's label and the unit's name
    assert "<dt>承办岗位</dt><dd class=\"pre-wrap\">网格长 @ 新光社区第一网格</dd>" in html
    # 改派: who had it, to whom, why
    assert f"<dt>原承办人</dt><dd class=\"pre-wrap\">{holder}（lx_wgz1）</dd>" in html
    assert "<dt>改派给</dt><dd class=\"pre-wrap\">退回组内</dd>" in html
    assert "<dt>改派理由</dt><dd class=\"pre-wrap\">孙某出差，退回组内</dd>" in html
    # upload: the file's name as typed
    assert "<dt>文件名</dt><dd class=\"pre-wrap\">现场照片.png</dd>" in html
    # personal data viewed: where, and which fields by their labels
    assert "<dt>查看途径</dt><dd class=\"pre-wrap\">案件页面</dd>" in html
    assert "<dt>查看的字段</dt><dd class=\"pre-wrap\">当事人</dd>" in html


def test_trace_page_step_data_in_english(client, service, db, busy_case):
    login(client, "lxx_dc")
    english(client)
    html = client.get(f"/audit/cases/{busy_case}/trace").get_data(as_text=True)
    assert "<dt>Note to the holder</dt><dd class=\"pre-wrap\">请尽快派单 &lt;b&gt;加急&lt;/b&gt;</dd>" in html
    assert "<dt>Role @ unit</dt><dd class=\"pre-wrap\">Grid leader @ 新光社区第一网格</dd>" in html
    assert "<dt>Reassigned to</dt><dd class=\"pre-wrap\">back to the group</dd>" in html
    assert "<dt>Seen on</dt><dd class=\"pre-wrap\">case page</dd>" in html
    assert "<dt>Fields seen</dt><dd class=\"pre-wrap\">Parties involved</dd>" in html


def test_trace_page_reads_any_event_data_without_failing(client, service, db, clock):
    """Data the trace does not know, or of an unexpected shape, still reads as key: value."""
    from engine import audit
    from engine.models import Case
    view = service.start_case("grid_matter", G1, REPORT, "lx_wgy1")
    with db.unit_of_work() as s:
        case = s.get(Case, view.case.id)
        audit.record(s, case, "task_unclaimed", clock.now(), data={"reason": "account deactivated",
                                                                   "released_by": "lxx_dc"})
        audit.record(s, case, "urged", clock.now(), data={"holders": [{"odd": 1}], "to": ["x"], "note": None})
        audit.record(s, case, "lane_unresolved", clock.now(), bpmn_id="department_handle",
                     data={"reason": "no department_handler for department 'minzheng' at or above 林西县"})
        audit.record(s, case, "something_new", clock.now(), data={"ratio": 0.5, "flags": {"a": True}, "who": []})
    login(client, "lxx_dc")
    response = client.get(f"/audit/cases/{view.business_key}/trace")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "<dt>原因</dt><dd class=\"pre-wrap\">账号已停用</dd>" in html
    # the engine's English note on a lane nobody holds, read in Chinese
    assert "<dt>原因</dt><dd class=\"pre-wrap\">林西县及其上级没有民政的部门承办人</dd>" in html
    assert f"<dt>退回操作人</dt><dd class=\"pre-wrap\">{display_name(db, 'lxx_dc')}（lxx_dc）</dd>" in html
    assert "<dt>ratio</dt><dd class=\"pre-wrap\">0.5</dd>" in html
    assert "<dt>flags</dt><dd class=\"pre-wrap\">a: 是</dd>" in html


# ------------------------------------------------------------------ exports: labels, not codes

@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_search_export_shows_the_pages_labels(client, service, clock, fmt):
    key = service.start_case("grid_matter", G1, REPORT, "lx_wgy1").business_key
    login(client, "lxx_dc")
    rows = export_rows(fmt, client.get(f"/audit/cases/export.{fmt}?bk={key}").data)
    row = dict(zip(rows[0], rows[1]))
    assert row["状态"] == "办理中" and row["风险等级"] == "蓝" and row["类别"] == "矛盾纠纷"
    assert row["流程"] == "网格事项办理" and row["流程标识"] == "grid_matter"
    english(client)
    rows = export_rows(fmt, client.get(f"/audit/cases/export.{fmt}?bk={key}").data)
    row = dict(zip(rows[0], rows[1]))
    assert row["Status"] == "Open" and row["Colour"] == "Blue" and row["Category"] == "Dispute"
    assert row["Process"] == "Grid matter"
    # the same words as the English page
    page = client.get(f"/audit/cases?bk={key}").get_data(as_text=True)
    assert ">Grid matter<" in page and ">Open<" in page


def test_search_export_json_keeps_codes_and_carries_labels(client, service, clock):
    key = service.start_case("grid_matter", G1, REPORT, "lx_wgy1").business_key
    login(client, "lxx_dc")
    (case,) = json.loads(client.get(f"/audit/cases/export.json?bk={key}").data)["cases"]
    assert (case["status"], case["status_label"]) == ("open", "办理中")
    assert (case["colour"], case["colour_label"]) == ("blue", "蓝")
    assert (case["category"], case["category_label"]) == ("dispute", "矛盾纠纷")
    assert (case["process_key"], case["process"], case["process_label"]) == ("grid_matter", "网格事项办理", "网格事项办理")
    english(client)
    (case,) = json.loads(client.get(f"/audit/cases/export.json?bk={key}").data)["cases"]
    assert (case["status"], case["status_label"], case["process_label"]) == ("open", "Open", "Grid matter")


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_trace_export_shows_the_pages_labels(client, service, busy_case, fmt):
    login(client, "lxx_dc")
    rows = export_rows(fmt, client.get(f"/audit/cases/{busy_case}/trace.{fmt}").data)
    head, body = rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]
    assert head[:5] == ["序号", "时间", "事件", "类别", "环节"]
    events = [r["事件"] for r in body]
    assert events[0] == "上报/发起" and "督办" in events and "改派" in events and "上传附件" in events
    codes = {"case_started", "urged", "task_reassigned", "attachment_added", "task_created", "step"}
    assert not codes & set(events)
    urge = next(r for r in body if r["事件"] == "督办")
    assert urge["角色"] == "派单员" and urge["类别"] == "督办"
    assert not {"center_dispatcher", "grid_worker"} & {r["角色"] for r in body}
    assert "网格微调处" in {r["环节"] for r in body}
    english(client)
    rows = export_rows(fmt, client.get(f"/audit/cases/{busy_case}/trace.{fmt}").data)
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    urge = next(r for r in body if r["Event"] == "Urge")
    assert urge["Role"] == "Centre dispatcher"
    assert body[0]["Event"] == "Report / start"


def test_trace_export_json_keeps_codes_and_carries_labels(client, service, busy_case):
    login(client, "lxx_dc")
    doc = json.loads(client.get(f"/audit/cases/{busy_case}/trace.json").data)
    urge = next(s for s in doc["steps"] if s["event_type"] == "urged")
    assert (urge["event_label"], urge["kind"], urge["kind_label"]) == ("督办", "urge", "督办")
    assert (urge["role"], urge["role_label"]) == ("center_dispatcher", "派单员")
    started = doc["steps"][0]
    assert (started["event_type"], started["event_label"], started["kind_label"]) == ("case_started", "上报/发起", None)
    assert (doc["case"]["status"], doc["case"]["status_label"]) == ("open", "办理中")
    assert doc["case"]["process_label"] == "网格事项办理"


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_trace_export_names_people_units_and_steps_as_the_page_does(client, service, db, busy_case, fmt):
    """What a step carried reads as on the trace page: 督办's holders by name, a new task's
    unit by name, the step it came from by its name; never a user id, node id or JSON."""
    login(client, "lxx_dc")
    rows = export_rows(fmt, client.get(f"/audit/cases/{busy_case}/trace.{fmt}").data)
    body = [dict(zip(rows[0], r)) for r in rows[1:]]
    holder = display_name(db, "lx_wgz1")
    urge = next(r for r in body if r["事件"] == "督办")
    assert urge["提交内容"] == f"督办意见: 请尽快派单 <b>加急</b>\n督办次数: 1\n被督办人: {holder}"
    created = next(r for r in body if r["事件"] == "生成任务")
    assert created["提交内容"] == "承办岗位: 网格长 @ 新光社区第一网格"
    moved = next(r for r in body if r["事件"] == "改派")
    assert f"原承办人: {holder}（lx_wgz1）" in moved["提交内容"].split("\n")
    assert {"上报网格事项", "研判分派"} <= {r["来自环节"] for r in body}
    assert not {"start", "decide_dispatch"} & {r["来自环节"] for r in body}
    with db.read_session() as s:
        ids = {s.scalar(select(User.id).where(User.username == "lx_wgz1")),
               s.scalar(select(JurisdictionNode.id).where(JurisdictionNode.code == G1))}
    cells = "".join(r["提交内容"] for r in body)
    for raw in ("holders", "node_id", "candidates", "assignee_id", "from_name", "{", "["):
        assert raw not in cells
    assert not any(re.search(rf"(?<!\d){i}(?!\d)", r["提交内容"]) for r in body if r["事件"] != "上传附件" for i in ids)
    english(client)
    rows = export_rows(fmt, client.get(f"/audit/cases/{busy_case}/trace.{fmt}").data)
    urge = next(dict(zip(rows[0], r)) for r in rows[1:] if dict(zip(rows[0], r))["Event"] == "Urge")
    assert f"Urged holders: {holder}" in urge["Submitted"].split("\n")


def test_trace_export_json_names_the_ids_it_keeps(client, service, db, busy_case):
    """JSON keeps the recorded ids and codes and carries the people and units by username or
    node code and name beside them, and each step's data as the page reads it."""
    login(client, "lxx_dc")
    doc = json.loads(client.get(f"/audit/cases/{busy_case}/trace.json").data)
    holder = display_name(db, "lx_wgz1")
    with db.read_session() as s:
        holder_id = s.scalar(select(User.id).where(User.username == "lx_wgz1"))
        grid_id = s.scalar(select(JurisdictionNode.id).where(JurisdictionNode.code == G1))
    urge = next(s for s in doc["steps"] if s["event_type"] == "urged")
    assert urge["submitted"]["holders"] == [holder_id]
    assert urge["references"]["holders"] == [{"username": "lx_wgz1", "name": holder}]
    assert {"key": "holders", "label": "被督办人", "value": holder} in urge["submitted_label"]
    assert (urge["node"], urge["node_code"]) == ("林西镇", "linxizhen")
    created = next(s for s in doc["steps"] if s["event_type"] == "task_created")
    assert created["submitted"]["node_id"] == grid_id
    assert created["references"]["node_id"] == {"code": G1, "name": "新光社区第一网格"}
    moved = next(s for s in doc["steps"] if s["event_type"] == "task_reassigned")
    assert moved["references"]["from"] == {"username": "lx_wgz1", "name": holder}
    came = next(s for s in doc["steps"] if s["flow_from"] == "start")
    assert came["flow_from_label"] == "上报网格事项"
    # the API's trace carries the same references
    token = client.post("/api/v1/auth/token", json={"username": "lxx_dc", "password": "demo123"}).get_json()["token"]
    api = client.get(f"/api/v1/cases/{busy_case}/trace", headers={"Authorization": f"Bearer {token}"}).get_json()
    urge = next(s for s in api["steps"] if s["event_type"] == "urged")
    assert urge["references"]["holders"] == [{"username": "lx_wgz1", "name": holder}]
    assert next(s for s in api["steps"] if s["event_type"] == "task_created")["references"]["node_id"]["code"] == G1


# ------------------------------------------------------------------ bad filters say which

@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_export_with_a_bad_filter_names_it(client, service, fmt):
    login(client, "lxx_dc")
    response = client.get(f"/audit/cases/export.{fmt}?from=2026-13-01")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "请填写有效的日期（年-月-日）。" in html
    assert "请求无效" not in html
    response = client.get(f"/audit/cases/export.{fmt}?node=no-such-node")
    assert response.status_code == 400 and "找不到该辖区，请从列表中选择。" in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["/audit/cases", "/audit/cases/export.csv", "/audit/cases/export.json"])
def test_unknown_process_is_refused_on_page_and_export(client, service, clock, path):
    service.start_case("grid_matter", G1, REPORT, "lx_wgy1")
    login(client, "lxx_dc")
    response = client.get(f"{path}?process=nosuch")
    html = response.get_data(as_text=True)
    assert response.status_code == 400 and "请选择有效的流程。" in html
    assert 'id="err-process_key"' in html
    # a deployed process is still accepted
    assert client.get(f"{path}?process=grid_matter").status_code == 200


# ------------------------------------------------------------------ a node the dropdown does not list

def _selected_node(html):
    select_ = re.search(r'<select id="s-node" name="node">(.*?)</select>', html, re.S).group(1)
    return re.findall(r'<option value="([^"]*)" selected>([^<]*)</option>', select_)


def test_grid_in_url_stays_selected_by_its_name(client, service, clock):
    key = service.start_case("grid_matter", G1, REPORT, "lx_wgy1").business_key
    login(client, "lxx_dc")
    html = client.get(f"/audit/cases?node={G1}").get_data(as_text=True)
    assert _selected_node(html) == [(G1, "新光社区第一网格")]
    assert key in html
    # the listed jurisdictions are selected as before, and not doubled
    html = client.get("/audit/cases?node=linxi-xinguang").get_data(as_text=True)
    assert [code for code, _name in _selected_node(html)] == ["linxi-xinguang"]
    assert html.count('value="linxi-xinguang"') == 1


def test_grid_worker_sees_their_own_grid_chosen(client, service, clock):
    """A grid worker's dropdown lists nothing below city..community: their own grid is added."""
    login(client, "lx_wgy1")
    html = client.get(f"/audit/cases?node={G1}").get_data(as_text=True)
    assert _selected_node(html) == [(G1, "新光社区第一网格")]


def test_node_outside_jurisdiction_is_kept_by_code_not_named(client, service, db, clock):
    from engine.models import JurisdictionNode
    login(client, "lxx_dc")
    with db.read_session() as s:
        name = s.scalar(select(JurisdictionNode.name).where(JurisdictionNode.code == "songshan-fushanzhuang-g1"))
    html = client.get("/audit/cases?node=songshan-fushanzhuang-g1").get_data(as_text=True)
    assert _selected_node(html) == [("songshan-fushanzhuang-g1", "songshan-fushanzhuang-g1")]
    assert name not in html
    html = client.get("/audit/cases?node=no-such-node").get_data(as_text=True)
    assert _selected_node(html) == [("no-such-node", "no-such-node")] and "找不到该辖区" in html


def test_trace_reads_changes_and_where_a_step_came_from_by_their_names(client, service, clock):
    """Were codes: "verified: False → True", "来自 gw_mediated"."""
    from forms import FormRegistry
    from tests.helpers import work
    key = service.start_case("grid_matter", G1, REPORT, "lx_wgy1").business_key
    work(service, "lx_wgz1", "micro_mediation", {"resolved": False, "mediation_note": "未谈拢"})
    work(service, "lxz_pd", "town_dispatch", {"department": "chengguan"})
    handled = {"handling_result": "已清理", "handled_at": "2026-03-02T10:00:00+08:00"}
    work(service, "lxz_cg", "department_handle", handled)
    work(service, "lx_wgy1", "verify_on_site", {"verified": False, "verification_note": "仍有垃圾"})
    work(service, "lxz_cg", "department_handle", handled)
    work(service, "lx_wgy1", "verify_on_site", {"verified": True, "verification_note": "已清理干净"})
    verified = next(f for f in FormRegistry().get("verify_on_site").fields if f.name == "verified").label["zh"]
    login(client, "lxx_dc")
    html = client.get(f"/audit/cases/{key}/trace").get_data(as_text=True)
    assert f"{verified}: 否 → 是" in html and "verified: False" not in html
    assert "来自 网格微调处" in html and "来自 micro_mediation" not in html
