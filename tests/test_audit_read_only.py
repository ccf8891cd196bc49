"""Auditors read everything in their jurisdiction and change nothing.

Every write route of the app (any method but GET/HEAD/OPTIONS, found by walking
the URL map, so a route added later is covered too) is tried as the county
auditor with a plausible, valid submission: each is refused and the database is
exactly as before. Auditors outside the jurisdiction see nothing of the case.
"""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.models import (Attachment, AuditCheckpoint, AuditEvent, Case, CaseSequence, Incident, Notification,
                           WorkItem, WorkItemCandidate)
from tests.helpers import REPORT, csrf_token, login, open_item
from tests.test_web_pages import PNG

ROOT = Path(__file__).resolve().parent.parent
AUDITOR, OUTSIDER = "lxx_dc", "by_dc"
GRID = "linxi-xinguang-g1"

# Routes that only touch the session of the caller (log in/out, language): allowed, and
# still checked to change nothing in the database.
SESSION_ONLY = {"auth.login", "auth.logout", "auth.set_language", "api.issue_api_token"}
# The caller's own notifications: an auditor has none (they hold no task); the
# route may answer, but nothing may change.
OWN_STATE = {"supervision.mark_read", "supervision.mark_all_read",
             "api.read_notification", "api.read_all_notifications",
             # the auditor's own password (refused here as incomplete: nothing may change)
             "auth.change_password", "api.change_password"}


@pytest.fixture
def world(service, clock, db):
    """An open case in the auditor's county: one unclaimed task, a claimed one in a second
    case, an attachment, a notification and an incident."""
    first = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    second = service.start_case("grid_matter", GRID, dict(REPORT, description="第二件事项"), "lx_wgy1")
    open_task = open_item(first, "micro_mediation").id
    claimed = open_item(second, "micro_mediation").id
    service.claim(claimed, "lx_wgz1")
    att = service.upload_attachment("lx_wgy1", "a.png", PNG, first.business_key)
    with db.unit_of_work() as s:
        s.add(Incident(case_id=first.case.id, kind="timer", error="test", attempts=5, created_at=clock.now()))
    with db.read_session() as s:
        incident = s.scalar(select(Incident.id))
        notification = s.scalar(select(Notification.id))
    return {"case": first.business_key, "case_id": first.case.id, "task": open_task, "claimed": claimed,
            "attachment": att.id, "incident": incident, "notification": notification}


def snapshot(db) -> dict:
    """Everything an auditor could conceivably change, row by row."""
    with db.read_session() as s:
        return {
            "cases": s.execute(select(Case.id, Case.status, Case.row_version, Case.updated_at, Case.audit_head,
                                      Case.next_timer_at).order_by(Case.id)).all(),
            "items": s.execute(select(WorkItem.id, WorkItem.status, WorkItem.assignee_id, WorkItem.urge_count,
                                      WorkItem.completed_by_id).order_by(WorkItem.id)).all(),
            "candidates": s.execute(select(WorkItemCandidate.work_item_id, WorkItemCandidate.user_id)
                                    .order_by(WorkItemCandidate.work_item_id, WorkItemCandidate.user_id)).all(),
            "audit": s.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id)).all(),
            "checkpoints": s.execute(select(AuditCheckpoint.id)).all(),
            "attachments": s.execute(select(Attachment.id, Attachment.case_id).order_by(Attachment.id)).all(),
            "notifications": s.execute(select(Notification.id, Notification.read_at).order_by(Notification.id)).all(),
            "incidents": s.execute(select(Incident.id, Incident.resolved_at).order_by(Incident.id)).all(),
            "sequences": s.execute(select(CaseSequence.prefix, CaseSequence.year, CaseSequence.last)).all(),
        }


def _values(world) -> dict:
    return {"task_id": world["task"], "business_key": world["case"], "ref": world["case"],
            "attachment_id": world["attachment"], "incident_id": world["incident"],
            "notification_id": world["notification"], "process_key": "grid_matter", "code": "en"}


def write_routes(app):
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        for method in sorted((rule.methods or set()) - {"GET", "HEAD", "OPTIONS"}):
            yield rule, method


# a valid-looking body per route, so a refusal is a refusal, not a form error
WEB_DATA = {
    "cases.start_submit": lambda w: {**REPORT, "grid": GRID},
    "tasks.complete": lambda w: {"resolved": "true", "mediation_note": "审计员试图办理"},
    "supervision.urge": lambda w: {"note": "审计员试图督办"},
    "supervision.reassign": lambda w: {"to": "lx_wgz1", "reason": "审计员试图改派"},
    "auth.login": lambda w: {"username": AUDITOR, "password": "demo123"},
}
# web routes that take JSON (the designer's modeler): a real process file to check or deploy
WEB_JSON = {
    "designer.check": lambda w: {"files": {"grid_matter.bpmn": (ROOT / "processes" / "grid_matter.bpmn").read_text()}},
    "designer.deploy": lambda w: {"files": {"grid_matter.bpmn": (ROOT / "processes" / "grid_matter.bpmn").read_text()}},
}
API_JSON = {
    "api.create_case": lambda w: {"process": "grid_matter", "grid": GRID, "data": REPORT},
    "api.complete_task": lambda w: {"data": {"resolved": True, "mediation_note": "审计员试图办理"}},
    "api.reassign_task": lambda w: {"to": "lx_wgz1", "reason": "审计员试图改派"},
    "api.issue_api_token": lambda w: {"username": AUDITOR, "password": "demo123"},
}


