"""Schema management through Alembic: `upgrade()` brings any database to head.

The first schema is migration 0001; every later change is a new revision
(`alembic -c engine/migrations/alembic.ini revision --autogenerate -m ...`).
`tests/test_schema.py` fails when the models and the migrations disagree.
"""
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection=None) -> Config:
    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(db, revision: str = "head") -> None:
    with db.engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


def drop_all(db) -> None:
    """Empty the database (tests): every table, and Alembic's own."""
    from sqlalchemy import MetaData
    meta = MetaData()
    meta.reflect(bind=db.engine)
    meta.drop_all(bind=db.engine)
