"""Login failure handling and the idle logout (GB/T 22239-2019: 登录失败处理, 登录连接超时自动退出):
five failed logins of a name within fifteen minutes lock it for fifteen minutes, through the
login page and the API alike; every attempt is recorded; an idle page session ends."""
from __future__ import annotations

import time

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main as cli
from engine.errors import InvalidInput, PermissionDenied
from engine.login_guard import LOCK, MAX_FAILURES, LoginLocked
from engine.models import Case, LoginAttempt, User
from tests.helpers import csrf_token, login

WORKER = "lx_wgy1"


def _attempts(service, username=WORKER) -> list[tuple[str, str, str | None]]:
    with service.db.read_session() as session:
        return [(a.outcome, a.via, a.note) for a in session.scalars(
            select(LoginAttempt).where(LoginAttempt.username == username).order_by(LoginAttempt.id))]


def _fail(service, times, username=WORKER, via="web"):
    for _ in range(times):
        assert service.authenticate(username, "wrong password", via=via) is None


def test_five_failures_lock_the_name_even_against_the_right_password_until_the_lock_ends(service, clock):
    _fail(service, MAX_FAILURES - 1)
    assert service.authenticate(WORKER, "demo123") is not None          # four failures: not locked
    _fail(service, MAX_FAILURES)
    with pytest.raises(LoginLocked) as locked:
        service.authenticate(WORKER, "demo123")
    assert locked.value.until == clock.now() + LOCK and locked.value.retry_after == LOCK.total_seconds() + 1
    assert "连续5次登录失败，账号已临时锁定" in locked.value.zh and "16:45" in locked.value.zh   # 08:30 UTC + 15 min
    clock.advance(minutes=14)
    with pytest.raises(LoginLocked):          # a refusal neither counts as a failure nor extends the lock
        service.authenticate(WORKER, "demo123")
    clock.advance(minutes=1)
    assert service.authenticate(WORKER, "demo123").username == WORKER
    outcomes = [o for o, _via, _note in _attempts(service)]
    assert outcomes == ["failed"] * 4 + ["succeeded"] + ["failed"] * 5 + ["refused_locked"] * 2 + ["succeeded"]


def test_failures_spread_wider_than_the_window_do_not_lock(service, clock):
    for _ in range(MAX_FAILURES + 2):
        _fail(service, 1)
        clock.advance(minutes=4)               # never five within fifteen minutes
    assert service.authenticate(WORKER, "demo123") is not None


def test_a_name_without_an_account_is_counted_and_locked_alike(service):
    """Neither the answers nor the lock tell whether an account exists."""
    _fail(service, MAX_FAILURES, username="nobody_here")
    _fail(service, MAX_FAILURES, username=WORKER)
    with pytest.raises(LoginLocked) as unknown:
        service.authenticate("nobody_here", "x")
    with pytest.raises(LoginLocked) as known:
        service.authenticate(WORKER, "x")
    assert unknown.value.zh == known.value.zh and unknown.value.message == known.value.message
    assert _attempts(service, "nobody_here")[0] == ("failed", "web", "no such account")
    assert service.authenticate("lx_wgy2", "demo123") is not None      # other names are not touched


def test_a_deactivated_account_fails_and_the_note_says_why(service, as_user):
    with service.db.unit_of_work() as session:
        session.scalar(select(User).where(User.username == "lx_wgy2")).active = False
    try:
        assert service.authenticate("lx_wgy2", "demo123", via="api", address="10.0.0.7") is None
        with service.db.read_session() as session:
            row = session.scalar(select(LoginAttempt).where(LoginAttempt.username == "lx_wgy2"))
        assert (row.outcome, row.via, row.address, row.note) == ("failed", "api", "10.0.0.7", "account deactivated")
        assert row.user_id is not None
        page = as_user("lxx_dc").get("/audit/logins?username=lx_wgy2").get_data(as_text=True)
        assert "账号已停用" in page and "account deactivated" not in page      # the stored note, in Chinese
    finally:
        with service.db.unit_of_work() as session:
            session.scalar(select(User).where(User.username == "lx_wgy2")).active = True


def test_an_administrator_unlocks_a_name_and_its_count_starts_afresh(service, monkeypatch):
    assert service.unlock_login(WORKER, "admin") is False                # not locked: nothing recorded
    _fail(service, MAX_FAILURES)
    monkeypatch.setenv("DATABASE_URL", str(service.db.engine.url.render_as_string(hide_password=False)))
    result = CliRunner().invoke(cli, ["unlock-login", WORKER, "--by", "county_admin"])
    assert result.exit_code == 0 and "unlocked" in result.output, result.output
    assert service.authenticate(WORKER, "demo123") is not None
    assert _attempts(service)[-2] == ("unlocked", "cli", "by county_admin")
    log = CliRunner().invoke(cli, ["login-log", "--user", WORKER, "--failures", "--limit", "3"])
    assert log.exit_code == 0 and log.output.count("\n") == 3, log.output
    assert log.output.splitlines()[0].split("\t")[1:4] == ["unlocked", WORKER, "cli"]


