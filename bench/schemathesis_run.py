"""Hostile input at volume: the schemathesis test of tests/test_reliability_api_fuzz.py
with enough generated requests (≥ 10,000 by default) and the counts printed.

Each of the API's operations gets `--examples` schema-valid and `--examples`
schema-invalid requests (fewer where the document allows fewer distinct ones),
sent to the Flask app in-process (WSGI, no network), on a temporary SQLite
database or on DATABASE_URL. Every response must carry a documented status, a
body matching the document, and never a 5xx; failures are printed with a curl
line to reproduce them.

    cd <repo> && .venv/bin/python bench/schemathesis_run.py [--examples 420] [--random]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST = "tests/test_reliability_api_fuzz.py"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=420, help="generated cases per operation and mode")
    parser.add_argument("--random", action="store_true", help="a new random sample (default: the fixed one)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.jsonl"
        env = dict(os.environ, GRIDFLOW_FUZZ_EXAMPLES=str(args.examples), GRIDFLOW_FUZZ_REPORT=str(report))
        if args.random:
            env["GRIDFLOW_FUZZ_RANDOM"] = "1"
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", TEST],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        lines = report.read_text(encoding="utf-8").splitlines() if report.exists() else []

    if not lines:
        print(run.stdout[-5000:], run.stderr[-3000:], sep="\n")
        print("no report written: the test did not run")
        return 1
    result = json.loads(lines[-1])
    by_operation: dict[str, Counter] = {}
    for key, count in result["requests"].items():
        method, path, status = key.split()
        by_operation.setdefault(f"{method} {path}", Counter())[status] += count
    total = sum(result["requests"].values())
    # a 5xx fails schemathesis' checks before the test counts its status: count those failures too
    server_errors = (sum(c for k, c in result["requests"].items() if k.split()[2].startswith("5"))
                     + sum("Server error" in failure for failure in result["failures"]))

    print(f"schemathesis against /api/v1/openapi.json  ({'PostgreSQL' if 'postgres' in os.environ.get('DATABASE_URL', '') else 'SQLite'}, "
          f"{args.examples} examples per operation and mode, {'random' if args.random else 'fixed'} sample)")
    print(f"{'operation':<48} {'requests':>9}  statuses")
    for op in sorted(by_operation):
        statuses = ", ".join(f"{s}×{n}" for s, n in sorted(by_operation[op].items()))
        print(f"{op:<48} {sum(by_operation[op].values()):>9}  {statuses}")
    print(f"{'total':<48} {total:>9}")
    print(f"server errors (5xx): {server_errors}")
    print(f"check failures: {len(result['failures'])}")
    for failure in result["failures"]:
        print("-" * 72)
        print(failure)
    print(f"time: {elapsed:.0f} s ({total / elapsed:.0f} requests/s including set-up)")
    print(f"target: >= 10,000 requests, 0 server errors, 0 check failures -> "
          f"{'met' if total >= 10_000 and not server_errors and not result['failures'] else 'NOT met'}")
    return 0 if run.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
