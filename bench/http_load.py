"""Load benchmark: gunicorn + PostgreSQL, concurrent grid-app clients over /api/v1.

Sets up a database of its own (PostgreSQL `gridflow_http` by default: schema,
demo organisation, processes/ deployed; emptied first), starts gunicorn with N
workers on `web:create_app()` (as `make run` does), then runs `--clients`
concurrent clients for `--seconds`. Each client is a grid worker's app and its
grid leader's: the worker reports a blue dispute (POST /api/v1/cases), the
leader completes 网格微调处 (micro-mediation), the worker records the result,
and the case is closed; then again. Every request is timed. With `--inbox`, whoever
completes a task first reads their inbox (GET /api/v1/tasks), as the app does before
an official picks the task; the completions/s are then of a realistic mix of reads
and writes.

Prints completions/s (task completions that answered 200), requests/s,
p50/p95/p99 latency per kind of request and overall, errors by status, and
the RSS of each gunicorn worker after the run. Targets (issue #9): ≥ 300
completions/s, p95 ≤ 100 ms, 0 errors, RSS ≤ 150 MB per worker. Exits 0
whatever the figures (it is a benchmark, not a test); 1 if it could not run.

    cd <repo> && .venv/bin/python bench/http_load.py [--seconds 60] [--clients 32] [--workers 3]
                 [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/gridflow_http]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.live_app import free_port, start_gunicorn, wait_until_answering  # noqa: E402
from bench.machine import speed_line  # noqa: E402
from bench.scratch import create_postgres_database, libpq_url, reset_to_demo  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/gridflow_http"
PASSWORD = "demo123"
# (grid worker, their grid, the grid's leader) from demo/org.yaml
TEAMS = [
    ("lx_wgy1", "linxi-xinguang-g1", "lx_wgz1"),
    ("lx_wgy2", "linxi-xinguang-g2", "lx_wgz1"),
    ("lx_wgy3", "linxi-dongsheng-g1", "lx_wgz2"),
    ("lx_wgy4", "linxi-dongsheng-g2", "lx_wgz3"),
    ("wy_wgy1", "wuyuan-maojiaqiao-g1", "wy_wgz1"),
    ("wy_wgy2", "wuyuan-maojiaqiao-g2", "wy_wgz1"),
    ("ss_wgy1", "songshan-fushanzhuang-g1", "ss_wgz1"),
]
REPORT = {"category": "dispute", "colour": "blue", "description": "两户村民因宅基地边界发生争执（压测）",
          "location": "压测地点", "parties": "李某, 王某"}
TASK_DATA = {
    "micro_mediation": {"resolved": True, "mediation_note": "双方达成一致，已签字（压测）"},
    "record_result": {"result_note": "已回访，双方履行协议（压测）"},
}
TARGET_RATE, TARGET_P95_MS, TARGET_RSS_MB = 300, 100, 150


# ---------------------------------------------------------------- set-up

def prepare_database(url: str) -> None:
    from engine.db import Database
    from forms import FormRegistry

    db = Database(url)
    try:
        reset_to_demo(db, FormRegistry().keys(), actor="bench")
    finally:
        db.dispose()


def worker_pids(master: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:
                pids.append(int(entry.name))
    return sorted(pids)


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on the machine (all databases: on a shared
    machine other users' queries count too)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() in ("postgres", "postmaster"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def count_statements(url: str) -> list[tuple[str, int, int]]:
    """One report and its two completions in process (Flask's test client on the
    bench database): (request kind, SQL statements, pool check-outs) of each. Every
    check-out is a transaction (PostgreSQL: BEGIN, a pre-ping, COMMIT or ROLLBACK
    round trips around its statements) or, for single reads, an autocommit read."""
    from sqlalchemy import event
    from sqlalchemy.pool import Pool

    from web import create_app

    app = create_app({"DATABASE_URL": url, "SECRET_KEY": "http-load-bench-secret"})
    engine = app.extensions["gridflow"].db.engine
    counts = {"statements": 0, "checkouts": 0}

    def on_statement(*_args):
        counts["statements"] += 1

    def on_checkout(*_args):
        counts["checkouts"] += 1

    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(Pool, "checkout", on_checkout)
    try:
        http = app.test_client()
        worker, grid, leader = TEAMS[0]
        auth = {}
        for name in (worker, leader):
            token = http.post("/api/v1/auth/token", json={"username": name, "password": PASSWORD}).get_json()
            auth[name] = {"Authorization": f"Bearer {token['token']}"}
        holder_of = {"micro_mediation": leader, "record_result": worker}
        out = []

        def call(kind, user, path, body):
            counts.update(statements=0, checkouts=0)
            r = http.post(path, json=body, headers=auth[user])
            if r.status_code not in (200, 201):
                raise RuntimeError(f"{kind}: {r.status_code} {r.get_data(as_text=True)[:300]}")
            out.append((kind, counts["statements"], counts["checkouts"]))
            return r.get_json()

        for _round in range(2):  # the first round warms caches (specs, forms); keep the second
            out.clear()
            case = call("start", worker, "/api/v1/cases", {"process": "grid_matter", "grid": grid, "data": REPORT})
            while case["status"] == "open":
                task = [t for t in case["open_tasks"] if t["spec_id"] in TASK_DATA][0]
                case = call(f"complete {task['spec_id']}", holder_of[task["spec_id"]],
                            f"/api/v1/tasks/{task['id']}/complete", {"data": TASK_DATA[task["spec_id"]]})
        return out
    finally:
        event.remove(engine, "before_cursor_execute", on_statement)
        event.remove(Pool, "checkout", on_checkout)
        app.extensions["gridflow"].db.dispose()


# ---------------------------------------------------------------- the clients

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter = Counter()
        self.error_samples: list[str] = []
        self.completions = 0
        self.completed_at: list[float] = []   # perf_counter of each completion: the rate over the run
        self.cases_closed = 0

    def record(self, kind: str, seconds: float, status: int | str, ok: bool, body: str = ""):
        with self.lock:
            self.latency[kind].append(seconds)
            if not ok:
                self.errors[f"{kind} {status}"] += 1
                if len(self.error_samples) < 5:
                    self.error_samples.append(f"{kind} {status}: {body[:300]}")


def login(base: str, username: str) -> str:
    import httpx
    r = httpx.post(f"{base}/api/v1/auth/token", json={"username": username, "password": PASSWORD}, timeout=30)
    r.raise_for_status()
    return r.json()["token"]


class KeepAlive:
    """A grid app's HTTP connection: the standard library's http.client, one
    connection kept alive while the server allows it (gunicorn's sync workers close
    it after each answer; http.client then opens the next). It sends the same
    requests as httpx (JSON bodies, bearer token) and parses every answer, for a
    fraction of the client CPU: on 2 cores shared with the server, that CPU is the
    server's. A request that fails is an error of the run, never retried."""

    def __init__(self, base: str, timeout: float = 60):
        from urllib.parse import urlsplit
        parts = urlsplit(base)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.conn = None

    def post(self, path: str, body: dict | None, headers: dict, method: str = "POST") -> tuple[int, bytes]:
        import http.client
        import json
        payload = json.dumps(body, ensure_ascii=False).encode() if body is not None else None
        if payload is not None:
            headers = {**headers, "Content-Type": "application/json", "Content-Length": str(len(payload))}
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request(method, path, payload, headers)
            r = self.conn.getresponse()
            return r.status, r.read()
        except Exception:
            self.close()   # start the next request on a fresh connection
            raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def client_loop(index: int, base: str, tokens: dict, stop: threading.Event, stats: Stats, client: str = "http.client",
                read_inbox: bool = False):
    import json
    worker, grid, leader = TEAMS[index % len(TEAMS)]
    auth = {name: {"Authorization": f"Bearer {tokens[name]}"} for name in (worker, leader)}
    holder_of = {"micro_mediation": leader, "record_result": worker}
    if client == "httpx":
        import httpx
        http = httpx.Client(base_url=base, timeout=60)

        def post(path, body, headers, method="POST"):
            r = http.request(method, path, json=body, headers=headers)
            return r.status_code, r.content
    else:
        http = KeepAlive(base)
        post = http.post
    try:
        def call(kind, user, path, body, method="POST"):
            started = time.perf_counter()
            try:
                status, content = post(path, body, auth[user], method)
            except Exception as exc:  # noqa: BLE001 - a transport error is an error of the run
                stats.record(kind, time.perf_counter() - started, type(exc).__name__, False, str(exc))
                return None
            elapsed = time.perf_counter() - started
            ok = status in (200, 201)
            stats.record(kind, elapsed, status, ok, "" if ok else content.decode(errors="replace"))
            return json.loads(content) if ok else None

        while not stop.is_set():
            case = call("start", worker, "/api/v1/cases", {"process": "grid_matter", "grid": grid, "data": REPORT})
            while case is not None and case["status"] == "open" and not stop.is_set():
                tasks = [t for t in case["open_tasks"] if t["spec_id"] in TASK_DATA]
                if not tasks:
                    stats.record("unexpected", 0.0, "path", False, f"open tasks {case['open_tasks']}")
                    break
                task = tasks[0]
                if read_inbox and call("inbox", holder_of[task["spec_id"]], "/api/v1/tasks", None, "GET") is None:
                    break
                case = call("complete", holder_of[task["spec_id"]], f"/api/v1/tasks/{task['id']}/complete",
                            {"data": TASK_DATA[task["spec_id"]]})
                if case is not None:
                    with stats.lock:
                        stats.completions += 1
                        stats.completed_at.append(time.perf_counter())
                        stats.cases_closed += case["status"] == "completed"
    finally:
        http.close()


