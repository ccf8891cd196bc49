"""The audit trail: the one place audit rows are written.

Every writer (transitions, claims, 督办, timers, incidents, migrations, views of
personal data) goes through `append` or `record`, so that each row is chained to
the previous row of its case (tamper evidence) and no code path updates or
deletes audit rows.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert

from .models import AuditEvent, Case

_COLUMNS = ("case_id", "work_item_id", "event_type", "actor_id", "at", "bpmn_id", "bpmn_name", "flow_from", "data")


def append(session, case: Case, events: list[AuditEvent]) -> None:
    """Append events of one case, in order, in the caller's transaction
    (one multi-row INSERT: audit rows are never read back in the same transaction)."""
    if not events:
        return
    rows = []
    for e in events:
        row = {c: getattr(e, c) for c in _COLUMNS}
        row["case_id"] = case.id
        row["data"] = e.data or {}
        rows.append(row)
    session.execute(insert(AuditEvent).execution_options(render_nulls=True), rows)


def record(session, case: Case, event_type: str, at: datetime, *, actor_id: int | None = None,
           work_item_id: str | None = None, bpmn_id: str | None = None, bpmn_name: str | None = None,
           data: dict | None = None) -> None:
    """Append one event."""
    append(session, case, [AuditEvent(case_id=case.id, work_item_id=work_item_id, event_type=event_type,
                                      actor_id=actor_id, at=at, bpmn_id=bpmn_id, bpmn_name=bpmn_name,
                                      data=data or {})])
