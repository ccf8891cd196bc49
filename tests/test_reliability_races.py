"""Races: many officials claim and complete the same tasks at the same moment.

Each task must be completed exactly once, every loser must get a Conflict (409
through the API), never a PermissionDenied, a 500 or a lost update, and the
audit trail must hold exactly one claim and one completion per task.

The tasks come from a one-step process whose task names its candidates in the
case data (`candidateUsers`), so that many demo officials are candidates of
every task at once. PostgreSQL runs 50 threads; SQLite, which has one writer,
fewer.
"""
from __future__ import annotations

import random
import re
import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from engine.db import Database
from engine.deploy import deploy_files
from engine.errors import Conflict
from engine.models import AuditEvent, Case, WorkItem
from engine.service import WorkflowService

GRID = "linxi-xinguang-g1"
WORKERS = ["lx_wgy1", "lx_wgy2", "lx_wgz1", "lxz_pd", "lxz_cg", "lxz_pcs", "lxz_sfs", "lxx_pd", "lxx_cg", "cf_pd"]

RACE_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="defs_race"
  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="reliab_race" name="Race: many candidates, one task" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l1" name="grid.grid_worker">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef><bpmn:flowNodeRef>work</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="work" name="Handle it">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="candidateUsers" value="workers"/>
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="work"/>
    <bpmn:sequenceFlow id="f2" sourceRef="work" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


@pytest.fixture
def race_service(service):
    """The service on a pool with a connection per racing thread: the races under test are
    for rows, not for pool slots (a thread starved of a connection for 30 s on a loaded
    machine is the pool's timeout, not a lost update)."""
    with service.db.unit_of_work() as session:
        deploy_files(session, {"reliab_race.bpmn": RACE_BPMN}, None, actor="tests")
    db = Database(service.db.url, pool_size=60)
    yield WorkflowService(db, forms=service.forms)
    db.dispose()


def start_cases(service, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        view = service.start_case("reliab_race", GRID, {"workers": ",".join(WORKERS)}, "lx_wgy1")
        (item,) = view.open_items
        ids.append(item.id)
    return ids


def audit_counts(db, case_ids) -> Counter:
    with db.read_session() as s:
        rows = s.execute(select(AuditEvent.event_type, AuditEvent.work_item_id)
                         .where(AuditEvent.case_id.in_(case_ids))).all()
    return Counter(rows)


def run_threads(n: int, target) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(n)

    def body(index):
        try:
            barrier.wait()
            target(index)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a racing thread hung"
    return errors


@pytest.mark.slow
def test_many_officials_claim_and_complete_the_same_tasks(race_service):
    service = race_service
    postgres = service.db.is_postgres
    threads, tasks = (50, 100) if postgres else (8, 40)
    task_ids = start_cases(service, tasks)
    lock = threading.Lock()
    claimed: dict[str, list[str]] = {t: [] for t in task_ids}     # task -> users whose claim returned
    completed: dict[str, list[str]] = {t: [] for t in task_ids}   # task -> users whose completion returned
    losers: Counter = Counter()

    def official(index):
        user = WORKERS[index % len(WORKERS)]
        order = list(task_ids)
        random.Random(index).shuffle(order)
        for task_id in order:
            try:
                service.claim(task_id, user)
                with lock:
                    claimed[task_id].append(user)
            except Conflict:
                with lock:
                    losers["claim"] += 1
            try:
                service.complete_task(task_id, {"note": f"by {user}"}, user)
                with lock:
                    completed[task_id].append(user)
            except Conflict:
                with lock:
                    losers["complete"] += 1

    errors = run_threads(threads, official)
    assert errors == [], f"{len(errors)} non-Conflict errors, first: {errors[0]!r}"

    for task_id in task_ids:
        assert len(completed[task_id]) == 1, (task_id, completed[task_id])
    attempts = threads * tasks
    assert losers["complete"] == attempts - tasks
    assert losers["claim"] == attempts - sum(len(v) for v in claimed.values())
    for task_id in task_ids:
        # the claim returns for the winner (and again, idempotently, for the winner's other threads) only
        assert set(claimed[task_id]) == set(completed[task_id]), (task_id, claimed[task_id])

    with service.db.read_session() as s:
        items = {i.id: i for i in s.scalars(select(WorkItem).where(WorkItem.id.in_(task_ids)))}
        case_ids = [i.case_id for i in items.values()]
        statuses = Counter(s.scalars(select(Case.status).where(Case.id.in_(case_ids))))
    assert statuses == Counter({"completed": tasks})
    assert all(i.status == "completed" and i.assignee_id == i.completed_by_id for i in items.values())

    counts = audit_counts(service.db, case_ids)
    for task_id in task_ids:
        assert counts[("task_completed", task_id)] == 1, task_id
        assert counts[("task_claimed", task_id)] == 1, task_id
    assert sum(v for (kind, _), v in counts.items() if kind == "task_completed") == tasks
    assert sum(v for (kind, _), v in counts.items() if kind == "case_closed") == tasks


@pytest.mark.slow
def test_concurrent_completions_without_claiming(race_service):
    """Candidates complete an unclaimed task straight away (the inbox allows it): one wins."""
    service = race_service
    threads, tasks = (50, 30) if service.db.is_postgres else (6, 15)
    task_ids = start_cases(service, tasks)
    wins: Counter = Counter()
    lock = threading.Lock()

    def official(index):
        user = WORKERS[index % len(WORKERS)]
        for task_id in task_ids:
            try:
                service.complete_task(task_id, {"by": user}, user)
                with lock:
                    wins[task_id] += 1
            except Conflict:
                pass

    assert run_threads(threads, official) == []
    assert all(wins[t] == 1 for t in task_ids), wins
    with service.db.read_session() as s:
        case_ids = list(s.scalars(select(WorkItem.case_id).where(WorkItem.id.in_(task_ids))))
        done = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.case_id.in_(case_ids), AuditEvent.event_type == "task_completed"))
    assert done == tasks


