"""The JSON API under /api/v1: tokens, processes, cases, inbox, tasks, uploads,
errors (always JSON, never a 500 for bad input) and the OpenAPI document."""
from __future__ import annotations

import io
import json
import re
import struct
import time
import zlib
from pathlib import Path

import itsdangerous
import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import func, select

from engine.models import AuditEvent, Case, JurisdictionNode, RoleAssignment, User, WorkItem
from tests.helpers import REPORT

V1 = "/api/v1"
GRID = "linxi-xinguang-g1"
WORKER, OTHER_WORKER, LEADER, DISPATCHER, AUDITOR = "lx_wgy1", "lx_wgy3", "lx_wgz1", "lxz_pd", "lxx_dc"


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00")) + chunk(b"IEND", b""))


class Api:
    """The Flask test client with a bearer token per demo user."""

    def __init__(self, client):
        self.client = client
        self.tokens: dict[str, str] = {}

    def token(self, username: str) -> str:
        if username not in self.tokens:
            r = self.client.post(f"{V1}/auth/token", json={"username": username, "password": "demo123"})
            assert r.status_code == 200, r.get_data(as_text=True)
            self.tokens[username] = r.get_json()["token"]
        return self.tokens[username]

    def headers(self, username: str | None, **extra) -> dict:
        headers = dict(extra)
        if username:
            headers["Authorization"] = f"Bearer {self.token(username)}"
        return headers

    def get(self, path, user=None, **kw):
        return self.client.get(path, headers=self.headers(user, **kw.pop("headers", {})), **kw)

    def post(self, path, user=None, **kw):
        return self.client.post(path, headers=self.headers(user, **kw.pop("headers", {})), **kw)

    def start(self, user=WORKER, grid=GRID, **overrides):
        r = self.post(f"{V1}/cases", user, json={"process": "grid_matter", "grid": grid,
                                                 "data": {**REPORT, **overrides}})
        assert r.status_code == 201, r.get_data(as_text=True)
        return r.get_json()

    def inbox(self, user, **params):
        r = self.get(f"{V1}/tasks", user, query_string=params)
        assert r.status_code == 200, r.get_data(as_text=True)
        return r.get_json()


@pytest.fixture
def api(client):
    return Api(client)


def assert_error(response, status, code=None, fields=None):
    assert response.status_code == status, (response.status_code, response.get_data(as_text=True))
    assert response.mimetype == "application/json", response.get_data(as_text=True)[:200]
    body = response.get_json()
    assert set(body) <= {"error", "message", "fields"} and body["message"], body
    if code:
        assert body["error"] == code, body
    for name in fields or ():
        assert name in body.get("fields", {}), body
    return body


def counts(db):
    with db.read_session() as s:
        return (s.scalar(select(func.count()).select_from(Case)),
                s.scalar(select(func.count()).select_from(WorkItem)),
                s.scalar(select(func.count()).select_from(AuditEvent)))


# ------------------------------------------------------------------ tokens

def test_token_for_valid_credentials(api):
    r = api.client.post(f"{V1}/auth/token", json={"username": WORKER, "password": "demo123"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["token"] and body["token_type"] == "Bearer" and body["expires_in"] == 7 * 24 * 3600
    assert body["user"]["username"] == WORKER and body["user"]["display_name"]
    assert body["user"]["roles"] == [{"role": "grid_worker", "node": GRID, "node_name": "新光社区第一网格",
                                      "level": "grid"}]
    assert body["user"]["read_only"] is False
    assert "password" not in json.dumps(body)
    assert r.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("payload,status,fields", [
    ({"username": WORKER, "password": "wrong"}, 401, None),
    ({"username": "nobody", "password": "demo123"}, 401, None),
    ({"username": WORKER}, 400, ["password"]),
    ({"username": 42, "password": "demo123"}, 400, ["username"]),
    ({"username": WORKER, "password": "demo123", "admin": True}, 400, ["admin"]),
    ({"username": "x" * 100_000, "password": "demo123"}, 400, ["username"]),
    ({"username": "lx\u0000", "password": "demo123"}, 400, None),
    ([WORKER, "demo123"], 400, ["_schema"]),
])
def test_token_refuses_bad_credentials_and_bad_input(api, payload, status, fields):
    r = api.client.post(f"{V1}/auth/token", json=payload)
    assert_error(r, status, fields=fields)
    if status == 401:
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("data,content_type,status", [
    ('{"username": "lx_wgy1", "password": ', "application/json", 400),
    ("", "application/json", 400),
    ('{"username": NaN, "password": "x"}', "application/json", 400),
    ("[" * 100_000 + "]" * 100_000, "application/json", 400),
    (b"\xff\xfe{}", "application/json", 400),
    ("username=lx_wgy1&password=demo123", "application/x-www-form-urlencoded", 415),
    ('{"username": "lx_wgy1", "password": "demo123"}', "text/plain", 415),
])
def test_token_endpoint_malformed_bodies(api, data, content_type, status):
    r = api.client.post(f"{V1}/auth/token", data=data, content_type=content_type)
    assert_error(r, status, "invalid" if status == 400 else "unsupported_media_type")


def test_oversized_json_body_is_413(api):
    r = api.client.post(f"{V1}/auth/token", data=json.dumps({"username": "x" * 2_000_000, "password": "p"}),
                        content_type="application/json")
    assert_error(r, 413, "too_large")


def test_language_of_api_messages(api):
    zh = assert_error(api.client.get(f"{V1}/tasks"), 401)
    en = assert_error(api.client.get(f"{V1}/tasks", headers={"Accept-Language": "en-US,en;q=0.9"}), 401)
    assert re.search(r"[\u4e00-\u9fff]", zh["message"])
    assert en["message"].startswith("No token")


# ------------------------------------------------------------------ authentication failures

def _token_for(app, uid, secret=None, salt="gridflow-api-token"):
    """A token as the API issues it: the account's id and its password's stamp."""
    user = app.extensions["gridflow"].get_user(uid) if isinstance(uid, int) and not isinstance(uid, bool) else None
    stamp = user.password_stamp if user is not None else "0" * 16
    return URLSafeTimedSerializer(secret or app.config["SECRET_KEY"], salt=salt).dumps({"uid": uid, "pw": stamp})


def _uid(service, username):
    return service.get_user(username).id


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Basic bHhfd2d5MTpkZW1vMTIz", "Bearer not-a-token", "Bearer " + "a" * 5000,
    "Token abc",
])
def test_protected_routes_need_a_valid_token(api, header):
    headers = {"Authorization": header} if header is not None else {}
    for method, path in [("get", "/processes"), ("get", "/tasks"), ("post", "/cases"),
                         ("get", "/cases/1"), ("get", "/tasks/00000000-0000-0000-0000-000000000000"),
                         ("post", "/tasks/00000000-0000-0000-0000-000000000000/complete")]:
        r = getattr(api.client, method)(V1 + path, headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_forged_and_wrong_tokens_are_refused(api, app, service):
    uid = _uid(service, WORKER)
    for token in [_token_for(app, uid, secret="another-secret"), _token_for(app, uid, salt="other-salt"),
                  _token_for(app, str(uid)), _token_for(app, 999_999), _token_for(app, True),
                  URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="gridflow-api-token").dumps([uid])]:
        r = api.client.get(f"{V1}/tasks", headers={"Authorization": f"Bearer {token}"})
        assert_error(r, 401, "unauthorized")
    # a token of before tokens named the password, and one naming another password
    for token in [URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="gridflow-api-token").dumps({"uid": uid}),
                  URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="gridflow-api-token").dumps(
                      {"uid": uid, "pw": "0" * 16})]:
        r = api.client.get(f"{V1}/tasks", headers={"Authorization": f"Bearer {token}"})
        assert_error(r, 401, "token_revoked")
    good = _token_for(app, uid)
    assert api.client.get(f"{V1}/tasks", headers={"Authorization": f"Bearer {good}"}).status_code == 200
    assert api.client.get(f"{V1}/tasks", headers={"Authorization": f"bearer  {good} "}).status_code == 200


def test_expired_token_is_refused(api, app, service, monkeypatch):
    uid = _uid(service, WORKER)
    real = itsdangerous.timed.TimestampSigner.get_timestamp
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp",
                        lambda self: int(time.time()) - 8 * 24 * 3600)
    old = _token_for(app, uid)
    monkeypatch.setattr(itsdangerous.timed.TimestampSigner, "get_timestamp", real)
    assert_error(api.client.get(f"{V1}/tasks", headers={"Authorization": f"Bearer {old}"}), 401, "token_expired")

    # and with a tiny max age
    fresh = _token_for(app, uid)
    app.config["API_TOKEN_MAX_AGE"] = -1
    assert_error(api.client.get(f"{V1}/tasks", headers={"Authorization": f"Bearer {fresh}"}), 401, "token_expired")


