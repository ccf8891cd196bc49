"""The HTML pages through Flask's test client, CSRF on: inbox, task, start, case,
attachment and diagram pages, as the demo officials, on SQLite or PostgreSQL."""
from __future__ import annotations

import glob
import io
import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.models import Attachment, AuditEvent, Case, JurisdictionNode, WorkItem
from engine.service import InboxFilters, WorkflowService
from tests.helpers import REPORT, csrf_token, login, work

ROOT = Path(__file__).resolve().parent.parent
GRID, OTHER_GRID = "linxi-xinguang-g1", "linxi-dongsheng-g1"
WORKER, LEADER, DISPATCHER, AUDITOR = "lx_wgy1", "lx_wgz1", "lxz_pd", "lxx_dc"
OTHER_WORKER, OTHER_LEADER = "lx_wgy3", "lx_wgz2"
# The smallest valid PNG: 1x1 pixel, 67 bytes.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
                    "0000000a49444154789c63000100000500010d0a2db40000000049454e44ae426082")


# ------------------------------------------------------------------ helpers

def token(client, path="/inbox"):
    return csrf_token(client, path)


def html(response):
    return response.get_data(as_text=True)


def start(service, grid=GRID, user=WORKER, **overrides):
    return service.start_case("grid_matter", grid, {**REPORT, **overrides}, user)


def task_of(service, username, spec_id):
    rows = [r for r in service.inbox(username, InboxFilters(limit=500)) if r.item.spec_id == spec_id]
    assert len(rows) == 1, f"{username} has {len(rows)} '{spec_id}' tasks"
    return rows[0].item.id


def counts(service):
    """(cases, open work items, audit events, attachments) in the whole database."""
    with service.db.read_session() as session:
        return tuple(session.scalar(select(func.count()).select_from(model).where(*where))
                     for model, where in [(Case, []), (WorkItem, [WorkItem.status == "open"]),
                                          (AuditEvent, []), (Attachment, [])])


def submit(client, task_id, data, files=None):
    form = {"csrf_token": token(client, f"/tasks/{task_id}"), **data}
    if files:
        form.update(files)
    return client.post(f"/tasks/{task_id}", data=form, content_type="multipart/form-data")


def report(client, grid=GRID, photos=None, **overrides):
    form = {"csrf_token": token(client, "/start/grid_matter"), "grid": grid, **REPORT, **overrides}
    if photos is not None:
        form["photos"] = photos
    return client.post("/start/grid_matter", data=form, content_type="multipart/form-data")


def work_page(client, service, username, spec_id, data):
    """Open the task from the inbox page, then submit its form: as the official would."""
    task_id = task_of(service, username, spec_id)
    inbox = html(client.get("/inbox"))
    assert f"/tasks/{task_id}" in inbox
    page = client.get(f"/tasks/{task_id}")
    assert page.status_code == 200 and 'class="task-form"' in html(page)
    response = submit(client, task_id, data)
    assert response.status_code == 302, html(response)[:2000]
    assert response.headers["Location"].endswith("/inbox")
    assert "已提交" in html(client.get("/inbox"))
    return task_id


def field_error(page: str, name: str) -> str | None:
    match = re.search(rf'<p class="error" id="{name}-error">([^<]*)</p>', page)
    return match.group(1) if match else None


# ------------------------------------------------------------------ login

@pytest.mark.parametrize("path", ["/inbox", "/start", "/start/grid_matter", "/tasks/nope", "/cases/LX-2026-000001",
                                  "/cases/LX-2026-000001/diagram.json", "/attachments/nope"])
def test_pages_require_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


@pytest.mark.parametrize("path", ["/tasks/nope", "/tasks/nope/claim", "/tasks/nope/unclaim", "/start/grid_matter",
                                  "/cases/LX-2026-000001/attachments"])
def test_posts_require_login(client, path):
    response = client.post(path, data={"csrf_token": token(client, "/login")})
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


# ------------------------------------------------------------------ inbox

def test_inbox_lists_my_tasks_and_not_another_jurisdictions(service, as_user):
    mine = start(service)
    other = start(service, grid=OTHER_GRID, user=OTHER_WORKER)
    client = as_user(LEADER)
    page = html(client.get("/inbox"))
    assert mine.business_key in page
    assert other.business_key not in page
    assert "网格微调处" in page and "新光社区第一网格" in page
    assert 'class="responsive inbox"' in page and 'data-label="案件编号"' in page
    assert f'href="/cases/{mine.business_key}"' in page
    assert f'href="/tasks/{mine.open_items[0].id}"' in page
    assert "蓝" in page and "colour-blue" in page

    other_task = other.open_items[0].id
    before = counts(service)
    assert client.get(f"/tasks/{other_task}").status_code in (403, 404)
    assert client.get(f"/cases/{other.business_key}").status_code == 403
    assert client.get(f"/cases/{other.business_key}/diagram.json").status_code == 403
    csrf = token(client)
    assert client.post(f"/tasks/{other_task}/claim", data={"csrf_token": csrf}).status_code == 403
    response = client.post(f"/tasks/{other_task}", data={"csrf_token": csrf, "resolved": "true",
                                                        "mediation_note": "越权办理"})
    assert response.status_code == 403
    assert counts(service) == before
    assert other_task in [r.item.id for r in service.inbox(OTHER_LEADER)]


