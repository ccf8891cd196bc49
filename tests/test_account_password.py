"""An official changes their own password (/account/password): the current one is checked (a
wrong one counts as a failed login), the new one must meet the policy, the change is recorded
without its value, and `gridflow load-org` keeps it afterwards."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.errors import InvalidInput
from engine.login_guard import MAX_FAILURES, LoginLocked
from engine.models import AuditEvent, Case, LoginAttempt, OrgChange, User
from engine.org import load_org, load_org_file
from engine.passwords import password_problems
from tests.helpers import REPORT, csrf_token, login

WORKER = "lx_wgy1"
GOOD = "Xinguang-2026"
ORG = Path(__file__).resolve().parent.parent / "demo" / "org.yaml"


@pytest.fixture
def worker_password(service):
    """lx_wgy1's password as the demo file gave it, again after the test."""
    with service.db.read_session() as session:
        user = session.scalar(select(User).where(User.username == WORKER))
        saved = (user.password_hash, user.password_changed_at)
    yield
    with service.db.unit_of_work() as session:
        user = session.scalar(select(User).where(User.username == WORKER))
        user.password_hash, user.password_changed_at = saved


@pytest.mark.parametrize("password,problems", [
    ("Xinguang-2026", 0), ("abc123!@#", 0), ("ABCdef123", 0),
    ("Ab1!", 1),                    # too short
    ("abcdefgh123", 1),             # two kinds
    ("x" * 129 + "A1", 1),          # too long
    ("lx_wgy1-Strong", 1),          # the login name in it
    ("LX_WGY1abc", 1),              # in any case
    ("short", 2),
])
def test_the_password_policy(password, problems):
    assert len(password_problems(password, WORKER)) == problems


def test_a_changed_password_replaces_the_old_one_and_is_recorded_without_its_value(service, clock, worker_password):
    service.change_password(WORKER, "demo123", GOOD, GOOD, address="10.1.2.3")
    assert service.authenticate(WORKER, "demo123") is None
    assert service.authenticate(WORKER, GOOD).username == WORKER
    with service.db.read_session() as session:
        user = session.scalar(select(User).where(User.username == WORKER))
        change = session.scalars(select(OrgChange).where(OrgChange.subject == WORKER)
                                 .order_by(OrgChange.id.desc())).first()
    assert user.password_changed_at == clock.now()
    assert (change.actor, change.kind, change.detail, change.source) == (
        WORKER, "user_changed", {"password": "changed by its owner"}, "/account/password")
    assert GOOD not in str(change.detail) and user.password_hash.startswith("scrypt$")


@pytest.mark.parametrize("new,repeat,field", [
    ("short", "short", "new"),
    ("demo123", "demo123", "new"),                 # the current one (and too weak)
    (GOOD, GOOD + "x", "repeat"),
    ("lx_wgy1-Strong", "lx_wgy1-Strong", "new"),
    ("\ud800Abc12345", "\ud800Abc12345", "new"),   # not storable
])
def test_a_refused_new_password_changes_nothing(service, worker_password, new, repeat, field):
    with pytest.raises(InvalidInput) as refused:
        service.change_password(WORKER, "demo123", new, repeat)
    assert field in refused.value.fields and field in refused.value.fields_zh
    assert service.authenticate(WORKER, "demo123") is not None


def test_a_wrong_current_password_counts_as_a_failed_login(service, worker_password):
    for _ in range(MAX_FAILURES):
        with pytest.raises(InvalidInput) as refused:
            service.change_password(WORKER, "guess", GOOD, GOOD)
        assert refused.value.fields_zh == {"current": ["当前密码不正确。"]}
    with pytest.raises(LoginLocked):
        service.change_password(WORKER, "demo123", GOOD, GOOD)
    with pytest.raises(LoginLocked):
        service.authenticate(WORKER, "demo123")
    with service.db.read_session() as session:
        notes = [a.note for a in session.scalars(select(LoginAttempt).where(LoginAttempt.username == WORKER))]
    assert notes == ["password change: wrong current password"] * MAX_FAILURES + ["password change", None]


def test_loading_the_organisation_again_keeps_a_password_its_owner_chose(service, worker_password):
    service.change_password(WORKER, "demo123", GOOD, GOOD)
    with service.db.unit_of_work() as session:
        load_org_file(session, ORG, actor="tests")
    assert service.authenticate(WORKER, GOOD) is not None
    # unless the entry says to reset it (a forgotten password)
    with service.db.unit_of_work() as session:
        nodes = [{"code": "chifeng", "name": "赤峰市", "level": "city"}]
        load_org(session, {"nodes": nodes, "users": [
            {"username": WORKER, "password": "demo123", "reset_password": True,
             "roles": [{"role": "grid_worker", "node": "linxi-xinguang-g1"}]}]}, actor="tests")
    assert service.authenticate(WORKER, "demo123") is not None and service.authenticate(WORKER, GOOD) is None


