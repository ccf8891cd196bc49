"""Benchmark: what one step of a long-looping case costs, raw SpiffWorkflow vs. gridflow.

A case loops through the user task `report` of `tests/fixtures/loop.bpmn` many
times. We measure, per completed step:

* raw      -- plain SpiffWorkflow 3.2 as shipped (`engine.spiff_logging.stock`), in memory,
              with a full stock-serializer round trip (spec included) per step, as a naive
              product would do;
* product  -- `engine.service.WorkflowService.complete_task` with persistence,
              on SQLite (temp file) and on PostgreSQL (database `gridflow_bench`).

Each "ms/step at N" is the median of a 5-step window ending at N+2 (steps 1..5
for N=1), taken after 3 warm-up steps of a separate case. State size is the
stored JSON after step N exactly.

On PostgreSQL it also prints the database's own floor on this machine: a round trip and
a durable one-row write transaction, which any durable step pays before the product
does anything (the step-1 ratio's budget above raw is 0.5 × raw); and the database part of
a product step alone: one completion's own statements replayed by bare psycopg.

This prints figures; it is not a test and always exits 0.

    cd /work/main && .venv/bin/python bench/step_cost.py [--iterations N] [--db sqlite|postgres|both]
                                                        [--quick] [--window K] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import speed_line  # noqa: E402
from engine.spiff_logging import stock as stock_spiffworkflow  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "loop.bpmn"
FORMS_DIR = ROOT / "tests" / "fixtures" / "forms"
ORG_FILE = ROOT / "demo" / "org.yaml"
PROCESS_ID = "loop"
GRID = "linxi-xinguang-g1"
ACTOR = "lx_wgy1"

PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"
PG_BENCH_DB = "gridflow_bench"
PG_URL = f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_BENCH_DB}"

WARMUP = 3
PROFILE_STEPS = 20
WINDOW = 5
PAIRED_ROUNDS = 20
CHECKPOINTS = (1, 50, 200, 1000)
STATE_CHECKPOINTS = (1, 200, 1000)

TARGET_VS_RAW = 1.5
TARGET_GROWTH = 1.2
TARGET_STATE = 2.0


# ---------------------------------------------------------------- helpers

def window(n: int, total: int) -> range | None:
    """The iterations whose median stands for iteration n (None if n was not reached)."""
    if n > total:
        return None
    end = min(max(n + 2, WINDOW), total)
    start = max(1, end - WINDOW + 1)
    return range(start, end + 1)


def median_at(times: dict[int, float], n: int, total: int) -> float | None:
    w = window(n, total)
    if w is None:
        return None
    vals = [times[i] for i in w if i in times]
    if not vals:
        return None
    return statistics.median(vals)


def fmt_ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.2f}"


def fmt_bytes(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


class Result:
    def __init__(self, name: str):
        self.name = name
        self.times: dict[int, float] = {}     # iteration -> seconds (wall, perf_counter)
        self.cpu: dict[int, float] = {}       # iteration -> seconds of this process's CPU (process_time)
        self.sizes: dict[int, int] = {}       # iteration -> state bytes
        self.reached = 0                      # last iteration completed
        self.note: str | None = None          # stalled / skipped / error
        self.skipped = False
        self.statements: list[int] = []       # SQL statements per measured step (product only)

    def ms(self, n):
        return median_at(self.times, n, self.reached)

    def cpu_ms(self, n):
        return median_at(self.cpu, n, self.reached)


# ---------------------------------------------------------------- raw SpiffWorkflow

class RawEngine:
    """Plain SpiffWorkflow: a case is its serialized text; a step deserializes it, completes
    the READY user task, runs the engine and serializes it again."""

    def __init__(self):
        from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
        from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
        from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
        from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
        from SpiffWorkflow.util.task import TaskState

        parser = SpiffBpmnParser()
        parser.add_bpmn_str(FIXTURE.read_bytes(), filename=FIXTURE.name)
        self.spec = parser.get_spec(PROCESS_ID)
        self.subprocesses = parser.get_subprocess_specs(PROCESS_ID)
        self.serializer = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
        self.workflow_class, self.ready = BpmnWorkflow, TaskState.READY

    def new_case(self) -> str:
        with stock_spiffworkflow():
            wf = self.workflow_class(self.spec, self.subprocesses)
            wf.do_engine_steps()
            return self.serializer.serialize_json(wf)

    def step(self, text: str):
        """One round trip; returns (new text) or None when no READY user task is found."""
        with stock_spiffworkflow():   # SpiffWorkflow as shipped, not as the engine tunes it
            wf = self.serializer.deserialize_json(text)
            ready = wf.get_tasks(state=self.ready, manual=True)
            if not ready:
                return None
            task = ready[0]
            task.data["again"] = True
            task.run()
            wf.do_engine_steps()
            return self.serializer.serialize_json(wf)


def run_raw(iterations: int) -> Result:
    res = Result("raw SpiffWorkflow")
    engine = RawEngine()
    new_case, step = engine.new_case, engine.step

    # warm-up on a separate case
    text = new_case()
    for _ in range(WARMUP):
        text = step(text)

    text = new_case()
    for i in range(1, iterations + 1):
        c0 = time.process_time()
        t0 = time.perf_counter()
        try:
            new = step(text)
        except RecursionError:
            res.note = f"stalled at iteration {i} (RecursionError)"
            break
        except Exception as exc:  # noqa: BLE001 -- a benchmark reports, it does not crash
            res.note = f"stalled at iteration {i} ({type(exc).__name__}: {exc})"
            break
        dt = time.perf_counter() - t0
        dc = time.process_time() - c0
        if new is None:
            res.note = f"stalled at iteration {i}: no READY user task (task iterator depth limit)"
            break
        text = new
        res.times[i] = dt
        res.cpu[i] = dc
        res.sizes[i] = len(text.encode("utf-8"))
        res.reached = i
        if i % 100 == 0:
            print(f"  raw: iteration {i}, {dt * 1000:.1f} ms/step, state {len(text):,} chars", flush=True)
    return res


# ---------------------------------------------------------------- product

def pg_prepare() -> tuple[bool, str]:
    """Make sure database gridflow_bench exists; return (ok, message)."""
    try:
        import psycopg
    except ImportError as exc:
        return False, f"psycopg not importable: {exc}"
    try:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_BENCH_DB,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{PG_BENCH_DB}"')
            version = conn.execute("SHOW server_version").fetchone()[0]
        return True, version
    except Exception as exc:  # noqa: BLE001
        first = (str(exc).strip().splitlines() or [""])[0]
        return False, f"{type(exc).__name__}: {first}"


def pg_floor(samples: int = 400) -> str:
    """What any durable PostgreSQL step pays on this machine before the product does
    anything: a round trip (`SELECT 1`, autocommit) and a one-row write transaction
    (BEGIN, INSERT, COMMIT: three round trips and the WAL flush), medians in µs. They
    put the PostgreSQL step-1 ratio in proportion: 1.5 × raw is the whole budget."""
    import psycopg

    dsn = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_BENCH_DB
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        trips = []
        for _ in range(samples):
            started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            trips.append(time.perf_counter() - started)
        conn.execute("CREATE TABLE IF NOT EXISTS gf_commit_probe (x integer)")
        writes = []
        for _ in range(samples // 2):
            started = time.perf_counter()
            with conn.transaction():
                conn.execute("INSERT INTO gf_commit_probe VALUES (1)")
            writes.append(time.perf_counter() - started)
        conn.execute("DROP TABLE gf_commit_probe")
    return (f"round trip {statistics.median(trips) * 1e6:.0f} µs, "
            f"durable one-row write transaction {statistics.median(writes) * 1e6:.0f} µs")


def pg_statements_floor(samples: int = 600) -> str:
    """What the database part of a product step costs alone: one completion's own
    statements (its lock read, its writes, as SQLAlchemy and the driver writes sent them)
    replayed by bare psycopg in one pipeline, BEGIN with the lock and the writes with the
    COMMIT, as the product sends them. Medians in µs of wall time and of this process's CPU;
    the rest of a product step is the engine's own work. Each replay commits and is then
    undone (not timed)."""
    import psycopg
    from sqlalchemy import event

    db, svc = setup_product(PG_URL)
    captured = []

    def capture(_conn, _cursor, statement, parameters, _context, executemany):
        captured.append((statement, parameters, executemany))
    try:
        view = svc.start_case(PROCESS_ID, GRID, {}, ACTOR)
        for _ in range(WARMUP):
            view = complete_next(svc, view)
        done_id = view.open_items[0].id
        event.listen(db.engine, "before_cursor_execute", capture)
        view = complete_next(svc, view)
        event.remove(db.engine, "before_cursor_execute", capture)
        new_ids = [item.id for item in view.open_items]
        case_id = view.id
    finally:
        db.dispose()
    dsn = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_BENCH_DB
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        marks = {table: conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0]
                 for table in ("audit_event", "notification")}

        def undo():
            for table, mark in marks.items():
                conn.execute(f"DELETE FROM {table} WHERE id > %s", (mark,))
            conn.execute("DELETE FROM work_item WHERE id = ANY(%s)", (new_ids,))
            conn.execute("UPDATE work_item SET status = 'open', completed_at = NULL, completed_by_id = NULL, "
                         "assignee_id = NULL WHERE id = %s", (done_id,))
            conn.execute("UPDATE gf_case SET row_version = row_version - 1 WHERE id = %s", (case_id,))

        def replay():
            with conn.pipeline() as pipeline:
                cursors = [conn.cursor()]
                cursors[0].execute("BEGIN", prepare=False)
                for n, (statement, parameters, many) in enumerate(captured):
                    cursor = conn.cursor()
                    cursors.append(cursor)
                    (cursor.executemany if many else cursor.execute)(statement, parameters)
                    if n == 0:   # the lock read is answered before the rest is sent
                        pipeline.sync()
                        cursor.fetchall()
                cursors.append(conn.cursor())
                cursors[-1].execute("COMMIT", prepare=False)
            for cursor in cursors:
                cursor.close()

        undo()
        walls, cpus = [], []
        for n in range(samples + WARMUP * 10):
            wall, cpu = time.perf_counter(), time.process_time()
            replay()
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            undo()
            if n >= WARMUP * 10:
                walls.append(wall)
                cpus.append(cpu)
    return (f"{len(captured)} statements, BEGIN and COMMIT: wall {statistics.median(walls) * 1e6:.0f} µs, "
            f"client CPU {statistics.median(cpus) * 1e6:.0f} µs")


def setup_product(url: str):
    from engine import schema
    from engine.db import Database
    from engine.deploy import deploy_files
    from engine.org import load_org_file
    from engine.service import WorkflowService
    from forms import FormRegistry

    db = Database(url)
    schema.drop_all(db)
    schema.upgrade(db)
    with db.unit_of_work() as session:
        load_org_file(session, ORG_FILE)
        deploy_files(session, {FIXTURE.name: FIXTURE.read_text(encoding="utf-8")}, form_keys=None)
    svc = WorkflowService(db, forms=FormRegistry(FORMS_DIR))
    return db, svc


def state_bytes(db, case_id: int) -> int:
    from engine.models import CaseState
    with db.read_session() as session:
        row = session.get(CaseState, case_id)
        return len(row.state.encode("utf-8"))


def run_product(name: str, url: str, iterations: int, profile: bool = False) -> tuple[Result, str | None]:
    res = Result(name)
    db, svc = setup_product(url)
    profile_text = None
    try:
        # warm-up on a separate case
        view = svc.start_case(PROCESS_ID, GRID, {}, ACTOR)
        for _ in range(WARMUP):
            view = svc.complete_task(view.open_items[0].id, {"again": True}, ACTOR)

        view = svc.start_case(PROCESS_ID, GRID, {}, ACTOR)
        case_id = view.id
        res.sizes[0] = state_bytes(db, case_id)
        counting = [False, 0]

        def count_statement(_conn, _cursor, statement, *_args):
            if counting[0] and not statement.lstrip().upper().startswith("BEGIN"):
                counting[1] += 1

        from sqlalchemy import event
        event.listen(db.engine, "before_cursor_execute", count_statement)
        for i in range(1, iterations + 1):
            if not view.open_items:
                res.note = f"stalled at iteration {i}: no open work item (case status {view.status})"
                break
            item_id = view.open_items[0].id
            c0 = time.process_time()
            t0 = time.perf_counter()
            counting[:] = [True, 0]
            try:
                view = svc.complete_task(item_id, {"again": True}, ACTOR)
            except Exception as exc:  # noqa: BLE001
                res.note = f"failed at iteration {i} ({type(exc).__name__}: {exc})"
                break
            dt = time.perf_counter() - t0
            counting[0] = False
            res.statements.append(counting[1])
            res.cpu[i] = time.process_time() - c0
            res.times[i] = dt
            res.reached = i
            if i in STATE_CHECKPOINTS or i == iterations:
                res.sizes[i] = state_bytes(db, case_id)
            if i % 250 == 0:
                print(f"  {name}: iteration {i}, {dt * 1000:.1f} ms/step", flush=True)

        if profile:
            # a fresh case, after the measured run so the figures above are untouched
            view = svc.start_case(PROCESS_ID, GRID, {}, ACTOR)
            for _ in range(WARMUP):
                view = svc.complete_task(view.open_items[0].id, {"again": True}, ACTOR)
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            for _ in range(PROFILE_STEPS):
                item_id = view.open_items[0].id
                prof.enable()
                view = svc.complete_task(item_id, {"again": True}, ACTOR)
                prof.disable()
            wall = (time.perf_counter() - t0) / PROFILE_STEPS
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(15)
            profile_text = (f"cProfile of {name}: complete_task x {PROFILE_STEPS} on a fresh case "
                            f"(steps {WARMUP + 1}..{WARMUP + PROFILE_STEPS}, {wall * 1000:.1f} ms/step "
                            f"under the profiler), top 15 cumulative\n" + buf.getvalue())
    finally:
        db.dispose()
    return res, profile_text


# ---------------------------------------------------------------- step 1, in turns

def complete_next(svc, view):
    """The product's step: complete the case's open task."""
    return svc.complete_task(view.open_items[0].id, {"again": True}, ACTOR)


def paired_step1(products: dict[str, str], rounds: int) -> dict[str, list[float]]:
    """Steps 1..WINDOW of fresh cases, raw SpiffWorkflow and each product taking turns
    (the order rotating every round), so that the machine's drift falls on all of them
    alike: on this VM the same code runs 1.5x slower in some minutes than in others,
    which separate runs minutes apart turn into a false ratio. {name: ms per step}."""
    raw = RawEngine()
    engines = {"raw SpiffWorkflow": (raw.new_case, raw.step)}   # name: (new case, step)
    databases = []
    for name, url in products.items():
        db, svc = setup_product(url)
        databases.append(db)
        engines[name] = (lambda svc=svc: svc.start_case(PROCESS_ID, GRID, {}, ACTOR),
                         lambda view, svc=svc: complete_next(svc, view))
    samples: dict[str, list[float]] = {name: [] for name in engines}

    def one_case(name, measure: bool):
        new_case, step = engines[name]
        case = new_case()
        for _ in range(WINDOW):
            t0 = time.perf_counter()
            case = step(case)
            if measure:
                samples[name].append((time.perf_counter() - t0) * 1000)

    try:
        names = list(engines)
        for name in names:          # warm-up: caches, prepared statements
            one_case(name, measure=False)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                one_case(name, measure=True)
    finally:
        for db in databases:
            db.dispose()
    return samples


def paired_growth(url: str, checkpoints, pairs: int) -> dict[int, tuple[float, float]]:
    """Step N of an old case against step 1 of young ones, one step each in turn: the
    growth target asks whether a step costs more once a case has a long history, and
    taking the two in turns keeps the machine's drift out of the answer.
    {N: (median ms at step N.., median ms at steps 1..WINDOW)}."""
    db, svc = setup_product(url)
    out = {}
    try:
        old = svc.start_case(PROCESS_ID, GRID, {}, ACTOR)
        done = 0
        for n in checkpoints:
            while done < n - 1:     # untimed: bring the old case to step n
                old = complete_next(svc, old)
                done += 1
            at_n, at_1 = [], []
            young, young_steps = None, WINDOW
            for _ in range(pairs):
                if young_steps == WINDOW:
                    young, young_steps = svc.start_case(PROCESS_ID, GRID, {}, ACTOR), 0
                t0 = time.perf_counter()
                old = complete_next(svc, old)
                at_n.append((time.perf_counter() - t0) * 1000)
                t0 = time.perf_counter()
                young = complete_next(svc, young)
                at_1.append((time.perf_counter() - t0) * 1000)
                young_steps += 1
            done += pairs
            out[n] = (statistics.median(at_n), statistics.median(at_1))
    finally:
        db.dispose()
    return out


def print_growth(name: str, growth: dict[int, tuple[float, float]]) -> int:
    misses = 0
    for n, (at_n, at_1) in growth.items():
        line = verdict(f"{name} step@{n} / step@1 (in turns: {at_n:.2f} / {at_1:.2f} ms)", at_n / at_1,
                       TARGET_GROWTH)
        misses += "MISS" in line
        print(line)
    return misses


def print_paired(samples: dict[str, list[float]], rounds: int) -> int:
    raw = statistics.median(samples["raw SpiffWorkflow"])
    print(f"Step 1, in turns: {rounds} rounds; each round a fresh case of each, steps 1..{WINDOW}, "
          f"the order rotating (medians of {rounds * WINDOW} steps each)")
    print(f"  raw SpiffWorkflow        {raw:6.2f} ms")
    misses = 0
    for name, values in samples.items():
        if name == "raw SpiffWorkflow":
            continue
        median = statistics.median(values)
        line = verdict(f"{name} step@1 / raw step@1 (in turns: {median:.2f} / {raw:.2f} ms)",
                       median / raw, TARGET_VS_RAW)
        misses += "MISS" in line
        print(line)
    print()
    return misses


# ---------------------------------------------------------------- report

def print_machine(pg_version: str | None):
    print("Machine")
    print(f"  cores:          {os.cpu_count()}  ({platform.processor() or platform.machine()})")
    print(f"  platform:       {platform.platform()}")
    print(f"  python:         {speed_line()}")
    for pkg in ("SpiffWorkflow", "SQLAlchemy", "psycopg", "alembic"):
        try:
            print(f"  {pkg + ':':15} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            print(f"  {pkg + ':':15} not installed")
    print(f"  SQLite:         {sqlite3.sqlite_version}")
    print(f"  PostgreSQL:     {pg_version or 'n/a'}")
    print(f"  load average:   {load_average()}  (at start; other work on the machine makes wall times noisy)")
    print()


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def print_table(results: list[Result], iterations: int):
    cps = [n for n in CHECKPOINTS]
    head = f"{'':22}" + "".join(f"{'ms@' + str(n):>10}" for n in cps) \
        + "".join(f"{'bytes@' + str(n):>13}" for n in STATE_CHECKPOINTS)
    print(head)
    print("-" * len(head))
    for r in results:
        if r.skipped:
            print(f"{r.name:22}  skipped: {r.note}")
            continue
        row = f"{r.name:22}" + "".join(f"{fmt_ms(r.ms(n)):>10}" for n in cps) \
            + "".join(f"{fmt_bytes(r.sizes.get(n)):>13}" for n in STATE_CHECKPOINTS)
        print(row)
        print(f"{'  (client CPU ms)':22}" + "".join(f"{fmt_ms(r.cpu_ms(n)):>10}" for n in cps))
        if r.statements:
            print(f"{'  (SQL per step)':22}  {statistics.median(r.statements):.0f} statements "
                  f"(median; BEGIN and COMMIT not counted; min {min(r.statements)}, max {max(r.statements)})")
        if r.note:
            print(f"{'':22}  note: {r.note}")
    print(f"(ms = wall time, median of a {WINDOW}-step window at each iteration; '-' = not reached; "
          f"run of {iterations} iterations.\n 'client CPU ms' = this process's CPU time for the same steps, "
          f"less disturbed by other load; excludes the PostgreSQL server's work. Targets use wall time.)")
    print()


def verdict(label: str, value: float | None, target: float, why_missing: str = "", decides: bool = True) -> str:
    """A PASS / MISS line; `decides=False`: an `info` line, for figures taken minutes apart,
    which this VM's drift can move by 1.5x (the in-turns figures decide)."""
    if value is None:
        return f"  n/a   {label:58} target <= {target:<4}  {why_missing}"
    status = ("PASS" if value <= target else "MISS") if decides else "info"
    line = f"  {status}  {label:58} = {value:7.2f}   target <= {target}"
    if status == "MISS":
        line = ">>" + line[2:] + "   <<< MISS"
    return line


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def print_ratios(raw: Result, products: list[Result]) -> int:
    misses = 0
    print("Ratios")
    for p in products:
        if p.skipped:
            continue
        lines = [
            # info only: the two runs were minutes apart; the in-turns figure below is the verdict
            verdict(f"{p.name} step@1 / raw step@1 (separate runs)", ratio(p.ms(1), raw.ms(1)),
                    TARGET_VS_RAW, decides=False),
            verdict(f"{p.name} step@200 / raw step@200", ratio(p.ms(200), raw.ms(200)), TARGET_VS_RAW,
                    "(raw did not reach 200)" if raw.reached < 200 else ""),
            verdict(f"{p.name} step@200 / step@1 (same run)", ratio(p.ms(200), p.ms(1)), TARGET_GROWTH,
                    decides=False),
            verdict(f"{p.name} step@1000 / step@1 (same run)", ratio(p.ms(1000), p.ms(1)), TARGET_GROWTH,
                    "(run shorter than 1000)", decides=False),
            verdict(f"{p.name} state@1000 / state@1", ratio(p.sizes.get(1000), p.sizes.get(1)), TARGET_STATE,
                    "(run shorter than 1000)"),
        ]
        for line in lines:
            if "MISS" in line:
                misses += 1
            print(line)
    if raw.reached:
        print(f"  info  raw step@{raw.reached} / raw step@1"
              f" = {ratio(raw.times[raw.reached], raw.ms(1)):.1f}x;"
              f" raw state@{raw.reached} / state@1 = {ratio(raw.sizes[raw.reached], raw.sizes[1]):.1f}x")
    print()
    return misses