def test_inbox_filters_due_classes_and_colours(service, as_user, clock):
    red = start(service, category="public_order", colour="red")
    yellow = start(service, category="environment", colour="yellow")
    grid_case = start(service)  # blue dispute: the grid, not the town
    client = as_user(DISPATCHER)

    page = html(client.get("/inbox"))
    assert red.business_key in page and yellow.business_key in page
    assert grid_case.business_key not in page
    assert "due-soon" in page and "overdue" not in page.split("<table", 1)[1]  # P1D: due within 24 h

    page = html(client.get("/inbox?colour=red"))
    assert red.business_key in page and yellow.business_key not in page
    page = html(client.get(f"/inbox?q={yellow.business_key[:-1]}"))
    assert yellow.business_key in page
    page = html(client.get(f"/inbox?q={yellow.business_key}"))
    assert yellow.business_key in page and red.business_key not in page
    page = html(client.get("/inbox?task=micro_mediation"))
    assert red.business_key not in page and "没有符合筛选条件的任务" in page
    page = html(client.get("/inbox?process=grid_matter&task=town_dispatch"))
    assert red.business_key in page and yellow.business_key in page

    assert red.business_key not in html(client.get("/inbox?overdue=1"))
    clock.advance(days=2)
    page = html(client.get("/inbox?overdue=1"))
    assert red.business_key in page and 'class="overdue"' in page


def test_the_task_filter_offers_each_name_once_and_finds_every_task_of_it(service, as_user):
    """Mediation has 制作并签署调解协议书 in two branches (committee, professional): one choice
    in each process's group, which finds both."""
    assert service.same_named_tasks("sign_committee") == ["sign_committee", "sign_professional"]
    assert service.same_named_tasks("制作并签署调解协议书") == ["sign_committee", "sign_professional",
                                                           "制作并签署调解协议书"]
    assert service.same_named_tasks("town_dispatch", "grid_matter") == ["town_dispatch"]
    page = html(as_user(DISPATCHER).get("/inbox"))
    groups = re.findall(r'<optgroup label="[^"]*">(.*?)</optgroup>', page, flags=re.S)
    assert groups and all(g.count("制作并签署调解协议书") <= 1 for g in groups)
    assert any('value="sign_committee"' in g for g in groups) and "sign_professional" not in page


