"""The trace of a case and its exports (CSV, XLSX, JSON); the closed petition test of issue 7."""
import io
import json
import re
import glob
from pathlib import Path

import pytest
from openpyxl import load_workbook

from engine.errors import PermissionDenied
from engine.export import export_trace
from engine.scenarios import Scenario, run_scenario
from engine.trace import CaseTrace
from tests.helpers import REPORT, export_rows, login, open_item

ROOT = Path(__file__).resolve().parent.parent
PETITION = ROOT / "processes" / "scenarios" / "petition" / "accepted_replied_closed_after_30_days.yaml"


@pytest.fixture
def closed_petition(service, clock):
    result = run_scenario(service, clock, Scenario.load(PETITION))
    assert service.get_case(result.business_key).status == "completed"
    return result.business_key


def _events(service, key):
    return [e for e in service.history(key) if e.event_type != "personal_data_viewed"]


def test_trace_has_every_event_in_order_with_who_role_and_unit(service, closed_petition):
    trace = CaseTrace(service).trace("lxx_dc", closed_petition)
    events = _events(service, closed_petition)
    assert [s.event_id for s in trace.steps] == [e.id for e in events]
    assert [s.seq for s in trace.steps] == list(range(1, len(events) + 1))
    started = trace.steps[0]
    assert started.event_type == "case_started" and started.actor_username == "lxx_xf"
    assert started.role == "petition_officer" and started.node_name == "林西县信访局"
    handle = next(s for s in trace.steps if s.event_type == "task_completed" and s.bpmn_id == "handle")
    assert handle.actor_username == "lxx_zj" and handle.role == "department_handler"
    assert handle.node_name == "林西县住房和城乡建设局"
    assert handle.submitted["handling_result"].startswith("已责成物业公司")
    assert trace.steps[-1].event_type in ("case_closed", "timers_fired")
    assert any(s.event_type == "case_closed" for s in trace.steps)
    assert "start" in trace.detail.highlights["completed"] and "written_reply" in trace.detail.highlights["completed"]


def test_changed_values():
    from engine.trace import changes
    known = {"hard_case": False, "department": "zhujian", "note": "a"}
    assert changes(known, {"hard_case": True, "department": "zhujian", "new": 1}) == {"hard_case": [False, True]}
    assert changes({}, {"x": 1}) == {}


def test_trace_records_resubmitted_field_as_changed_only_when_different(service, closed_petition):
    trace = CaseTrace(service).trace("lxx_dc", closed_petition)
    handle = next(s for s in trace.steps if s.bpmn_id == "handle" and s.event_type == "task_completed")
    # decide and handle both submit hard_case=false: resubmitted, not changed
    assert handle.submitted["hard_case"] is False and "hard_case" not in handle.changed


def test_urge_escalation_and_reminder_are_marked(service, clock):
    from datetime import timedelta
    view = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    item = open_item(view, "micro_mediation")
    service.supervision.urge(item.id, "lxz_pd", "请加快调处")
    clock.advance(timedelta(days=30))
    service.fire_timers(view.business_key)
    trace = CaseTrace(service).trace("lxx_dc", view.business_key)
    kinds = [s.kind for s in trace.steps]
    urge = next(s for s in trace.steps if s.kind == "urge")
    assert urge.actor_username == "lxz_pd" and urge.note == "请加快调处"
    assert urge.role == "center_dispatcher" and urge.node_name
    assert "escalation" in kinds or "reminder" in kinds


