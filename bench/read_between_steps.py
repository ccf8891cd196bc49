"""Benchmark: what a read between two steps costs the second step.

An official's app reads the inbox between completions. `bench/step_cost.py` times
completions back to back; this times them with and without an inbox read in front,
in turns on the same case's loop (`tests/fixtures/loop.bpmn`), and prints the medians:

* step alone       -- `complete_task` right after the previous one;
* step after read  -- `inbox()` first (not timed in this column), then `complete_task`;
* read             -- the `inbox()` call itself.

On PostgreSQL a read that ended in a ROLLBACK made psycopg forget every statement
it had prepared on that connection, and the next step's statements were parsed and
planned again (docs/performance.md, session 9). Prints figures; always exits 0.

    .venv/bin/python bench/read_between_steps.py [--db sqlite|postgres|both] [--rounds N]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import step_cost as sc  # noqa: E402  (after the path set-up)

STEPS_PER_CASE = 5


def measure(url: str, rounds: int) -> dict[str, float]:
    """Medians in ms over `rounds` cases of STEPS_PER_CASE steps, the two kinds of step alternating."""
    db, svc = sc.setup_product(url)
    samples: dict[str, list[float]] = {"step alone": [], "step after read": [], "read": []}
    try:
        for r in range(rounds + 2):                  # two rounds of warm-up
            view = svc.start_case(sc.PROCESS_ID, sc.GRID, {}, sc.ACTOR)
            for i in range(STEPS_PER_CASE):
                with_read = (i + r) % 2 == 0
                t0 = time.perf_counter()
                if with_read:
                    svc.inbox(sc.ACTOR)
                t1 = time.perf_counter()
                view = sc.complete_next(svc, view)
                t2 = time.perf_counter()
                if r >= 2:
                    samples["step after read" if with_read else "step alone"].append((t2 - t1) * 1000)
                    if with_read:
                        samples["read"].append((t1 - t0) * 1000)
    finally:
        db.dispose()
    return {name: statistics.median(values) for name, values in samples.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    ap.add_argument("--rounds", type=int, default=80, help="cases per database (default 80)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gridflow-bench-") as tmp:
        urls = {}
        if args.db in ("sqlite", "both"):
            urls["SQLite"] = f"sqlite:///{Path(tmp) / 'bench.sqlite'}"
        if args.db in ("postgres", "both"):
            ok, message = sc.pg_prepare()
            if ok:
                urls["PostgreSQL"] = sc.PG_URL
            else:
                print(f"PostgreSQL skipped: {message}")
        print(f"{'':12} {'step alone':>12} {'step after read':>16} {'read':>8}   (ms, medians)")
        for name, url in urls.items():
            m = measure(url, max(1, args.rounds))
            print(f"{name:12} {m['step alone']:12.2f} {m['step after read']:16.2f} {m['read']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
