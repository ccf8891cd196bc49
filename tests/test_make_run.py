"""`make run` stops as a whole: the server and the timer worker both end when it is stopped,
whether by Ctrl-C (the terminal's whole process group) or by a TERM sent to `make` alone (a
supervisor's). A server left behind keeps its port, and the next `make run` fails to start."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from bench.live_app import free_port
from tests.conftest import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.sqlite_run_only]   # its own SQLite whatever the run: once (tests/conftest.py)


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def prepared(tmp_path):
    """A database with the demo organisation and the processes (what `make setup` makes; the
    test skips setup's year of demo history, which takes a minute)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'run.sqlite'}"}
    gridflow = Path(sys.executable).parent / "gridflow"
    subprocess.run([str(gridflow), "setup-demo"], cwd=ROOT, env=env, check=True, capture_output=True)
    return env


@pytest.mark.parametrize("stop", ["ctrl-c", "term-to-make"])
def test_stopping_make_run_stops_the_server_and_the_worker(prepared, tmp_path, stop):
    port = free_port()
    venv = Path(sys.executable).parent.parent
    log = (tmp_path / "run.log").open("w")
    make = subprocess.Popen(["make", "-o", "setup", "run", f"VENV={venv}", f"PORT={port}", "WORKERS=1"],
                            cwd=ROOT, env=prepared, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 60
        while not _answers(port):
            assert make.poll() is None, (tmp_path / "run.log").read_text()
            assert time.monotonic() < deadline, "make run did not start serving"
            time.sleep(0.3)
        started = _descendants(make.pid)
        assert len(started) >= 3   # the recipe's shell, the worker, gunicorn (and its worker)
        if stop == "ctrl-c":
            os.killpg(make.pid, signal.SIGINT)
        else:
            make.send_signal(signal.SIGTERM)
        make.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in started) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in started if _alive(pid)], (tmp_path / "run.log").read_text()
        assert not _answers(port)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
        for pid in started | _descendants(make.pid):   # nothing left running, whatever happened
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        log.close()