def test_deactivated_users_token_stops_working(api, clean_db):
    token = api.token(WORKER)
    headers = {"Authorization": f"Bearer {token}"}
    assert api.client.get(f"{V1}/tasks", headers=headers).status_code == 200
    report = {"process": "grid_matter", "grid": GRID, "data": dict(REPORT)}
    first = api.client.post(f"{V1}/cases", json=report, headers=headers)
    assert first.status_code == 201
    with clean_db.unit_of_work() as s:
        s.scalar(select(User).where(User.username == WORKER)).active = False
    try:
        assert_error(api.client.get(f"{V1}/tasks", headers=headers), 401, "unauthorized")
        assert_error(api.client.post(f"{V1}/auth/token", json={"username": WORKER, "password": "demo123"}), 401)
        # the transitions check the account inside their own transaction: refused alike, nothing written
        with clean_db.read_session() as s:
            cases, events = s.scalar(select(func.count(Case.id))), s.scalar(select(func.count(AuditEvent.id)))
        assert_error(api.client.post(f"{V1}/cases", json=report, headers=headers), 401, "unauthorized")
        task = first.get_json()["open_tasks"][0]["id"]
        assert_error(api.client.post(f"{V1}/tasks/{task}/complete", headers=headers,
                                     json={"data": {"resolved": True, "mediation_note": "已化解"}}), 401, "unauthorized")
        with clean_db.read_session() as s:
            assert (s.scalar(select(func.count(Case.id))), s.scalar(select(func.count(AuditEvent.id)))) == (cases, events)
    finally:
        with clean_db.unit_of_work() as s:
            s.scalar(select(User).where(User.username == WORKER)).active = True
    assert api.client.get(f"{V1}/tasks", headers=headers).status_code == 200


# ------------------------------------------------------------------ processes

def test_processes_with_start_form_schema_and_grids(api):
    r = api.get(f"{V1}/processes", WORKER)
    assert r.status_code == 200
    (proc,) = [p for p in r.get_json()["items"] if p["key"] == "grid_matter"]
    (grid,) = proc["grids"]
    assert grid["code"] == GRID and grid["name"] == "新光社区第一网格"
    # the grid as a case names it: the same id
    case = api.start()
    assert grid == {key: case["grid"][key] for key in ("id", "code", "name")} and grid["id"] is not None
    form = proc["start_form"]
    assert form["key"] == "grid_matter_report" and form["title"] == "上报网格事项"
    schema = form["schema"]
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["required"]) == {"category", "description", "location", "colour"}
    assert schema["properties"]["description"]["minLength"] == 5
    assert schema["properties"]["category"]["enum"][0] == "dispute"

    en = api.get(f"{V1}/processes", WORKER, headers={"Accept-Language": "en"}).get_json()
    form = [p for p in en["items"] if p["key"] == "grid_matter"][0]["start_form"]
    assert form["title"] == "Report a grid matter"
    assert form["schema"]["properties"]["location"]["title"] == "Location"


def test_auditor_and_town_staff_may_start_nothing_here(api):
    assert api.get(f"{V1}/processes", AUDITOR).get_json() == {"items": []}
    assert [p["key"] for p in api.get(f"{V1}/processes", "lxz_cg").get_json()["items"]] == []


# ------------------------------------------------------------------ starting a case

def test_start_case(api):
    r = api.post(f"{V1}/cases", WORKER, json={"process": "grid_matter", "grid": GRID, "data": REPORT})
    assert r.status_code == 201
    case = r.get_json()
    assert case["business_key"].startswith("LX-2026-") and case["status"] == "open"
    assert case["process"] == "grid_matter" and case["grid"]["code"] == GRID
    assert case["created_at"] == "2026-03-02T16:30:00+08:00"     # China time, as the audit API and pages
    assert case["created_by"]["display_name"]
    assert [t["spec_id"] for t in case["open_tasks"]] == ["micro_mediation"]
    assert case["open_tasks"][0]["role"] == "grid_leader" and case["open_tasks"][0]["due_at"]
    assert case["summary"]["colour"] == "blue"
    # the answer is the case as the start left it; its data and history are at its Location
    assert "history" not in case and "data" not in case
    assert r.headers["Location"].endswith(f"/api/v1/cases/{case['business_key']}")
    full = api.get(r.headers["Location"], WORKER).get_json()
    assert full["id"] == case["id"] and full["open_tasks"] == case["open_tasks"]
    assert full["created_by"] == case["created_by"] and full["grid"] == case["grid"]
    assert full["history"][0]["type"] == "case_started"
    assert full["data"]["category"] == "dispute"



def test_a_retried_report_with_its_idempotency_key_starts_one_case(api, clean_db):
    """The app's report sent again after a timeout or a lost answer: the same key from the same
    account answers 200 with the case the first started, and nothing is reported twice."""
    body = {"process": "grid_matter", "grid": GRID, "data": REPORT}
    key = {"Idempotency-Key": "3f2b8c1e-5d4a-4b6f-9e7d-0a1b2c3d4e5f"}
    before = counts(clean_db)
    first = api.post(f"{V1}/cases", WORKER, json=body, headers=key)
    assert first.status_code == 201, first.get_data(as_text=True)
    again = api.post(f"{V1}/cases", WORKER, json=body, headers=key)
    assert again.status_code == 200, again.get_data(as_text=True)
    assert again.get_json()["business_key"] == first.get_json()["business_key"]
    assert again.headers["Location"] == first.headers["Location"]
    assert again.get_json()["open_tasks"] == first.get_json()["open_tasks"]
    assert counts(clean_db)[0] == before[0] + 1
    # another report (another key, or none) is another case; a key is the account's own
    assert api.post(f"{V1}/cases", WORKER, json=body, headers={"Idempotency-Key": "another"}).status_code == 201
    assert api.post(f"{V1}/cases", WORKER, json=body).status_code == 201
    assert api.post(f"{V1}/cases", "lx_wgy2", json={**body, "grid": "linxi-xinguang-g2"}, headers=key).status_code == 201
    assert counts(clean_db)[0] == before[0] + 4


@pytest.mark.parametrize("key", ["", "x" * 65, "has space", "非ASCII"])
def test_a_malformed_idempotency_key_is_refused_and_starts_nothing(api, clean_db, key):
    before = counts(clean_db)
    r = api.post(f"{V1}/cases", WORKER, json={"process": "grid_matter", "grid": GRID, "data": REPORT},
                 headers={"Idempotency-Key": key.encode("utf-8").decode("latin-1")})
    body = assert_error(r, 400, "invalid", ["Idempotency-Key"])
    assert "Idempotency-Key" in body["message"] and counts(clean_db) == before

@pytest.mark.parametrize("payload,fields", [
    ({"process": "grid_matter", "grid": GRID, "data": {**REPORT, "description": "短"}}, ["description"]),
    ({"process": "grid_matter", "grid": GRID, "data": {**REPORT, "colour": "purple"}}, ["colour"]),
    ({"process": "grid_matter", "grid": GRID, "data": {"category": "dispute"}},
     ["description", "location", "colour"]),
    ({"process": "grid_matter", "grid": GRID, "data": {**REPORT, "description": "长" * 100_000}}, ["description"]),
    ({"process": "grid_matter", "grid": GRID, "data": {**REPORT, "hacker": 1}}, ["hacker"]),
    ({"process": "grid_matter", "grid": GRID, "data": {**REPORT, "description": "null\u0000byte here"}},
     ["data.description"]),
    ({"process": "grid_matter", "grid": GRID, "data": {**REPORT, "photos": ["no-such-upload"]}}, ["photos"]),
    ({"process": "grid_matter", "grid": GRID, "data": {**REPORT, "photos": "not-a-list"}}, ["photos"]),
    ({"process": "grid_matter", "grid": GRID, "data": "not an object"}, ["data"]),
    ({"process": "grid_matter", "grid": GRID, "data": [REPORT]}, ["data"]),
    ({"process": "grid_matter", "grid": 42, "data": REPORT}, ["grid"]),
    ({"process": "grid_matter", "grid": None, "data": REPORT}, ["grid"]),
    ({"process": "grid_matter", "data": REPORT}, ["grid"]),
    ({"process": "grid_matter", "grid": GRID, "data": REPORT, "status": "completed"}, ["status"]),
    ({"process": "grid_matter", "grid": "../../etc", "data": REPORT}, ["grid"]),
    ({"process": "grid_matter", "grid": "no-such-grid", "data": REPORT}, ["grid"]),
    ({"process": "no_such_process", "grid": GRID, "data": REPORT}, ["process"]),
    ({"process": "grid_matter", "grid": "linxi-xinguang", "data": REPORT}, ["grid"]),  # a community
    ({"process": ["grid_matter"], "grid": GRID, "data": REPORT}, ["process"]),
])
def test_invalid_start_is_400_with_fields_and_creates_nothing(api, clean_db, payload, fields):
    before = counts(clean_db)
    assert_error(api.post(f"{V1}/cases", WORKER, json=payload), 400, "invalid", fields)
    assert counts(clean_db) == before


