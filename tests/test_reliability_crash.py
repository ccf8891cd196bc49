"""Crash: kill -9 the web server (gunicorn, every process) and the timer worker in
the middle of a load run, restart them, and check that nothing is half done.

Real processes on a private database (a temporary SQLite file; on a PostgreSQL
run also a database of its own, `<DATABASE_URL's name>_crash`): gunicorn with
two workers serving `web:create_app()` and `gridflow worker --interval 0.5`.
Client threads report grid matters and complete their tasks through /api/v1
while other cases wait on a short BPMN timer. Both servers are killed with
SIGKILL twice during the run and started again. Afterwards, on the database:

* every open case: its open work items are exactly the READY user tasks of its
  stored state, and a closed case has none open (state, rows and audit agree);
* every completion a client saw acknowledged is stored, and no task has more
  than one `task_completed` event (no step lost, none applied twice);
* every timer that fell due (also while the worker was dead) fired exactly once;
* `gridflow audit verify` finds the hash chains intact.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bench.live_app import free_port, start_gunicorn, wait_until_answering
from bench.scratch import create_postgres_database, reset_to_demo
from engine.db import Database
from engine.deploy import deploy_files
from engine.models import AuditEvent, Case, WorkItem
from engine.service import WorkflowService
from forms import FormRegistry

httpx = pytest.importorskip("httpx")

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TEAMS = [("lx_wgy1", "linxi-xinguang-g1", "lx_wgz1"), ("lx_wgy3", "linxi-dongsheng-g1", "lx_wgz2"),
         ("wy_wgy1", "wuyuan-maojiaqiao-g1", "wy_wgz1"), ("ss_wgy1", "songshan-fushanzhuang-g1", "ss_wgz1")]
REPORT = {"category": "dispute", "colour": "blue", "description": "宅基地边界争执（崩溃测试）",
          "location": "测试地点", "parties": "李某, 王某"}
TASK_DATA = {"micro_mediation": {"resolved": True, "mediation_note": "已调解（崩溃测试）"},
             "record_result": {"result_note": "已回访（崩溃测试）"}}
TIMER_SECONDS = 2
SECRET_KEY = "crash-test-secret"

TIMER_BPMN = f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs_crash_timer"
  targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="reliab_crash_timer" name="Crash test: a short deadline" isExecutable="true">
    <bpmn:laneSet id="ls">
      <bpmn:lane id="l1" name="grid.grid_worker"><bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>handle</bpmn:flowNodeRef><bpmn:flowNodeRef>deadline</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end</bpmn:flowNodeRef></bpmn:lane>
      <bpmn:lane id="l2" name="town.center_dispatcher"><bpmn:flowNodeRef>escalated</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>end2</bpmn:flowNodeRef></bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="handle" name="Handle in the grid"><bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing></bpmn:userTask>
    <bpmn:boundaryEvent id="deadline" name="Deadline" attachedToRef="handle" cancelActivity="true">
      <bpmn:outgoing>e1</bpmn:outgoing>
      <bpmn:timerEventDefinition id="deadline_def"><bpmn:timeDuration xsi:type="bpmn:tFormalExpression">"PT{TIMER_SECONDS}S"</bpmn:timeDuration></bpmn:timerEventDefinition>
    </bpmn:boundaryEvent>
    <bpmn:userTask id="escalated" name="Town takes over"><bpmn:incoming>e1</bpmn:incoming>
      <bpmn:outgoing>e2</bpmn:outgoing></bpmn:userTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:endEvent id="end2"><bpmn:incoming>e2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="handle"/>
    <bpmn:sequenceFlow id="f2" sourceRef="handle" targetRef="end"/>
    <bpmn:sequenceFlow id="e1" sourceRef="deadline" targetRef="escalated"/>
    <bpmn:sequenceFlow id="e2" sourceRef="escalated" targetRef="end2"/>
  </bpmn:process>
</bpmn:definitions>
"""


# ------------------------------------------------------------------ databases

def _crash_databases(tmp_path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'crash.sqlite'}"]
    env_url = os.environ.get("DATABASE_URL", "")
    if env_url.startswith("postgresql"):
        parsed = make_url(env_url)
        urls.append(parsed.set(database=f"{parsed.database}_crash").render_as_string(hide_password=False))
        create_postgres_database(urls[-1])
    return urls


