"""gunicorn settings shared by `make run` and the benches (`--config python:web.gunicorn_conf`).

Garbage collection: a request allocates thousands of short-lived objects (SQLAlchemy rows,
SpiffWorkflow tasks, JSON), most freed by reference counting; with Python's default
thresholds the cyclic collector still ran after every ~700 of them, scanning everything
the worker had loaded each time it reached the older generations. After the worker has
loaded the app, what it holds lives as long as the worker does: it is frozen out of
those scans, and the collector runs less often. In process (Flask's test client,
PostgreSQL, a report with its completions) this took 3.9–4.1 ms of CPU per completion to
3.7 ms (docs/performance.md, session 9). Unreachable cycles are still collected.
"""
from __future__ import annotations

import gc

GC_THRESHOLDS = (10_000, 10, 10)


def post_worker_init(_worker) -> None:
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