def test_claim_and_unclaim_from_the_inbox(service, as_user):
    case = start(service)
    task_id = case.open_items[0].id
    client = as_user(LEADER)

    response = client.post(f"/tasks/{task_id}/claim", data={"csrf_token": token(client), "next": "/inbox?colour=blue"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox?colour=blue")
    page = html(client.get("/inbox"))
    assert "已认领：网格微调处" in page and "孙丽娟" in page
    assert f"/tasks/{task_id}/unclaim" in page
    assert [r.claimed_by for r in service.inbox(LEADER)] == ["孙丽娟"]

    # someone else's next= never redirects off-site
    response = client.post(f"/tasks/{task_id}/unclaim", data={"csrf_token": token(client), "next": "//evil.example"})
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox")
    assert "已退回：网格微调处" in html(client.get("/inbox"))
    assert [r.claimed_by for r in service.inbox(LEADER)] == [None]


def test_a_task_assigned_by_name_offers_no_release(clean_db, clock, fixture_forms, as_user):
    """退回 gives a group task back to its group; a task the data named its official for has no
    group, and the button only ever led to a refusal."""
    from tests.conftest import deploy_fixture
    deploy_fixture(clean_db, "assign.bpmn", forms=fixture_forms)
    svc = WorkflowService(clean_db, forms=fixture_forms)
    case = svc.start_case("assign", "linxi-xinguang-g1", {}, "lx_wgy1")
    pick = svc.get_case(case.business_key).open_items[0]
    svc.complete_task(pick.id, {"owning_leader": "lxx_ld2", "reviewers": "lx_wgz1"}, "lx_wgy1")
    lead = svc.get_case(case.business_key).open_items[0]
    assert lead.role is None and lead.assignee_id is not None
    page = html(as_user("lxx_ld2").get("/inbox"))
    assert f"/tasks/{lead.id}" in page and f"/tasks/{lead.id}/unclaim" not in page


def test_csrf_is_required_on_claim_complete_and_start(service, as_user):
    case = start(service)
    task_id = case.open_items[0].id
    leader, worker = as_user(LEADER), as_user(WORKER)
    before = counts(service)
    assert leader.post(f"/tasks/{task_id}/claim").status_code == 400
    assert leader.post(f"/tasks/{task_id}/claim", data={"csrf_token": "forged"}).status_code == 400
    response = leader.post(f"/tasks/{task_id}", data={"resolved": "true", "mediation_note": "无令牌"})
    assert response.status_code == 400 and "页面已过期" in html(response)
    response = worker.post("/start/grid_matter", data={"grid": GRID, **REPORT})
    assert response.status_code == 400
    assert counts(service) == before
    assert [r.claimed_by for r in service.inbox(LEADER)] == [None]


# ------------------------------------------------------------------ task page

def test_task_page_shows_summary_form_files_and_history(service, as_user):
    case = start(service, description="楼道堆放杂物<script>alert(1)</script>")
    task_id = case.open_items[0].id
    page = html(as_user(LEADER).get(f"/tasks/{task_id}"))
    assert case.business_key in page and "新光社区第一网格" in page and "办理中" in page
    assert "楼道堆放杂物&lt;script&gt;" in page and "<script>alert(1)" not in page  # autoescaped
    assert 'class="case-summary"' in page and "新光社区3号楼东侧" in page  # readonly fields of the form
    assert 'name="resolved"' in page and 'name="mediation_note"' in page
    assert 'enctype="multipart/form-data"' not in page  # no file field in this form
    assert 'name="csrf_token"' in page
    assert "上报/发起" in page and "生成任务" in page and "王秀兰" in page  # the history so far
    assert f"/tasks/{task_id}/claim" in page


def test_invalid_submission_is_400_with_messages_and_changes_nothing(service, as_user):
    case = start(service)
    task_id = case.open_items[0].id
    client = as_user(LEADER)
    before, history = counts(service), len(service.history(case.business_key))

    response = submit(client, task_id, {"mediation_note": "   "})
    assert response.status_code == 400
    page = html(response)
    assert field_error(page, "resolved") == "此项为必填。"
    assert field_error(page, "mediation_note") == "此项不能为空。"
    assert 'aria-invalid="true"' in page

    response = submit(client, task_id, {"resolved": "maybe", "mediation_note": "双方仍在协商<b>"})
    page = html(response)
    assert response.status_code == 400
    assert field_error(page, "resolved") == "请选择“是”或“否”。"
    assert field_error(page, "mediation_note") is None
    assert "双方仍在协商&lt;b&gt;</textarea>" in page  # the submitted text is kept, escaped

    assert counts(service) == before
    assert len(service.history(case.business_key)) == history
    assert [i.id for i in service.get_case(case.business_key).open_items] == [task_id]


def test_double_completion_is_a_conflict(service, as_user):
    case = start(service)
    task_id = case.open_items[0].id
    client = as_user(LEADER)
    data = {"resolved": "true", "mediation_note": "已调解"}
    assert submit(client, task_id, data).status_code == 302
    before = counts(service)
    # the official's own second send (a double tap): told it was already submitted, nothing doubled
    response = submit(client, task_id, data)
    assert response.status_code == 302 and response.headers["Location"].endswith("/inbox")
    assert "您已提交过“网格微调处”，本次未重复提交。" in html(client.get("/inbox"))
    assert counts(service) == before
    # anyone else who may see the case is told who did it: a conflict
    response = submit(as_user(WORKER), task_id, data)
    assert response.status_code == 409
    assert counts(service) == before
    # the finished task is still readable, without its form
    page = html(client.get(f"/tasks/{task_id}"))
    assert 'class="task-form"' not in page and "已办理" in page


def test_task_page_in_english(service, as_user):
    case = start(service)
    client = as_user(LEADER)
    client.post("/lang/en", data={"csrf_token": token(client), "next": "/inbox"})
    task_id = case.open_items[0].id
    page = html(client.get(f"/tasks/{task_id}"))
    assert "Micro-mediation in the grid" in page and "Case summary" in page and "History" in page
    page = html(submit(client, task_id, {}))
    assert field_error(page, "resolved") == "This field is required."


# ------------------------------------------------------------------ start

def test_start_pages(service, as_user):
    page = html(as_user(WORKER).get("/start"))
    assert "网格事项办理" in page and "/start/grid_matter" in page
    page = html(as_user(WORKER).get("/start/grid_matter"))
    assert 'enctype="multipart/form-data"' in page and 'type="file"' in page and 'name="photos"' in page
    assert '<option value="linxi-xinguang-g1" selected>' in page  # the only grid: preselected
    assert 'name="category"' in page and 'name="description"' in page
    # a department handler starts nothing; a dispatcher may start a mediation but reports no grid matter
    assert "没有可发起的流程" in html(as_user("lxz_cg").get("/start"))
    assert "/start/grid_matter" not in html(as_user(DISPATCHER).get("/start"))
    assert as_user(DISPATCHER).get("/start/grid_matter").status_code == 403
    assert as_user(WORKER).get("/start/no_such_process").status_code == 404


def test_report_with_a_photo_and_who_may_download_it(service, as_user):
    worker = as_user(WORKER)
    response = report(worker, photos=(io.BytesIO(PNG), "现场照片.png"))
    assert response.status_code == 302, html(response)[:2000]
    location = response.headers["Location"]
    key = location.rsplit("/", 1)[-1]
    assert re.fullmatch(r"LX-2026-\d{6}", key)
    page = html(worker.get(location))
    assert f"已提交，案件编号 {key}" in page
    assert REPORT["description"] in page and "矛盾纠纷" in page and "现场照片.png" in page
    assert "网格微调处" in page and "网格长 @ 新光社区第一网格" in page
    view = service.view_case(WORKER, key)
    assert [a.filename for a in view.attachments] == ["现场照片.png"]
    assert service.case_data(key)["photos"] == [view.attachments[0].id]
    url = f"/attachments/{view.attachments[0].id}"
    assert url in page

    for user in (WORKER, DISPATCHER):
        response = as_user(user).get(url)
        assert response.status_code == 200
        assert response.data == PNG
        assert response.mimetype == "image/png"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        disposition = response.headers["Content-Disposition"]
        assert disposition.startswith("inline") and "filename*=UTF-8''%E7%8E%B0" in disposition
    assert as_user(OTHER_WORKER).get(url).status_code == 403
    assert as_user(WORKER).get("/attachments/00000000-0000-0000-0000-000000000000").status_code == 404


def test_a_fake_photo_is_refused_and_nothing_is_stored(service, as_user):
    before = counts(service)
    response = report(as_user(WORKER), photos=(io.BytesIO(b"just some text, not an image"), "x.png"))
    assert response.status_code == 400
    page = html(response)
    message = field_error(page, "photos")
    assert message and "x.png" in message and "不是可接受的类型" in message
    assert REPORT["description"] in page  # the rest of the report is kept
    assert counts(service) == before


def test_an_invalid_report_is_400_and_stores_nothing(service, as_user):
    before = counts(service)
    response = report(as_user(WORKER), photos=(io.BytesIO(PNG), "ok.png"),
                      category="", description="短", location="", grid="linxi-xinguang-g2")
    assert response.status_code == 400
    page = html(response)
    assert field_error(page, "category") == "此项为必填。"
    assert field_error(page, "description") == "长度须在 5 到 2000 个字之间。"
    assert field_error(page, "location") == "此项不能为空。"
    assert field_error(page, "grid") == "请选择事项所在的网格。"  # not one of the worker's grids
    assert counts(service) == before  # not even the valid photo


# ------------------------------------------------------------------ full paths

def test_grid_matter_resolved_in_the_grid_through_the_pages(service, as_user):
    worker, leader = as_user(WORKER), as_user(LEADER)
    key = report(worker).headers["Location"].rsplit("/", 1)[-1]

    work_page(leader, service, LEADER, "micro_mediation", {"resolved": "true", "mediation_note": "双方达成谅解",
                                                           "grid_leader_present": "true"})
    work_page(worker, service, WORKER, "record_result", {"result_note": "已化解，双方签字确认"})

    case = service.get_case(key)
    assert case.status == "completed" and case.case.summary["resolved_level"] == "grid"
    page = html(worker.get(f"/cases/{key}"))
    assert "已办结" in page and "案件已办结" in page
    assert "双方达成谅解" in page and "已化解，双方签字确认" in page  # the data, labelled
    assert "孙丽娟" in page and "办理" in page and "办结" in page
    assert 'id="diagram"' in page

    diagram = worker.get(f"/cases/{key}/diagram.json").get_json()
    assert 'id="grid_matter"' in diagram["xml"]
    assert 'name="网格微调处"' in diagram["xml"] and 'name="网格长 (grid.grid_leader)"' in diagram["xml"]
    highlights = diagram["highlights"]
    assert highlights["completed"] == ["start", "decide_dispatch", "gw_level", "micro_mediation", "gw_mediated",
                                       "record_result", "set_resolved_grid", "end_grid"]
    assert {"flow_to_grid", "flow_mediated"} <= set(highlights["flows"])
    assert "flow_to_town" not in highlights["flows"]
    assert highlights["active"] == []


def test_town_dispatch_says_which_departments_go_to_the_county_before_submitting(service, as_user):
    """林西镇 has no 住建: a task for 住建 went to 林西县住建局 without a word. The options say so
    (the town's own departments stay as they are), in the page's language."""
    dispatcher = as_user(DISPATCHER)
    start(service, category="environment", colour="blue")
    work(service, LEADER, "micro_mediation", {"resolved": False, "mediation_note": "分歧较大"})
    dispatch_id = task_of(service, DISPATCHER, "town_dispatch")
    page = html(dispatcher.get(f"/tasks/{dispatch_id}"))
    assert re.search(r'<option value="zhujian"[^>]*>住建（本级无此部门，将派至林西县住房和城乡建设局）</option>', page)
    assert re.search(r'<option value="chengguan"[^>]*>城管</option>', page)
    assert re.search(r'value="zhujian"[^>]*>\s*住建（本级无此部门，将派至林西县住房和城乡建设局）', page)  # 吹哨 too
    dispatcher.post("/lang/en", data={"csrf_token": csrf_token(dispatcher, "/inbox")})
    english = html(dispatcher.get(f"/tasks/{dispatch_id}"))
    assert re.search(r'<option value="zhujian"[^>]*>Housing and construction \(none here: goes to 林西县住房和城乡建设局\)'
                     r'</option>', english)
    assert re.search(r'<option value="chengguan"[^>]*>Urban management</option>', english)
    # and the task goes where it said
    work(service, DISPATCHER, "town_dispatch", {"department": "zhujian"})
    with service.db.read_session() as s:
        unit = s.scalar(select(JurisdictionNode.name).join(WorkItem, WorkItem.candidate_node_id == JurisdictionNode.id)
                        .where(WorkItem.spec_id == "department_handle", WorkItem.status == "open"))
    assert unit == "林西县住房和城乡建设局"


def test_grid_matter_not_resolved_goes_to_town_department_verify_and_satisfaction(service, as_user):
    worker, leader, dispatcher, handler = as_user(WORKER), as_user(LEADER), as_user(DISPATCHER), as_user("lxz_cg")
    key = report(worker, category="environment", colour="blue").headers["Location"].rsplit("/", 1)[-1]

    work_page(leader, service, LEADER, "micro_mediation", {"resolved": "false", "mediation_note": "分歧较大"})
    dispatch_id = task_of(service, DISPATCHER, "town_dispatch")
    page = html(dispatcher.get(f"/tasks/{dispatch_id}"))
    assert '<option value="chengguan" selected>' in page  # prefilled from the dispatch rules
    diagram = dispatcher.get(f"/cases/{key}/diagram.json").get_json()
    assert diagram["highlights"]["active"] == ["town_dispatch", "town_stage"]  # the task and its stage
    assert "flow_not_mediated" not in diagram["highlights"]["flows"]  # not yet taken: the token is at the task

    work_page(dispatcher, service, DISPATCHER, "town_dispatch", {"department": "chengguan", "instructions": "请核实"})
    assert not [r for r in service.inbox("lxz_pcs") if r.item.spec_id == "department_handle"]
    handle_id = task_of(service, "lxz_cg", "department_handle")
    refused = submit(handler, handle_id, {"handling_result": "已清理", "handled_at": "2026-03-03T10:00"})  # tomorrow
    assert refused.status_code == 400
    assert field_error(html(refused), "handled_at") == "不能晚于当前时间，请填写实际发生的日期或时间。"
    assert task_of(service, "lxz_cg", "department_handle") == handle_id        # still open, nothing lost
    work_page(handler, service, "lxz_cg", "department_handle",
              {"handling_result": "已清理", "handled_at": "2026-03-02T10:00"})
    assert service.case_data(key)["handled_at"] == "2026-03-02T10:00:00+08:00"  # local time from the form
    work_page(worker, service, WORKER, "verify_on_site", {"verified": "true", "verification_note": "现场已整改"})
    work_page(worker, service, WORKER, "satisfaction", {"satisfaction": "satisfied"})

    case = service.get_case(key)
    assert case.status == "completed" and case.case.summary["resolved_level"] == "town"
    page = html(handler.get(f"/cases/{key}"))  # the department sees the case it worked
    assert "已办结" in page and "部门处置" in page and "马俊" in page
    highlights = worker.get(f"/cases/{key}/diagram.json").get_json()["highlights"]
    assert {"micro_mediation", "town_dispatch", "department_handle", "verify_on_site", "satisfaction",
            "end_town"} <= set(highlights["completed"])
    assert "record_result" not in highlights["completed"]
    assert {"flow_not_mediated", "flow_verified"} <= set(highlights["flows"])


# ------------------------------------------------------------------ case page

def test_case_page_diagram_assets_and_vendor_route(service, as_user, app):
    case = start(service)
    client = as_user(WORKER)
    page = html(client.get(f"/cases/{case.business_key}"))
    assert '<div class="diagram" id="diagram"' in page
    assert f'data-src="/cases/{case.business_key}/diagram.json"' in page
    for asset in ("bpmn-navigated-viewer.production.min.js", "assets/bpmn-js.css", "assets/diagram-js.css",
                  "assets/bpmn-font/css/bpmn-embedded.css"):
        assert f"/vendor/bpmn-js/{asset}" in page
        response = client.get(f"/vendor/bpmn-js/{asset}")
        assert response.status_code == 200 and len(response.data) > 100
    for script in ("diagram-viewer.js", "case-diagram.js"):   # the shared set-up first
        assert f"/static/{script}" in page
        assert client.get(f"/static/{script}").status_code == 200
    assert page.index("/static/diagram-viewer.js") < page.index("/static/case-diagram.js")
    assert "highlight-active" in page or "已完成环节" in page  # the legend
    diagram = client.get(f"/cases/{case.business_key}/diagram.json").get_json()
    assert diagram["highlights"]["active"] == ["micro_mediation"]
    assert "micro_mediation" not in diagram["highlights"]["completed"]

    for bad in ("../package.json", "..%2Fpackage.json", "%2e%2e/%2e%2e/bpmn-js/package.json",
                "assets/../../package.json", "/etc/passwd"):
        response = client.get(f"/vendor/bpmn-js/{bad}", follow_redirects=True)
        assert response.status_code in (404, 400), bad
        assert b'"name"' not in response.data
    assert app.config["NODE_MODULES"].endswith("node_modules")
    assert client.get("/vendor/bpmn-js/nope.js").status_code == 404


def test_a_photo_named_as_another_type_is_refused_naming_what_it_is(service, as_user, app):
    """x.pdf holding a PNG on the report form, a .jpg holding a PDF on the case's upload: refused
    with what the file really is, the report kept, nothing stored; rightly named, both are taken."""
    root = Path(app.config["UPLOAD_FOLDER"])
    before = counts(service)
    response = report(as_user(WORKER), photos=(io.BytesIO(PNG), "现场.pdf"))
    assert response.status_code == 400
    page = html(response)
    assert field_error(page, "photos") == "文件「现场.pdf」的文件名为 .pdf，但内容是 PNG 图片；请改正文件名或重新选择文件。"
    assert REPORT["description"] in page
    assert counts(service) == before
    case = start(service)
    leader = as_user(LEADER)
    before = counts(service)
    response = leader.post(f"/cases/{case.business_key}/attachments", content_type="multipart/form-data",
                           data={"csrf_token": token(leader), "file": (io.BytesIO(b"%PDF-1.4\n%%EOF\n"), "补拍.jpg")})
    assert response.status_code == 400
    assert "文件「补拍.jpg」的文件名为 .jpg，但内容是 PDF 文件；请改正文件名或重新选择文件。" in html(response)
    assert counts(service) == before
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]
    assert report(as_user(WORKER), photos=(io.BytesIO(PNG), "现场.png")).status_code == 302
    response = leader.post(f"/cases/{case.business_key}/attachments", content_type="multipart/form-data",
                           data={"csrf_token": token(leader), "file": (io.BytesIO(b"%PDF-1.4\n%%EOF\n"), "补拍.pdf")})
    assert response.status_code == 302


def test_a_file_too_large_and_named_as_another_type_is_told_both(service, as_user, app):
    """A 12 MB PNG named .pdf on the report form, a 25 MB PDF named .jpg on the case's upload: told
    the size limit of what the file really is and the rename at once (not the rename alone, after
    which the file was refused again for its size); nothing stored."""
    root = Path(app.config["UPLOAD_FOLDER"])
    big_png = PNG + b"\0" * (12 * 1024 * 1024 - len(PNG))
    before = counts(service)
    worker = as_user(WORKER)
    response = report(worker, photos=(io.BytesIO(big_png), "现场.pdf"))
    assert response.status_code == 400
    page = html(response)
    assert field_error(page, "photos") == ("文件「现场.pdf」有两处问题：内容是 PNG 图片，大小为 12.0 MB，超过此类文件的上限 "
                                           "10 MB；文件名为 .pdf，与内容不符。请选择不超过 10 MB 的文件，并改正文件名。")
    assert REPORT["description"] in page
    worker.post("/lang/en", data={"csrf_token": token(worker), "next": "/inbox"})
    page = html(report(worker, photos=(io.BytesIO(big_png), "现场.pdf")))
    assert field_error(page, "photos") == (
        "The file &#39;现场.pdf&#39; has two problems: it is 12.0 MB, over the 10 MB limit for a PNG image, and it "
        "is named .pdf but holds a PNG image. Choose a file of at most 10 MB and correct the file name.")
    assert counts(service) == before
    case = start(service)
    leader = as_user(LEADER)
    before = counts(service)
    big_pdf = b"%PDF-1.4\n" + b"\0" * (25 * 1024 * 1024)
    response = leader.post(f"/cases/{case.business_key}/attachments", content_type="multipart/form-data",
                           data={"csrf_token": token(leader), "file": (io.BytesIO(big_pdf), "扫描件.jpg")})
    assert response.status_code == 400
    assert ("文件「扫描件.jpg」有两处问题：内容是 PDF 文件，大小为 25.0 MB，超过此类文件的上限 20 MB；"
            "文件名为 .jpg，与内容不符。请选择不超过 20 MB 的文件，并改正文件名。") in html(response)
    assert counts(service) == before
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]
    # too large alone, rightly named: still told the size only
    response = leader.post(f"/cases/{case.business_key}/attachments", content_type="multipart/form-data",
                           data={"csrf_token": token(leader), "file": (io.BytesIO(big_pdf), "扫描件.pdf")})
    assert response.status_code == 400
    assert "文件「扫描件.pdf」太大：此类文件不能超过 20 MB。" in html(response)
    assert counts(service) == before


