"""How fast this machine runs Python, in one figure the benches print beside theirs.

The machines these benches run on differ by up to 3 × in the speed of the same Python
(docs/performance.md, sessions 18 and 21), and the interpreter's build by another ~30 %
(session 22: pyenv's source build against Debian's, built with PGO and LTO): a figure means
little without it. Importable as `bench.machine` wherever the repository root is on sys.path.
"""
from __future__ import annotations

import platform
import sys
import time

LOOP = 10_000_000


def bare_loop_seconds(repeat: int = 3) -> float:
    """The best of `repeat` timings of a bare loop of 10⁷ additions in a function (0.16 s
    with Debian's 3.11 on session 22's machine, 0.21 s with pyenv's build there)."""
    best = float("inf")
    for _ in range(repeat):
        started, total = time.perf_counter(), 0
        for i in range(LOOP):
            total += i
        best = min(best, time.perf_counter() - started)
    return best


def interpreter() -> str:
    """The interpreter and where it comes from (a distribution's build, pyenv's …): its build
    flags say little (Debian's configure arguments name a shared libpython its own binary does
    not use), the loop's time says what matters."""
    return f"Python {platform.python_version()} ({sys.base_prefix})"


def speed_line() -> str:
    return f"{interpreter()}; a bare loop of 10⁷ additions: {bare_loop_seconds():.2f} s"