@pytest.mark.slow
def test_api_losers_get_409(race_service, app):
    """The same race through /api/v1: one 200 per task, every other answer a JSON 409."""
    service = race_service
    threads, tasks = (20, 10) if service.db.is_postgres else (6, 6)
    task_ids = start_cases(service, tasks)
    tokens = {}
    client = app.test_client()
    for user in WORKERS:
        r = client.post("/api/v1/auth/token", json={"username": user, "password": "demo123"})
        assert r.status_code == 200
        tokens[user] = r.get_json()["token"]
    statuses: dict[str, Counter] = {t: Counter() for t in task_ids}
    bodies = []
    lock = threading.Lock()

    def official(index):
        user = WORKERS[index % len(WORKERS)]
        http = app.test_client()
        headers = {"Authorization": f"Bearer {tokens[user]}", "Accept-Language": "en"}
        for task_id in task_ids:
            action = "claim" if index % 2 else "complete"
            kwargs = {"json": {"data": {"by": user}}} if action == "complete" else {}
            r = http.post(f"/api/v1/tasks/{task_id}/{action}", headers=headers, **kwargs)
            if action == "claim" and r.status_code == 200:
                r = http.post(f"/api/v1/tasks/{task_id}/complete", headers=headers, json={"data": {"by": user}})
            with lock:
                statuses[task_id][r.status_code] += 1
                if r.status_code != 200:
                    bodies.append(r.get_json())

    assert run_threads(threads, official) == []
    for task_id in task_ids:
        assert statuses[task_id][200] == 1, statuses[task_id]
        assert set(statuses[task_id]) <= {200, 409}, statuses[task_id]
    assert bodies and all(b["error"] == "conflict" and b["message"] for b in bodies)


# ------------------------------------------------------------------ a stale read under the case lock

def _wait_until_blocked(db, second: threading.Thread, outcome: dict, timeout: float = 20.0) -> None:
    """Until another connection waits on a row lock (PostgreSQL), or `timeout`; fails at
    once, saying how, if the second official's call ended without waiting."""
    import time
    from sqlalchemy import text
    deadline = time.monotonic() + timeout
    with db.engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'")).scalar()
            # pg_stat_activity is read once per transaction: a new one for each look (else a
            # second official who blocks after the first look is never seen, on a busy machine)
            conn.rollback()
            if waiting:
                return
            if not second.is_alive():
                raise AssertionError(f"the second call ended without waiting for the case lock: {outcome}")
            time.sleep(0.05)
    raise AssertionError("the second call never waited for the case lock")


