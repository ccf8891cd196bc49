"""user password_changed_at

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-28 08:20:00

Officials change their own password (/account/password); `gridflow load-org` then keeps it
instead of setting the organisation file's again.
"""
from alembic import op
import sqlalchemy as sa
import engine.models

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('app_user') as batch:
        batch.add_column(sa.Column('password_changed_at', engine.models.UtcDateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('app_user') as batch:
        batch.drop_column('password_changed_at')
