"""The gunicorn settings `make run` and the benches serve with."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_a_worker_freezes_what_it_loaded_and_collects_less_often():
    # in a child process: freezing the test process's objects would keep them for good
    probe = ("import gc, web.gunicorn_conf as conf; before = gc.get_freeze_count(); "
             "conf.post_worker_init(None); "
             "print(gc.get_threshold() == conf.GC_THRESHOLDS, gc.get_freeze_count() > before)")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]


def test_make_run_and_the_benches_use_the_settings():
    # (the tests that start real servers, e.g. tests/test_reliability_crash.py, run gunicorn with them)
    assert "--config python:web.gunicorn_conf" in (ROOT / "Makefile").read_text(encoding="utf-8")
    assert '"--config", "python:web.gunicorn_conf"' in (ROOT / "bench" / "live_app.py").read_text(encoding="utf-8")
