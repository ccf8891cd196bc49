"""Timer worker throughput (prints figures; not a test).

N cases wait on a 2-day deadline (tests/fixtures/timed.bpmn). One case is made
through the engine service; the rest are copies of its state with fresh task ids
(bulk inserts, so setting up 100,000 cases takes seconds). The clock then jumps
past the deadline and 1 or 2 worker processes fire everything. Prints fired per
second and duplicates (cases fired more than once: must be 0).

    .venv/bin/python bench/timers.py --cases 100000 [--db postgres|sqlite] [--workers 1,2]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text  # noqa: E402

from bench.scratch import create_postgres_database  # noqa: E402
from engine import clock as clock_module  # noqa: E402
from engine import schema  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.deploy import deploy_files  # noqa: E402
from engine.models import NO_DUE_DATE, AuditEvent, Case, CaseState, WorkItem  # noqa: E402
from engine.org import load_org_file  # noqa: E402
from engine.service import WorkflowService  # noqa: E402
from forms import FormRegistry  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
START = datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)
UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def setup(url: str, n: int) -> None:
    db = Database(url)
    schema.drop_all(db)
    schema.upgrade(db)
    with db.unit_of_work() as s:
        load_org_file(s, ROOT / "demo" / "org.yaml")
        deploy_files(s, {"timed.bpmn": (ROOT / "tests/fixtures/timed.bpmn").read_text(encoding="utf-8")}, None)
    clock_module.set_clock(clock_module.FrozenClock(START))
    service = WorkflowService(db, forms=FormRegistry(ROOT / "tests" / "fixtures" / "forms"))
    view = service.start_case("timed", "linxi-xinguang-g1", {}, "lx_wgy1")
    with db.read_session() as s:
        case = s.get(Case, view.case.id)
        state = s.get(CaseState, view.case.id).state
        item = s.scalars(select(WorkItem).where(WorkItem.case_id == case.id)).one()
        template = {c.name: getattr(case, c.key) for c in Case.__table__.columns}
        item_row = {c.name: getattr(item, c.key) for c in WorkItem.__table__.columns}
    ids = sorted(set(UUID_RE.findall(state)))
    batch = 5000
    for start in range(2, n + 1, batch):
        cases, states, items = [], [], []
        for i in range(start, min(n + 1, start + batch)):
            mapping = {old: str(uuid.uuid5(uuid.NAMESPACE_OID, f"{i}:{old}")) for old in ids}
            copy = UUID_RE.sub(lambda m: mapping.get(m.group(0), m.group(0)), state)
            cases.append({**template, "id": i, "business_key": f"BENCH-{i:07d}",
                          "next_timer_at": template["next_timer_at"] + timedelta(seconds=i % 3600)})
            states.append({"case_id": i, "serializer_version": service.serializer.version, "state": copy})
            items.append({**item_row, "id": mapping[item_row["id"]], "case_id": i, "sort_due": NO_DUE_DATE})
        with db.unit_of_work() as s:
            s.execute(insert(Case), cases)
            s.execute(insert(CaseState), states)
            s.execute(insert(WorkItem), items)
    with db.engine.begin() as conn:
        if db.is_postgres:
            conn.execute(text("ANALYZE"))
    db.dispose()


def worker(url: str, now: datetime, out):
    from engine.timers import TimerWorker
    clock_module.set_clock(clock_module.FrozenClock(now))
    db = Database(url)
    service = WorkflowService(db, forms=FormRegistry(ROOT / "tests" / "fixtures" / "forms"))
    stats = TimerWorker(service, batch=200).run_once(now)
    out.put((stats.fired, stats.failed))
    db.dispose()


def run(url: str, n: int, workers: int) -> None:
    setup(url, n)
    now = START + timedelta(days=3)
    out = mp.Queue()
    procs = [mp.Process(target=worker, args=(url, now, out)) for _ in range(workers)]
    t0 = time.perf_counter()
    for p in procs:
        p.start()
    results = [out.get() for _ in procs]
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - t0
    db = Database(url)
    with db.read_session() as s:
        fired_events = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.event_type == "timers_fired"))
        distinct = s.scalar(select(func.count(func.distinct(AuditEvent.case_id)))
                            .where(AuditEvent.event_type == "timers_fired"))
        left = s.scalar(select(func.count()).select_from(Case).where(Case.next_timer_at.is_not(None)))
    db.dispose()
    fired = sum(r[0] for r in results)
    failed = sum(r[1] for r in results)
    print(f"  {db.engine.dialect.name:10} {workers} worker(s): {fired:,} fired in {elapsed:.1f} s = "
          f"{fired / elapsed:,.0f}/s; failed {failed}; duplicates {fired_events - distinct}; still due {left}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    print(f"timer worker: {args.cases:,} cases waiting on a deadline, all due; {mp.cpu_count()} cores")
    for w in [int(x) for x in args.workers.split(",")]:
        if args.db == "postgres":
            url = "postgresql+psycopg://postgres@127.0.0.1:5432/gridflow_bench"
            create_postgres_database(url)
        else:
            url = f"sqlite:///{tempfile.mkdtemp()}/timers.sqlite"
        run(url, args.cases, w)


if __name__ == "__main__":
    main()
