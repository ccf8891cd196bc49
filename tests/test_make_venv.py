"""`make venv` makes the virtualenv from the distribution's python3 where it is 3.11+ and can
make one (Debian's is built with PGO and LTO: ~10 % less CPU a request than pyenv's source
build, docs/performance.md session 22), else from the next candidate; with none it says what
to install, and makes nothing."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.sqlite_run_only, pytest.mark.skipif(shutil.which("make") is None, reason="needs make")]


def _chosen(*assignments: str) -> str:
    out = subprocess.run(["make", "-s", "--no-print-directory", "--eval", "chosen: ; @echo '[$(PYTHON)]'", "chosen",
                          *assignments], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True)
    return out.stdout.strip()[1:-1]


def _qualifies(python: str) -> bool:
    check = "import sys, ensurepip, venv; sys.exit(sys.version_info < (3, 11))"
    return shutil.which(python) is not None and subprocess.run([python, "-c", check]).returncode == 0


def test_the_first_candidate_that_can_make_a_311_virtualenv_is_taken():
    chosen = _chosen()
    assert chosen in ("/usr/bin/python3", "python3")
    if _qualifies("/usr/bin/python3"):
        assert chosen == "/usr/bin/python3"
    assert _qualifies(chosen)


def test_a_candidate_that_is_missing_or_too_old_is_passed_over(tmp_path):
    old = tmp_path / "python3"
    old.write_text("#!/bin/sh\nexit 1\n")   # answers every check with a failure, as a 3.9 would
    old.chmod(0o755)
    assert _chosen(f"PYTHON_CANDIDATES=/nonexistent/python3 {old} {sys.executable}") == sys.executable


def test_python_given_is_used_as_given():
    assert _chosen("PYTHON=/opt/some/python3.12") == "/opt/some/python3.12"


def test_with_no_candidate_it_says_what_to_install_and_makes_nothing(tmp_path):
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-s", "--no-print-directory", "venv", f"VENV={venv}",
                          "PYTHON_CANDIDATES=/nonexistent/python3"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "no Python 3.11+ that can make a virtualenv" in out.stdout + out.stderr
    assert "python3-venv" in out.stdout + out.stderr
    assert not venv.exists()
