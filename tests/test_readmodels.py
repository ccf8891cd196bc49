"""engine/readmodels.py: the web layer's small reads (labels, the request's principal),
and what the API's hot paths cost around the engine's own transaction."""
from __future__ import annotations

import pytest
from sqlalchemy import event, select

from engine import readmodels
from engine.access import is_read_only
from engine.models import JurisdictionNode, User


def _user(db, username):
    with db.read_session() as s:
        return s.scalar(select(User).where(User.username == username))


def _node(db, code):
    with db.read_session() as s:
        return s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code))


def test_labels_names_people_and_units_in_one_statement(db):
    worker, leader = _user(db, "lx_wgy1"), _user(db, "lx_wgz1")
    grid = _node(db, "linxi-xinguang-g1")
    seen = []  # statements, not SQLite's BEGIN IMMEDIATE
    listener = lambda *args: None if args[2].startswith("BEGIN") else seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        names, nodes = readmodels.labels(db, [worker.id, leader.id, None, worker.id, 999_999],
                                         [grid.id, None, 999_999])
        assert len(seen) == 1
        assert names == {worker.id: worker.display_name, leader.id: leader.display_name}
        assert nodes == {grid.id: {"id": grid.id, "code": "linxi-xinguang-g1", "name": grid.name}}
        # one kind only, or nothing at all
        assert readmodels.labels(db, [worker.id]) == ({worker.id: worker.display_name}, {})
        assert readmodels.labels(db, node_ids=[grid.id])[1][grid.id]["code"] == "linxi-xinguang-g1"
        seen.clear()
        assert readmodels.labels(db, [None, True, -1], []) == ({}, {})
        assert seen == []
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)


def test_labels_known_to_the_org_view_cost_no_statement(db):
    from engine.org_cache import OrgView
    worker = _user(db, "lx_wgy1")
    grid = _node(db, "linxi-xinguang-g1")
    view = OrgView(generation=1)
    seen = []
    listener = lambda *args: None if args[2].startswith("BEGIN") else seen.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        first = readmodels.labels(db, [worker.id, 999_999], [grid.id], org=view)
        assert len(seen) == 1
        assert first == ({worker.id: worker.display_name}, {grid.id: {"id": grid.id, "code": grid.code, "name": grid.name}})
        seen.clear()
        again = readmodels.labels(db, [worker.id], [grid.id], org=view)
        assert again == first and seen == []
        # an answer is the caller's to change: the view keeps its own copy
        again[1][grid.id]["name"] = "changed"
        assert readmodels.labels(db, node_ids=[grid.id], org=view)[1][grid.id]["name"] == grid.name
        # an id the view does not know is read (and only that one)
        readmodels.labels(db, [worker.id, 999_999], [], org=view)
        assert len(seen) == 1
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)


def test_active_principal_has_the_roles_and_stops_a_deactivated_account(clean_db):
    db = clean_db
    worker = _user(db, "lx_wgy1")
    principal = readmodels.active_principal(db, worker.id)
    assert (principal.id, principal.username, principal.display_name) == (worker.id, "lx_wgy1", worker.display_name)
    assert [r.role for r in principal.roles] == ["grid_worker"] and not is_read_only(principal)
    assert is_read_only(readmodels.active_principal(db, _user(db, "lxx_dc").id))   # the county's auditor
    assert readmodels.active_principal(db, 999_999) is None
    assert readmodels.active_principal(db, True) is None and readmodels.active_principal(db, 2 ** 40) is None
    with db.unit_of_work() as s:
        s.get(User, worker.id).active = False
    try:
        assert readmodels.active_principal(db, worker.id) is None
    finally:
        with db.unit_of_work() as s:
            s.get(User, worker.id).active = True


