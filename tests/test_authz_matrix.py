"""The authorization matrix: every endpoint × every role × own/other jurisdiction.

`MATRIX` below is the table: one row per endpoint (Flask endpoint and method,
enumerated from `app.url_map`: a new endpoint without a row fails
`test_every_endpoint_has_a_row`), one column per principal, each cell the HTTP
status the request must get. The request of each row targets one grid matter
reported by lx_wgy1 in 新光社区第一网格 (林西县) whose open task 网格微调处 waits for
the grid leader lx_wgz1; a column marked ' holds the same role in 五原县 or
松山区 (the other jurisdiction). Rows that change something run on a fresh case
per principal.

Columns (demo users, demo/org.yaml):
  anon  not logged in / no token
  gw    lx_wgy1  grid_worker, the case's grid (and its reporter)  gw'   wy_wgy1  grid_worker, 五原县
  gl    lx_wgz1  grid_leader, the case's grid (task candidate)    gl'   wy_wgz1  grid_leader, 五原县
  disp  lxz_pd   center_dispatcher, 林西镇                        disp' tjt_pd   center_dispatcher, 天吉泰镇
  dept  lxz_cg   department_handler, 林西镇城管                    dept' tjt_cg   department_handler, 天吉泰镇城管
  pet   lxx_xf   petition_officer, 林西县信访局                   pet'  wyx_xf   petition_officer, 五原县信访局
  lead  lxx_ld1  leader, 林西县          med  lx_tjy2  mediator, 新光社区
  aud   lxx_dc   auditor, 林西县         aud' by_dc    auditor, 巴彦淖尔市
  des   cf_sj    designer, 赤峰市        adm  admin    admin, 赤峰市 and 巴彦淖尔市
(leader, mediator, designer and admin have no holder outside 赤峰市 in the demo org.)

Web pages log in with a session (CSRF is switched off here: it is tested in
test_web_pages.py; this table is about who may do what); /api/v1 uses bearer tokens.
"""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine import clock as clock_module
from engine.models import Incident, Notification, ProcessVersion, User
from tests.helpers import REPORT

GRID = "linxi-xinguang-g1"
PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")

PRINCIPALS = {
    "anon": None, "gw": "lx_wgy1", "gw'": "wy_wgy1", "gl": "lx_wgz1", "gl'": "wy_wgz1",
    "disp": "lxz_pd", "disp'": "tjt_pd", "dept": "lxz_cg", "dept'": "tjt_cg", "pet": "lxx_xf", "pet'": "wyx_xf",
    "lead": "lxx_ld1", "med": "lx_tjy2", "aud": "lxx_dc", "aud'": "by_dc", "des": "cf_sj", "adm": "admin",
}
COLUMNS = list(PRINCIPALS)

