"""Inbox query speed with many open tasks (prints figures; not a test).

Fills a scratch database with N open work items spread over the demo
jurisdiction tree (bulk inserts: this measures the read side only), then times
the inbox query and its count for a grid worker, a town dispatcher and a city
dispatcher, and prints the query plan.

    .venv/bin/python bench/inbox.py --sizes 10000,100000 [--db sqlite|postgres]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert, select, text  # noqa: E402

from bench.scratch import create_postgres_database, print_plan, reset_to_demo, timed  # noqa: E402
from engine.db import Database  # noqa: E402
from engine.models import NO_DUE_DATE, Case, JurisdictionNode, RoleAssignment, WorkItem  # noqa: E402
from engine.service import InboxFilters, WorkflowService  # noqa: E402

USERS = ["lx_wgy1", "lxz_pd", "cf_pd"]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/gridflow_bench"


def fill(db: Database, n: int) -> None:
    rng = random.Random(7)
    with db.unit_of_work() as s:
        grids = s.scalars(select(JurisdictionNode).where(JurisdictionNode.level == "grid")).all()
        pairs = [(ra.role, ra.node_id) for ra in s.scalars(select(RoleAssignment))]
        version_id = s.scalar(text("SELECT id FROM process_version ORDER BY id LIMIT 1"))
    now = datetime(2026, 3, 1, tzinfo=timezone.utc)
    batch = 5000
    for start in range(0, n, batch):
        cases, items = [], []
        for i in range(start, min(n, start + batch)):
            grid = rng.choice(grids)
            cases.append(dict(id=i + 1, business_key=f"BK-{i + 1:08d}", process_key="grid_matter",
                              process_version_id=version_id, grid_id=grid.id, grid_path=grid.path, status="open",
                              title="bench", summary={}, created_at=now, updated_at=now, row_version=1,
                              colour=rng.choice(["blue", "yellow", "orange", "red"]), category="dispute"))
            role, node = rng.choice(pairs)
            due = now + timedelta(hours=rng.randint(-48, 240)) if rng.random() < 0.8 else None
            items.append(dict(id=str(uuid.UUID(int=rng.getrandbits(128))), case_id=i + 1, process_key="grid_matter",
                              spec_id="town_dispatch", name="镇级派单", role=role, candidate_node_id=node,
                              grid_path=grid.path, status="open", unresolved=False, created_at=now,
                              due_at=due, sort_due=due or NO_DUE_DATE))
        with db.unit_of_work() as s:
            s.execute(insert(Case), cases)
            s.execute(insert(WorkItem), items)
    with db.engine.begin() as conn:
        conn.execute(text("ANALYZE"))


def run(url: str, n: int) -> None:
    db = Database(url)
    reset_to_demo(db)
    t0 = time.perf_counter()
    fill(db, n)
    print(f"\n{db.engine.dialect.name}: {n:,} open work items (filled in {time.perf_counter() - t0:.1f} s)")
    svc = WorkflowService(db)
    print(f"  {'user':10} {'rows':>6} {'page p50':>9} {'page p95':>9} {'count p50':>10} {'count':>8}")
    for user in USERS:
        rows = svc.inbox(user, InboxFilters(limit=50))
        p50, p95 = timed(lambda: svc.inbox(user, InboxFilters(limit=50)), repeat=30)
        c50, _ = timed(lambda: svc.inbox_count(user), repeat=10)
        print(f"  {user:10} {len(rows):>6} {p50:>7.1f}ms {p95:>7.1f}ms {c50:>8.1f}ms {svc.inbox_count(user):>8,}")
    with db.read_session() as s:
        from engine.models import User
        user = s.scalar(select(User).where(User.username == "lxz_pd"))
        query = svc._inbox_query(s, svc._user(s, user.id), InboxFilters(limit=50))
        print("  plan for lxz_pd's first page:")
        print_plan(s, query)
    db.dispose()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    args = ap.parse_args()
    sizes = [int(x) for x in args.sizes.split(",")]
    for n in sizes:
        if args.db in ("sqlite", "both"):
            run(f"sqlite:///{tempfile.mkdtemp()}/inbox.sqlite", n)
        if args.db in ("postgres", "both"):
            create_postgres_database(PG_URL)
            run(PG_URL, n)


if __name__ == "__main__":
    main()