def test_the_page_changes_the_password_and_shows_what_is_wrong(service, app, worker_password):
    assert app.test_client().get("/account/password").status_code == 302      # logged in only
    client = app.test_client()
    login(client, WORKER)
    page = client.get("/account/password").get_data(as_text=True)
    assert "修改密码" in page and 'autocomplete="new-password"' in page and "至少 8 个字符" in page

    def post(current, new, repeat):
        return client.post("/account/password", data={"current": current, "new": new, "repeat": repeat,
                                                      "csrf_token": csrf_token(client, "/account/password")})
    response = post("guess", GOOD, GOOD)
    assert response.status_code == 400 and "当前密码不正确" in response.get_data(as_text=True)
    response = post("demo123", "abcdefgh", "abcdefgh")
    assert response.status_code == 400 and "至少包含小写字母、大写字母、数字、其他符号中的三类" in response.get_data(as_text=True)
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/account/password")})
    response = post("demo123", GOOD, GOOD + "!")
    assert response.status_code == 400 and "The two new passwords differ." in response.get_data(as_text=True)
    assert service.authenticate(WORKER, "demo123") is not None                  # nothing changed so far
    response = post("demo123", GOOD, GOOD)
    assert response.status_code == 302
    assert "Password changed" in client.get(response.headers["Location"]).get_data(as_text=True)
    assert service.authenticate(WORKER, GOOD) is not None


def test_the_app_changes_the_password_through_the_api(service, client, worker_password):
    token = client.post("/api/v1/auth/token", json={"username": WORKER, "password": "demo123"}).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = client.post("/api/v1/auth/password", json={"current": "demo123", "new": "abcdefgh"}, headers=headers)
    assert response.status_code == 400 and response.get_json()["error"] == "invalid"
    assert list(response.get_json()["fields"]) == ["new"] and "三类" in response.get_json()["fields"]["new"][0]
    response = client.post("/api/v1/auth/password", json={"current": "guess", "new": GOOD},
                           headers={**headers, "Accept-Language": "en"})
    assert response.status_code == 400 and response.get_json()["fields"] == {"current": ["Wrong password."]}
    with service.db.read_session() as session:
        failed = session.scalars(select(LoginAttempt).where(LoginAttempt.username == WORKER)
                                 .order_by(LoginAttempt.id.desc())).first()
    assert (failed.outcome, failed.via) == ("failed", "api")
    other_device = client.post("/api/v1/auth/token", json={"username": WORKER, "password": "demo123"}).get_json()
    report = {"process": "grid_matter", "grid": "linxi-xinguang-g1", "data": dict(REPORT)}
    started = client.post("/api/v1/cases", json=report, headers=headers)
    assert started.status_code == 201
    response = client.post("/api/v1/auth/password", json={"current": "demo123", "new": GOOD}, headers=headers)
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["changed"] is True and answer["token_type"] == "Bearer" and answer["expires_in"] > 0
    with service.db.read_session() as session:   # the record says where it was changed
        change = session.scalars(select(OrgChange).where(OrgChange.subject == WORKER)
                                 .order_by(OrgChange.id.desc())).first()
    assert (change.kind, change.source) == ("user_changed", "/api/v1/auth/password")

    # every token issued before the change stops working, on reads and on transitions alike,
    # and a refused transition writes nothing
    with service.db.read_session() as session:
        cases, events = session.scalar(select(func.count(Case.id))), session.scalar(select(func.count(AuditEvent.id)))
    task = started.get_json()["open_tasks"][0]["id"]
    for old in (headers, {"Authorization": f"Bearer {other_device['token']}"}):
        for refused in (client.get("/api/v1/tasks", headers=old),
                        client.post("/api/v1/cases", json=report, headers=old),
                        client.post(f"/api/v1/tasks/{task}/complete", headers=old,
                                    json={"data": {"resolved": True, "mediation_note": "已化解"}})):
            assert refused.status_code == 401 and refused.get_json()["error"] == "token_revoked"
            assert "密码已更改" in refused.get_json()["message"]
    with service.db.read_session() as session:
        assert (session.scalar(select(func.count(Case.id))),
                session.scalar(select(func.count(AuditEvent.id)))) == (cases, events)
    # the new token the answer carries works
    assert client.get("/api/v1/tasks", headers={"Authorization": f"Bearer {answer['token']}"}).status_code == 200
    assert client.post("/api/v1/auth/token", json={"username": WORKER, "password": GOOD}).status_code == 200
    assert client.post("/api/v1/auth/password", json={"current": GOOD, "new": GOOD + "x"}).status_code == 401


