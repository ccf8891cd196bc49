"""work_item.sort_due: a non-null due key the inbox indexes are read in order by

Revision ID: 0004
Revises: 0003
"""
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

import engine.models

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

NO_DUE_DATE = datetime(9999, 12, 31, tzinfo=timezone.utc)


def upgrade():
    with op.batch_alter_table("work_item", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sort_due", engine.models.UtcDateTime(timezone=True), nullable=True))
    work_item = sa.table("work_item", sa.column("due_at", engine.models.UtcDateTime(timezone=True)),
                         sa.column("sort_due", engine.models.UtcDateTime(timezone=True)))
    op.execute(work_item.update().values(sort_due=sa.func.coalesce(work_item.c.due_at, NO_DUE_DATE)))
    with op.batch_alter_table("work_item", schema=None) as batch_op:
        batch_op.alter_column("sort_due", existing_type=engine.models.UtcDateTime(timezone=True), nullable=False)
        batch_op.drop_index("ix_work_item_group")
        batch_op.drop_index("ix_work_item_assignee")
        batch_op.create_index("ix_work_item_group", ["status", "role", "candidate_node_id", "sort_due"], unique=False)
        batch_op.create_index("ix_work_item_assignee", ["status", "assignee_id", "sort_due"], unique=False)


def downgrade():
    with op.batch_alter_table("work_item", schema=None) as batch_op:
        batch_op.drop_index("ix_work_item_assignee")
        batch_op.drop_index("ix_work_item_group")
        batch_op.create_index("ix_work_item_assignee", ["status", "assignee_id", "due_at"], unique=False)
        batch_op.create_index("ix_work_item_group", ["status", "role", "candidate_node_id", "due_at"], unique=False)
        batch_op.drop_column("sort_due")