def test_the_login_page_says_the_name_is_locked_and_until_when(service, client):
    for _ in range(MAX_FAILURES):
        response = client.post("/login", data={"username": WORKER, "password": "nope",
                                               "csrf_token": csrf_token(client)})
        assert response.status_code == 401 and "用户名或密码不正确" in response.get_data(as_text=True)
    response = client.post("/login", data={"username": WORKER, "password": "demo123",
                                           "csrf_token": csrf_token(client)})
    page = response.get_data(as_text=True)
    assert response.status_code == 429 and "账号已临时锁定" in page and "16:45" in page
    assert client.get("/inbox").status_code == 302                        # not logged in
    assert {(o, v) for o, v, _ in _attempts(service)} == {("failed", "web"), ("refused_locked", "web")}
    client.post("/lang/en", data={"csrf_token": csrf_token(client)})
    response = client.post("/login", data={"username": WORKER, "password": "demo123",
                                           "csrf_token": csrf_token(client)})
    assert response.status_code == 429 and "this account is locked" in response.get_data(as_text=True)


def test_the_api_answers_a_locked_name_429_with_retry_after(service, client):
    for _ in range(MAX_FAILURES):
        response = client.post("/api/v1/auth/token", json={"username": WORKER, "password": "nope"})
        assert response.status_code == 401
    response = client.post("/api/v1/auth/token", json={"username": WORKER, "password": "demo123"})
    assert response.status_code == 429 and response.get_json()["error"] == "login_locked"
    assert response.headers["Retry-After"] == str(int(LOCK.total_seconds()) + 1)
    assert "账号已临时锁定" in response.get_json()["message"]
    assert [(o, v) for o, v, _ in _attempts(service)][-1] == ("refused_locked", "api")
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "429" in spec["paths"]["/api/v1/auth/token"]["post"]["responses"]


def test_a_page_session_idle_too_long_is_logged_out_and_led_back(service, app):
    client = app.test_client()
    login(client, WORKER)
    assert client.get("/inbox").status_code == 200
    with client.session_transaction() as session:
        session["seen"] = int(time.time()) - app.config["IDLE_LOGOUT_MINUTES"] * 60 + 30   # not yet
    assert client.get("/inbox").status_code == 200
    with client.session_transaction() as session:
        assert session["seen"] >= int(time.time()) - 5                  # the request kept it alive
        session["seen"] = int(time.time()) - app.config["IDLE_LOGOUT_MINUTES"] * 60 - 1
    response = client.get("/inbox?status=open")
    assert response.status_code == 302 and "/login?next=/inbox?status%3Dopen" in response.headers["Location"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "超过 30 分钟未操作，已自动退出" in page
    assert client.get("/inbox").status_code == 302                        # the session is gone


def _hidden_inputs(page: str, form_action: str | None = None) -> list[tuple[str, str]]:
    """The hidden inputs of a page (of its form posting to `form_action`), unescaped."""
    import html as markup
    import re
    if form_action is not None:
        page = re.search(rf'(?s)<form method="post" action="{re.escape(form_action)}"[^>]*>(.*?)</form>', page).group(1)
    return [(name, markup.unescape(value))
            for name, value in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page)]


def _idle(app, client):
    with client.session_transaction() as session:
        session["seen"] = int(time.time()) - app.config["IDLE_LOGOUT_MINUTES"] * 60 - 1


def _submit_after_idle_logout(service, app, fields: dict):
    """The grid leader opens 网格微调处 of a new case, stays idle past the limit, then submits
    `fields`: (the case, the task id, the client, the answer)."""
    from tests.helpers import REPORT
    from tests.test_web_pages import task_of
    case = service.start_case("grid_matter", "linxi-xinguang-g1", dict(REPORT), WORKER)
    task_id = task_of(service, "lx_wgz1", "micro_mediation")
    client = app.test_client()
    login(client, "lx_wgz1")
    token = csrf_token(client, f"/tasks/{task_id}")
    _idle(app, client)
    return case, task_id, client, client.post(f"/tasks/{task_id}", data={"csrf_token": token, **fields})