REPORT_JSON = json.dumps(REPORT)[1:-1]


@pytest.mark.parametrize("raw,field", [
    # what the database cannot store: NUL (PostgreSQL), lone surrogates (UTF-8), infinity, absurd nesting
    ('{"process": "grid_matter", "grid": "%s", "data": {%s, "parties": "\\u0000"}}' % (GRID, REPORT_JSON),
     "data.parties"),
    ('{"process": "grid_matter", "grid": "%s", "data": {%s, "parties": "\\ud800"}}' % (GRID, REPORT_JSON),
     "data.parties"),
    ('{"process": "grid_matter", "grid": "%s", "data": {%s, "\\ud800": 1}}' % (GRID, REPORT_JSON), "data"),
    ('{"process": "grid_matter", "grid": "%s", "data": {%s, "parties": 1e999}}' % (GRID, REPORT_JSON),
     "data.parties"),
    ('{"process": "grid_matter", "grid": "%s", "data": {%s, "parties": %s1%s}}'
     % (GRID, REPORT_JSON, "[" * 100, "]" * 100), None),
    ('{"process": "grid_matter", "grid": "%s", "data": %s1%s}' % (GRID, '{"a": ' * 900, "}" * 900), None),
    ('{"process": "grid\\u0000", "grid": "%s", "data": {}}' % GRID, "process"),
    ('{"process": "grid_matter", "grid": "%s", "data": {%s}, "data": "duplicate key wins"}' % (GRID, REPORT_JSON),
     "data"),
])
def test_start_refuses_what_the_database_cannot_store(api, clean_db, raw, field):
    before = counts(clean_db)
    body = assert_error(api.post(f"{V1}/cases", WORKER, data=raw, content_type="application/json"), 400, "invalid")
    if field:
        assert field in body["fields"], body
    assert counts(clean_db) == before


def test_start_outside_jurisdiction_and_by_auditor_is_403(api, clean_db):
    assert_error(api.post(f"{V1}/cases", OTHER_WORKER, json={"process": "grid_matter", "grid": GRID,
                                                             "data": REPORT}), 403, "forbidden")
    assert_error(api.post(f"{V1}/cases", AUDITOR, json={"process": "grid_matter", "grid": GRID,
                                                        "data": REPORT}), 403, "forbidden")
    assert counts(clean_db)[0] == 0


def test_start_with_wrong_content_type_is_415(api):
    r = api.post(f"{V1}/cases", WORKER, data=json.dumps({"process": "grid_matter", "grid": GRID, "data": REPORT}),
                 content_type="text/plain")
    assert_error(r, 415, "unsupported_media_type")
    r = api.post(f"{V1}/cases", WORKER, data={"process": "grid_matter", "grid": GRID})
    assert_error(r, 415)


# ------------------------------------------------------------------ inbox and tasks

def test_inbox_lists_my_tasks_only(api):
    case = api.start()
    inbox = api.inbox(LEADER)
    assert inbox["total"] == 1 and inbox["limit"] == 50 and inbox["offset"] == 0
    (item,) = inbox["items"]
    assert item["spec_id"] == "micro_mediation" and item["name"] == "网格微调处"
    assert item["case"]["business_key"] == case["business_key"]
    assert item["case"]["grid"] == {"id": case["grid"]["id"], "code": GRID, "name": "新光社区第一网格"}
    assert item["assignee"] is None and item["overdue"] is False and item["candidate_unit"] == "新光社区第一网格"
    # the grid worker of another grid sees nothing, and may not touch it
    assert api.inbox(OTHER_WORKER) == {"items": [], "total": 0, "limit": 50, "offset": 0}
    assert api.inbox(WORKER)["total"] == 0


def test_a_query_parameter_given_twice_is_refused_not_half_read(api):
    """`?colour=red&colour=blue` filtered by red alone, the app believing it asked for both."""
    r = api.get(f"{V1}/tasks", DISPATCHER, query_string=[("colour", "red"), ("colour", "blue"), ("limit", "5")])
    body = assert_error(r, 400, "invalid", ["colour"])
    assert body["fields"]["colour"] == ["此查询参数只能给出一次。"] and "limit" not in body["fields"]
    en = api.get(f"{V1}/tasks", DISPATCHER, query_string=[("q", "LX"), ("q", "SS")], headers={"Accept-Language": "en"})
    assert assert_error(en, 400, "invalid", ["q"])["fields"]["q"][0].startswith("Give this query parameter once")


def test_inbox_filters(api, clock):
    first = api.start()
    api.start(category="public_order", colour="red")
    assert api.inbox(LEADER, process="grid_matter")["total"] == 1
    assert api.inbox(LEADER, process="other")["total"] == 0
    assert api.inbox(LEADER, task="micro_mediation")["total"] == 1
    assert api.inbox(DISPATCHER, colour="red")["total"] == 1
    assert api.inbox(DISPATCHER, colour="blue")["total"] == 0
    assert api.inbox(LEADER, q=first["business_key"].lower())["total"] == 1
    assert api.inbox(LEADER, q="SS-")["total"] == 0
    assert api.inbox(LEADER, overdue="true")["total"] == 0
    page = api.inbox(LEADER, limit=1, offset=1)
    assert page["items"] == [] and page["total"] == 1


def test_inbox_overdue_filter(api, clock):
    api.start()                              # a blue dispute: micro-mediation due in grid_days = 7 days
    clock.advance(days=6)
    assert api.inbox(LEADER, overdue="1")["total"] == 0
    clock.advance(days=1, minutes=1)
    inbox = api.inbox(LEADER, overdue="1")
    assert inbox["total"] == 1 and inbox["items"][0]["overdue"] is True


@pytest.mark.parametrize("params,field", [
    ({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"limit": "ten"}, "limit"),
    ({"offset": -1}, "offset"), ({"offset": 10 ** 30}, "offset"), ({"overdue": "maybe"}, "overdue"),
    ({"process": "x" * 500}, "process"), ({"process": "a\u0000b"}, "process"), ({"q": "x" * 100}, "q"),
    ({"colour": "red;drop table"}, "colour"), ({"task": "../etc"}, "task"),
])
def test_inbox_refuses_bad_filters(api, params, field):
    assert_error(api.get(f"{V1}/tasks", LEADER, query_string=params), 400, "invalid", [field])


def test_inbox_limit_200_is_allowed(api):
    assert api.inbox(LEADER, limit=200, offset=1_000_000)["items"] == []


def test_task_detail_with_form_schema_and_readonly_values(api):
    case = api.start()
    task_id = case["open_tasks"][0]["id"]
    r = api.get(f"{V1}/tasks/{task_id}", LEADER)
    assert r.status_code == 200
    task = r.get_json()
    assert task["id"] == task_id and task["spec_id"] == "micro_mediation" and task["status"] == "open"
    assert task["may_work"] is True and task["process"] == "grid_matter"
    assert task["case"]["business_key"] == case["business_key"] and task["case"]["grid"]["code"] == GRID
    form = task["form"]
    assert form["key"] == "micro_mediation"
    assert set(form["schema"]["required"]) == {"resolved", "mediation_note"}
    assert "description" not in form["schema"]["properties"]
    assert form["readonly"]["description"] == REPORT["description"]
    assert form["readonly"]["colour"] == "blue"
    en = api.get(f"{V1}/tasks/{task_id}", LEADER, headers={"Accept-Language": "en"}).get_json()
    assert en["form"]["title"] == "Micro-mediation in the grid"
    assert en["form"]["schema"]["properties"]["resolved"]["title"] == "Resolved"
    # the grid worker who reported it may read it but not work it
    mine = api.get(f"{V1}/tasks/{task_id}", WORKER).get_json()
    assert mine["may_work"] is False


def test_town_dispatch_form_has_defaults(api):
    case = api.start(category="public_order", colour="red")
    (task_id,) = [t["id"] for t in case["open_tasks"] if t["spec_id"] == "town_dispatch"]
    task = api.get(f"{V1}/tasks/{task_id}", DISPATCHER).get_json()
    assert task["spec_id"] == "town_dispatch"
    assert task["form"]["defaults"] == {"department": "paichusuo"}