MATRIX = """
# 200/201 allowed; 302 allowed and redirected (a POST's "done"; the login page for /, /logout and /lang/);
# 399 = redirected to the login page (not logged in); 400 let through, refused as bad input (a grid
# that is not theirs to choose, an empty form definition, a migration to the same version, a wrong current
# password); 401 no or bad token / wrong password; 403 refused; 404 not theirs to know of
# (someone else's notification).
endpoint                       method  anon    gw   gw'    gl   gl'  disp disp'  dept dept'   pet  pet'  lead   med   aud  aud'   des   adm
api.api_dashboard              GET      401   403   403   403   403   200   403   403   403   403   403   200   403   200   403   403   403
api.change_password           POST     401   400   400   400   400   400   400   400   400   400   400   400   400   400   400   400   400
api.case_trace                 GET      401   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
api.claim_task                 POST     401   403   403   200   403   403   403   403   403   403   403   403   403   403   403   403   403
api.complete_task              POST     401   403   403   200   403   403   403   403   403   403   403   403   403   403   403   403   403
api.create_case                POST     401   201   403   403   403   403   403   403   403   403   403   403   403   403   403   403   403
api.docs                       GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.docs_asset                 GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.docs_init                  GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.download_file              GET      401   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
api.get_case                   GET      401   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
api.get_task                   GET      401   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
api.issue_api_token            POST     401   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.list_processes             GET      401   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.list_tasks                 GET      401   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.list_notifications         GET      401   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.openapi_document           GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.read_all_notifications     POST     401   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.read_notification          POST     401   404   404   200   404   404   404   404   404   404   404   404   404   404   404   404   404
api.search_cases               GET      401   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
api.reassign_task              POST     401   403   403   403   403   200   403   403   403   403   403   200   403   403   403   403   403
api.unclaim_task               POST     401   403   403   200   403   403   403   403   403   403   403   403   403   403   403   403   403
api.upload_case_files          POST     401   201   403   201   403   403   403   403   403   403   403   403   403   403   403   403   403
api.upload_pending_files       POST     401   201   201   201   201   201   201   201   201   201   201   201   201   403   403   201   201
audit.export_cases             GET      399   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
audit.search                   GET      399   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
audit.export_org_change_log    GET      399   403   403   403   403   403   403   403   403   403   403   403   403   200   200   403   200
audit.login_records            GET      399   403   403   403   403   403   403   403   403   403   403   403   403   200   200   403   200
audit.unlock_login             POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   403   302
audit.org_changes              GET      399   403   403   403   403   403   403   403   403   403   403   403   403   200   200   403   200
audit.trace                    GET      399   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
audit.trace_export             GET      399   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
auth.change_password          GET      399   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
auth.change_password          POST     399   400   400   400   400   400   400   400   400   400   400   400   400   400   400   400   400
auth.login                     GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
auth.login                     POST     401   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
auth.logout                    POST     302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
auth.root                      GET      302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
auth.set_language              POST     302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
cases.add_attachment           POST     399   302   403   302   403   403   403   403   403   403   403   403   403   403   403   403   403
cases.attachment               GET      399   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
cases.diagram                  GET      399   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
cases.show                     GET      399   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
cases.start_form               GET      399   200   200   403   403   403   403   403   403   403   403   403   403   403   403   403   403
cases.start_list               GET      399   200   200   200   200   200   200   200   200   200   200   200   200   403   403   200   200
cases.start_submit             POST     399   302   400   403   403   403   403   403   403   403   403   403   403   403   403   403   403
cases.vendor_bpmn              GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
dashboard.export               GET      399   403   403   403   403   200   403   403   403   403   403   200   403   200   403   403   403
dashboard.index                GET      399   403   403   403   403   200   403   403   403   403   403   200   403   200   403   403   403
designer.check                 POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.deploy                POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.diff                  GET      399   403   403   403   403   403   403   403   403   403   403   403   403   200   200   200   200
designer.edit                  GET      399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.form_edit             GET      399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.form_edit             POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   400   400
designer.form_preview          POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.forms_list            GET      399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.library               GET      399   403   403   403   403   403   403   403   403   403   403   403   403   200   200   200   200
designer.migrate_apply         POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   400   400
designer.migrate_plan          GET      399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   400   400
designer.process               GET      399   403   403   403   403   403   403   403   403   403   403   403   403   200   200   200   200
designer.scenarios             GET      399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.scenarios             POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.upload                GET      399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.upload                POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200   200
designer.vendor_dmn            GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
designer.version_file          GET      399   403   403   403   403   403   403   403   403   403   403   403   403   200   200   200   200
inbox.index                    GET      399   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
static                         GET      200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
supervision.board              GET      399   403   403   403   403   200   200   403   403   200   200   200   403   403   403   403   403
supervision.incidents          GET      399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   403   200
supervision.mark_all_read      POST     399   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302   302
supervision.mark_read          POST     399   404   404   302   404   404   404   404   404   404   404   404   404   404   404   404   404
supervision.notifications      GET      399   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200   200
supervision.open_notification  GET      399   404   404   302   404   404   404   404   404   404   404   404   404   404   404   404   404
supervision.resolve_incident   POST     399   403   403   403   403   403   403   403   403   403   403   403   403   403   403   403   302
supervision.reassign           POST     399   403   403   403   403   302   403   403   403   403   403   302   403   403   403   403   403
supervision.urge               POST     399   403   403   403   403   302   403   403   403   302   403   302   403   403   403   403   403
tasks.claim                    POST     399   403   403   302   403   403   403   403   403   403   403   403   403   403   403   403   403
tasks.complete                 POST     399   403   403   302   403   403   403   403   403   403   403   403   403   403   403   403   403
tasks.show                     GET      399   200   403   200   403   200   403   403   403   403   403   200   200   200   403   200   200
tasks.unclaim                  POST     399   403   403   302   403   403   403   403   403   403   403   403   403   403   403   403   403
"""