def test_case_attachment_upload(service, as_user):
    case = start(service)
    key = case.business_key
    leader = as_user(LEADER)  # a candidate of the open task: may add files
    page = html(leader.get(f"/cases/{key}"))
    assert f'action="/cases/{key}/attachments"' in page
    response = leader.post(f"/cases/{key}/attachments", content_type="multipart/form-data",
                           data={"csrf_token": token(leader), "file": (io.BytesIO(PNG), "补拍.png")})
    assert response.status_code == 302
    page = html(leader.get(f"/cases/{key}"))
    assert "已上传 1 个文件" in page and "补拍.png" in page and "上传附件" in page

    before = counts(service)
    response = leader.post(f"/cases/{key}/attachments", content_type="multipart/form-data",
                           data={"csrf_token": token(leader), "file": (io.BytesIO(b"<html>"), "x.pdf")})
    assert response.status_code == 400 and "不是可接受的类型" in html(response)
    response = leader.post(f"/cases/{key}/attachments", data={"csrf_token": token(leader)})
    assert response.status_code == 400 and "请选择要上传的文件" in html(response)
    # a dispatcher of the town sees the case but has no task in it
    assert f"/tasks/{case.open_items[0].id}/claim" in page  # the leader may claim the open task
    dispatcher = as_user(DISPATCHER)
    page = html(dispatcher.get(f"/cases/{key}"))
    assert f'action="/cases/{key}/attachments"' not in page
    assert "/claim" not in page  # not the dispatcher's task: no claim button
    response = dispatcher.post(f"/cases/{key}/attachments", content_type="multipart/form-data",
                               data={"csrf_token": token(dispatcher), "file": (io.BytesIO(PNG), "y.png")})
    assert response.status_code == 403
    assert counts(service) == before