@pytest.fixture
def app_and_counter(app):
    service = app.extensions["gridflow"]
    outside = {"n": 0, "depth": 0}

    def count(_conn, _cursor, statement, *_args):
        if outside["depth"] == 0 and not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE
            outside["n"] += 1

    def engine_call(fn):
        def wrapped(*args, **kwargs):
            outside["depth"] += 1
            try:
                return fn(*args, **kwargs)
            finally:
                outside["depth"] -= 1
        return wrapped

    # statements the engine's transitions issue are theirs; count only the API's own
    service.start_case = engine_call(service.start_case)
    service.complete_task = engine_call(service.complete_task)
    event.listen(service.db.engine, "before_cursor_execute", count)
    yield app, outside
    event.remove(service.db.engine, "before_cursor_execute", count)


def test_a_step_through_the_api_costs_no_statement_besides_the_transition(app_and_counter):
    """The transition's own first statement vouches for the account (no read of it
    before); the answer reads the names it shows at most once, and not at all once the
    organisation view of the transition knows them. Rebuilding the case page for the
    answer (a dozen statements and a deserialized workflow) is what this guards against."""
    app, outside = app_and_counter
    http = app.test_client()
    auth = {}
    for name in ("lx_wgy1", "lx_wgz1"):
        token = http.post("/api/v1/auth/token", json={"username": name, "password": "demo123"}).get_json()["token"]
        auth[name] = {"Authorization": f"Bearer {token}"}
    report = {"category": "dispute", "colour": "blue", "description": "两户村民因宅基地边界发生争执",
              "location": "新光村三组", "parties": "李某, 王某"}
    outside["n"] = 0
    r = http.post("/api/v1/cases", json={"process": "grid_matter", "grid": "linxi-xinguang-g1", "data": report},
                  headers=auth["lx_wgy1"])
    assert r.status_code == 201, r.get_data(as_text=True)
    assert outside["n"] <= 1
    case = r.get_json()
    assert case["open_tasks"][0]["candidate_unit"] and case["grid"]["code"] == "linxi-xinguang-g1"
    assert case["created_by"]["display_name"] == _user_name(app, "lx_wgy1")

    outside["n"] = 0
    task = case["open_tasks"][0]["id"]
    r = http.post(f"/api/v1/tasks/{task}/complete", headers=auth["lx_wgz1"],
                  json={"data": {"resolved": True, "mediation_note": "双方达成一致"}})
    assert r.status_code == 200, r.get_data(as_text=True)
    assert outside["n"] <= 1
    assert [t["spec_id"] for t in r.get_json()["open_tasks"]] == ["record_result"]

    # a second case: every name is known by now
    outside["n"] = 0
    r = http.post("/api/v1/cases", json={"process": "grid_matter", "grid": "linxi-xinguang-g1", "data": report},
                  headers=auth["lx_wgy1"])
    assert r.status_code == 201 and outside["n"] == 0
    assert r.get_json()["created_by"]["display_name"] == _user_name(app, "lx_wgy1")


def test_a_renamed_official_is_named_anew_in_the_next_answer(app):
    """The names come from the organisation view; a rename changes the org
    generation, so the next step's answer reads the new name."""
    db = app.extensions["gridflow"].db
    http = app.test_client()
    token = http.post("/api/v1/auth/token", json={"username": "lx_wgy1", "password": "demo123"}).get_json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    report = {"category": "dispute", "colour": "blue", "description": "两户村民因宅基地边界发生争执",
              "location": "新光村三组", "parties": "李某, 王某"}
    start = {"process": "grid_matter", "grid": "linxi-xinguang-g1", "data": report}
    before = http.post("/api/v1/cases", json=start, headers=auth).get_json()["created_by"]["display_name"]
    worker_id = _user(db, "lx_wgy1").id
    with db.unit_of_work() as s:
        s.get(User, worker_id).display_name = "改名后的网格员"
    try:
        after = http.post("/api/v1/cases", json=start, headers=auth).get_json()["created_by"]["display_name"]
        assert before != "改名后的网格员" and after == "改名后的网格员"
    finally:
        with db.unit_of_work() as s:
            s.get(User, worker_id).display_name = before


def _user_name(app, username):
    return _user(app.extensions["gridflow"].db, username).display_name
