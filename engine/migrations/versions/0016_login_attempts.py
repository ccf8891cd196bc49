"""login attempts

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-28 08:00:00

Login failure handling (登录失败处理, as GB/T 22239-2019 asks of a government system): every
password login is recorded, and five failures within fifteen minutes lock the name for fifteen
minutes (engine/login_guard.py).
"""
from alembic import op
import sqlalchemy as sa
import engine.models

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'login_attempt',
        sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
        sa.Column('username', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('at', engine.models.UtcDateTime(timezone=True), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('via', sa.String(length=8), nullable=False),
        sa.Column('address', sa.String(length=64), nullable=True),
        sa.Column('note', sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_login_attempt_username_at', 'login_attempt', ['username', 'at'], unique=False)


def downgrade():
    op.drop_index('ix_login_attempt_username_at', table_name='login_attempt')
    op.drop_table('login_attempt')