def test_an_administrators_reset_revokes_the_accounts_tokens(service, client, worker_password):
    token = client.post("/api/v1/auth/token", json={"username": WORKER, "password": "demo123"}).get_json()["token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/api/v1/tasks", headers=headers).status_code == 200
    with service.db.unit_of_work() as session:
        nodes = [{"code": "chifeng", "name": "赤峰市", "level": "city"}]
        load_org(session, {"nodes": nodes, "users": [
            {"username": WORKER, "password": GOOD, "reset_password": True,
             "roles": [{"role": "grid_worker", "node": "linxi-xinguang-g1"}]}]}, actor="tests")
    refused = client.get("/api/v1/tasks", headers=headers)
    assert refused.status_code == 401 and refused.get_json()["error"] == "token_revoked"
    assert client.post("/api/v1/auth/token", json={"username": WORKER, "password": GOOD}).status_code == 200


def test_every_page_asks_an_official_with_the_initial_password_to_choose_their_own(service, app, worker_password):
    client = app.test_client()
    login(client, WORKER)
    assert "您仍在使用管理员设置的初始密码" in client.get("/inbox").get_data(as_text=True)
    assert "您仍在使用管理员设置的初始密码" not in client.get("/account/password").get_data(as_text=True)
    client.post("/account/password", data={"current": "demo123", "new": GOOD, "repeat": GOOD,
                                           "csrf_token": csrf_token(client, "/account/password")})
    assert "您仍在使用管理员设置的初始密码" not in client.get("/inbox").get_data(as_text=True)


def test_a_password_older_than_ninety_days_is_asked_to_be_changed(service, app, clock, worker_password):
    from datetime import timedelta
    client = app.test_client()
    login(client, WORKER)
    for age, asked in ((89, False), (91, True)):
        with service.db.unit_of_work() as session:
            session.scalar(select(User).where(User.username == WORKER)).password_changed_at = \
                clock.now() - timedelta(days=age)
        page = client.get("/inbox").get_data(as_text=True)
        assert ("您的密码已使用超过 90 天" in page) is asked, age
        assert "您仍在使用管理员设置的初始密码" not in page


def test_a_new_password_ends_the_accounts_other_sessions_and_keeps_this_one(service, app, worker_password):
    office, phone = app.test_client(), app.test_client()
    login(office, WORKER)
    login(phone, WORKER)
    response = phone.post("/account/password", data={"current": "demo123", "new": GOOD, "repeat": GOOD,
                                                     "csrf_token": csrf_token(phone, "/account/password")})
    assert response.status_code == 302
    assert phone.get("/inbox").status_code == 200                     # the session that changed it goes on
    response = office.get("/inbox")                                   # the other one ends
    assert response.status_code == 302 and response.headers["Location"].endswith("/login")
    assert "此账号的密码已修改，请用新密码重新登录" in office.get("/login").get_data(as_text=True)
    assert office.get("/inbox").status_code == 302
    # an administrator's reset (a new organisation file) ends them too
    with service.db.unit_of_work() as session:
        nodes = [{"code": "chifeng", "name": "赤峰市", "level": "city"}]
        load_org(session, {"nodes": nodes, "users": [
            {"username": WORKER, "password": "demo123", "reset_password": True,
             "roles": [{"role": "grid_worker", "node": "linxi-xinguang-g1"}]}]}, actor="tests")
    assert phone.get("/inbox").status_code == 302


def test_the_scrypt_cost_from_the_environment_is_checked(monkeypatch):
    """GRIDFLOW_SCRYPT_N not a power of two made every login fail inside hashlib.scrypt."""
    import pytest

    from engine import passwords
    for bad in ("5000", "512", "abc", str(2 ** 21)):
        monkeypatch.setenv("GRIDFLOW_SCRYPT_N", bad)
        with pytest.raises(ValueError, match="GRIDFLOW_SCRYPT_N"):
            passwords._cost_from_environment()
    monkeypatch.setenv("GRIDFLOW_SCRYPT_N", "2048")
    assert passwords._cost_from_environment() == 2048
    monkeypatch.delenv("GRIDFLOW_SCRYPT_N")
    assert passwords._cost_from_environment() == passwords.DEFAULT_N == 2 ** 14
