"""dashboard roll-ups (engine/rollup.py)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-27 09:40:00

Empty tables and a dirty flag on every case (true: nothing is rolled up yet); the
dashboard keeps reading the cases until `gridflow metrics refresh` (or the worker)
has built the roll-ups once.
"""
from alembic import op
import sqlalchemy as sa
import engine.models


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade():
    # not batch mode: SQLite adds a column with a constant default in place (no table copy)
    op.add_column('gf_case', sa.Column('rollup_dirty', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.create_index('ix_case_rollup_dirty', 'gf_case', ['id'], unique=False,
                    sqlite_where=sa.text('rollup_dirty = 1'), postgresql_where=sa.text('rollup_dirty = true'))
    op.create_index('ix_case_closed_due', 'gf_case', ['closed_at', 'due_at'], unique=False)
    op.create_index('ix_case_due', 'gf_case', ['due_at'], unique=False)
    op.create_index('ix_work_item_by_spec_completed', 'work_item', ['completed_by_id', 'spec_id', 'completed_at'],
                    unique=False)

    op.create_table('rollup_case',
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('row_version', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('d1', sa.Integer(), nullable=False),
    sa.Column('d2', sa.Integer(), nullable=False),
    sa.Column('d3', sa.Integer(), nullable=False),
    sa.Column('d4', sa.Integer(), nullable=False),
    sa.Column('grid', sa.Integer(), nullable=False),
    sa.Column('process_key', sa.String(length=100), nullable=False),
    sa.Column('category', sa.String(length=40), nullable=False),
    sa.Column('colour', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolved_level', sa.String(length=16), nullable=False),
    sa.Column('satisfaction', sa.String(length=24), nullable=False),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.Column('closed_month', sa.String(length=7), nullable=False),
    sa.Column('due_month', sa.String(length=7), nullable=False),
    sa.Column('limited', sa.SmallInteger(), nullable=False),
    sa.Column('on_time', sa.SmallInteger(), nullable=False),
    sa.Column('reporter_id', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('case_id')
    )
    op.create_table('rollup_case_task',
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=False, nullable=False),
    sa.Column('spec', sa.String(length=100), nullable=False),
    sa.Column('completed', sa.SmallInteger(), nullable=False),
    sa.Column('late', sa.SmallInteger(), nullable=False),
    sa.Column('open_due_month', sa.String(length=7), nullable=False),
    sa.PrimaryKeyConstraint('case_id', 'spec')
    )
    op.create_table('rollup_cases',
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('node_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('process_key', sa.String(length=100), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolved_level', sa.String(length=16), nullable=False),
    sa.Column('satisfaction', sa.String(length=24), nullable=False),
    sa.Column('outcome', sa.String(length=40), nullable=False),
    sa.Column('closed_month', sa.String(length=7), nullable=False),
    sa.Column('due_month', sa.String(length=7), nullable=False),
    sa.Column('limited', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('on_time', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('level', 'node_id', 'month', 'process_key', 'status', 'resolved_level', 'satisfaction',
                            'outcome', 'closed_month', 'due_month', 'limited', 'on_time')
    )
    op.create_index('ix_rollup_cases_parent', 'rollup_cases', ['level', 'parent_id', 'month'], unique=False)
    op.create_table('rollup_dims',
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('node_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('dim', sa.String(length=16), nullable=False),
    sa.Column('value', sa.String(length=40), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('level', 'node_id', 'month', 'dim', 'value')
    )
    op.create_table('rollup_tasks',
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('node_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('spec', sa.String(length=100), nullable=False),
    sa.Column('completed', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('late', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('open_due_month', sa.String(length=7), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('level', 'node_id', 'month', 'spec', 'completed', 'late', 'open_due_month')
    )
    op.create_table('rollup_reports',
    sa.Column('level', sa.SmallInteger(), autoincrement=False, nullable=False),
    sa.Column('node_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('user_id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('n', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('level', 'node_id', 'user_id', 'month')
    )
    op.create_table('rollup_state',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('built_at', engine.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('refreshed_at', engine.models.UtcDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )


def downgrade():
    op.drop_table('rollup_state')
    op.drop_table('rollup_reports')
    op.drop_table('rollup_tasks')
    op.drop_table('rollup_dims')
    op.drop_index('ix_rollup_cases_parent', table_name='rollup_cases')
    op.drop_table('rollup_cases')
    op.drop_table('rollup_case_task')
    op.drop_table('rollup_case')
    op.drop_index('ix_work_item_by_spec_completed', table_name='work_item')
    op.drop_index('ix_case_due', table_name='gf_case')
    op.drop_index('ix_case_closed_due', table_name='gf_case')
    op.drop_index('ix_case_rollup_dirty', table_name='gf_case')
    with op.batch_alter_table('gf_case', schema=None) as batch_op:
        batch_op.drop_column('rollup_dirty')
