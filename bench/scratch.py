"""Scratch databases for the benches (and the tests that run real servers):
created on PostgreSQL if missing, then emptied, migrated and given the demo
organisation — the province's jurisdiction tree and its people — and processes/.

Importable as `bench.scratch` wherever the repository root is on sys.path (the
bench scripts insert it, pytest runs from it).
"""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def create_postgres_database(url: str) -> None:
    """Create the PostgreSQL database `url` names unless it exists (nothing for other databases)."""
    if not url.startswith("postgresql"):
        return
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone():
            conn.execute(f'CREATE DATABASE "{parsed.database}"')


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