def test_auditor_reads_the_case_and_changes_nothing(service, as_user):
    case = start(service)
    key, task_id = case.business_key, case.open_items[0].id
    auditor = as_user(AUDITOR)
    page = html(auditor.get(f"/cases/{key}"))
    assert key in page and 'id="diagram"' in page
    assert 'enctype="multipart/form-data"' not in page and "/attachments\"" not in page
    assert "/claim" not in page
    assert auditor.get(f"/cases/{key}/diagram.json").status_code == 200
    page = html(auditor.get(f"/tasks/{task_id}"))
    assert 'class="task-form"' not in page and "仅供查看" in page and "/claim" not in page
    assert "/start" not in page  # no 上报 link for auditors
    assert auditor.get("/start").status_code == 403
    assert auditor.get("/start/grid_matter").status_code == 403

    before = counts(service)
    csrf = token(auditor)
    assert auditor.post(f"/tasks/{task_id}/claim", data={"csrf_token": csrf}).status_code == 403
    assert auditor.post(f"/tasks/{task_id}", data={"csrf_token": csrf, "resolved": "true",
                                                  "mediation_note": "督查代办"}).status_code == 403
    assert auditor.post(f"/cases/{key}/attachments", content_type="multipart/form-data",
                        data={"csrf_token": csrf, "file": (io.BytesIO(PNG), "a.png")}).status_code == 403
    assert auditor.post("/start/grid_matter", data={"csrf_token": csrf, "grid": GRID, **REPORT}).status_code == 403
    assert counts(service) == before


