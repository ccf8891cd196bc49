"""The web app under gunicorn, as `make run` serves it, for a bench or a test that
needs real server processes: a free port, gunicorn started on it, and a wait
until it answers (the database: bench/scratch.py).

Used by bench/http_load.py and tests/test_reliability_crash.py (both have the
repository root on sys.path: the bench inserts it, pytest runs from it).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gunicorn(database_url: str, port: int, log_path: Path, *, secret_key: str, workers: int,
                   options: tuple[str, ...] = (), new_session: bool = False) -> subprocess.Popen:
    """gunicorn serving `web:create_app()` on 127.0.0.1:`port`, its output in `log_path`.

    `new_session`: the server leads a process group of its own, so that a signal to
    the group (os.killpg) reaches the master and every worker at once."""
    env = dict(os.environ, DATABASE_URL=database_url, SECRET_KEY=secret_key, PYTHONPATH=str(ROOT))
    log = open(log_path, "wb")
    return subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "python:web.gunicorn_conf", "--workers", str(workers),
         "--bind", f"127.0.0.1:{port}", *options, "web:create_app()"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session)


def wait_until_answering(server: subprocess.Popen, port: int, log_path: Path, timeout: float = 60) -> None:
    """Poll the API's OpenAPI document until it answers 200; RuntimeError (with the end
    of gunicorn's log) if gunicorn exits or does not answer within `timeout` seconds."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.returncode}; the end of its log ({log_path}):\n"
                               + Path(log_path).read_text(errors="replace")[-3000:])
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"gunicorn did not answer on port {port} within {timeout:.0f} s (its log: {log_path})")
