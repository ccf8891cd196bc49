"""The organisation in memory between transactions (`engine.org_cache`).

A transition reuses who-holds-what answers only while the database's org
generation is unchanged; triggers bump it on every change to nodes, users and
role assignments, by whatever writer. These tests change the organisation the
way an administrator with psql would (plain SQL, another transaction) and check
the very next transition sees it.
"""
from __future__ import annotations

import pytest
from sqlalchemy import event, select, text

from engine.errors import PermissionDenied
from engine.models import OrgGeneration, User
from engine.service import WorkflowService
from tests.conftest import deploy_fixture

GRID = "linxi-xinguang-g1"
WORKER = "lx_wgy1"


def _generation(db) -> int:
    with db.read_session() as session:
        return session.scalar(select(OrgGeneration.generation))


def _sql(db, statement: str, **params) -> None:
    with db.unit_of_work() as session:
        session.execute(text(statement), params)


def _user_id(db, username) -> int:
    with db.read_session() as session:
        return session.scalar(select(User.id).where(User.username == username))


@pytest.fixture
def loop_service(clean_db, clock, fixture_forms):
    deploy_fixture(clean_db, "loop.bpmn", forms=fixture_forms)
    return WorkflowService(clean_db, forms=fixture_forms)


@pytest.mark.parametrize("statement", [
    "UPDATE app_user SET active = :no WHERE username = 'lx_wgz1'",
    "UPDATE app_user SET display_name = 'x' WHERE username = 'lx_wgz1'",
    # a bearer token names the password: a new one must reach the snapshots (migration 0018)
    "UPDATE app_user SET password_hash = password_hash || 'x' WHERE username = 'lx_wgz1'",
    "UPDATE role_assignment SET role = role WHERE id = (SELECT min(id) FROM role_assignment)",
    "UPDATE jurisdiction_node SET name = name WHERE code = 'linxi-xinguang-g1'",
])
def test_every_change_to_the_organisation_moves_the_generation(db, statement):
    with db.read_session() as session:
        name, stored = session.execute(select(User.display_name, User.password_hash)
                                       .where(User.username == "lx_wgz1")).one()
    before = _generation(db)
    _sql(db, statement, no=False)
    try:
        assert _generation(db) != before
    finally:
        _sql(db, "UPDATE app_user SET active = :yes, display_name = :name, password_hash = :hash "
                 "WHERE username = 'lx_wgz1'", yes=True, name=name, hash=stored)


def test_a_change_to_what_no_snapshot_holds_leaves_the_generation(db):
    before = _generation(db)
    _sql(db, "UPDATE app_user SET password_changed_at = password_changed_at WHERE username = 'lx_wgz1'")
    assert _generation(db) == before


def test_a_steady_case_asks_nothing_of_the_organisation(loop_service, clean_db):
    view = loop_service.start_case("loop", GRID, {}, WORKER)
    view = loop_service.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    seen = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(clean_db.engine, "before_cursor_execute", record)
    try:
        loop_service.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    finally:
        event.remove(clean_db.engine, "before_cursor_execute", record)
    org_reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")
                 and any(f"FROM {t}" in s for t in ("app_user", "role_assignment", "jurisdiction_node"))]
    assert seen and org_reads == []


def test_a_user_deactivated_by_plain_sql_is_refused_at_the_next_step(loop_service, clean_db):
    view = loop_service.start_case("loop", GRID, {}, WORKER)
    view = loop_service.complete_task(view.open_items[0].id, {"again": True}, WORKER)  # snapshot cached
    _sql(clean_db, "UPDATE app_user SET active = :no WHERE username = :name", no=False, name=WORKER)
    try:
        with pytest.raises(PermissionDenied):
            loop_service.complete_task(view.open_items[0].id, {"again": True}, WORKER)
    finally:
        _sql(clean_db, "UPDATE app_user SET active = :yes WHERE username = :name", yes=True, name=WORKER)
    loop_service.complete_task(view.open_items[0].id, {"again": True}, WORKER)