# ------------------------------------------------------------------ language, pagination

def test_language_switch_changes_the_inbox(service, as_user):
    start(service)
    client = as_user(LEADER)
    page = html(client.get("/inbox"))
    assert "案件编号" in page and "Case no." not in page
    response = client.post("/lang/en", data={"csrf_token": token(client), "next": "/inbox"})
    assert response.status_code == 302
    page = html(client.get("/inbox"))
    assert "Case no." in page and "Claimed by" in page and "案件编号" not in page
    assert 'data-label="Case no."' in page and "Blue" in page


def test_inbox_pages_by_fifty(service, as_user, clock):
    for i in range(60):
        start(service, category="public_order", colour="red", description=f"第{i + 1:02d}号紧急事项，请速派")
        clock.advance(minutes=1)
    client = as_user(DISPATCHER)

    page = html(client.get("/inbox"))
    assert page.count("<tr data-task=") == 50
    assert "共 60 项" in page and "第 1 / 2 页" in page
    assert 'href="/inbox?page=2"' in page and 'rel="prev"' not in page
    assert "第01号" in page and "第60号" not in page  # sorted by due date: the oldest first

    page = html(client.get("/inbox?page=2"))
    assert page.count("<tr data-task=") == 10
    assert "第60号" in page and 'href="/inbox?page=1"' in page and 'rel="next"' not in page

    page = html(client.get("/inbox?colour=red&page=2"))
    assert page.count("<tr data-task=") == 10
    assert 'href="/inbox?page=1&amp;colour=red"' in page  # prev keeps the filter
    page = html(client.get("/inbox?colour=red"))
    assert 'href="/inbox?page=2&amp;colour=red"' in page
    assert html(client.get("/inbox?page=abc")).count("<tr data-task=") == 50


