"""Case search speed at 10⁶ cases (prints figures and query plans; not a test).

Fills a scratch database with N cases over the demo jurisdiction tree, one
`case_started` audit event (the participant) and one work item (the task) each,
by bulk insert (this measures the read side only), then times the auditor's
searches of engine/search.py and prints the plan of each, showing the index it
reads.

    .venv/bin/python bench/case_search.py --size 1000000 [--db sqlite|postgres|both]

PostgreSQL: DATABASE_URL, or the bench database below.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select, text  # noqa: E402

from bench.scratch import print_plan, reset_to_demo, timed  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.models import NO_DUE_DATE, AuditEvent, Case, JurisdictionNode, ProcessVersion, User, WorkItem  # noqa: E402
from engine.search import CaseSearch, SearchFilters  # noqa: E402
from engine.service import WorkflowService  # noqa: E402

PG_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/gf_auditor")
START = datetime(2025, 3, 1, tzinfo=timezone.utc)
PROCESSES = [("grid_matter", 60), ("petition", 15), ("mediation", 15), ("leader_case", 5), ("consultation", 5)]
STATUSES = [("completed", 70), ("open", 29), ("cancelled", 1)]


def _weighted(rng, pairs):
    return rng.choices([p for p, _ in pairs], weights=[w for _, w in pairs])[0]


def fill(db: Database, n: int) -> dict:
    rng = random.Random(11)
    with db.unit_of_work() as s:
        grids = s.scalars(select(JurisdictionNode).where(JurisdictionNode.level == "grid")).all()
        users = list(s.scalars(select(User.id)))
        versions = {v.process_key: v.id for v in s.scalars(select(ProcessVersion))}
    tasks = {p.key: [bpmn_id for bpmn_id, _name in p.user_tasks] for p in WorkflowService(db).processes()}
    batch = 10_000
    for start in range(0, n, batch):
        cases, events, items = [], [], []
        for i in range(start, min(n, start + batch)):
            cid = i + 1
            grid = rng.choice(grids)
            process = _weighted(rng, PROCESSES)
            status = _weighted(rng, STATUSES)
            created = START + timedelta(seconds=int(365 * 86400 * i / n))
            cases.append(dict(id=cid, business_key=f"BK-{2025 + (i * 2) // n}-{cid:07d}", process_key=process,
                              process_version_id=versions[process], grid_id=grid.id, grid_path=grid.path,
                              status=status, title="bench", summary={}, created_at=created, updated_at=created,
                              closed_at=created + timedelta(days=3) if status != "open" else None, row_version=1,
                              colour=rng.choice(["blue", "yellow", "orange", "red"]), category="dispute",
                              timer_failures=0))
            events.append(dict(case_id=cid, event_type="case_started", actor_id=rng.choice(users), at=created,
                               data={}))
            items.append(dict(id=str(uuid.UUID(int=rng.getrandbits(128))), case_id=cid, process_key=process,
                              spec_id=rng.choice(tasks[process]), name="bench", role="center_dispatcher",
                              candidate_node_id=grid.id, grid_path=grid.path,
                              status="open" if status == "open" else "completed", unresolved=False,
                              created_at=created, sort_due=NO_DUE_DATE, urge_count=0))
        with db.unit_of_work() as s:
            s.execute(insert(Case), cases)
            s.execute(insert(AuditEvent), events)
            s.execute(insert(WorkItem), items)
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return tasks


def run(url: str, n: int, plans: bool) -> None:
    db = Database(url)
    reset_to_demo(db)
    t0 = time.perf_counter()
    fill(db, n)
    print(f"\n{db.engine.dialect.name}: {n:,} cases (filled in {time.perf_counter() - t0:.0f} s)")
    svc = WorkflowService(db)
    search = CaseSearch(svc)
    mid = date(2025, 9, 1)
    with db.read_session() as s:
        some_user = s.scalar(select(User.username).where(User.username == "lx_wgy1"))
        chifeng = s.scalar(select(JurisdictionNode.path).where(JurisdictionNode.code == "chifeng"))
        one_key = s.scalar(select(Case.business_key).where(Case.id >= n // 2, Case.grid_path.like(chifeng + "%"))
                           .order_by(Case.id).limit(1))
    queries = [
        ("county auditor, first page", "lxx_dc", SearchFilters()),
        ("city auditor, first page", "cf_dc", SearchFilters()),
        ("status=open", "lxx_dc", SearchFilters(status="open")),
        ("process=leader_case, completed", "lxx_dc", SearchFilters(process_key="leader_case", status="completed")),
        ("business key (exact)", "cf_dc", SearchFilters(business_key=one_key)),
        ("business key prefix BK-2026", "cf_dc", SearchFilters(business_key="BK-2026")),
        ("one grid", "cf_dc", SearchFilters(node="linxi-xinguang-g1")),
        ("one day", "cf_dc", SearchFilters(created_from=mid, created_to=mid)),
        ("participant lx_wgy1", "cf_dc", SearchFilters(participant=some_user)),
        ("task record_result", "cf_dc", SearchFilters(task="record_result")),
        ("task + one grid + a month", "lxx_dc", SearchFilters(task="verify_on_site", node="linxi-xinguang-g2",
                                                              created_from=mid, created_to=mid + timedelta(days=30))),
        ("page 100 (offset 4,950)", "lxx_dc", SearchFilters(offset=4950)),
    ]
    print(f"  {'search':34} {'rows':>5} {'p50':>9} {'p95':>9}")
    for label, user, f in queries:
        page = search.search(user, f)
        p50, p95 = timed(lambda: search.search(user, f), repeat=15)
        print(f"  {label:34} {len(page.rows):>5} {p50:>7.1f}ms {p95:>7.1f}ms")
    if plans:
        for label, user, f in queries:
            task_ids = search._task_ids(f.task) if f.task else None
            with db.read_session() as s:
                u = svc._user(s, user)
                resolved = search._check(s, f)
                resolved["task_ids"] = task_ids
                scope = search.scope_paths(u)
                query = search.query(u, f, resolved, scope, search.plan(s, f, resolved, scope))
                print(f"  plan: {label}")
                print_plan(s, query)
    db.dispose()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1_000_000)
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    ap.add_argument("--no-plans", action="store_true")
    args = ap.parse_args()
    if args.db in ("sqlite", "both"):
        run(f"sqlite:///{tempfile.mkdtemp()}/case_search.sqlite", args.size, not args.no_plans)
    if args.db in ("postgres", "both"):
        run(PG_URL, args.size, not args.no_plans)


if __name__ == "__main__":
    main()
