"""inbox: the unclaimed-tasks index also holds assignee_id

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-27 21:25:00

The inbox count adds up one count per way a task can be the user's (one per role and
node held). "Unclaimed for my role at my node" filters on assignee_id, which the index
`ix_work_item_group` lacked: at 10^6 open tasks each of a town dispatcher's 20,000 rows
was looked up in the table. With assignee_id as the index's last column the count reads
the index alone, and the index still gives the inbox page its due order.
"""
from alembic import op


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index("ix_work_item_group", table_name="work_item")
    op.create_index("ix_work_item_group", "work_item", ["status", "role", "candidate_node_id", "sort_due", "assignee_id"])


def downgrade():
    op.drop_index("ix_work_item_group", table_name="work_item")
    op.create_index("ix_work_item_group", "work_item", ["status", "role", "candidate_node_id", "sort_due"])