def test_a_dispatch_form_says_where_each_department_sends_the_matter(api):
    """The web form tells a town dispatcher that 林西镇 has no 住建 and a 住建 task goes to the
    county's bureau; the API's form said nothing, so the app could not."""
    case = api.start(category="public_order", colour="red")
    (task_id,) = [t["id"] for t in case["open_tasks"] if t["spec_id"] == "town_dispatch"]
    routing = api.get(f"{V1}/tasks/{task_id}", DISPATCHER).get_json()["form"]["department_routing"]
    assert routing["fields"] == ["department", "departments"] and "承办单位按案件所在辖区确定" in routing["rule"]
    assert routing["choices"]["zhujian"] == {"unit": "林西县住房和城乡建设局", "own_place": False,
                                             "note": "本级无此部门，将派至林西县住房和城乡建设局"}
    assert routing["choices"]["chengguan"]["own_place"] is True and routing["choices"]["chengguan"]["note"] is None
    en = api.get(f"{V1}/tasks/{task_id}", DISPATCHER, headers={"Accept-Language": "en"}).get_json()
    assert en["form"]["department_routing"]["choices"]["zhujian"]["note"] == "none here: goes to 林西县住房和城乡建设局"
    # one who may not work the task learns the rule alone; a form without department choices: null
    assert api.get(f"{V1}/tasks/{task_id}", WORKER).get_json()["form"]["department_routing"]["choices"] == {}
    processes = api.get(f"{V1}/processes", WORKER).get_json()["items"]
    report = next(p for p in processes if p["key"] == "grid_matter")
    assert report["start_form"]["department_routing"] is None


def test_a_department_chosen_twice_is_refused_in_the_callers_language_and_changes_nothing(api, clean_db):
    """The form's JSON Schema says `uniqueItems`; a department named twice would be summoned
    twice (two 部门报到 tasks for one unit). Field messages come in the caller's language."""
    case = api.start(category="public_order", colour="red")
    (task_id,) = [t["id"] for t in case["open_tasks"] if t["spec_id"] == "town_dispatch"]
    before = counts(clean_db)
    data = {"department": "chengguan", "departments": ["chengguan", "chengguan"]}
    zh = assert_error(api.post(f"{V1}/tasks/{task_id}/complete", DISPATCHER, json={"data": data}), 400, "invalid")
    assert zh["fields"] == {"departments": ["每个选项只能选一次。"]}
    en = assert_error(api.post(f"{V1}/tasks/{task_id}/complete", DISPATCHER, json={"data": data},
                               headers={"Accept-Language": "en"}), 400, "invalid")
    assert en["fields"] == {"departments": ["Choose each option once."]}
    assert counts(clean_db) == before
    done = api.post(f"{V1}/tasks/{task_id}/complete", DISPATCHER,
                    json={"data": {"department": "chengguan", "departments": ["chengguan", "paichusuo"]}})
    assert done.status_code == 200, done.get_data(as_text=True)


def test_an_unknown_key_is_named_with_the_fields_the_form_takes_in_the_callers_language(api, clean_db):
    """An app sending a key the form does not take was told "not part of the form": not which
    key, nor what it may send instead."""
    case = api.start()
    task_id = case["open_tasks"][0]["id"]
    before = counts(clean_db)
    data = {"resolved": True, "mediation_note": "已调解好了", "foo": 1, "description": "改描述"}
    zh = assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json={"data": data}), 400, "invalid")
    fillable = "resolved mediation_note grid_leader_present if_unresolved dispute_type amount_in_dispute " \
               "escalation_reason".split()
    assert zh["fields"]["foo"] == [f"表单中没有字段 foo；可填写的字段：{'、'.join(fillable)}"]
    assert zh["fields"]["description"][0].startswith("字段 description 为只读，不能提交；可填写的字段：resolved、")
    en = assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json={"data": data},
                               headers={"Accept-Language": "en"}), 400, "invalid")
    assert en["fields"]["foo"] == [f"the form has no field foo; fields you may fill: {', '.join(fillable)}"]
    assert counts(clean_db) == before
    # a key the body itself does not take, likewise
    body = {"process": "grid_matter", "grid": GRID, "data": REPORT, "gird": GRID}
    zh = assert_error(api.post(f"{V1}/cases", WORKER, json=body), 400, "invalid")
    assert zh["fields"] == {"gird": ["请求中没有字段 gird；可用的字段：process、grid、data"]}
    en = assert_error(api.post(f"{V1}/cases", WORKER, json=body, headers={"Accept-Language": "en"}), 400)
    assert en["fields"] == {"gird": ["the request has no field gird; fields it takes: process, grid, data"]}
    assert counts(clean_db) == before
    # thousands of junk keys: each named, the fields listed for the first ten only (the answer stays small)
    junk = {f"k{n:04d}": 1 for n in range(2000)}
    zh = assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json={"data": {**data, **junk}}), 400)
    listed = [k for k, m in zh["fields"].items() if "可填写的字段" in m[0]]
    assert len(listed) == 10 and len(zh["fields"]) > 100   # (the API names at most 200 fields)
    assert all(m == [f"表单中没有字段 {k}"] for k, m in zh["fields"].items() if k not in listed and k != "description")
    zh = assert_error(api.post(f"{V1}/cases", WORKER, json={**body, **junk}), 400)
    listed = [k for k, m in zh["fields"].items() if "可用的字段" in m[0]]
    assert len(listed) == 10 and len(zh["fields"]) > 100
    assert all(m == [f"请求中没有字段 {k}"] for k, m in zh["fields"].items() if k not in listed)
    assert counts(clean_db) == before


def test_field_messages_of_the_api_are_in_the_callers_language(api):
    """marshmallow's and the engine's own field messages, as the web forms show them."""
    short = {"process": "grid_matter", "grid": GRID, "data": {**REPORT, "description": "短"}}
    zh = assert_error(api.post(f"{V1}/cases", WORKER, json=short), 400, "invalid")
    assert zh["fields"]["description"] == ["长度须在 5 到 2000 个字之间。"]
    en = assert_error(api.post(f"{V1}/cases", WORKER, json=short, headers={"Accept-Language": "en"}), 400)
    assert en["fields"]["description"] == ["Enter between 5 and 2000 characters."]
    missing = assert_error(api.post(f"{V1}/cases", WORKER, json={"grid": GRID, "data": REPORT}), 400)
    assert missing["fields"]["process"] == ["此项为必填。"]
    nobody = assert_error(api.get(f"{V1}/cases", AUDITOR, query_string={"participant": "nobody"}), 400)
    assert nobody["fields"] == {"participant": ["找不到该用户。"]}
    typo = assert_error(api.get(f"{V1}/cases", AUDITOR, query_string={"process": "grid_mater"},
                                headers={"Accept-Language": "en"}), 400)
    assert typo["fields"] == {"process": ["No such process: choose a deployed one."]}


@pytest.mark.parametrize("task_id", [
    "00000000-0000-0000-0000-000000000000", "not-a-uuid", "1", "..%2F..%2Fetc", "x" * 5000, "%00",
    "00000000-0000-0000-0000-00000000000g",
])
def test_unknown_or_malformed_task_ids_are_404(api, task_id):
    assert_error(api.get(f"{V1}/tasks/{task_id}", LEADER), 404, "not_found")
    assert_error(api.post(f"{V1}/tasks/{task_id}/claim", LEADER), 404, "not_found")
    assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json={"data": {}}), 404, "not_found")


def test_another_jurisdictions_task_is_403_and_not_listed(api, clean_db):
    case = api.start()
    task_id = case["open_tasks"][0]["id"]
    before = counts(clean_db)
    for user in (OTHER_WORKER, "ss_wgy1", "lxz_cg"):
        assert not [i for i in api.inbox(user)["items"] if i["id"] == task_id]
        assert_error(api.get(f"{V1}/tasks/{task_id}", user), 403, "forbidden")
        assert_error(api.post(f"{V1}/tasks/{task_id}/claim", user), 403, "forbidden")
        assert_error(api.post(f"{V1}/tasks/{task_id}/complete", user,
                              json={"data": {"resolved": True, "mediation_note": "x"}}), 403, "forbidden")
        assert_error(api.get(f"{V1}/cases/{case['business_key']}", user), 403, "forbidden")
        # asked for by its number, the refusal does not tell another place's case number
        refused = assert_error(api.get(f"{V1}/cases/{case['id']}", user), 403, "forbidden")
        assert case["business_key"] not in refused["message"]
    assert counts(clean_db) == before


