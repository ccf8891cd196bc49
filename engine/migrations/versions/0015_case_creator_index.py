"""case creator index

Revision ID: 0015
Revises: 0014
Create Date: 2026-11-28 03:30:00

The dashboard counts each grid worker's 入户走访 (household_visit cases they started in the
period). Visits are the most numerous cases of all (a province's ~2×10⁵ grid workers visit
daily), so the count goes by the creator: one short index range per listed worker.
"""
from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_case_creator_process_created', 'gf_case', ['created_by_id', 'process_key', 'created_at'],
                    unique=False)


def downgrade():
    op.drop_index('ix_case_creator_process_created', table_name='gf_case')