def test_every_write_route_refuses_the_auditor_and_changes_nothing(app, db, world):
    web = app.test_client()
    login(web, AUDITOR)
    api = app.test_client()
    token = api.post("/api/v1/auth/token", json={"username": AUDITOR, "password": "demo123"}).get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    values = _values(world)
    before = snapshot(db)
    tried = []
    for rule, method in write_routes(app):
        unknown = [a for a in rule.arguments if a not in values]
        url = rule.rule
        for arg in rule.arguments:
            url = re.sub(r"<(?:[^:<>]+:)?%s>" % arg, str(values.get(arg, "1")), url)
        if rule.rule.startswith("/api/"):
            if rule.endpoint in ("api.upload_pending_files", "api.upload_case_files"):
                response = api.open(url, method=method, headers=bearer,
                                    data={"file": (io.BytesIO(PNG), "a.png")}, content_type="multipart/form-data")
            else:
                body = API_JSON.get(rule.endpoint, lambda w: {})(world)
                response = api.open(url, method=method, headers=bearer, json=body)
        elif rule.endpoint in WEB_JSON:
            response = web.open(url, method=method, json=WEB_JSON[rule.endpoint](world),
                                headers={"X-CSRFToken": csrf_token(web, "/inbox")})
        else:
            data = {"csrf_token": csrf_token(web, "/inbox"), "next": "/inbox"}
            data.update(WEB_DATA.get(rule.endpoint, lambda w: {})(world))
            if rule.endpoint in ("cases.add_attachment", "cases.start_submit"):
                data["file"] = data["photos"] = (io.BytesIO(PNG), "a.png")
            response = web.open(url, method=method, data=data, content_type="multipart/form-data")
        status = response.status_code
        tried.append(rule.endpoint)
        if rule.endpoint in SESSION_ONLY or rule.endpoint in OWN_STATE:
            assert status < 500, (rule.rule, status)
        elif unknown:
            # a route this test does not know the ids for: refused one way or another
            assert status in (400, 403, 404), (rule.rule, method, status)
        else:
            assert status == 403, (rule.rule, method, status, response.get_data(as_text=True)[:300])
        assert snapshot(db) == before, f"{method} {rule.rule} changed the database"
        if rule.endpoint == "auth.logout":
            login(web, AUDITOR)
    # the ones the issue names are all among them
    for endpoint in ("api.create_case", "api.claim_task", "api.unclaim_task", "api.complete_task",
                     "api.upload_case_files", "api.upload_pending_files", "cases.start_submit", "tasks.complete",
                     "tasks.claim", "tasks.unclaim", "cases.add_attachment", "supervision.urge",
                     "supervision.resolve_incident", "designer.check", "designer.deploy", "designer.upload"):
        assert endpoint in tried


def test_auditor_reads_every_page_of_the_case(app, world, client):
    login(client, AUDITOR)
    for url in (f"/cases/{world['case']}", f"/cases/{world['case']}/diagram.json", f"/tasks/{world['task']}",
                f"/audit/cases/{world['case']}/trace", f"/attachments/{world['attachment']}",
                f"/audit/cases/{world['case']}/trace.csv"):
        assert client.get(url).status_code == 200, url
    page = client.get(f"/cases/{world['case']}").get_data(as_text=True)
    assert "认领" not in page and "补充附件" not in page     # no write controls are offered


def test_auditor_outside_the_jurisdiction_sees_nothing(app, world, client, service):
    login(client, OUTSIDER)
    for url in (f"/cases/{world['case']}", f"/cases/{world['case']}/diagram.json", f"/tasks/{world['task']}",
                f"/audit/cases/{world['case']}/trace", f"/audit/cases/{world['case']}/trace.json",
                f"/attachments/{world['attachment']}"):
        assert client.get(url).status_code == 403, url
    assert world["case"] not in client.get("/audit/cases?go=1").get_data(as_text=True)
    assert world["case"] not in client.get("/audit/cases/export.csv").get_data(as_text=True)
    assert world["case"] not in client.get("/inbox").get_data(as_text=True)
    api = app.test_client()
    token = api.post("/api/v1/auth/token", json={"username": OUTSIDER, "password": "demo123"}).get_json()["token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert api.get(f"/api/v1/cases/{world['case']}", headers=bearer).status_code == 403
    assert api.get(f"/api/v1/cases/{world['case']}/trace", headers=bearer).status_code == 403
    assert api.get(f"/api/v1/tasks/{world['task']}", headers=bearer).status_code == 403
    assert api.get("/api/v1/cases", headers=bearer).get_json()["items"] == []
    assert api.get("/api/v1/tasks", headers=bearer).get_json()["items"] == []
