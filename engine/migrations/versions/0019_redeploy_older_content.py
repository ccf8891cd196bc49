"""process versions: the files of an older version may be deployed again

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-29 04:30:00

Deploying the files of an older version again is a rollback: a new version (the newest,
which new cases start on) with that content. `gridflow deploy` compares the files with the
newest version only, and the hash is no longer unique per process. (SQLite rebuilds the
table for it: `engine.schema.upgrade` runs migrations with foreign keys off, then checks them.)
"""
from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('process_version', schema=None) as batch_op:
        batch_op.drop_constraint('uq_process_hash', type_='unique')


def downgrade():
    with op.batch_alter_table('process_version', schema=None) as batch_op:
        batch_op.create_unique_constraint('uq_process_hash', ['process_key', 'content_hash'])
