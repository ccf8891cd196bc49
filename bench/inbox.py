"""Inbox and supervision query speed with many open tasks (prints figures; not a test).

Fills a scratch database with N open work items spread over the demo
jurisdiction tree (bulk inserts: this measures the read side only), then times
the inbox query and its count for a grid worker, a town dispatcher, a county
leader and a city dispatcher, and the supervision (督办) board for the three who
supervise, and prints the plans of the town dispatcher's inbox and the city's
board. Target (issue #9): p95 <= 30 ms at 10^6 open tasks.

    .venv/bin/python bench/inbox.py --sizes 10000,100000,1000000 [--db sqlite|postgres|both]
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

# grid worker, town dispatcher, county leader, city dispatcher (demo/org.yaml)
USERS = ["lx_wgy1", "lxz_pd", "lxx_ld1", "cf_pd"]
SUPERVISORS = ["lxz_pd", "lxx_ld1", "cf_pd"]
NOW = datetime(2026, 3, 1, tzinfo=timezone.utc)   # the fill's due dates run from 2 days before to 10 after
TARGET_P95_MS = 30
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/gridflow_bench"


def fill(db: Database, n: int) -> None:
    rng = random.Random(7)
    with db.unit_of_work() as s:
        grids = s.scalars(select(JurisdictionNode).where(JurisdictionNode.level == "grid")).all()
        pairs = [(ra.role, ra.node_id) for ra in s.scalars(select(RoleAssignment))]
        version_id = s.scalar(text("SELECT id FROM process_version ORDER BY id LIMIT 1"))
    now = NOW
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
            # to the second, as due dates computed from creation times are (whole hours would
            # give thousands of ties, which no index order breaks)
            due = now + timedelta(seconds=rng.randint(-48 * 3600, 240 * 3600)) if rng.random() < 0.8 else None
            items.append(dict(id=str(uuid.UUID(int=rng.getrandbits(128))), case_id=i + 1, process_key="grid_matter",
                              spec_id="town_dispatch", name="镇级派单", role=role, candidate_node_id=node,
                              grid_path=grid.path, status="open", unresolved=False, created_at=now,
                              due_at=due, sort_due=due or NO_DUE_DATE))
        with db.unit_of_work() as s:
            s.execute(insert(Case), cases)
            s.execute(insert(WorkItem), items)
    # the planner's statistics, as a live database has them (a bulk load has none yet);
    # on PostgreSQL also the visibility map autovacuum keeps, without which no index-only
    # scan skips the table (VACUUM runs outside a transaction)
    if db.is_postgres:
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE"))
    else:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def run(url: str, n: int) -> list[float]:
    """Fill, time, print; the p95s measured (ms)."""
    from engine import clock
    from engine.supervision import Supervision, board_query, supervised_paths

    db = Database(url)
    reset_to_demo(db)
    t0 = time.perf_counter()
    fill(db, n)
    print(f"\n{db.engine.dialect.name}: {n:,} open work items (filled in {time.perf_counter() - t0:.1f} s)")
    clock.set_clock(clock.FrozenClock(NOW))
    svc = WorkflowService(db)
    supervision = Supervision(svc)
    p95s = []
    print(f"  {'user':10} {'query':10} {'rows':>6} {'p50':>9} {'p95':>9}")
    for user in USERS:
        rows = svc.inbox(user, InboxFilters(limit=50))
        p50, p95 = timed(lambda: svc.inbox(user, InboxFilters(limit=50)), repeat=30)
        c50, c95 = timed(lambda: svc.inbox_count(user), repeat=10)
        p95s += [p95, c95]
        print(f"  {user:10} {'inbox':10} {len(rows):>6} {p50:>7.1f}ms {p95:>7.1f}ms")
        print(f"  {user:10} {'count':10} {svc.inbox_count(user):>6} {c50:>7.1f}ms {c95:>7.1f}ms")
        if user in SUPERVISORS:
            board = supervision.board(user)
            b50, b95 = timed(lambda: supervision.board(user), repeat=30)
            p95s.append(b95)
            shown = sum(len(g.rows) for g in board.groups)
            print(f"  {user:10} {'督办 board':10} {shown:>6} {b50:>7.1f}ms {b95:>7.1f}ms"
                  + ("  (first 500 shown)" if board.truncated else ""))
    with db.read_session() as s:
        from engine.models import User
        user = s.scalar(select(User).where(User.username == "lxz_pd"))
        query = svc._inbox_query(s, svc._user(s, user.id), InboxFilters(limit=50))
        print("  plan for lxz_pd's first inbox page:")
        print_plan(s, query)
        city = svc._user(s, s.scalar(select(User.id).where(User.username == "cf_pd")))
        print("  plan for cf_pd's 督办 board:")
        print_plan(s, board_query(supervised_paths(city), NOW, 501))
    clock.set_clock(clock.SystemClock())
    worst = max(p95s)
    verdict = "met" if worst <= TARGET_P95_MS else "NOT met"
    print(f"  worst p95 {worst:.1f} ms: target <= {TARGET_P95_MS} ms {verdict}")
    db.dispose()
    return p95s


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