def test_trace_outside_jurisdiction_refused(service, closed_petition):
    with pytest.raises(PermissionDenied):
        CaseTrace(service).trace("by_dc", closed_petition)


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_auditor_export_of_closed_petition_has_every_step_in_order(app, client, service, closed_petition, fmt):
    expected = _events(service, closed_petition)
    login(client, "lxx_dc")
    response = client.get(f"/audit/cases/{closed_petition}/trace.{fmt}")
    assert response.status_code == 200
    assert closed_petition in response.headers["Content-Disposition"]
    if fmt == "json":
        doc = json.loads(response.data)
        steps = doc["steps"]
        assert doc["case"]["status"] == "completed" and doc["personal_data_masked"] is True
        got = [(s["seq"], s["event_type"], s["bpmn_id"], s["username"]) for s in steps]
        assert doc["path"] == [b for _, b in service.path(closed_petition)][:len(doc["path"])]
    else:
        rows = export_rows(fmt, response.data)
        assert rows[0][:3] == ["序号", "时间", "事件"]
        got = [(int(r[0]), r[2], r[5] or None, r[8] or None) for r in rows[1:]]
    users = {e.actor_id for e in expected}
    # JSON names each event by its code; CSV and XLSX by its label, as the page does
    from web.tasks import event_label
    with app.test_request_context():
        shown = {e.event_type: (e.event_type if fmt == "json" else event_label(e.event_type)) for e in expected}
    want = [(i, shown[e.event_type], e.bpmn_id) for i, e in enumerate(expected, 1)]
    assert [g[:3] for g in got] == want
    assert len(users) > 1
    # every completed user task of the petition is there, in the order they were done
    done = [g[2] for g in got if g[1] == shown["task_completed"]]
    assert done == ["decide", "handle", "written_reply"]
    # the petitioner's phone is masked for the auditor
    blob = response.data.decode("utf-8") if fmt != "xlsx" else json.dumps(export_rows(fmt, response.data), ensure_ascii=False)
    assert "13800001234" not in blob and "138****1234" in blob


def test_export_english_headers_and_formula_cells_are_inert(service, clock):
    view = service.start_case("grid_matter", "linxi-xinguang-g1",
                              dict(REPORT, description="=HYPERLINK(\"http://x\")恶意公式"), "lx_wgy1")
    trace = CaseTrace(service).trace("lxx_dc", view.business_key)
    rows = export_rows("csv", export_trace(trace, "csv", "en").body)
    assert rows[0][:3] == ["No.", "When", "Event"]
    sheet = load_workbook(io.BytesIO(export_trace(trace, "xlsx").body)).active
    cells = [c for row in sheet.iter_rows(values_only=True) for c in row if isinstance(c, str)]
    assert not any(c.startswith("=") for c in cells)


