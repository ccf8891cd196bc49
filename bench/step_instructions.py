"""Benchmark: CPU instructions per step, raw SpiffWorkflow vs. gridflow, counted by valgrind.

`bench/step_cost.py` times steps on the wall clock, which on a shared 2-core
machine moves by 2x with the load. This counts instructions executed by the
Python process instead (valgrind's callgrind), which does not depend on what
else the machine is doing: the same code and inputs give the same count.

For each kind it runs `--steps-a` and `--steps-b` steps (each in a fresh process
under callgrind, after the same setup) and divides the difference in
instructions by the difference in steps: the setup cancels out.

* raw      -- as in step_cost.py: plain SpiffWorkflow, stock serializer round trip
              (spec included) per step, steps 1..2 of a fresh case (its cost grows
              with every step, so only the first ones are comparable);
* sqlite   -- WorkflowService.complete_task on SQLite: the whole transaction,
              database engine included (SQLite runs in the process);
* postgres -- the same on PostgreSQL: the client's share only (the server's work is
              in another process and not counted).

    .venv/bin/python bench/step_instructions.py [--kinds raw,sqlite,postgres]

Needs valgrind (Debian package). Takes a few minutes (callgrind runs Python ~50x
slower). Prints figures; always exits 0.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PG_DB = "gridflow_bench_instructions"
RAW_STEPS = (0, 2)        # steps 1 and 2 of a fresh case
PRODUCT_STEPS = (5, 25)   # a steady case: 20 steps


def run_steps(kind: str, steps: int, db_dir: str) -> None:
    """The child: setup, then `steps` steps."""
    import bench.step_cost as bc
    if kind == "raw":
        raw = bc.RawEngine()
        text = raw.new_case()
        for _ in range(bc.WARMUP):
            text = raw.step(text)
        text = raw.new_case()
        for _ in range(steps):
            text = raw.step(text)
        return
    url = (f"sqlite:///{Path(db_dir) / 'bench.sqlite'}" if kind == "sqlite"
           else f"postgresql+psycopg://postgres@127.0.0.1:5432/{PG_DB}")
    db, svc = bc.setup_product(url)
    view = svc.start_case(bc.PROCESS_ID, bc.GRID, {}, bc.ACTOR)
    for _ in range(bc.WARMUP):
        view = bc.complete_next(svc, view)
    view = svc.start_case(bc.PROCESS_ID, bc.GRID, {}, bc.ACTOR)
    for _ in range(steps):
        view = bc.complete_next(svc, view)
    db.dispose()


def instructions(kind: str, steps: int) -> int | None:
    with tempfile.TemporaryDirectory(prefix="gridflow-instr-") as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, __file__,
             "--child", kind, str(steps), tmp],
            cwd=ROOT, capture_output=True, text=True)
        found = re.search(r"Collected : (\d+)", proc.stderr)
        if proc.returncode != 0 or not found:
            print(f"  {kind} x{steps}: failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            return None
        return int(found.group(1))


def per_step(kind: str) -> float | None:
    a, b = RAW_STEPS if kind == "raw" else PRODUCT_STEPS
    ia, ib = instructions(kind, a), instructions(kind, b)
    if ia is None or ib is None:
        return None
    value = (ib - ia) / (b - a)
    print(f"  {kind:9} {value / 1e6:8.2f} M instructions per step  (steps {a + 1}..{b})", flush=True)
    return value


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        run_steps(argv[1], int(argv[2]), argv[3])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", default="raw,sqlite,postgres")
    args = ap.parse_args(argv)
    if not shutil.which("valgrind"):
        print("valgrind is not installed (apt-get install valgrind); nothing measured")
        return 0
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    if "postgres" in kinds:
        from bench.step_cost import pg_prepare
        import bench.step_cost as bc
        bc.PG_BENCH_DB = PG_DB
        ok, msg = pg_prepare()
        if not ok:
            print(f"PostgreSQL unreachable ({msg}); skipping it")
            kinds.remove("postgres")
    os.chdir(ROOT)
    print("Instructions per step (valgrind callgrind; independent of the machine's load)")
    figures = {kind: per_step(kind) for kind in kinds}
    raw = figures.get("raw")
    for kind in ("sqlite", "postgres"):
        if raw and figures.get(kind):
            note = " (client only; the server's work is not counted)" if kind == "postgres" else ""
            print(f"  product {kind} / raw step 1-2 = {figures[kind] / raw:.2f}   target <= 1.5{note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