def parse_matrix(text: str) -> dict[tuple[str, str], dict[str, int]]:
    rows = {}
    lines = [line for line in text.strip().splitlines() if line.strip() and not line.startswith("#")]
    header = lines[0].split()
    assert header[:2] == ["endpoint", "method"] and header[2:] == COLUMNS, header
    for line in lines[1:]:
        endpoint, method, *cells = line.split()
        assert len(cells) == len(COLUMNS), line
        assert (endpoint, method) not in rows, f"two rows for {endpoint} {method}"
        rows[(endpoint, method)] = dict(zip(COLUMNS, (int(c) for c in cells)))
    return rows


# ------------------------------------------------------------------ the world each row acts on

class World:
    """One reported grid matter and everything a row may point at."""

    def __init__(self, service, claimed_by: str | None = None):
        view = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
        self.key = view.business_key
        self.case_id = view.case.id
        (self.task,) = [i.id for i in view.open_items]
        if claimed_by:
            service.claim(self.task, claimed_by)
        self.attachment = service.upload_attachment("lx_wgy1", "现场.png", PNG, self.key).id
        with service.db.unit_of_work() as s:
            leader = s.scalar(select(User.id).where(User.username == "lx_wgz1"))
            self.notification = s.scalar(select(Notification.id).where(Notification.user_id == leader)
                                         .order_by(Notification.id.desc()).limit(1))
            incident = Incident(case_id=self.case_id, kind="timer", error="test incident", attempts=5,
                                created_at=clock_module.now())
            s.add(incident)
            s.flush()
            self.incident = incident.id
            self.consultation_version = s.scalar(select(func.max(ProcessVersion.version))
                                                 .where(ProcessVersion.process_key == "consultation"))
        assert self.notification is not None and self.consultation_version


CONSULTATION = (Path(__file__).resolve().parent.parent / "processes" / "consultation.bpmn").read_text(encoding="utf-8")
RECORD_RESULT_FORM = (Path(__file__).resolve().parent.parent / "forms" / "record_result.yaml").read_text(encoding="utf-8")
CONSULTATION_SCENARIO = sorted((Path(__file__).resolve().parent.parent / "processes" / "scenarios" / "consultation")
                               .glob("*.yaml"))[0].stem
MEDIATED = {"resolved": "true", "mediation_note": "双方达成一致，已签字"}


def _files(name="补拍.png", data=PNG):
    return {"file": (io.BytesIO(data), name)}