# ------------------------------------------------------------------ i18n

MESSAGE_RE = re.compile(r"""(?<![\w.])_\(\s*(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)')""")


def test_every_ui_string_has_an_english_entry():
    from web.i18n import MESSAGES_EN
    paths = sorted(glob.glob(str(ROOT / "web" / "templates" / "*.html")) + glob.glob(str(ROOT / "web" / "*.py")))
    found, missing = 0, []
    for path in paths:
        for match in MESSAGE_RE.finditer(Path(path).read_text(encoding="utf-8")):
            text = match.group(1) if match.group(1) is not None else match.group(2)
            found += 1
            if text not in MESSAGES_EN:
                missing.append(f"{Path(path).name}: {text}")
    assert found > 100
    assert not missing, "add to MESSAGES_EN in web/i18n.py or web/messages/<area>.py:\n" + "\n".join(missing)


def test_every_field_message_has_an_english_entry():
    """The validators' messages in Chinese (web forms, API field errors) each have their English."""
    from web.i18n import _MESSAGES, MESSAGES_EN
    any_match = type("AnyMatch", (), {"__getitem__": lambda self, i: "1"})()
    texts = {pattern.pattern: make(any_match)[0] for pattern, make in _MESSAGES}
    assert [(p, t) for p, t in texts.items() if t not in MESSAGES_EN] == []


def test_english_placeholders_match():
    from web.i18n import MESSAGES_EN
    for zh, en in MESSAGES_EN.items():
        assert set(re.findall(r"{(\w+)}", zh)) == set(re.findall(r"{(\w+)}", en)), zh


def test_due_classes(app, clock):
    from web.tasks import due_class
    now = clock.now()
    assert due_class(None) == ""
    assert due_class(now - timedelta(minutes=1)) == "overdue"
    assert due_class(now + timedelta(hours=23)) == "due-soon"
    assert due_class(now + timedelta(hours=25)) == ""


@pytest.mark.sqlite_run_only   # labels: once, in the lighter run (tests/conftest.py)
def test_every_recorded_event_type_has_a_label_on_the_case_page_and_the_trace(app, service, clock):
    """A year of demo history writes every kind of audit event the chains produce (timer
    firings, escalations, reassignments …): each is named in words on the case page and the
    auditor's trace, never shown as its stored type."""
    from engine.demo_history import DemoHistory
    from web.tasks import event_label
    DemoHistory(service, seed=5).run(60, months=12, end=clock.now())
    # a timer that surely fires through the timer worker, in 林西县 (whose dispatcher and auditor look below):
    # a blue matter's 80 % reminder on 网格微调处 (7 days)
    from engine.timers import TimerWorker
    timed = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1").business_key
    clock.advance(timedelta(days=6))
    assert TimerWorker(service).run_once().fired >= 1
    with service.db.read_session() as session:
        types = set(session.scalars(select(AuditEvent.event_type).distinct()))
    assert {"timers_fired", "task_completed", "case_closed"} <= types
    with app.test_request_context():
        unnamed = sorted(t for t in types if event_label(t) == t)
    assert unnamed == []
    for username, url in (("lxz_pd", f"/cases/{timed}"), ("lxx_dc", f"/audit/cases/{timed}/trace")):
        client = app.test_client()
        login(client, username)
        page = client.get(url)
        assert page.status_code == 200
        assert "时限到期处理" in page.get_data(as_text=True)
        assert not re.search(r">\s*timers_fired\s*<", page.get_data(as_text=True))


