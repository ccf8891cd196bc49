"""org generation: a new password bumps it too

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-28 14:20:00

An API bearer token names the password it was issued under, and the transitions check it
against the acting official as the engine's organisation copy holds them (`org_cache.
UserSnapshot.password_stamp`): a new password, its owner's or an administrator's reset,
must make that copy stale as any other change to the account does, or a revoked token
would go on working until the organisation changed for another reason.
"""
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

BEFORE = "username, display_name, phone, active"
AFTER = BEFORE + ", password_hash"
BUMP_SQLITE = "BEGIN UPDATE org_generation SET generation = generation + 1 WHERE id = 1; END"


def _watch_app_user(columns: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS gf_org_changed ON app_user")
        op.execute(f"CREATE TRIGGER gf_org_changed AFTER INSERT OR DELETE OR UPDATE OF {columns} ON app_user "
                   "FOR EACH STATEMENT EXECUTE FUNCTION gf_bump_org_generation()")
    else:
        op.execute("DROP TRIGGER IF EXISTS gf_org_app_user_update")
        op.execute(f"CREATE TRIGGER gf_org_app_user_update AFTER UPDATE OF {columns} ON app_user "
                   f"FOR EACH ROW {BUMP_SQLITE}")


def upgrade():
    _watch_app_user(AFTER)


def downgrade():
    _watch_app_user(BEFORE)