def test_what_an_official_typed_survives_the_idle_logout_and_comes_back_in_the_form(service, app):
    """The idle logout stopped a form's submission: what was typed was lost and the login led to
    the inbox. Now the login page keeps it, and after the login the form comes back with it."""
    note = '两户已初步沟通\n约定周五再谈 "当面" <b>&amp;'
    case, task_id, client, response = _submit_after_idle_logout(service, app, {
        "resolved": "false", "mediation_note": note, "grid_leader_present": "true", "if_unresolved": "mediation"})
    assert response.status_code == 401
    page = response.get_data(as_text=True)
    assert "超过 30 分钟未操作，已自动退出" in page and "您填写的内容未提交，已为您保留" in page
    carried = dict(_hidden_inputs(page, "/login"))
    assert carried["resume_path"] == f"/tasks/{task_id}" and carried["r:mediation_note"] == note
    # a mistyped password keeps it too
    response = client.post("/login", data={**carried, "username": "lx_wgz1", "password": "wrong"})
    assert response.status_code == 401
    carried = dict(_hidden_inputs(response.get_data(as_text=True), "/login"))
    assert carried["r:mediation_note"] == note and carried["r:if_unresolved"] == "mediation"
    response = client.post("/login", data={**carried, "username": "lx_wgz1", "password": "demo123"})
    assert response.status_code == 200
    back = _hidden_inputs(response.get_data(as_text=True), f"/tasks/{task_id}")
    assert ("_resume", "1") in back and ("mediation_note", note) in back
    response = client.post(f"/tasks/{task_id}", data=dict(back))
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "这是您退出前填写的内容，尚未提交" in page
    assert 'value="false" checked' in page and 'value="mediation" selected' in page
    assert "约定周五再谈 &#34;当面&#34; &lt;b&gt;&amp;amp;" in page
    assert task_id in [i.id for i in service.view_case(WORKER, case.business_key).open_items]   # nothing submitted


def test_the_language_switch_on_the_login_and_resume_pages_keeps_what_was_typed(service, app):
    """The zh/en switch on the login page an idle logout showed, and on the resume page after
    the login, led to a plain page: what the official had typed was gone."""
    note = '约定周五再谈 "当面" <b>&amp;'
    _case, task_id, client, response = _submit_after_idle_logout(service, app, {
        "resolved": "false", "mediation_note": note, "if_unresolved": "mediation"})
    switch = dict(_hidden_inputs(response.get_data(as_text=True), "/lang/en"))
    response = client.post("/lang/en", data=switch)              # on the login page
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Log in" in page and "kept" in page
    carried = dict(_hidden_inputs(page, "/login"))
    assert carried["resume_path"] == f"/tasks/{task_id}" and carried["r:mediation_note"] == note
    response = client.post("/login", data={**carried, "username": "lx_wgz1", "password": "demo123"})
    assert "Logged in again" in response.get_data(as_text=True)      # the language chosen holds
    switch = dict(_hidden_inputs(response.get_data(as_text=True), "/lang/zh"))
    response = client.post("/lang/zh", data=switch)              # on the resume page, back to 中文
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "已重新登录" in page
    back = _hidden_inputs(page, f"/tasks/{task_id}")
    assert ("_resume", "1") in back and ("mediation_note", note) in back and ("if_unresolved", "mediation") in back
    page = client.post(f"/tasks/{task_id}", data=dict(back)).get_data(as_text=True)
    assert "这是您退出前填写的内容，尚未提交" in page and 'value="mediation" selected' in page


def test_a_report_stopped_by_the_idle_logout_comes_back_with_its_start_token(service, app):
    import re
    from tests.helpers import REPORT
    client = app.test_client()
    login(client, WORKER)
    page = client.get("/start/grid_matter").get_data(as_text=True)
    start_token = re.search(r'name="start_token" value="([0-9a-f]{32})"', page).group(1)
    token = csrf_token(client, "/start/grid_matter")
    _idle(app, client)
    response = client.post("/start/grid_matter", data={"csrf_token": token, "start_token": start_token,
                                                       "grid": "linxi-xinguang-g1", **REPORT})
    assert response.status_code == 401
    carried = dict(_hidden_inputs(response.get_data(as_text=True), "/login"))
    response = client.post("/login", data={**carried, "username": WORKER, "password": "demo123"})
    response = client.post("/start/grid_matter", data=dict(_hidden_inputs(response.get_data(as_text=True),
                                                                          "/start/grid_matter")))
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and REPORT["description"] in page and f'value="{start_token}"' in page
    with service.db.read_session() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 0                     # nothing reported
    # a page's own next path only: nothing else rides through the login
    response = client.post("/logout", data={"csrf_token": csrf_token(client, "/inbox")})
    response = client.post("/login", data={"csrf_token": csrf_token(client), "username": WORKER, "password": "demo123",
                                           "resume_path": "//evil.example/tasks/x", "r:a": "b"})
    assert response.status_code == 302


def test_the_idle_limit_is_set_by_gridflow_idle_minutes(service, monkeypatch):
    from web import create_app
    monkeypatch.setenv("GRIDFLOW_IDLE_MINUTES", "10")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "SERVICE": service})
    assert app.config["IDLE_LOGOUT_MINUTES"] == 10