def test_a_refusal_tells_another_jurisdiction_nothing_of_the_task(api, clean_db):
    """A grid worker of 五原县 holding a 林西县 task's id was told the step ('网格微调处 不由您办理')
    and, once it was done, that it was done and by whom ('已办理完毕（孙丽娟）', a 409): another
    county's step and official. Now every refusal to an outsider is the same 403, naming nothing."""
    case = api.start()
    task_id = case["open_tasks"][0]["id"]
    leader_name = api.post(f"{V1}/tasks/{task_id}/claim", LEADER).get_json()["assignee"]["display_name"]

    def refusals(user):
        for lang in ("zh", "en"):
            headers = {"Accept-Language": lang}
            yield api.get(f"{V1}/tasks/{task_id}", user, headers=headers)
            for action in ("claim", "unclaim"):
                yield api.post(f"{V1}/tasks/{task_id}/{action}", user, headers=headers)
            yield api.post(f"{V1}/tasks/{task_id}/complete", user, headers=headers,
                           json={"data": {"resolved": True, "mediation_note": "x"}})

    def assert_silent(user):
        for r in refusals(user):
            body = assert_error(r, 403, "forbidden")
            assert body["message"] in ("该任务不在您的辖区内", "this task is outside your jurisdiction"), body
            assert "网格微调处" not in body["message"] and leader_name not in body["message"]

    before = counts(clean_db)
    assert_silent("wy_wgy1")                      # claimed by the leader, open
    assert counts(clean_db) == before
    r = api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json={"data": {"resolved": True, "mediation_note": "已化解"}})
    assert r.status_code == 200, r.get_data(as_text=True)
    before = counts(clean_db)
    assert_silent("wy_wgy1")                      # done
    assert_silent(OTHER_WORKER)                   # another village of the same town
    assert counts(clean_db) == before
    # whoever may see the case is still told what happened, and by whom
    body = assert_error(api.post(f"{V1}/tasks/{task_id}/claim", WORKER), 409, "conflict")
    assert "网格微调处" in body["message"] and leader_name in body["message"]


def test_auditor_reads_but_every_write_is_403(api, clean_db):
    case = api.start()
    task_id = case["open_tasks"][0]["id"]
    assert api.get(f"{V1}/cases/{case['id']}", AUDITOR).status_code == 200
    assert api.get(f"{V1}/tasks/{task_id}", AUDITOR).get_json()["may_work"] is False
    before = counts(clean_db)
    assert_error(api.post(f"{V1}/tasks/{task_id}/claim", AUDITOR), 403, "forbidden")
    assert_error(api.post(f"{V1}/tasks/{task_id}/unclaim", AUDITOR), 403, "forbidden")
    assert_error(api.post(f"{V1}/tasks/{task_id}/complete", AUDITOR,
                          json={"data": {"resolved": True, "mediation_note": "x"}}), 403, "forbidden")
    assert_error(api.post(f"{V1}/cases/{case['id']}/attachments", AUDITOR,
                          data={"file": (io.BytesIO(tiny_png()), "a.png")}), 403, "forbidden")
    assert_error(api.post(f"{V1}/attachments", AUDITOR, data={"file": (io.BytesIO(tiny_png()), "a.png")}), 403)
    assert counts(clean_db) == before


@pytest.mark.parametrize("data,fields", [
    ({}, ["resolved", "mediation_note"]),
    ({"resolved": True}, ["mediation_note"]),
    ({"resolved": "perhaps", "mediation_note": "x"}, ["resolved"]),
    ({"resolved": True, "mediation_note": 12}, ["mediation_note"]),
    ({"resolved": True, "mediation_note": " \t\n "}, ["mediation_note"]),     # only spaces is nothing written
    ({"resolved": True, "mediation_note": "x" * 2001}, ["mediation_note"]),
    ({"resolved": True, "mediation_note": "x", "description": "overwrite a read-only field"}, ["description"]),
    ({"resolved": True, "mediation_note": "x", "grid_leader_present": [True]}, ["grid_leader_present"]),
    ({"resolved": True, "mediation_note": ["x"] * 10_000}, ["mediation_note"]),
])
def test_invalid_completion_is_400_with_fields_and_changes_nothing(api, clean_db, data, fields):
    case = api.start()
    task_id = case["open_tasks"][0]["id"]
    before = counts(clean_db)
    assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json={"data": data}), 400, "invalid", fields)
    assert counts(clean_db) == before
    assert api.get(f"{V1}/tasks/{task_id}", LEADER).get_json()["status"] == "open"


@pytest.mark.parametrize("body,fields", [
    ({"data": "resolved"}, ["data"]), ({"data": None}, ["data"]), ({"data": [1, 2]}, ["data"]),
    ({"data": {}, "task": "other"}, ["task"]), ([], ["_schema"]), ("just a string", ["_schema"]),
    ({"data": {"k" * 200: 1}}, ["data"]),
])
def test_complete_body_must_be_an_object_with_data(api, body, fields):
    task_id = api.start()["open_tasks"][0]["id"]
    assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json=body), 400, "invalid", fields)


def test_complete_malformed_json_and_wrong_content_type(api):
    task_id = api.start()["open_tasks"][0]["id"]
    url = f"{V1}/tasks/{task_id}/complete"
    assert_error(api.post(url, LEADER, data='{"data": {', content_type="application/json"), 400, "invalid")
    assert_error(api.post(url, LEADER, data="data=1", content_type="application/x-www-form-urlencoded"), 415)
    assert_error(api.post(url, LEADER, data=b"\x00\x01", content_type="application/octet-stream"), 415)


def test_complete_then_double_completion_is_409(api, clean_db):
    case = api.start()
    task_id = case["open_tasks"][0]["id"]
    r = api.post(f"{V1}/tasks/{task_id}/complete", LEADER,
                 json={"data": {"resolved": True, "mediation_note": "双方达成谅解"}})
    assert r.status_code == 200, r.get_data(as_text=True)
    after = r.get_json()
    assert after["business_key"] == case["business_key"] and after["status"] == "open"
    assert [t["spec_id"] for t in after["open_tasks"]] == ["record_result"]
    full = api.get(f"{V1}/cases/{case['id']}", LEADER).get_json()     # data and history: GET the case
    assert full["open_tasks"] == after["open_tasks"] and full["updated_at"] == after["updated_at"]
    done = [e for e in full["history"] if e["type"] == "task_completed"]
    assert done[-1]["bpmn_id"] == "micro_mediation" and done[-1]["actor"]["display_name"]
    assert done[-1]["data"] == {"resolved": True, "mediation_note": "双方达成谅解"}

    before = counts(clean_db)
    body = assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER,
                                 json={"data": {"resolved": True, "mediation_note": "again"}}), 409, "conflict")
    assert "已办理完毕" in body["message"] and "请刷新" in body["message"]       # zh by default
    body = assert_error(api.post(f"{V1}/tasks/{task_id}/complete", LEADER, headers={"Accept-Language": "en"},
                                 json={"data": {"resolved": True, "mediation_note": "again"}}), 409, "conflict")
    assert "already completed" in body["message"]
    assert_error(api.post(f"{V1}/tasks/{task_id}/claim", LEADER), 409, "conflict")
    assert counts(clean_db) == before
    assert api.get(f"{V1}/tasks/{task_id}", LEADER).get_json()["status"] == "completed"

    record = after["open_tasks"][0]["id"]
    r = api.post(f"{V1}/tasks/{record}/complete", WORKER, json={"data": {"result_note": "已化解"}})
    assert r.status_code == 200 and r.get_json()["status"] == "completed"
    assert r.get_json()["closed_at"] and r.get_json()["open_tasks"] == []


@pytest.fixture
def second_dispatcher(clean_db):
    """lxx_pd also a dispatcher of 林西镇, so a town task has two candidates."""
    with clean_db.unit_of_work() as s:
        town = s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "linxizhen"))
        other = s.scalar(select(User).where(User.username == "lxx_pd"))
        if s.scalar(select(RoleAssignment).where(RoleAssignment.user_id == other.id,
                                                 RoleAssignment.node_id == town.id)) is None:
            s.add(RoleAssignment(user_id=other.id, role="center_dispatcher", node_id=town.id))
        town_id = town.id
    yield "lxx_pd"
    with clean_db.unit_of_work() as s:
        for ra in s.scalars(select(RoleAssignment).join(User).where(
                User.username == "lxx_pd", RoleAssignment.node_id == town_id)):
            s.delete(ra)


def test_claim_unclaim_and_claim_by_another_candidate_is_409(api, second_dispatcher):
    case = api.start(category="public_order", colour="red")
    (task_id,) = [t["id"] for t in case["open_tasks"] if t["spec_id"] == "town_dispatch"]
    # lxx_pd, also the county's dispatcher, has the red matter's county supervision task besides
    assert [i["id"] for i in api.inbox(second_dispatcher, task="town_dispatch")["items"]] == [task_id]

    r = api.post(f"{V1}/tasks/{task_id}/claim", DISPATCHER)
    assert r.status_code == 200
    task = r.get_json()
    assert task["assignee"]["display_name"] and task["claimed_at"] and task["may_work"] is True
    assert api.post(f"{V1}/tasks/{task_id}/claim", DISPATCHER).status_code == 200  # again: harmless
    assert api.inbox(second_dispatcher, task="town_dispatch")["total"] == 0

    assert_error(api.post(f"{V1}/tasks/{task_id}/claim", second_dispatcher), 409, "conflict")
    assert_error(api.post(f"{V1}/tasks/{task_id}/complete", second_dispatcher,
                          json={"data": {"department": "paichusuo"}}), 409, "conflict")
    assert_error(api.post(f"{V1}/tasks/{task_id}/unclaim", second_dispatcher), 403, "forbidden")
    assert_error(api.post(f"{V1}/tasks/{task_id}/claim", WORKER), 403, "forbidden")

    r = api.post(f"{V1}/tasks/{task_id}/unclaim", DISPATCHER)
    assert r.status_code == 200 and r.get_json()["assignee"] is None
    assert api.inbox(second_dispatcher, task="town_dispatch")["total"] == 1
    r = api.post(f"{V1}/tasks/{task_id}/complete", second_dispatcher, json={"data": {"department": "paichusuo"}})
    assert r.status_code == 200
    assert sorted(t["spec_id"] for t in r.get_json()["open_tasks"]) == ["county_supervise", "department_handle"]