# each: (method, path, kwargs) for a principal's request; `who` is the username or None
REQUESTS = {
    ("auth.root", "GET"): lambda w, who: ("GET", "/", {}),
    ("auth.login", "GET"): lambda w, who: ("GET", "/login", {}),
    ("auth.login", "POST"): lambda w, who: ("POST", "/login", {"data": {"username": who or "nobody",
                                                                       "password": "demo123"}}),
    ("auth.logout", "POST"): lambda w, who: ("POST", "/logout", {}),
    # a wrong current password: refused as bad input once let through, and nobody's password changes
    ("auth.change_password", "GET"): lambda w, who: ("GET", "/account/password", {}),
    ("auth.change_password", "POST"): lambda w, who: ("POST", "/account/password", {
        "data": {"current": "not-the-password", "new": "Xinguang-2026", "repeat": "Xinguang-2026"}}),
    ("auth.set_language", "POST"): lambda w, who: ("POST", "/lang/en", {"data": {"next": "/inbox"}}),
    ("inbox.index", "GET"): lambda w, who: ("GET", "/inbox", {}),
    ("tasks.show", "GET"): lambda w, who: ("GET", f"/tasks/{w.task}", {}),
    ("tasks.complete", "POST"): lambda w, who: ("POST", f"/tasks/{w.task}", {"data": MEDIATED}),
    ("tasks.claim", "POST"): lambda w, who: ("POST", f"/tasks/{w.task}/claim", {}),
    ("tasks.unclaim", "POST"): lambda w, who: ("POST", f"/tasks/{w.task}/unclaim", {}),
    ("cases.start_list", "GET"): lambda w, who: ("GET", "/start", {}),
    ("cases.start_form", "GET"): lambda w, who: ("GET", "/start/grid_matter", {}),
    ("cases.start_submit", "POST"): lambda w, who: ("POST", "/start/grid_matter",
                                                    {"data": {"grid": GRID, **REPORT}}),
    ("cases.show", "GET"): lambda w, who: ("GET", f"/cases/{w.key}", {}),
    ("cases.diagram", "GET"): lambda w, who: ("GET", f"/cases/{w.key}/diagram.json", {}),
    ("cases.add_attachment", "POST"): lambda w, who: ("POST", f"/cases/{w.key}/attachments", {"data": _files()}),
    ("cases.attachment", "GET"): lambda w, who: ("GET", f"/attachments/{w.attachment}", {}),
    ("cases.vendor_bpmn", "GET"): lambda w, who: ("GET", "/vendor/bpmn-js/bpmn-viewer.production.min.js", {}),
    ("static", "GET"): lambda w, who: ("GET", "/static/app.css", {}),
    ("supervision.board", "GET"): lambda w, who: ("GET", "/supervision", {}),
    ("supervision.reassign", "POST"): lambda w, who: ("POST", f"/supervision/tasks/{w.task}/reassign",
                                                     {"data": {"to": "lx_wgz1", "reason": "出差，改由网格长办理"}}),
    ("supervision.urge", "POST"): lambda w, who: ("POST", f"/supervision/tasks/{w.task}/urge",
                                                  {"data": {"note": "请尽快办理"}}),
    ("supervision.notifications", "GET"): lambda w, who: ("GET", "/notifications", {}),
    ("supervision.open_notification", "GET"): lambda w, who: ("GET", f"/notifications/{w.notification}/open", {}),
    ("supervision.mark_read", "POST"): lambda w, who: ("POST", f"/notifications/{w.notification}/read", {}),
    ("supervision.mark_all_read", "POST"): lambda w, who: ("POST", "/notifications/read-all", {}),
    ("supervision.incidents", "GET"): lambda w, who: ("GET", "/admin/incidents", {}),
    ("supervision.resolve_incident", "POST"): lambda w, who: ("POST", f"/admin/incidents/{w.incident}/resolve", {}),
    # ---- the designer (process library, modeler, deployment)
    ("designer.library", "GET"): lambda w, who: ("GET", "/designer/", {}),
    ("designer.process", "GET"): lambda w, who: ("GET", "/designer/processes/consultation", {}),
    ("designer.version_file", "GET"): lambda w, who: (
        "GET", f"/designer/processes/consultation/v{w.consultation_version}/files/consultation.bpmn", {}),
    ("designer.edit", "GET"): lambda w, who: ("GET", "/designer/processes/consultation/edit", {}),
    ("designer.diff", "GET"): lambda w, who: ("GET", "/designer/processes/consultation/diff", {}),
    ("designer.upload", "GET"): lambda w, who: ("GET", "/designer/upload", {}),
    # the shipped file, unchanged: a check, and a deployment that creates nothing new
    ("designer.upload", "POST"): lambda w, who: ("POST", "/designer/upload", {"data": {
        "action": "check", "file": (io.BytesIO(CONSULTATION.encode()), "consultation.bpmn")}}),
    ("designer.check", "POST"): lambda w, who: ("POST", "/designer/check",
                                                {"json": {"files": {"consultation.bpmn": CONSULTATION}}}),
    ("designer.deploy", "POST"): lambda w, who: ("POST", "/designer/deploy",
                                                 {"json": {"files": {"consultation.bpmn": CONSULTATION}}}),
    ("designer.vendor_dmn", "GET"): lambda w, who: ("GET", "/designer/vendor/dmn-js/dmn-viewer.production.min.js", {}),
    ("designer.forms_list", "GET"): lambda w, who: ("GET", "/designer/forms/", {}),
    ("designer.form_edit", "GET"): lambda w, who: ("GET", "/designer/forms/record_result", {}),
    # an empty definition: refused as invalid (400) to those who may edit, before anything is saved
    ("designer.form_edit", "POST"): lambda w, who: ("POST", "/designer/forms/record_result",
                                                    {"data": {"definition": ""}}),
    ("designer.form_preview", "POST"): lambda w, who: ("POST", "/designer/forms/record_result/preview",
                                                       {"json": {"definition": RECORD_RESULT_FORM}}),
    ("designer.migrate_plan", "GET"): lambda w, who: ("GET", "/designer/processes/consultation/migrate", {}),
    # no case chosen: a plan that moves nothing
    ("designer.migrate_apply", "POST"): lambda w, who: (
        "POST", "/designer/processes/consultation/migrate",
        {"data": {"from": w.consultation_version, "to": w.consultation_version}}),
    ("designer.scenarios", "GET"): lambda w, who: ("GET", "/designer/processes/consultation/scenarios", {}),
    ("designer.scenarios", "POST"): lambda w, who: ("POST", "/designer/processes/consultation/scenarios",
                                                    {"data": {"name": CONSULTATION_SCENARIO}}),
    # ---- the auditors' search, trace and exports
    ("audit.search", "GET"): lambda w, who: ("GET", "/audit/cases", {}),
    ("audit.login_records", "GET"): lambda w, who: ("GET", "/audit/logins", {}),
    ("audit.unlock_login", "POST"): lambda w, who: ("POST", "/audit/logins/unlock", {"data": {"username": "lx_wgy1"}}),
    ("audit.org_changes", "GET"): lambda w, who: ("GET", "/audit/org-changes", {}),
    ("audit.export_org_change_log", "GET"): lambda w, who: ("GET", "/audit/org-changes/export.csv", {}),
    ("audit.export_cases", "GET"): lambda w, who: ("GET", "/audit/cases/export.csv", {}),
    ("audit.trace", "GET"): lambda w, who: ("GET", f"/audit/cases/{w.key}/trace", {}),
    ("audit.trace_export", "GET"): lambda w, who: ("GET", f"/audit/cases/{w.key}/trace.csv", {}),
    ("api.search_cases", "GET"): lambda w, who: ("GET", "/api/v1/cases", {}),
    ("api.case_trace", "GET"): lambda w, who: ("GET", f"/api/v1/cases/{w.key}/trace", {}),
    # ---- the dashboard, scoped to the case's town (林西镇): inside the jurisdiction of the columns without '
    ("dashboard.index", "GET"): lambda w, who: ("GET", "/dashboard?node=linxizhen", {}),
    ("dashboard.export", "GET"): lambda w, who: ("GET", "/dashboard/export/all.xlsx?node=linxizhen", {}),
    ("api.api_dashboard", "GET"): lambda w, who: ("GET", "/api/v1/dashboard?node=linxizhen", {}),
    # ---- /api/v1 (bearer token)
    ("api.issue_api_token", "POST"): lambda w, who: ("POST", "/api/v1/auth/token", {
        "json": {"username": who or "nobody", "password": "demo123"}}),
    ("api.openapi_document", "GET"): lambda w, who: ("GET", "/api/v1/openapi.json", {}),
    ("api.docs", "GET"): lambda w, who: ("GET", "/api/docs", {}),
    ("api.docs_init", "GET"): lambda w, who: ("GET", "/api/docs/init.js", {}),
    ("api.docs_asset", "GET"): lambda w, who: ("GET", "/api/docs/assets/swagger-ui.css", {}),
    ("api.list_processes", "GET"): lambda w, who: ("GET", "/api/v1/processes", {}),
    ("api.create_case", "POST"): lambda w, who: ("POST", "/api/v1/cases", {
        "json": {"process": "grid_matter", "grid": GRID, "data": REPORT}}),
    ("api.get_case", "GET"): lambda w, who: ("GET", f"/api/v1/cases/{w.key}", {}),
    ("api.upload_case_files", "POST"): lambda w, who: ("POST", f"/api/v1/cases/{w.key}/attachments",
                                                       {"data": _files()}),
    ("api.upload_pending_files", "POST"): lambda w, who: ("POST", "/api/v1/attachments", {"data": _files()}),
    ("api.download_file", "GET"): lambda w, who: ("GET", f"/api/v1/attachments/{w.attachment}", {}),
    ("api.list_tasks", "GET"): lambda w, who: ("GET", "/api/v1/tasks", {}),
    ("api.list_notifications", "GET"): lambda w, who: ("GET", "/api/v1/notifications", {}),
    ("api.read_notification", "POST"): lambda w, who: ("POST", f"/api/v1/notifications/{w.notification}/read", {}),
    ("api.read_all_notifications", "POST"): lambda w, who: ("POST", "/api/v1/notifications/read-all", {}),
    ("api.get_task", "GET"): lambda w, who: ("GET", f"/api/v1/tasks/{w.task}", {}),
    ("api.change_password", "POST"): lambda w, who: ("POST", "/api/v1/auth/password", {
        "json": {"current": "not-the-password", "new": "Xinguang-2026"}}),
    ("api.claim_task", "POST"): lambda w, who: ("POST", f"/api/v1/tasks/{w.task}/claim", {}),
    ("api.unclaim_task", "POST"): lambda w, who: ("POST", f"/api/v1/tasks/{w.task}/unclaim", {}),
    ("api.reassign_task", "POST"): lambda w, who: ("POST", f"/api/v1/tasks/{w.task}/reassign", {
        "json": {"to": "lx_wgz1", "reason": "出差，改由网格长办理"}}),
    ("api.complete_task", "POST"): lambda w, who: ("POST", f"/api/v1/tasks/{w.task}/complete", {
        "json": {"data": {"resolved": True, "mediation_note": "双方达成一致，已签字"}}}),
}

