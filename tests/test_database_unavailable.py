"""A database that is down, unreachable or busy past its wait: the API answers 503 with
`Retry-After` and a message saying nothing was saved, the pages the same in words, the log one
line per request; a transition it interrupts leaves no trace."""
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from engine.models import AuditEvent, WorkItem
from tests.helpers import login
from tests.test_api import V1, Api

DRIVER = 'connection to server at "127.0.0.1", port 5432 failed: Connection refused'


def _down(*_args, **_kwargs):
    raise OperationalError("SELECT …", {}, Exception(DRIVER))


def test_the_api_answers_503_and_documents_it(client, service, monkeypatch, caplog):
    api = Api(client)
    api.token("lx_wgy1")
    monkeypatch.setattr(service, "inbox_page", _down)
    r = api.get(f"{V1}/tasks", "lx_wgy1")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert r.get_json() == {"error": "unavailable", "message": "数据库暂时无法使用，本次提交没有保存；请稍后重试。"}
    english = api.get(f"{V1}/tasks", "lx_wgy1", headers={"Accept-Language": "en"}).get_json()
    assert "nothing was saved" in english["message"]
    assert f"database unavailable on GET {V1}/tasks: {DRIVER}" in caplog.text and "Traceback" not in caplog.text
    spec = client.get(f"{V1}/openapi.json").get_json()
    assert all("503" in operation["responses"] for path in spec["paths"].values() for operation in path.values())


def test_a_completion_the_outage_interrupts_leaves_no_trace(client, service, monkeypatch):
    api = Api(client)
    case = api.start()
    task = case["open_tasks"][0]
    holder = "lx_wgz1"
    with service.db.read_session() as s:
        events = s.scalar(select(func.count()).select_from(AuditEvent))
    from engine import audit
    monkeypatch.setattr(audit, "append", _down)   # the database goes away mid-transition
    r = api.post(f"{V1}/tasks/{task['id']}/complete", holder,
                 json={"data": {"resolved": True, "mediation_note": "双方达成一致"}})
    assert r.status_code == 503 and r.get_json()["error"] == "unavailable"
    with service.db.read_session() as s:
        assert s.get(WorkItem, task["id"]).status == "open"
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == events
    monkeypatch.undo()
    r = api.post(f"{V1}/tasks/{task['id']}/complete", holder,
                 json={"data": {"resolved": True, "mediation_note": "双方达成一致"}})
    assert r.status_code == 200, r.get_data(as_text=True)   # once it is back, the same submission goes through


def test_pages_say_the_database_is_away_and_nothing_was_saved(client, service, monkeypatch, caplog):
    login(client, "lx_wgy1")
    monkeypatch.setattr(service, "inbox_page", _down)
    r = client.get("/inbox")
    assert r.status_code == 503 and r.headers["Retry-After"] == "5"
    assert "数据库暂时无法使用，本次提交没有保存；请稍后重试。" in r.get_data(as_text=True)
    assert f"database unavailable on GET /inbox: {DRIVER}" in caplog.text