def test_claim_ignores_a_body(api):
    task_id = api.start()["open_tasks"][0]["id"]
    r = api.post(f"{V1}/tasks/{task_id}/claim", LEADER, data="whatever", content_type="text/plain")
    assert r.status_code == 200


# ------------------------------------------------------------------ cases

def test_notifications_with_the_unread_count_and_marking_read(api):
    """What the grid app's badge and list read: a new task's notice for the grid leader,
    unread until read, or until its task is done; someone else's is a 404."""
    before = api.get(f"{V1}/notifications", LEADER).get_json()
    case = api.start()
    page = api.get(f"{V1}/notifications", LEADER, query_string={"limit": 1}).get_json()
    [newest] = page["items"]
    assert (newest["kind"], newest["subject"], newest["business_key"]) == ("new_task", "网格微调处", case["business_key"])
    assert (newest["task_id"], newest["task_status"], newest["unread"]) == (case["open_tasks"][0]["id"], "open", True)
    assert (page["total"], page["unread"], page["limit"]) == (before["total"] + 1, before["unread"] + 1, 1)
    assert_error(api.post(f"{V1}/notifications/{newest['id']}/read", WORKER), 404, "not_found")
    r = api.post(f"{V1}/notifications/{newest['id']}/read", LEADER)
    assert r.status_code == 200 and r.get_json() == {"marked": 1, "unread": before["unread"]}
    assert api.post(f"{V1}/notifications/{newest['id']}/read", LEADER).get_json()["marked"] == 0

    done = api.start()   # its task completed from the inbox, the notice never opened
    task_id = done["open_tasks"][0]["id"]
    r = api.post(f"{V1}/tasks/{task_id}/complete", LEADER, json={"data": {"resolved": True, "mediation_note": "已调解"}})
    assert r.status_code == 200, r.get_data(as_text=True)
    page = api.get(f"{V1}/notifications", LEADER).get_json()
    [notice] = [n for n in page["items"] if n["task_id"] == task_id]
    assert (notice["task_status"], notice["unread"], notice["read_at"]) == ("completed", False, None)
    assert page["unread"] == before["unread"]

    r = api.post(f"{V1}/notifications/read-all", LEADER)
    assert r.status_code == 200 and r.get_json()["unread"] == 0
    assert api.get(f"{V1}/notifications", LEADER).get_json()["unread"] == 0
    assert_error(api.get(f"{V1}/notifications", LEADER, query_string={"limit": 500}), 400, "invalid", ["limit"])
    assert_error(api.get(f"{V1}/notifications", LEADER, query_string={"unread": 1}), 400, "invalid", ["unread"])
    assert_error(api.get(f"{V1}/notifications"), 401)


def test_case_by_id_or_business_key_with_history(api):
    case = api.start()
    by_id = api.get(f"{V1}/cases/{case['id']}", WORKER).get_json()
    by_key = api.get(f"{V1}/cases/{case['business_key']}", WORKER).get_json()
    assert by_id == by_key
    assert api.get(f"{V1}/cases/{case['business_key'].lower()}", WORKER).get_json() == by_id   # as typed
    assert by_id["process_name"] and by_id["process_version"] >= 1
    types = [e["type"] for e in by_id["history"]]
    assert types[0] == "case_started" and "task_created" in types and "step" in types
    step = [e for e in by_id["history"] if e["type"] == "step"][0]
    assert set(step) == {"id", "type", "at", "actor", "bpmn_id", "name", "flow_from", "task_id", "data"}
    assert [e["bpmn_id"] for e in by_id["history"] if e["type"] == "step"][:2] == ["start", "decide_dispatch"]
    # the town dispatcher sees cases under the town
    assert api.get(f"{V1}/cases/{case['id']}", DISPATCHER).status_code == 200


@pytest.mark.parametrize("ref", ["999999", "LX-2026-999999", "99999999999999999999", "9223372036854775808",
                                 "0", "-1", "1.5", "..%2F..%2Fetc%2Fpasswd", "a" * 200, "%00", "LX 2026"])
def test_unknown_or_malformed_case_refs_are_404(api, ref):
    assert_error(api.get(f"{V1}/cases/{ref}", WORKER), 404, "not_found")
    assert_error(api.post(f"{V1}/cases/{ref}/attachments", WORKER,
                          data={"file": (io.BytesIO(tiny_png()), "a.png")}), 404, "not_found")


# ------------------------------------------------------------------ uploads

def test_upload_png_to_own_case(api, service, app):
    case = api.start()
    png = tiny_png()
    r = api.post(f"{V1}/cases/{case['business_key']}/attachments", WORKER,
                 data={"file": [(io.BytesIO(png), "现场.png"), (io.BytesIO(png), "../../../etc/passwd.png")]})
    assert r.status_code == 201, r.get_data(as_text=True)
    files = r.get_json()
    assert [f["filename"] for f in files] == ["现场.png", "passwd.png"]
    assert all(f["content_type"] == "image/png" and f["size"] == len(png) for f in files)
    # stored under the upload folder with a generated name, never the client's
    root = Path(app.config["UPLOAD_FOLDER"]).resolve()
    stored = [p for p in root.rglob("*") if p.is_file()]
    assert len(stored) == 2 and all(root in p.resolve().parents for p in stored)
    assert not any("passwd" in str(p) for p in stored)

    detail = api.get(f"{V1}/cases/{case['id']}", WORKER).get_json()
    assert {a["id"] for a in detail["attachments"]} == {f["id"] for f in files}
    assert "attachment_added" in [e["type"] for e in detail["history"]]

    r = api.get(f"{V1}/attachments/{files[0]['id']}", WORKER)
    assert r.status_code == 200 and r.data == png and r.mimetype == "image/png"
    assert "attachment" in r.headers["Content-Disposition"]
    assert_error(api.get(f"{V1}/attachments/{files[0]['id']}", "ss_wgy1"), 403)
    assert_error(api.get(f"{V1}/attachments/not-an-id", WORKER), 404)
    assert_error(api.get(f"{V1}/attachments/00000000-0000-0000-0000-000000000000", WORKER), 404)


@pytest.mark.parametrize("data,fields", [
    ({"file": (io.BytesIO(b"just some text, not an image"), "photo.png")}, ["file"]),
    ({"file": (io.BytesIO(b""), "empty.png")}, ["file"]),
    ({"file": (io.BytesIO(b"<script>alert(1)</script>"), "x.html")}, ["file"]),
    ({"photo": (io.BytesIO(tiny_png()), "a.png")}, ["photo"]),
    ({"file": (io.BytesIO(tiny_png()), "a.png"), "case": "1"}, ["case"]),
])
def test_bad_uploads_are_400(api, clean_db, data, fields):
    case = api.start()
    before = counts(clean_db)
    assert_error(api.post(f"{V1}/cases/{case['id']}/attachments", WORKER, data=data), 400, "invalid", fields)
    assert counts(clean_db) == before


@pytest.mark.parametrize("path", ["case", "pending"])
def test_a_file_named_as_another_type_is_refused_naming_what_it_is(api, app, clean_db, path):
    """x.pdf holding a PNG, a .jpg holding a PDF: refused with what the content really is, nothing
    stored (one such file refuses the whole request); the same file rightly named is taken."""
    case = api.start()
    url = f"{V1}/cases/{case['id']}/attachments" if path == "case" else f"{V1}/attachments"
    root = Path(app.config["UPLOAD_FOLDER"])
    before = counts(clean_db)
    body = assert_error(api.post(url, WORKER, data={"file": [(io.BytesIO(tiny_png()), "ok.png"),
                                                              (io.BytesIO(tiny_png()), "扫描件.pdf")]}),
                        400, "invalid", ["file"])
    assert "扫描件.pdf" in body["message"] and "文件名为 .pdf，但内容是 PNG 图片；请改正文件名或重新选择文件" in body["message"]
    assert body["fields"]["file"] == ["文件名为 .pdf，但内容是 PNG 图片；请改正文件名或重新选择文件"]
    pdf = b"%PDF-1.4\n%%EOF\n"
    body = assert_error(api.post(url, WORKER, data={"file": (io.BytesIO(pdf), "photo.jpg")},
                                 headers={"Accept-Language": "en"}), 400, "invalid", ["file"])
    assert "named .jpg but holds a PDF document" in body["message"]
    assert counts(clean_db) == before
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]
    r = api.post(url, WORKER, data={"file": [(io.BytesIO(tiny_png()), "扫描件.png"), (io.BytesIO(pdf), "photo.pdf")]})
    assert r.status_code == 201, r.get_data(as_text=True)
    assert [f["content_type"] for f in r.get_json()] == ["image/png", "application/pdf"]


