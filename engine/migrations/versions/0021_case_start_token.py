"""gf_case.start_token

Revision ID: 0021
Revises: 0020
Create Date: 2026-11-30 12:00:00

The token of the report form a case was started from, unique per official: a report form
sent twice (a double tap on a slow connection, the back button and 提交 again) started two
cases of the same matter; now the second submission finds the first case.
"""
from alembic import op
import sqlalchemy as sa

revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


# a plain ADD COLUMN and CREATE INDEX on both databases: no batch copy of the case table
# (SQLite would rebuild it, and a province's PostgreSQL table is large); NULLs (cases started
# elsewhere: the API, timers, the demo) never collide

def upgrade():
    op.add_column('gf_case', sa.Column('start_token', sa.String(length=64), nullable=True))
    op.create_index('uq_case_start_token', 'gf_case', ['created_by_id', 'start_token'], unique=True)


def downgrade():
    op.drop_index('uq_case_start_token', table_name='gf_case')
    with op.batch_alter_table('gf_case') as batch:
        batch.drop_column('start_token')