def main(argv=None) -> int:
    global WINDOW
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="200 iterations")
    ap.add_argument("--profile", action="store_true",
                    help=f"after the measured run, cProfile {PROFILE_STEPS} product steps of a fresh case; "
                         "print top 15 cumulative")
    ap.add_argument("--rounds", type=int, default=PAIRED_ROUNDS,
                    help=f"rounds of the in-turns step-1 comparison (default {PAIRED_ROUNDS}; 0: skip it)")
    ap.add_argument("--window", type=int, default=WINDOW,
                    help=f"steps per median window (default {WINDOW})")
    args = ap.parse_args(argv)
    WINDOW = max(1, args.window)
    iterations = 200 if args.quick else max(1, args.iterations)
    os.chdir(ROOT)

    started = time.perf_counter()
    pg_ok, pg_msg = (False, "not requested")
    if args.db in ("postgres", "both"):
        pg_ok, pg_msg = pg_prepare()
    print(f"gridflow step-cost benchmark: process '{PROCESS_ID}' ({FIXTURE.relative_to(ROOT)}), "
          f"{iterations} iterations\n")
    print_machine(pg_msg if pg_ok else None)

    print("Running raw SpiffWorkflow (stock serializer, spec included, round trip per step) ...", flush=True)
    raw = run_raw(iterations)

    products: list[Result] = []
    profiles: list[str] = []
    if args.db in ("sqlite", "both"):
        with tempfile.TemporaryDirectory(prefix="gridflow-bench-") as tmp:
            print("Running product on SQLite ...", flush=True)
            r, prof = run_product("product SQLite", f"sqlite:///{Path(tmp) / 'bench.sqlite'}", iterations,
                                  args.profile)
            products.append(r)
            if prof:
                profiles.append(prof)
    if args.db in ("postgres", "both"):
        if pg_ok:
            print(f"Running product on PostgreSQL (database {PG_BENCH_DB}) ...", flush=True)
            try:
                r, prof = run_product("product PostgreSQL", PG_URL, iterations, args.profile)
                products.append(r)
                if prof:
                    profiles.append(prof)
            except Exception as exc:  # noqa: BLE001
                r = Result("product PostgreSQL")
                r.skipped, r.note = True, f"{type(exc).__name__}: {exc}"
                products.append(r)
        else:
            r = Result("product PostgreSQL")
            r.skipped, r.note = True, f"PostgreSQL unreachable ({pg_msg})"
            print(f"Skipping PostgreSQL: {pg_msg}")
            products.append(r)
    print()

    if pg_ok and args.db in ("postgres", "both"):
        try:
            print(f"PostgreSQL's own floor on this machine: {pg_floor()}")
            print(f"  a completion's own statements replayed by bare psycopg: {pg_statements_floor()}\n")
        except Exception as exc:  # noqa: BLE001 - context only; the figures above stand
            print(f"PostgreSQL's floor not measured: {type(exc).__name__}: {exc}\n")
    print_table([raw] + products, iterations)
    misses = print_ratios(raw, products)
    with tempfile.TemporaryDirectory(prefix="gridflow-bench-") as tmp:
        def urls(purpose: str) -> dict[str, str]:
            """The products to compare, each on a database of its own for this `purpose`
            (PostgreSQL's bench database is emptied by each set-up)."""
            found = {}
            if args.db in ("sqlite", "both"):
                found["product SQLite"] = f"sqlite:///{Path(tmp) / (purpose + '.sqlite')}"
            if args.db in ("postgres", "both") and pg_ok:
                found["product PostgreSQL"] = PG_URL
            return found

        if args.rounds and urls("paired"):
            print("Running step 1 in turns ...", flush=True)
            misses += print_paired(paired_step1(urls("paired"), args.rounds), args.rounds)
            checkpoints = [n for n in (200, 1000) if n <= iterations]
            pairs = args.rounds * WINDOW // 2
            if checkpoints:
                print(f"Growth, in turns: {pairs} pairs at each checkpoint; a step of the old "
                      f"case, then one of a young case (steps 1..{WINDOW}, then a new one)")
                for name, url in urls("growth").items():
                    misses += print_growth(name, paired_growth(url, checkpoints, pairs))
                print()
    for text in profiles:
        print(text)
    print(f"{misses} target(s) missed" if misses else "no target missed (n/a lines were not measured)")
    if misses and not args.profile:
        print("(re-run with --profile to see where a product step's time goes)")
    print(f"load average at end: {load_average()}")
    print(f"total runtime {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
    sys.exit(0)