def test_search_export_formats(client, service, clock):
    keys = [service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1").business_key for _ in range(3)]
    login(client, "lxx_dc")
    for fmt in ("csv", "xlsx"):
        rows = export_rows(fmt, client.get(f"/audit/cases/export.{fmt}?bk=LX").data)
        assert [r[0] for r in rows[1:]] == list(reversed(keys))
        # the page's columns, read as the page reads them; not the stored summary as JSON
        # (choice codes, usernames, UTC deadlines)
        assert "案件数据" not in rows[0] and not any("{" in cell for r in rows[1:] for cell in r)
    doc = json.loads(client.get("/audit/cases/export.json").data)
    assert [c["business_key"] for c in doc["cases"]] == list(reversed(keys))
    assert client.get("/audit/cases/export.pdf").status_code == 404
    assert client.get("/audit/cases/export.csv?from=bad").status_code == 400


def test_trace_page_and_api(client, service, closed_petition):
    login(client, "lxx_dc")
    html = client.get(f"/audit/cases/{closed_petition}/trace").get_data(as_text=True)
    assert "全程追溯" in html and "林西县住房和城乡建设局" in html and "138****1234" in html
    assert "13800001234" not in html
    from tests.test_audit_search import _token
    body = client.get(f"/api/v1/cases/{closed_petition}/trace", headers=_token(client, "lxx_dc")).get_json()
    assert [s["seq"] for s in body["steps"]] == list(range(1, len(body["steps"]) + 1))
    assert client.get(f"/api/v1/cases/{closed_petition}/trace", headers=_token(client, "by_dc")).status_code == 403


def test_auditor_ui_strings_have_english():
    from web.i18n import MESSAGES_EN
    pattern = re.compile(r"""(?<![\w.])_\(\s*(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)')""")
    paths = glob.glob(str(ROOT / "web" / "templates" / "audit" / "*.html")) + \
        [str(ROOT / "web" / "audit.py"), str(ROOT / "web" / "audit_api.py")]
    found = [m.group(1) or m.group(2) for p in paths for m in pattern.finditer(Path(p).read_text(encoding="utf-8"))]
    assert len(found) > 30
    assert [t for t in found if t not in MESSAGES_EN] == []


def test_incidents_and_migrations_are_marked_in_trace_and_page(client, service, db, clock):
    from engine import audit
    from engine.models import Case
    view = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    with db.unit_of_work() as s:
        case = s.get(Case, view.case.id)
        audit.record(s, case, "incident", clock.now(), data={"kind": "timer", "error": "boom", "attempts": 5})
        audit.record(s, case, "case_migrated", clock.now(), actor_id=None,
                     data={"from_version": 1, "to_version": 2})
    trace = CaseTrace(service).trace("lxx_dc", view.business_key)
    kinds = [s.kind for s in trace.steps[-2:]]
    assert kinds == ["incident", "migration"]
    login(client, "lxx_dc")
    page = client.get(f"/audit/cases/{view.business_key}/trace").get_data(as_text=True)
    assert "系统异常" in page and page.count("版本迁移") >= 2   # event and badge
    # what they carried, labelled: the incident's error, the migration's versions
    assert "<dt>错误</dt><dd class=\"pre-wrap\">boom</dd>" in page
    assert "<dt>原版本</dt><dd class=\"pre-wrap\">1</dd>" in page and "from_version" not in page


def test_a_called_mediations_change_reads_by_the_mediations_form(client, service, clock):
    """The petition and the mediation it calls both have a `channel` field: the mediation's
    调解渠道 replacing the petition's 信访渠道 reads by each form's labels, on the page and in
    the exports, not under the petition's label with the mediation's raw code."""
    result = run_scenario(service, clock, Scenario.load(
        ROOT / "processes" / "scenarios" / "petition" / "civil_dispute_mediated_agreement.yaml"))
    login(client, "lxx_dc")
    key = result.business_key
    rows = export_rows("csv", client.get(f"/audit/cases/{key}/trace.csv").data)
    changed = next(r[12] for r in rows[1:] if r[5] == "assign_channel" and r[12])
    assert changed == "调解渠道: 联合接访中心来访 → 村（居）人民调解委员会"
    page = client.get(f"/audit/cases/{key}/trace").get_data(as_text=True)
    assert "村（居）人民调解委员会" in page and "→ village_committee" not in page
    step = next(s for s in json.loads(client.get(f"/audit/cases/{key}/trace.json").data)["steps"]
                if s["bpmn_id"] == "assign_channel" and s["changed"])
    assert step["changed"]["channel"][1] == "village_committee"          # JSON keeps the stored code
    assert "village_committee" not in json.dumps(step["changed_label"], ensure_ascii=False)


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_timers_escalation_is_done_by_the_system_in_the_export_as_on_the_page(client, service, clock, fmt):
    """The page names 系统 as who did a step no person did (a deadline's escalation); the
    export's 办理人 said nothing there."""
    result = run_scenario(service, clock, Scenario.load(
        ROOT / "processes" / "scenarios" / "grid_matter" / "town_deadline_escalates_to_county.yaml"))
    login(client, "lxx_dc")
    rows = export_rows(fmt, client.get(f"/audit/cases/{result.business_key}/trace.{fmt}").data)
    escalations = [r for r in rows[1:] if r[3] == "超时升级"]
    assert escalations and all(r[7] == "系统" and r[8] == "" for r in escalations)
    assert all(r[7] == "系统" for r in rows[1:] if r[2] == "生成任务")
    started = rows[1]
    assert started[7] and started[7] != "系统" and started[8]       # a person's step names the person
    page = client.get(f"/audit/cases/{result.business_key}/trace").get_data(as_text=True)
    assert "系统" in page
    with client.session_transaction() as s:
        s["lang"] = "en"
    rows = export_rows(fmt, client.get(f"/audit/cases/{result.business_key}/trace.{fmt}?lang=en").data)
    assert any(r[7] == "System" for r in rows[1:])


def test_a_changed_time_reads_as_the_submitted_time_does(client, service, clock):
    """A datetime field submitted again (办结时间 after a rework) reads in 修改内容 as in 提交内容:
    China time to the minute, not the stored ISO text with its offset."""
    result = run_scenario(service, clock, Scenario.load(
        ROOT / "processes" / "scenarios" / "grid_matter" / "failed_verification_is_reworked.yaml"))
    login(client, "lxx_dc")
    for fmt in ("csv", "xlsx"):
        rows = export_rows(fmt, client.get(f"/audit/cases/{result.business_key}/trace.{fmt}").data)
        row = next(r for r in rows[1:] if "办结时间: " in r[12])
        changed = next(line for line in row[12].splitlines() if line.startswith("办结时间: "))
        submitted = next(line for line in row[11].splitlines() if line.startswith("办结时间: "))
        after = changed.split(" → ")[1]
        assert submitted == f"办结时间: {after}" and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", after)
        assert "+08:00" not in changed and "T" not in changed


@pytest.mark.parametrize("fmt", ["page", "csv"])
def test_a_scheduled_starts_data_reads_by_labels_without_unit_ids(client, service, clock, fmt):
    """A monthly 逆向考评 is started by the schedule with data no form labels: the trace named it
    by its keys (scheduled_for, evaluator, community_node_id: 4 …), ids and an ISO time included."""
    result = run_scenario(service, clock, Scenario.load(
        ROOT / "processes" / "scenarios" / "reverse_evaluation" / "scored_by_the_grid_worker.yaml"))
    login(client, "lxx_dc")
    if fmt == "csv":
        rows = export_rows(fmt, client.get(f"/audit/cases/{result.business_key}/trace.csv").data)
        text = next(r[11] for r in rows[1:] if r[2] == "上报/发起")
    else:
        text = client.get(f"/audit/cases/{result.business_key}/trace").get_data(as_text=True)
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", re.sub(r"<script.*?</script>", "", text, flags=re.S)))
    for key in ("scheduled_for", "evaluator", "_node_id", "dept_chengguan_name", "T01:00"):
        assert key not in text
    assert "计划发起时间" in text and "2026-03-01 01:00" in text and "王秀兰（lx_wgy1）" in text
    assert "职能部门（城管）" in text


def test_a_step_shows_the_role_and_unit_held_then_after_the_official_moved(service, db, clock):
    """王秀兰 reported from 新光社区第一网格; later the organisation file moves her to the second
    grid. Her report still reads 网格员 @ 新光社区第一网格 (the role she held then, per the
    organisation's change log), not her grid of today."""
    import copy
    import yaml
    from datetime import timedelta
    from engine.org import load_org
    view = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    raw = yaml.safe_load((ROOT / "demo" / "org.yaml").read_text(encoding="utf-8"))
    moved = copy.deepcopy(raw)
    user = next(u for u in moved["users"] if u["username"] == "lx_wgy1")
    user["roles"] = [{"role": "grid_worker", "node": "linxi-xinguang-g2"}]
    clock.advance(timedelta(days=1))
    try:
        with db.unit_of_work() as session:
            load_org(session, moved, source="moved.yaml", actor="tests")
        trace = CaseTrace(service).trace("lxx_dc", view.business_key)
        started = trace.steps[0]
        assert started.actor_username == "lx_wgy1"
        assert (started.role, started.node_name) == ("grid_worker", "新光社区第一网格")
    finally:
        clock.advance(timedelta(days=1))
        with db.unit_of_work() as session:
            load_org(session, raw, source="demo/org.yaml", actor="tests")


def test_where_a_step_came_from_is_named_in_its_own_process(client, service, clock):
    """Petition, the mediation it calls and the leader case each have a `start` event: a
    petition's 研判归口 came from 登记信访事项 and the mediation's 研判调解渠道 from 纠纷受理登记,
    not both from the leader case's 包案交办."""
    result = run_scenario(service, clock, Scenario.load(
        ROOT / "processes" / "scenarios" / "petition" / "civil_dispute_mediated_agreement.yaml"))
    trace = CaseTrace(service).trace("lxx_dc", result.business_key)
    came = {s.bpmn_id: s.flow_from_name for s in trace.steps if s.event_type == "step" and s.flow_from == "start"}
    assert came == {"route": "登记信访事项", "decide_channel": "纠纷受理登记"}
    login(client, "lxx_dc")
    rows = export_rows("csv", client.get(f"/audit/cases/{result.business_key}/trace.csv").data)
    assert {r[5]: r[6] for r in rows[1:] if r[5] in came} == came
    assert "包案交办" not in client.get(f"/audit/cases/{result.business_key}/trace").get_data(as_text=True)