def test_a_name_without_an_account_costs_a_password_check_too(service, monkeypatch):
    """So that the time a login takes does not tell which names exist."""
    import engine.service as service_module
    from engine.passwords import check_password_of_nobody
    checked = []
    monkeypatch.setattr(service_module, "check_password_of_nobody",
                        lambda password: checked.append(password) or check_password_of_nobody(password))
    assert service.authenticate("nobody_here", "guess") is None
    assert service.authenticate(WORKER, "guess") is None
    assert checked == ["guess"]


def test_auditors_read_the_logins_of_their_jurisdiction_and_administrators_the_unknown_names_too(service, as_user):
    from engine.login_guard import LoginRecords
    _fail(service, MAX_FAILURES)                                   # lx_wgy1, 林西县: locked
    assert service.authenticate("wy_wgy1", "demo123", via="api") is not None     # 五原县
    _fail(service, 1, username="nobody_here")
    records = LoginRecords(service)

    def names(actor, **filters):
        return {row.username for row in records.attempts(actor, **filters).rows}
    assert names("lxx_dc") == {WORKER}                              # auditor, 林西县
    assert names("by_dc") == {"wy_wgy1"}                            # auditor, 巴彦淖尔市
    assert names("admin") == {WORKER, "wy_wgy1", "nobody_here"}     # administrator: names without accounts too
    assert [n for n, _until in records.attempts("lxx_dc").locked] == [WORKER]
    with pytest.raises(LoginLocked):
        service.authenticate(WORKER, "demo123")
    assert records.attempts("lxx_dc").rows[0].outcome == "refused_locked"     # the account's, so theirs to read
    assert names("admin", outcome="succeeded") == {"wy_wgy1"} and names("admin", username="nobody_here") == {"nobody_here"}
    with pytest.raises(InvalidInput):
        records.attempts("admin", outcome="guessed")
    with pytest.raises(PermissionDenied):
        records.attempts("lx_wgy2")

    auditor = as_user("lxx_dc")
    assert "/audit/logins" in auditor.get("/audit/cases").get_data(as_text=True)
    page = auditor.get("/audit/logins").get_data(as_text=True)
    assert "当前锁定的用户名" in page and page.count(f'data-username="{WORKER}"') == MAX_FAILURES + 1
    assert "wy_wgy1" not in page and "登录失败" in page
    response = auditor.get("/audit/logins?outcome=guessed")
    assert response.status_code == 400 and "请选择有效的登录结果" in response.get_data(as_text=True)
    assert as_user("lx_wgy2").get("/audit/logins").status_code == 403
    assert "/audit/logins" not in as_user("lx_wgy2").get("/audit/cases").get_data(as_text=True)


def test_an_administrator_unlocks_a_name_on_the_login_record_and_an_auditor_may_not(service, as_user):
    from engine.login_guard import LoginRecords
    _fail(service, MAX_FAILURES)
    _fail(service, MAX_FAILURES, username="nobody_here")
    with pytest.raises(PermissionDenied):
        LoginRecords(service).unlock("lxx_dc", WORKER)              # an auditor reads, never acts
    auditor = as_user("lxx_dc")
    assert "解除锁定" not in auditor.get("/audit/logins").get_data(as_text=True)
    assert auditor.post("/audit/logins/unlock", data={"username": WORKER,
                                                       "csrf_token": csrf_token(auditor, "/audit/logins")}).status_code == 403
    admin = as_user("admin")
    assert "解除锁定" in admin.get("/audit/logins").get_data(as_text=True)
    response = admin.post("/audit/logins/unlock", data={"username": WORKER,
                                                        "csrf_token": csrf_token(admin, "/audit/logins")})
    assert response.status_code == 302
    assert f"已解除 {WORKER} 的登录锁定" in admin.get(response.headers["Location"]).get_data(as_text=True)
    assert service.authenticate(WORKER, "demo123") is not None
    assert _attempts(service)[-2] == ("unlocked", "web", "by admin")
    assert LoginRecords(service).unlock("admin", "nobody_here") is True     # a name without an account
    assert LoginRecords(service).unlock("admin", "nobody_here") is False    # not locked any more


def test_the_names_locked_now_are_read_for_the_latest_failures_only(service, monkeypatch):
    """A guesser trying many names must not make the login record read each of them."""
    import engine.login_guard as guard
    _fail(service, MAX_FAILURES, username="guess_one")
    _fail(service, MAX_FAILURES, username="guess_two")
    assert [n for n, _ in guard.LoginRecords(service).attempts("admin").locked] == ["guess_one", "guess_two"]
    monkeypatch.setattr(guard, "LOCKED_SHOWN", 1)
    assert [n for n, _ in guard.LoginRecords(service).attempts("admin").locked] == ["guess_two"]