def _prepare(url: str) -> None:
    db = Database(url)
    try:
        reset_to_demo(db, FormRegistry().keys(), actor="tests")
        with db.unit_of_work() as session:
            # formless tasks: deployed without the form check, as the engine tests' fixtures are
            deploy_files(session, {"reliab_crash_timer.bpmn": TIMER_BPMN}, None, actor="tests")
    finally:
        db.dispose()


# ------------------------------------------------------------------ the servers

class Servers:
    def __init__(self, url: str, port: int, logs: Path):
        self.url, self.port, self.logs = url, port, logs
        self.env = dict(os.environ, DATABASE_URL=url, SECRET_KEY=SECRET_KEY, PYTHONPATH=str(ROOT))
        self.web = self.worker = None
        self.starts = 0

    def start(self):
        self.starts += 1
        web_log = self.logs / f"gunicorn-{self.starts}.log"
        # a session of its own: SIGKILL to the group takes the master and every worker at once
        self.web = start_gunicorn(self.url, self.port, web_log, secret_key=SECRET_KEY, workers=2,
                                  new_session=True)
        log = open(self.logs / f"worker-{self.starts}.log", "wb")
        self.worker = subprocess.Popen(
            [PY, "-c", "from engine.cli import main; main()", "worker", "--interval", "0.5"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_answering(self.web, self.port, web_log)

    def kill9(self):
        for proc in (self.web, self.worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    def stop(self):
        for proc in (self.web, self.worker):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


# ------------------------------------------------------------------ the load

class Load:
    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.lock = threading.Lock()
        self.acknowledged: list[str] = []        # task ids whose completion answered 200
        self.timer_cases: list[tuple[str, float]] = []   # (business key, monotonic start)
        self.cases: set[str] = set()
        self.unknown = 0                          # requests cut off by a kill: outcome unknown to the client
        self.refused: Counter = Counter()         # HTTP errors other than the kill's
        self.stop = threading.Event()
        self.tokens: dict[str, str] = {}

    def token(self, http, user):
        if user not in self.tokens:
            r = http.post("/api/v1/auth/token", json={"username": user, "password": "demo123"})
            r.raise_for_status()
            self.tokens[user] = r.json()["token"]
        return self.tokens[user]

    def post(self, http, user, path, body):
        try:
            r = http.post(path, json=body, headers={"Authorization": f"Bearer {self.token(http, user)}"})
        except httpx.HTTPError:
            with self.lock:
                self.unknown += 1
            time.sleep(0.2)          # the server is down: wait for the restart
            return None
        if r.status_code >= 300:
            with self.lock:
                self.refused[f"{path.split('/')[3]} {r.status_code} {r.text[:120]}"] += 1
            return None
        return r.json()

    def grid_matters(self, index):
        worker, grid, leader = TEAMS[index % len(TEAMS)]
        holder = {"micro_mediation": leader, "record_result": worker}
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while not self.stop.is_set():
                case = self.post(http, worker, "/api/v1/cases", {"process": "grid_matter", "grid": grid,
                                                                  "data": REPORT})
                if case is None:
                    continue
                with self.lock:
                    self.cases.add(case["business_key"])
                while case is not None and case["status"] == "open" and not self.stop.is_set():
                    task = next(t for t in case["open_tasks"] if t["spec_id"] in TASK_DATA)
                    case = self.post(http, holder[task["spec_id"]], f"/api/v1/tasks/{task['id']}/complete",
                                     {"data": TASK_DATA[task["spec_id"]]})
                    if case is not None:
                        with self.lock:
                            self.acknowledged.append(task["id"])

    def timed_cases(self):
        with httpx.Client(base_url=self.base, timeout=30) as http:
            while not self.stop.is_set():
                case = self.post(http, "lx_wgy1", "/api/v1/cases", {"process": "reliab_crash_timer",
                                                                     "grid": "linxi-xinguang-g1", "data": {}})
                if case is not None:
                    with self.lock:
                        self.timer_cases.append((case["business_key"], time.monotonic()))
                self.stop.wait(0.3)


# ------------------------------------------------------------------ the checks

def _ready_user_tasks(service, session, case) -> set[str]:
    from SpiffWorkflow.util.task import TaskState
    from engine.bpmn import is_user_task
    workflow = service._load(session, case, service.specs.for_case(session, case))
    return {str(t.id) for t in workflow.get_tasks(state=TaskState.READY, manual=True) if is_user_task(t.task_spec)}


def check_consistency(url: str, load: Load, worker_stopped: float) -> dict:
    db = Database(url)
    service = WorkflowService(db)
    try:
        with db.read_session() as s:
            cases = list(s.scalars(select(Case)))
            open_items: dict[int, set[str]] = {}
            for item in s.scalars(select(WorkItem).where(WorkItem.status == "open")):
                open_items.setdefault(item.case_id, set()).add(item.id)
            half = []
            for case in cases:
                stored = _ready_user_tasks(service, s, case) if case.status == "open" else set()
                if stored != open_items.get(case.id, set()):
                    half.append((case.business_key, case.status, sorted(stored), sorted(open_items.get(case.id, ()))))
            completions = Counter(s.scalars(select(AuditEvent.work_item_id)
                                            .where(AuditEvent.event_type == "task_completed")))
            completed_rows = set(s.scalars(select(WorkItem.id).where(WorkItem.status == "completed")))
            fired = Counter(s.scalars(select(Case.business_key).join(AuditEvent, AuditEvent.case_id == Case.id)
                                      .where(AuditEvent.event_type == "timers_fired")))
            closed = s.scalar(select(func.count()).select_from(Case).where(Case.status == "completed"))
        assert half == [], f"cases whose stored state and work items disagree: {half[:5]}"
        twice = {k: v for k, v in completions.items() if v > 1}
        assert twice == {}, f"tasks completed more than once: {twice}"
        assert set(completions) == completed_rows, "task_completed events and completed work items disagree"
        lost = [t for t in load.acknowledged if t not in completed_rows]
        assert lost == [], f"{len(lost)} acknowledged completions are not stored: {lost[:5]}"
        # due a while before the last worker stopped (it looks every 0.5 s; a busy machine is slower)
        due = [key for key, started in load.timer_cases if worker_stopped - started > TIMER_SECONDS + 3]
        assert due, "no timer case fell due during the run"
        not_once = {key: fired[key] for key in due if fired[key] != 1}
        assert not_once == {}, f"due timers not fired exactly once: {not_once}"
    finally:
        db.dispose()
    verify = subprocess.run([PY, "-c", "from engine.cli import main; main()", "audit", "verify"], cwd=ROOT,
                            env=dict(os.environ, DATABASE_URL=url, PYTHONPATH=str(ROOT)),
                            capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    return {"cases": len(cases), "closed": closed, "acknowledged": len(load.acknowledged),
            "timers_due": len(due), "unknown": load.unknown}


# ------------------------------------------------------------------ the test

@pytest.mark.slow
@pytest.mark.postgresql_run_only   # once, against the production database (tests/conftest.py)
def test_kill_9_web_and_worker_during_load_then_restart(tmp_path, db):
    """`db` (the suite's database) only decides whether PostgreSQL runs too."""
    for url in _crash_databases(tmp_path):
        _prepare(url)
        port = free_port()
        servers, load = Servers(url, port, tmp_path), Load(port)
        servers.start()
        threads = [threading.Thread(target=load.grid_matters, args=(i,), daemon=True) for i in range(6)]
        threads.append(threading.Thread(target=load.timed_cases, daemon=True))
        try:
            for t in threads:
                t.start()
            for _cycle in range(2):
                time.sleep(3)
                servers.kill9()                       # mid-request: some transactions die half way
                time.sleep(TIMER_SECONDS + 0.5)       # timers fall due while nobody fires them
                servers.start()
            time.sleep(3)
            load.stop.set()
            for t in threads:
                t.join(60)
            time.sleep(TIMER_SECONDS + 2)             # the restarted worker catches up
        finally:
            load.stop.set()
            worker_stopped = time.monotonic()
            servers.stop()
        assert load.refused == Counter(), f"requests refused: {load.refused}"
        figures = check_consistency(url, load, worker_stopped)
        assert figures["acknowledged"] > 0 and figures["closed"] > 0, figures
        print(f"\n{make_url(url).get_backend_name()}: {figures}")
