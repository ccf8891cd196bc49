"""org change log

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-28 01:05:00

What `gridflow load-org` changes in the organisation (nodes, users, their activity,
role assignments) was not recorded anywhere: an auditor could not tell who granted a
role, or when an account was deactivated. `org_change` keeps one append-only row per
change, with who loaded which file and when.
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
import engine.models


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'org_change',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('at', engine.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column('actor', sa.String(length=64), nullable=False),
        sa.Column('source', sa.String(length=300), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('subject', sa.String(length=100), nullable=False),
        sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'),
                  nullable=False),
        sa.Column('scope_paths', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index(op.f('ix_org_change_at'), 'org_change', ['at'], unique=False)
    op.create_index(op.f('ix_org_change_subject'), 'org_change', ['subject'], unique=False)


def downgrade():
    op.drop_index(op.f('ix_org_change_subject'), table_name='org_change')
    op.drop_index(op.f('ix_org_change_at'), table_name='org_change')
    op.drop_table('org_change')
