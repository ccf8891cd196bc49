"""Scratch databases for the benches (and the tests that run real servers):
created on PostgreSQL if missing, then emptied, migrated and given the demo
organisation — the province's jurisdiction tree and its people — and processes/;
and how the read benches time a query on them and show its plan.

Importable as `bench.scratch` wherever the repository root is on sys.path (the
bench scripts insert it, pytest runs from it).
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def libpq_url(url: str, **changes) -> str:
    """The SQLAlchemy URL `url` as psycopg connects with it (postgresql://…), with `changes`
    (another `database` …)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql", **changes).render_as_string(hide_password=False)


def create_postgres_database(url: str) -> None:
    """Create the PostgreSQL database `url` names unless it exists (nothing for other databases)."""
    if not url.startswith("postgresql"):
        return
    import psycopg
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    with psycopg.connect(libpq_url(url, database="postgres"), autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{database}"')


def reset_to_demo(db, form_keys: set[str] | None = None, actor: str | None = None) -> None:
    """Empty `db` (an engine.db.Database), migrate it, load demo/org.yaml and deploy
    processes/ — checking the forms they name against `form_keys` unless it is None."""
    from engine import schema
    from engine.deploy import deploy_files, read_process_dir
    from engine.org import load_org_file

    schema.drop_all(db)
    schema.upgrade(db)
    with db.unit_of_work() as session:
        load_org_file(session, ROOT / "demo" / "org.yaml")
        deploy_files(session, read_process_dir(ROOT / "processes"), form_keys, actor=actor)


def timed(fn, repeat: int) -> tuple[float, float]:
    """(p50, p95) in milliseconds of `repeat` calls of `fn`, after one call that warms caches."""
    fn()
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[max(0, int(len(samples) * 0.95) - 1)]


def print_plan(session, query) -> None:
    """Print the database's plan for `query` (a SQLAlchemy select, its values inlined), a line a row."""
    from sqlalchemy import text

    dialect = session.get_bind().dialect
    compiled = query.compile(dialect=dialect, compile_kwargs={"literal_binds": True})
    explain = "EXPLAIN QUERY PLAN " if dialect.name == "sqlite" else "EXPLAIN "
    for row in session.execute(text(explain + str(compiled))):
        print("    " + " | ".join(str(c) for c in row))