@pytest.mark.parametrize("path", ["case", "pending"])
def test_a_file_too_large_and_named_as_another_type_is_refused_naming_both(api, app, clean_db, path):
    """A 12 MB PNG named .pdf, a 25 MB PDF named .jpg: the error names the size limit of what the
    content really is and the wrong name, both at once (renaming alone would meet the size refusal);
    nothing stored."""
    case = api.start()
    url = f"{V1}/cases/{case['id']}/attachments" if path == "case" else f"{V1}/attachments"
    root = Path(app.config["UPLOAD_FOLDER"])
    before = counts(clean_db)
    png = tiny_png()
    big_png = png + b"\0" * (12 * 1024 * 1024 - len(png))
    body = assert_error(api.post(url, WORKER, data={"file": [(io.BytesIO(png), "ok.png"),
                                                              (io.BytesIO(big_png), "扫描件.pdf")]}),
                        400, "invalid", ["file"])
    assert body["message"] == ("“扫描件.pdf”有两处问题：内容是 PNG 图片，大小为 12.0 MB，超过此类文件的上限 10 MB；"
                               "文件名为 .pdf，与内容不符。请选择不超过 10 MB 的文件，并改正文件名")
    assert body["fields"]["file"] == ["不能超过 10 MB", "文件名为 .pdf，但内容是 PNG 图片；请改正文件名"]
    big_pdf = b"%PDF-1.4\n" + b"\0" * (25 * 1024 * 1024)
    body = assert_error(api.post(url, WORKER, data={"file": (io.BytesIO(big_pdf), "photo.jpg")},
                                 headers={"Accept-Language": "en"}), 400, "invalid", ["file"])
    assert body["message"] == ("'photo.jpg' has two problems: it is 25.0 MB, over the 20 MB limit for a PDF "
                               "document, and it is named .jpg but holds a PDF document; choose a file of at most "
                               "20 MB and correct the file name")
    assert body["fields"]["file"] == ["at most 20 MB", "named .jpg but holds a PDF document"]
    # too large alone, rightly named: the size only
    body = assert_error(api.post(url, WORKER, data={"file": (io.BytesIO(big_pdf), "photo.pdf")}),
                        400, "invalid", ["file"])
    assert "超过上限 20 MB" in body["message"] and body["fields"]["file"] == ["不能超过 20 MB"]
    assert counts(clean_db) == before
    assert not root.exists() or not [p for p in root.rglob("*") if p.is_file()]


def test_one_bad_file_refuses_the_whole_upload(api, app):
    case = api.start()
    r = api.post(f"{V1}/cases/{case['id']}/attachments", WORKER,
                 data={"file": [(io.BytesIO(tiny_png()), "ok.png"), (io.BytesIO(b"text"), "bad.png")]})
    assert_error(r, 400, "invalid", ["file"])
    assert api.get(f"{V1}/cases/{case['id']}", WORKER).get_json()["attachments"] == []


def test_upload_without_a_file_is_400(api):
    case = api.start()
    url = f"{V1}/cases/{case['id']}/attachments"
    assert_error(api.post(url, WORKER, data={}, content_type="multipart/form-data"), 400, "invalid", ["file"])
    assert_error(api.post(url, WORKER, data={"note": "no file"}, content_type="multipart/form-data"),
                 400, "invalid", ["note"])


@pytest.mark.parametrize("disposition", ["form-data", 'form-data; filename="x.png"'])
def test_a_part_without_a_name_is_400(api, disposition):
    """Found by schemathesis: a multipart part without a name (read as the key None) was a 500."""
    case = api.start()
    body = (f'--b\r\nContent-Disposition: {disposition}\r\n\r\nnull\r\n'
            '--b\r\nContent-Disposition: form-data; name="note"\r\n\r\nx\r\n--b--\r\n').encode()
    for url in (f"{V1}/cases/{case['id']}/attachments", f"{V1}/attachments"):
        r = api.post(url, WORKER, data=body, content_type="multipart/form-data; boundary=b")
        assert_error(r, 400, "invalid", ["", "note"])


def test_too_many_files_is_400(api):
    case = api.start()
    files = [(io.BytesIO(tiny_png()), f"{i}.png") for i in range(11)]
    assert_error(api.post(f"{V1}/cases/{case['id']}/attachments", WORKER, data={"file": files}), 400, "invalid")


def test_oversize_uploads(api, app):
    case = api.start()
    url = f"{V1}/cases/{case['id']}/attachments"
    big_png = tiny_png() + b"\x00" * (10 * 1024 * 1024)
    assert_error(api.post(url, WORKER, data={"file": (io.BytesIO(big_png), "big.png")}), 400, "invalid", ["file"])
    app.config["MAX_CONTENT_LENGTH"] = 4096
    assert_error(api.post(url, WORKER, data={"file": (io.BytesIO(tiny_png() + b"\x00" * 8192), "a.png")}),
                 413, "too_large")


def test_upload_needs_multipart_and_a_part_in_the_case(api):
    case = api.start()
    url = f"{V1}/cases/{case['id']}/attachments"
    assert_error(api.post(url, WORKER, json={"file": "aGVsbG8="}), 415, "unsupported_media_type")
    assert_error(api.post(url, WORKER, data=tiny_png(), content_type="image/png"), 415)
    # the town handler has no open task in this case
    assert_error(api.post(url, "lxz_cg", data={"file": (io.BytesIO(tiny_png()), "a.png")}), 403, "forbidden")
    # the grid leader has (micro_mediation)
    assert api.post(url, LEADER, data={"file": (io.BytesIO(tiny_png()), "a.png")}).status_code == 201


def test_pending_upload_joins_the_case_through_the_start_form(api):
    r = api.post(f"{V1}/attachments", WORKER, data={"file": (io.BytesIO(tiny_png()), "scene.png")})
    assert r.status_code == 201
    (att,) = r.get_json()
    case = api.start(photos=[att["id"]])
    assert [a["id"] for a in api.get(f"{V1}/cases/{case['id']}", WORKER).get_json()["attachments"]] == [att["id"]]
    # another worker cannot use someone else's pending upload
    r = api.post(f"{V1}/attachments", OTHER_WORKER, data={"file": (io.BytesIO(tiny_png()), "x.png")})
    theirs = r.get_json()[0]["id"]
    assert_error(api.post(f"{V1}/cases", WORKER, json={"process": "grid_matter", "grid": GRID,
                                                       "data": {**REPORT, "photos": [theirs]}}),
                 400, "invalid", ["photos"])


def test_a_file_named_twice_is_refused_and_an_unknown_one_in_the_callers_language(api, clean_db):
    """The photos field listed one upload twice and the case kept both ids: the app showed
    the scene photo twice. The form's JSON Schema now says `uniqueItems` and `maxItems`, and
    the server refuses what the schema refuses; the message of an unknown id came in English
    to a Chinese caller."""
    (att,) = api.post(f"{V1}/attachments", WORKER, data={"file": (io.BytesIO(tiny_png()), "scene.png")}).get_json()
    photos = api.get(f"{V1}/processes", WORKER).get_json()
    (start_form,) = [p["start_form"] for p in photos["items"] if p["key"] == "grid_matter"]
    prop = start_form["schema"]["properties"]["photos"]
    assert prop["uniqueItems"] is True and prop["maxItems"] == 20 and prop["items"]["maxLength"] == 64
    before = counts(clean_db)
    start = {"process": "grid_matter", "grid": GRID, "data": {**REPORT, "photos": [att["id"], att["id"]]}}
    zh = assert_error(api.post(f"{V1}/cases", WORKER, json=start), 400, "invalid")
    assert zh["fields"] == {"photos": ["每个文件只能附一次。"]}
    en = assert_error(api.post(f"{V1}/cases", WORKER, json=start, headers={"Accept-Language": "en"}), 400)
    assert en["fields"] == {"photos": ["Attach each file once."]}
    many = {**start, "data": {**REPORT, "photos": [f"{i:08d}-0000-0000-0000-000000000000" for i in range(21)]}}
    assert assert_error(api.post(f"{V1}/cases", WORKER, json=many), 400)["fields"] == {"photos": ["最多附 20 个文件。"]}
    unknown = "00000000-0000-0000-0000-000000000000"
    body = assert_error(api.post(f"{V1}/cases", WORKER, json={**start, "data": {**REPORT, "photos": [unknown]}}), 400)
    assert body["fields"] == {"photos": [f"找不到所附文件 {unknown}，请重新上传。"]}
    assert counts(clean_db) == before
    case = api.start(photos=[att["id"]])
    assert api.get(f"{V1}/cases/{case['id']}", WORKER).get_json()["data"]["photos"] == [att["id"]]