def _second_waits_for_first(service, first, second) -> dict:
    """Run `first(session)` in an open transaction, start `second()` in a thread, let it
    block on the case lock, commit the first, and return how the second ended."""
    outcome: dict = {}

    def run_second():
        try:
            second()
            outcome["result"] = "done"
        except Conflict:
            outcome["result"] = "conflict"
        except BaseException as exc:  # noqa: BLE001
            outcome["result"] = repr(exc)

    thread = threading.Thread(target=run_second)
    with service.db.unit_of_work() as session:
        first(session)
        thread.start()
        if service.db.is_postgres:
            _wait_until_blocked(service.db, thread, outcome)
        else:
            thread.join(0.5)                             # SQLite: waits for the write lock (BEGIN IMMEDIATE)
    thread.join(30)
    assert not thread.is_alive()
    return outcome


def test_a_completion_waiting_for_the_case_lock_sees_the_completion_it_waited_for(race_service):
    """The same official submits a task twice at once (a double tap, or the phone and the
    web page): the second submission waits for the first's case lock and must then find
    the task completed (Conflict), with one completion in the audit trail.

    On PostgreSQL this needs the work item and the state read after the lock is held: read
    in the statement that waited for it (READ COMMITTED re-reads only the locked row) they
    are as they were before the first completion, and the task would be completed twice."""
    service = race_service
    (task_id,) = start_cases(service, 1)
    outcome = _second_waits_for_first(
        service, lambda session: service._complete(session, task_id, {"n": 1}, "lx_wgz1"),
        lambda: service.complete_task(task_id, {"n": 2}, "lx_wgz1"))
    with service.db.read_session() as s:
        case_id = s.get(WorkItem, task_id).case_id
        done = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.work_item_id == task_id, AuditEvent.event_type == "task_completed"))
        closed = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.case_id == case_id, AuditEvent.event_type == "case_closed"))
    assert outcome == {"result": "conflict"}
    assert done == 1 and closed == 1


def test_a_claim_waiting_for_the_case_lock_sees_the_claim_it_waited_for(race_service):
    """Two candidates claim the same task; the second waits for the first's case lock.
    It must then see the first claim and get a Conflict (one task_claimed event).

    (A regression test of the PostgreSQL stale read: a work item joined into the statement
    that waits for the case lock keeps its pre-wait version, and the second claim would
    overwrite the first.)"""
    service = race_service
    (task_id,) = start_cases(service, 1)
    outcome = _second_waits_for_first(service, lambda session: service._claim(session, task_id, "lxz_pd"),
                                      lambda: service.claim(task_id, "lx_wgz1"))
    with service.db.read_session() as s:
        item = s.get(WorkItem, task_id)
        claims = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.work_item_id == task_id, AuditEvent.event_type == "task_claimed"))
        first = s.scalar(select(func.min(AuditEvent.actor_id)).where(AuditEvent.work_item_id == task_id,
                                                                    AuditEvent.event_type == "task_claimed"))
    assert outcome == {"result": "conflict"}
    assert claims == 1 and item.assignee_id == first


def test_a_step_that_did_not_wait_for_the_case_lock_reads_it_once(race_service):
    """Without a wait nothing changed the case between the statement's snapshot and its
    lock (its row version says so), so the item and state read under the lock stand:
    one read of the item, no re-read. The two tests above cover the step that waited."""
    from sqlalchemy import event
    service = race_service
    first, second, third = start_cases(service, 3)
    service.claim(first, "lx_wgz1")                     # warms the organisation view
    seen = []

    def on_statement(_conn, _cursor, statement, *_args):
        if re.search(r"\bFROM work_item\b(?!_)", statement):    # the item itself, not its candidates
            seen.append(statement)

    event.listen(service.db.engine, "before_cursor_execute", on_statement)
    try:
        service.claim(second, "lx_wgz1")
        claim_reads = len(seen)
        seen.clear()
        service.complete_task(third, {"n": 1}, "lx_wgz1")
        complete_reads = len(seen)
    finally:
        event.remove(service.db.engine, "before_cursor_execute", on_statement)
    assert (claim_reads, complete_reads) == (1, 1)
