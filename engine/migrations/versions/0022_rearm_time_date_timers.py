"""Re-arm the open cases waiting on a timeDate timer

Revision ID: 0022
Revises: 0021
Create Date: 2026-11-30 13:00:00

`next_timer_at` used to stay empty for a case whose only pending timer was a timeDate one
(SpiffWorkflow's TimeDateEventDefinition was not read as a timer): the petition's 60-day
handling limit and its 复查/复核 windows never fired from the worker. The engine reads them
now at every transition; the open cases already waiting are given `next_timer_at` = now, so
the worker takes each once: it fires what is overdue (in due order, once) and stores the
real next due time. Only the versions whose diagrams hold a timeDate are looked at.
"""
from datetime import datetime, timezone
import json

from alembic import op
import sqlalchemy as sa

revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    bind = op.get_bind()
    versions = []
    for version_id, files in bind.execute(sa.text("SELECT id, files FROM process_version")):
        text = files if isinstance(files, str) else json.dumps(files, ensure_ascii=False)
        if "timeDate" in (text or ""):
            versions.append(version_id)
    if not versions:
        return
    case = sa.table("gf_case", sa.column("status", sa.String), sa.column("process_version_id", sa.Integer),
                    sa.column("next_timer_at", sa.DateTime(timezone=True)))
    now = datetime.now(timezone.utc)
    # SQLite keeps the wall-clock digits only: the UTC digits, as the engine stores them
    value = now if bind.dialect.name == "postgresql" else now.replace(tzinfo=None)
    for start in range(0, len(versions), 500):
        bind.execute(case.update()
                     .where(case.c.status == "open", case.c.next_timer_at.is_(None),
                            case.c.process_version_id.in_(versions[start:start + 500]))
                     .values(next_timer_at=value))


def downgrade():
    pass   # the worker stores the real next due time at the first firing: nothing to undo