def test_a_role_revoked_by_plain_sql_moves_the_next_task_elsewhere(loop_service, clean_db):
    """The loop's task goes to the grid's grid workers; with the only holder's role revoked,
    the next round's task falls back to a dispatcher above, flagged unresolved."""
    view = loop_service.start_case("loop", GRID, {}, WORKER)
    first = view.open_items[0]
    assert not first.unresolved
    uid = _user_id(clean_db, WORKER)
    with clean_db.read_session() as session:
        saved = session.execute(text("SELECT id, user_id, role, node_id FROM role_assignment "
                                     "WHERE user_id = :uid AND role = :role AND node_id = :node"),
                                {"uid": uid, "role": first.role, "node": first.candidate_node_id}).all()
    assert saved, "the demo grid worker holds the loop's lane"
    others = _holders(clean_db, first.role, first.candidate_node_id)
    _sql(clean_db, "DELETE FROM role_assignment WHERE role = :role AND node_id = :node",
         role=first.role, node=first.candidate_node_id)
    try:
        # the worker no longer holds the lane: refused, then a dispatcher-side check of the fallback
        with pytest.raises(PermissionDenied):
            loop_service.complete_task(first.id, {"again": True}, WORKER)
    finally:
        for user_id in others:
            _sql(clean_db, "INSERT INTO role_assignment (user_id, role, node_id) VALUES (:u, :r, :n)",
                 u=user_id, r=first.role, n=first.candidate_node_id)
    view = loop_service.complete_task(first.id, {"again": True}, WORKER)
    assert not view.open_items[0].unresolved


def test_a_role_granted_by_plain_sql_is_used_by_the_next_task(loop_service, clean_db):
    view = loop_service.start_case("loop", GRID, {}, WORKER)
    first = view.open_items[0]
    holders = _holders(clean_db, first.role, first.candidate_node_id)
    _sql(clean_db, "DELETE FROM role_assignment WHERE role = :role AND node_id = :node",
         role=first.role, node=first.candidate_node_id)
    # a dispatcher of the town would now get the task; restore by plain SQL before the step
    for user_id in holders:
        _sql(clean_db, "INSERT INTO role_assignment (user_id, role, node_id) VALUES (:u, :r, :n)",
             u=user_id, r=first.role, n=first.candidate_node_id)
    view = loop_service.complete_task(first.id, {"again": True}, WORKER)
    nxt = view.open_items[0]
    assert (nxt.role, nxt.candidate_node_id, nxt.unresolved) == (first.role, first.candidate_node_id, False)


def test_the_next_task_falls_back_when_its_lane_was_emptied_by_plain_sql(loop_service, clean_db):
    view = loop_service.start_case("loop", GRID, {}, WORKER)
    first = view.open_items[0]
    holders = _holders(clean_db, first.role, first.candidate_node_id)
    # the worker claims the task, then loses the role: the claimed task stays theirs to finish
    loop_service.claim(first.id, WORKER)
    _sql(clean_db, "DELETE FROM role_assignment WHERE role = :role AND node_id = :node",
         role=first.role, node=first.candidate_node_id)
    try:
        view = loop_service.complete_task(first.id, {"again": True}, WORKER)
        nxt = view.open_items[0]
        assert nxt.unresolved and nxt.role == "center_dispatcher"
    finally:
        for user_id in holders:
            _sql(clean_db, "INSERT INTO role_assignment (user_id, role, node_id) VALUES (:u, :r, :n)",
                 u=user_id, r=first.role, n=first.candidate_node_id)


def _holders(db, role, node_id) -> list[int]:
    with db.read_session() as session:
        return list(session.scalars(text("SELECT user_id FROM role_assignment WHERE role = :r AND node_id = :n"),
                                    {"r": role, "n": node_id}))


def _org_reads(db, action) -> list[str]:
    seen = []

    def record(conn, cursor, statement, *args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", record)
    try:
        action()
    finally:
        event.remove(db.engine, "before_cursor_execute", record)
    assert seen
    return [s for s in seen if s.lstrip().upper().startswith("SELECT")
            and any(f"FROM {t}" in s for t in ("app_user", "role_assignment", "jurisdiction_node"))]


def test_a_steady_start_asks_nothing_of_the_organisation(loop_service, clean_db):
    loop_service.start_case("loop", GRID, {}, WORKER)
    assert _org_reads(clean_db, lambda: loop_service.start_case("loop", GRID, {}, WORKER)) == []


def test_a_case_number_prefix_changed_by_plain_sql_is_used_by_the_next_case(loop_service, clean_db):
    first = loop_service.start_case("loop", GRID, {}, WORKER).business_key
    prefix = first.split("-")[0]
    with clean_db.read_session() as session:
        node_id = session.scalar(text("SELECT id FROM jurisdiction_node WHERE key_prefix = :p"), {"p": prefix})
    _sql(clean_db, "UPDATE jurisdiction_node SET key_prefix = 'ZZ' WHERE id = :id", id=node_id)
    try:
        assert loop_service.start_case("loop", GRID, {}, WORKER).business_key.startswith("ZZ-")
    finally:
        _sql(clean_db, "UPDATE jurisdiction_node SET key_prefix = :p WHERE id = :id", p=prefix, id=node_id)
    assert loop_service.start_case("loop", GRID, {}, WORKER).business_key.startswith(f"{prefix}-")