def test_the_diagram_is_drawn_in_english_for_an_english_reader(service, as_user):
    """Task and event names from nameEn, lanes by the role's English name with the code kept;
    the diagram itself (ids, flows, shapes) unchanged."""
    case = start(service)
    worker = as_user(WORKER)
    chinese = worker.get(f"/cases/{case.business_key}/diagram.json").get_json()
    worker.post("/lang/en", data={"csrf_token": token(worker), "next": "/inbox"})
    english = worker.get(f"/cases/{case.business_key}/diagram.json").get_json()
    assert 'name="Micro-mediation in the grid"' in english["xml"] and "网格微调处" not in english["xml"]
    assert 'name="Grid leader (grid.grid_leader)"' in english["xml"]
    assert english["highlights"] == chinese["highlights"]
    assert english["xml"].count("<bpmndi:BPMNShape") == chinese["xml"].count("<bpmndi:BPMNShape") > 20


# ------------------------------------------------------ a report sent twice

def _start_token(page: str) -> str:
    match = re.search(r'name="start_token" value="([0-9a-f]{32})"', page)
    assert match, "the report form carries no start_token"
    return match.group(1)


def test_a_report_form_sent_twice_starts_one_case(service, as_user):
    """A double tap on 提交 over a slow connection, or the back button and 提交 again, sends the
    same form twice: it reported the matter twice (two cases, two tasks for the grid leader)."""
    worker = as_user(WORKER)
    page = html(worker.get("/start/grid_matter"))
    form = {"csrf_token": token(worker, "/start/grid_matter"), "start_token": _start_token(page),
            "grid": GRID, **REPORT}
    first = worker.post("/start/grid_matter", data=dict(form), content_type="multipart/form-data")
    assert first.status_code == 302
    before = counts(service)
    again = worker.post("/start/grid_matter", data=dict(form), content_type="multipart/form-data")
    assert again.status_code == 302 and again.headers["Location"] == first.headers["Location"]
    assert counts(service) == before                          # no case, task, event or file more
    key = first.headers["Location"].rsplit("/", 1)[-1]
    assert f"此表单已提交过，案件编号 {key}，未重复上报" in html(worker.get(again.headers["Location"]))
    # a form opened afresh reports another matter
    fresh = _start_token(html(worker.get("/start/grid_matter")))
    assert fresh != form["start_token"]
    other = worker.post("/start/grid_matter", data={**form, "start_token": fresh}, content_type="multipart/form-data")
    assert other.status_code == 302 and other.headers["Location"] != first.headers["Location"]


def test_a_refused_report_keeps_its_token_so_the_corrected_one_is_sent_once(service, as_user):
    worker = as_user(WORKER)
    sent = _start_token(html(worker.get("/start/grid_matter")))
    form = {"csrf_token": token(worker, "/start/grid_matter"), "start_token": sent, "grid": GRID, **REPORT}
    refused = worker.post("/start/grid_matter", data={**form, "description": ""}, content_type="multipart/form-data")
    assert refused.status_code == 400 and _start_token(html(refused)) == sent
    assert worker.post("/start/grid_matter", data=dict(form), content_type="multipart/form-data").status_code == 302
    assert worker.post("/start/grid_matter", data=dict(form), content_type="multipart/form-data").status_code == 302
    assert counts(service)[0] == 1
    # a token that is not one the page makes is not kept (nor trusted to find a case)
    refused = worker.post("/start/grid_matter", data={**form, "start_token": "x" * 300, "description": ""},
                          content_type="multipart/form-data")
    assert refused.status_code == 400 and _start_token(html(refused)) != "x" * 300


def test_a_start_token_is_per_official_and_a_simultaneous_second_start_names_the_first(service, monkeypatch):
    from engine.errors import AlreadyStarted
    first = service.start_case("grid_matter", GRID, dict(REPORT), WORKER, start_token="a" * 32)
    # another official's form with the same token is another report
    other = service.start_case("grid_matter", "linxi-xinguang-g2", dict(REPORT), "lx_wgy2", start_token="a" * 32)
    assert other.business_key != first.business_key
    with pytest.raises(AlreadyStarted) as refused:
        service.start_case("grid_matter", GRID, dict(REPORT), WORKER, start_token="a" * 32)
    assert refused.value.business_key == first.business_key and first.business_key in refused.value.zh
    # both requests of a double tap passed the look-up before either committed: the unique
    # index refuses the second, which then names the first case
    real = WorkflowService._case_started_with
    calls = []

    def missed_once(session, user, start_token):
        calls.append(start_token)
        return None if len(calls) == 1 else real(session, user, start_token)
    monkeypatch.setattr(WorkflowService, "_case_started_with", staticmethod(missed_once))
    before = counts(service)
    with pytest.raises(AlreadyStarted) as refused:
        service.start_case("grid_matter", GRID, dict(REPORT), WORKER, start_token="a" * 32)
    assert refused.value.business_key == first.business_key and len(calls) == 2
    assert counts(service) == before
