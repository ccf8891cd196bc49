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
    if db.engine.dialect.name != "sqlite":
        with db.engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
        return
    # SQLite changes a table's constraints by rebuilding it (copy, drop, rename): with foreign
    # keys enforced, dropping a table that others reference fails. They are switched off for
    # the migration (a PRAGMA that only works outside a transaction: on the driver's connection,
    # before SQLAlchemy begins one), and every reference is checked before the commit.
    with db.engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        dbapi.execute("PRAGMA foreign_keys=OFF")
        try:
            with conn.begin():
                command.upgrade(alembic_config(conn), revision)
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"the migration left rows referring to nothing: {broken[:5]}")
        finally:
            dbapi.execute("PRAGMA foreign_keys=ON")


def drop_all(db) -> None:
    """Empty the database (tests): every table, and Alembic's own."""
    from sqlalchemy import MetaData
    meta = MetaData()
    meta.reflect(bind=db.engine)
    meta.drop_all(bind=db.engine)