# rows whose request changes something: a fresh world per principal
MUTATING = {key for key in REQUESTS if key[1] == "POST"} - {("auth.set_language", "POST")}
# unclaiming needs a claimed task: claimed by the task's candidate, the grid leader
CLAIMED_BY = {("tasks.unclaim", "POST"): "lx_wgz1", ("api.unclaim_task", "POST"): "lx_wgz1"}


@pytest.fixture
def matrix_app(service, tmp_path):
    from web import create_app
    service.attachments.root = tmp_path / "uploads"
    return create_app({"TESTING": True, "SECRET_KEY": "matrix-secret", "SERVICE": service,
                       "WTF_CSRF_ENABLED": False, "UPLOAD_FOLDER": str(tmp_path / "uploads")})


class Callers:
    """A logged-in web client and an API token per principal, made once."""

    def __init__(self, app):
        self.app, self.clients, self.tokens = app, {}, {}

    def web(self, who):
        if who is None:
            return self.app.test_client()
        if who not in self.clients:
            client = self.app.test_client()
            r = client.post("/login", data={"username": who, "password": "demo123"})
            assert r.status_code == 302, (who, r.status_code)
            self.clients[who] = client
        return self.clients[who]

    def token(self, who):
        if who not in self.tokens:
            r = self.app.test_client().post("/api/v1/auth/token", json={"username": who, "password": "demo123"})
            assert r.status_code == 200, who
            self.tokens[who] = r.get_json()["token"]
        return self.tokens[who]

    def send(self, key, world, who) -> int:
        method, path, kwargs = REQUESTS[key](world, who)
        if key in {("auth.logout", "POST"), ("auth.login", "POST")} and who:
            client = self.app.test_client()       # a private session: logging out must not end the shared one
            if key[0] == "auth.logout":
                client.post("/login", data={"username": who, "password": "demo123"})
        elif path.startswith("/api/"):
            client = self.app.test_client()
            if who and key != ("api.issue_api_token", "POST"):
                kwargs = {**kwargs, "headers": {"Authorization": f"Bearer {self.token(who)}"}}
        else:
            client = self.web(who)
        response = client.open(path, method=method, **kwargs)
        status = response.status_code
        location = response.headers.get("Location", "").split("?")[0]
        if status == 302 and location.endswith("/login") and key[0] != "auth.logout":
            return 399   # redirected to the login page: "log in first"
        return status