def by_window(moments: list[float], started: float, elapsed: float, seconds: float) -> list[int]:
    """How many of `moments` fell in each whole `seconds` window of the run: a rate that
    falls as the run goes on shows a cost that grows with the data (dead rows, bloat)."""
    counts = [0] * max(1, int(elapsed // seconds))
    for moment in moments:
        window = int((moment - started) // seconds)
        if window < len(counts):
            counts[window] += 1
    return counts


SERVER_SETTINGS = ("autovacuum", "fsync", "synchronous_commit", "shared_buffers")


def postgres_settings(url: str) -> dict[str, str]:
    """The server settings that change what a long run measures ({} for another database). A
    server with autovacuum off (this machine's CI server) keeps every dead row version a run
    leaves, and each update's index entries with it: such a run slows as it goes, where a
    production server cleans up behind it."""
    if not url.startswith("postgresql"):
        return {}
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5) as conn:
        return dict(conn.execute("SELECT name, current_setting(name) FROM unnest(%s::text[]) AS name",
                                 (list(SERVER_SETTINGS),)).fetchall())


# what autovacuum does on a production server, done by the bench where the server has it off
AUTOVACUUM_STANDIN_SECONDS = 5.0
WRITTEN_TABLES = ("gf_case", "work_item", "case_state", "case_sequence", "notification", "audit_event")


def vacuum_loop(url: str, every: float, stop: threading.Event, took: list[float]) -> None:
    """VACUUM the tables the run writes every `every` seconds until `stop`, as autovacuum
    would: their dead row versions (three updated rows a completion) cleared as they come."""
    import psycopg

    with psycopg.connect(libpq_url(url), autocommit=True, connect_timeout=5) as conn:
        while not stop.wait(every):
            started = time.perf_counter()
            conn.execute(f"VACUUM {', '.join(WRITTEN_TABLES)}")
            took.append(time.perf_counter() - started)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] * 1000


def run(args) -> int:
    url = args.database_url
    print(f"setting up {url.split('@')[-1]} (schema, demo org, processes/) ...", flush=True)
    create_postgres_database(url)
    prepare_database(url)
    statements = [] if args.no_statements else count_statements(url)
    server_settings = postgres_settings(url)
    speed = speed_line()   # before the run: the machine idle, as the other runs' figures were taken
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = Path(args.log)
    server = start_gunicorn(
        url, port, log_path, secret_key="http-load-bench-secret", workers=args.workers,
        options=("--worker-class", args.worker_class, "--threads", str(args.threads), "--graceful-timeout", "5",
                 "--access-logfile", "-"))   # an access line per request, as `make run` writes
    try:
        wait_until_answering(server, port, log_path)
        tokens = {name: login(base, name) for team in TEAMS for name in (team[0], team[2])}
        pids = worker_pids(server.pid)
        rss_before = {pid: rss_mb(pid) for pid in pids}
        stats, stop = Stats(), threading.Event()
        threads = [threading.Thread(target=client_loop, args=(i, base, tokens, stop, stats, args.client, args.inbox),
                                    daemon=True)
                   for i in range(args.clients)]
        print(f"running {args.clients} clients ({args.client}) against {args.workers} gunicorn workers "
              f"({args.worker_class}, {args.threads} thread(s) each) for {args.seconds} s ...", flush=True)
        pg = postgres_pids()
        cpu_before = {"client": time.process_time(), "gunicorn": sum(cpu_seconds(p) for p in pids),
                      "postgres": sum(cpu_seconds(p) for p in pg)}
        load_before = os.getloadavg()
        started = time.perf_counter()
        vacuum_every = args.vacuum_every if args.vacuum_every is not None else (
            AUTOVACUUM_STANDIN_SECONDS if server_settings.get("autovacuum") == "off" else 0)
        vacuums = []
        if vacuum_every > 0:
            threads.append(threading.Thread(target=vacuum_loop, args=(url, vacuum_every, stop, vacuums), daemon=True))
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join(120)
        elapsed = time.perf_counter() - started
        pids = worker_pids(server.pid)
        cpu = {"client": time.process_time() - cpu_before["client"],
               "gunicorn": sum(cpu_seconds(p) for p in pids) - cpu_before["gunicorn"],
               "postgres": sum(cpu_seconds(p) for p in set(pg) | set(postgres_pids())) - cpu_before["postgres"]}
        load_after = os.getloadavg()
        rss_after = {pid: rss_mb(pid) for pid in pids}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()

    all_latency = [v for values in stats.latency.values() for v in values]
    requests = len(all_latency)
    errors = sum(stats.errors.values())
    rate = stats.completions / elapsed
    p95 = pct(all_latency, 95)
    print()
    print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; database {url.split('@')[-1]}")
    print(f"interpreter: {speed}")
    if server_settings:
        print("PostgreSQL server: " + ", ".join(f"{name} {value}" for name, value in server_settings.items())
              + (f"; the bench ran VACUUM on the tables a run writes every {vacuum_every:g} s in its place"
                 f" ({len(vacuums)} VACUUMs, {sum(vacuums):.1f} s in all; its CPU is the server's, counted below)"
                 if vacuum_every > 0 else ""))
    print(f"load average before / after: {' '.join(f'{x:.2f}' for x in load_before)} / "
          f"{' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"gunicorn workers: {args.workers} ({args.worker_class}, threads {args.threads})   "
          f"clients: {args.clients} ({args.client})   duration: {elapsed:.1f} s")
    print(f"task completions: {stats.completions}  ({rate:.1f}/s)   cases reported: {len(stats.latency['start'])}"
          f"   cases closed: {stats.cases_closed}")
    print(f"requests: {requests}  ({requests / elapsed:.1f}/s)   errors: {errors}")
    print("completions/s by 10 s of the run: " + " ".join(f"{n / 10:.0f}" for n in by_window(
        stats.completed_at, started, elapsed, 10)))
    print(f"{'latency ms':<12} {'n':>7} {'p50':>8} {'p95':>8} {'p99':>8} {'max':>8}")
    for kind in sorted(stats.latency) + ["all"]:
        values = all_latency if kind == "all" else stats.latency[kind]
        if values:
            print(f"{kind:<12} {len(values):>7} {pct(values, 50):>8.1f} {pct(values, 95):>8.1f} "
                  f"{pct(values, 99):>8.1f} {max(values) * 1000:>8.1f}")
    total_cpu = sum(cpu.values())
    per = stats.completions or 1
    print("CPU during the run (s): " + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items())
          + f"   = {total_cpu / elapsed:.2f} of {os.cpu_count()} cores;"
          f" per completion (ms): " + ", ".join(f"{k} {v / per * 1000:.1f}" for k, v in cpu.items()))
    if statements:
        print("SQL per request (in process, one case): " + ", ".join(
            f"{kind} {n} statements / {c} check-outs" for kind, n, c in statements))
    for key, count in sorted(stats.errors.items()):
        print(f"  error {key}: {count}")
    for sample in stats.error_samples:
        print(f"  e.g. {sample}")
    print("RSS per gunicorn worker after the run (MB): " + ", ".join(
        f"pid {pid}: {rss_before.get(pid) or 0:.0f} -> {mb:.0f}" for pid, mb in rss_after.items() if mb is not None))
    worst = max((mb for mb in rss_after.values() if mb is not None), default=float("nan"))
    print()
    print(f"targets: completions/s >= {TARGET_RATE}: {'met' if rate >= TARGET_RATE else 'NOT met'} ({rate:.1f});"
          f" p95 <= {TARGET_P95_MS} ms: {'met' if p95 <= TARGET_P95_MS else 'NOT met'} ({p95:.1f});"
          f" errors = 0: {'met' if errors == 0 else 'NOT met'} ({errors});"
          f" RSS <= {TARGET_RSS_MB} MB: {'met' if worst <= TARGET_RSS_MB else 'NOT met'} ({worst:.0f})")
    print(f"(gunicorn's log: {log_path})")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=(os.cpu_count() or 1) + 1,
                        help="gunicorn workers (default: cores + 1, the fastest here: docs/performance.md; "
                             "gunicorn's 2 x cores + 1 spends more CPU per request on 2 cores)")
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"],
                        help="gunicorn worker class (default sync, as `make run`)")
    parser.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker (gthread)")
    parser.add_argument("--client", default="http.client", choices=["http.client", "httpx"],
                        help="the clients' HTTP library: the standard library's keep-alive connection "
                             "(default, light) or httpx (the first runs' client)")
    parser.add_argument("--inbox", action="store_true",
                        help="read the inbox (GET /api/v1/tasks) before each completion, as the app does")
    parser.add_argument("--no-statements", action="store_true",
                        help="skip counting SQL statements per request kind before the run")
    parser.add_argument("--database-url", default=os.environ.get("GRIDFLOW_HTTP_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--vacuum-every", type=float, default=None, metavar="SECONDS",
                        help="VACUUM the tables the run writes every SECONDS, in autovacuum's place (default: "
                             f"every {AUTOVACUUM_STANDIN_SECONDS:g} s when the server runs without autovacuum, "
                             "as this machine's CI server does; 0: never)")
    parser.add_argument("--log", default="/tmp/gridflow_http_load_gunicorn.log")
    args = parser.parse_args(argv)
    try:
        return run(args)
    except Exception as exc:  # noqa: BLE001 - a benchmark that cannot run says why
        print(f"could not run: {type(exc).__name__}: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