@pytest.mark.parametrize("sent,stored", [
    ("2026-03-02T07:00:00.250Z", "2026-03-02T15:00:00+08:00"),      # an app's toISOString(): UTC
    ("2026-03-02T15:00:00+08:00", "2026-03-02T15:00:00+08:00"),
    ("2026-03-02T15:00:00", "2026-03-02T15:00:00+08:00"),            # no offset: China time, as the pages
    ("2026-03-02T09:00:00+02:00", "2026-03-02T15:00:00+08:00"),
])
def test_a_time_in_a_form_is_kept_in_china_time_whatever_offset_the_app_sent(api, clean_db, sent, stored):
    """Every moment the API gives is +08:00 to the second; a handled_at sent in UTC was kept
    and given back as '…T07:00:00.250000+00:00' in the case's data and history, a naive one
    without any offset."""
    case = api.start(category="safety_hazard", colour="yellow")
    (dispatch,) = [t["id"] for t in case["open_tasks"] if t["spec_id"] == "town_dispatch"]
    r = api.post(f"{V1}/tasks/{dispatch}/complete", DISPATCHER, json={"data": {"department": "chengguan"}})
    (handle,) = [t["id"] for t in r.get_json()["open_tasks"] if t["spec_id"] == "department_handle"]
    r = api.post(f"{V1}/tasks/{handle}/complete", "lxz_cg",
                 json={"data": {"handling_result": "已清理楼道杂物", "handled_at": sent}})
    assert r.status_code == 200, r.get_data(as_text=True)
    full = api.get(f"{V1}/cases/{case['id']}", "lxz_cg").get_json()
    assert full["data"]["handled_at"] == stored
    done = [e for e in full["history"] if e["type"] == "task_completed" and e["bpmn_id"] == "department_handle"]
    assert done[0]["data"]["handled_at"] == stored


# ------------------------------------------------------------------ errors are JSON

@pytest.mark.parametrize("method,path,status", [
    ("get", "/api/v1/nope", 404), ("get", "/api/v2/tasks", 404), ("get", "/api/", 404), ("get", "/api", 404),
    ("post", "/api/v1/nope", 404), ("delete", "/api/v1/tasks", 405), ("get", "/api/v1/auth/token", 405),
    ("put", "/api/v1/cases/1", 405), ("get", "/api/v1/tasks/00000000-0000-0000-0000-000000000000/complete", 405),
])
def test_unknown_api_routes_and_methods_are_json(api, method, path, status):
    r = getattr(api.client, method)(path, headers=api.headers(WORKER))
    assert_error(r, status)
    if status == 405:
        assert r.headers["Allow"]


def test_unexpected_errors_are_json_500_and_logged(api, service, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("database on fire")
    monkeypatch.setattr(service, "inbox_page", boom)
    r = api.get(f"{V1}/tasks", WORKER)
    body = assert_error(r, 500, "internal_error")
    assert "fire" not in body["message"]
    assert any("unhandled API error" in rec.message for rec in caplog.records)


def test_engine_process_error_is_json(api, service, monkeypatch):
    from engine.errors import ProcessError

    def fail(*args, **kwargs):
        raise ProcessError("the script of 'decide_dispatch' failed")
    monkeypatch.setattr(service, "start_case", fail)
    r = api.post(f"{V1}/cases", WORKER, json={"process": "grid_matter", "grid": GRID, "data": REPORT})
    assert_error(r, 422, "process_error")


# ------------------------------------------------------------------ OpenAPI and docs

def _resolve(spec, ref):
    node = spec
    for part in ref.lstrip("#/").split("/"):
        node = node[part]
    return node


def _walk_refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from _walk_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk_refs(value)


def test_openapi_document_names_every_error_code_the_api_answers(api):
    """An app branches on `error`: the document listed neither `token_revoked` (a password
    changed on another device) nor `unavailable` (503), and its introduction said a token
    stops working only when it expires or the account is deactivated."""
    from engine.errors import CredentialsChanged, EngineError
    from engine.login_guard import LoginLocked
    from web.api import ENGINE_STATUS, HTTP_CODES
    spec = api.client.get(f"{V1}/openapi.json").get_json()
    listed = spec["components"]["schemas"]["Error"]["properties"]["error"]["description"]
    answered = (set(HTTP_CODES.values()) | {code for _cls, _status, code in ENGINE_STATUS}
                | {CredentialsChanged.code, LoginLocked.code, "token_expired", "internal_error", "unavailable"})
    assert answered - {EngineError.code} <= set(re.findall(r"[a-z_]+", listed.split(":", 1)[1]))
    assert "token_revoked" in spec["components"]["responses"]["Unauthorized"]["description"]
    assert "token_revoked" in spec["info"]["description"] and "password" in spec["info"]["description"]


def test_openapi_document_covers_every_route(api, app):
    r = api.client.get(f"{V1}/openapi.json")
    assert r.status_code == 200
    spec = r.get_json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] and spec["info"]["version"]
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "itsdangerous",
        "description": "token from POST /api/v1/auth/token"}

    routes = [rule for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")]
    assert len(routes) >= 12
    for rule in routes:
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        assert path in spec["paths"], path
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            op = spec["paths"][path][method.lower()]
            assert op["summary"] and op["operationId"] and op["responses"]
            declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            assert declared == set(rule.arguments), (path, declared)
            codes = set(op["responses"])
            assert "500" in codes
            assert any(c.startswith("2") for c in codes)
            if op["security"]:
                assert "401" in codes
            if "requestBody" in op:
                assert {"400", "413", "415"} <= codes
    ops = [op for methods in spec["paths"].values() for op in methods.values()]
    assert len({op["operationId"] for op in ops}) == len(ops)
    for path, expected in [("/api/v1/tasks/{task_id}/complete", {"400", "401", "403", "404", "409"}),
                           ("/api/v1/cases", {"201", "400", "401", "403"}),
                           ("/api/v1/cases/{ref}/attachments", {"201", "400", "403", "404", "413", "415"})]:
        assert expected <= set(spec["paths"][path]["post"]["responses"]), path
    assert spec["paths"]["/api/v1/auth/token"]["post"]["security"] == []
    assert spec["components"]["parameters"]["AcceptLanguage"]["in"] == "header"
    inbox_params = {p.get("name") for p in spec["paths"]["/api/v1/tasks"]["get"]["parameters"]}
    assert {"process", "task", "colour", "overdue", "q", "limit", "offset"} <= inbox_params

    for ref in _walk_refs(spec):
        assert _resolve(spec, ref) is not None, ref
    error = spec["components"]["schemas"]["Error"]
    assert {"error", "message", "fields"} <= set(error["properties"])
    for schema in spec["components"]["schemas"].values():
        import jsonschema
        jsonschema.Draft4Validator.check_schema(schema)


def test_openapi_validates_with_openapi_spec_validator(api):
    import openapi_spec_validator  # a test dependency (setup.cfg [test])
    openapi_spec_validator.validate(api.client.get(f"{V1}/openapi.json").get_json())


def test_docs_page_uses_local_assets_only(api):
    r = api.client.get("/api/docs")
    assert r.status_code == 200 and r.mimetype == "text/html"
    html = r.get_data(as_text=True)
    assert "/api/docs/assets/swagger-ui.css" in html and "/api/docs/assets/swagger-ui-bundle.js" in html
    assert "/api/v1/openapi.json" in html
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/") and not s.startswith("//") for s in sources), sources
    init = api.client.get("/api/docs/init.js")
    assert init.status_code == 200 and "validatorUrl: null" in init.get_data(as_text=True)
    assert "/api/v1/openapi.json" in init.get_data(as_text=True)


def test_docs_assets_served_from_swagger_ui_dist_only(api, app):
    assert (Path(app.config["NODE_MODULES"]) / "swagger-ui-dist" / "swagger-ui.css").is_file(), \
        "node_modules missing: make test runs npm ci"
    r = api.client.get("/api/docs/assets/swagger-ui.css")
    assert r.status_code == 200 and r.mimetype == "text/css" and b".swagger-ui" in r.data
    assert api.client.get("/api/docs/assets/swagger-ui-bundle.js").status_code == 200
    for path in ["../package.json", "..%2Fpackage.json", "../../package.json", "%2e%2e/package.json",
                 "../swagger-ui-dist/../bpmn-js/package.json", "/etc/passwd", "nope.css"]:
        r = api.client.get(f"/api/docs/assets/{path}", follow_redirects=True)
        assert r.status_code == 404, path
        assert b"dependencies" not in r.data and b"root:" not in r.data