def observe(app, service, keys) -> dict:
    callers = Callers(app)
    shared = World(service)
    out = {}
    for key in keys:
        out[key] = {}
        for column, who in PRINCIPALS.items():
            world = World(service, CLAIMED_BY.get(key)) if key in MUTATING else shared
            out[key][column] = callers.send(key, world, who)
    return out


def format_matrix(observed: dict) -> str:
    width = max(len(k[0]) for k in observed) + 1
    lines = [f"{'endpoint':<{width}} {'method':<6} " + " ".join(f"{c:>5}" for c in COLUMNS)]
    for key in sorted(observed):
        lines.append(f"{key[0]:<{width}} {key[1]:<6} " + " ".join(f"{observed[key][c]:>5}" for c in COLUMNS))
    return "\n".join(lines)


def url_map_rows(app) -> set[tuple[str, str]]:
    return {(rule.endpoint, method) for rule in app.url_map.iter_rules()
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def test_every_endpoint_has_a_row(matrix_app):
    """A new route without a row here (and a request to send it) fails: decide who may use it."""
    routes = url_map_rows(matrix_app)
    table = set(parse_matrix(MATRIX))
    assert routes - table == set(), f"endpoints without a row in MATRIX: {sorted(routes - table)}"
    assert table - routes == set(), f"rows for endpoints that no longer exist: {sorted(table - routes)}"
    assert set(REQUESTS) == table


def test_the_columns_cover_every_role_in_and_out_of_jurisdiction(service):
    """Each role has a column; the ' columns hold the same role outside 赤峰市 (the case's city)."""
    from engine.models import ROLES
    with service.db.read_session() as s:
        from engine.models import JurisdictionNode
        chifeng = s.scalar(select(JurisdictionNode.path).where(JurisdictionNode.code == "chifeng"))
    held = {}
    for column, username in PRINCIPALS.items():
        if username:
            user = service.get_user(username)
            held[column] = {(ra.role, ra.node.path.startswith(chifeng)) for ra in user.roles}
    assert {role for roles in held.values() for role, _inside in roles} == set(ROLES)
    for column, roles in held.items():
        if column.endswith("'"):
            own_roles = {role for role, _ in held[column[:-1]]}
            assert roles and all(not inside and role in own_roles for role, inside in roles), column
        elif column != "adm":   # the demo admin administers both cities
            assert roles and all(inside for _role, inside in roles), column


@pytest.mark.slow
@pytest.mark.sqlite_run_only   # the rules are the views' and the engine's: once (tests/conftest.py)
def test_every_endpoint_for_every_role_in_and_out_of_jurisdiction(matrix_app, service):
    expected = parse_matrix(MATRIX)
    observed = observe(matrix_app, service, sorted(expected))
    wrong = [f"{key[0]} {key[1]} as {col} ({PRINCIPALS[col] or 'anonymous'}): expected {want}, got {observed[key][col]}"
             for key, row in sorted(expected.items()) for col, want in row.items() if observed[key][col] != want]
    assert not wrong, "\n".join(wrong) + "\n\nobserved:\n" + format_matrix(observed)
