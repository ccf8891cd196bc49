"""dashboard roll-ups: counted again by China months

Revision ID: 0020
Revises: 0019
Create Date: 2026-11-30 09:00:00

The roll-ups keyed every case by its UTC month of registration, closing and limit; the
officials' months are China months (UTC+8: a case reported 2026-03-31 20:00 UTC is an
April case), and engine/rollup.py now keys them so. Rows counted under the old rule
would put the cases of the last eight hours of each month in the wrong month, so they
are emptied, `rollup_state` with them: the dashboard reads the cases (exact, as before
the first build) until `gridflow metrics refresh` builds them again, by the new rule.
"""
from alembic import op


revision = '0020'
down_revision = '0019'
branch_labels = None
depends_on = None

# the counted rows, then the one row that says they are built
TABLES = ('rollup_cases', 'rollup_dims', 'rollup_tasks', 'rollup_reports', 'rollup_case_task', 'rollup_case',
          'rollup_state')


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':   # a province's rows: no row-by-row delete
        op.execute('TRUNCATE ' + ', '.join(TABLES))
    else:
        for table in TABLES:
            op.execute(f'DELETE FROM {table}')


def downgrade():
    pass   # empty roll-ups are valid under either rule (not built: the dashboard reads the cases)
