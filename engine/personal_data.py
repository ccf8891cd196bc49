"""Personal data (ID numbers, phone numbers) of petitioners and parties.

Which fields hold it is said by the form definitions (`personal: id_number|phone`
on a field), never by names in code. The rule:

* the case's *handlers* see the values in full: whoever started the case, and
  whoever holds, held, completed or is a candidate for one of its tasks;
* everyone else (auditors, supervisors, other officials of the jurisdiction)
  sees them masked: `150***********1234`, `138****5678`; so do lists (search
  results, the API's case summaries, search exports) for everyone;
* every time unmasked personal data is shown (a page, an API answer, an
  export), one `personal_data_viewed` audit event records who, where and which
  fields, through `engine/audit.py`.

"Stored once" (see docs/audit.md): a submitted value lives in the case's
workflow data and in the audit event of the submission that brought it (the
legal record of who entered what); it is not copied anywhere else for display:
every read model masks it on the way out.
"""
from __future__ import annotations

import re
from dataclasses import replace

from sqlalchemy import and_, exists, or_, select

from . import audit, clock
from .errors import Conflict
from .models import AuditEvent, Case, User, WorkItem, WorkItemCandidate

VIEW_EVENT = "personal_data_viewed"

# A run of digits, possibly split by spaces or hyphens (phone numbers as people
# write them), optionally ending in the X of an ID number.
_NUMBER = re.compile(r"(?<![0-9A-Za-z])\+?[0-9](?:[0-9 \-]*[0-9])?[Xx]?(?![0-9A-Za-z])")


def _mask_number(text: str) -> str:
    digits = [c for c in text if c.isdigit() or c in "Xx"]
    n = len(digits)
    if n < 5:
        return text
    if n >= 11:                       # mobile numbers, ID numbers: first 3, last 4
        keep_head, keep_tail = 3, 4
    elif n >= 7:                      # landlines: last 4
        keep_head, keep_tail = 0, 4
    else:
        keep_head, keep_tail = 0, 2
    masked = digits[:keep_head] + ["*"] * (n - keep_head - keep_tail) + digits[n - keep_tail:]
    return "".join(masked)


def mask_text(value: str) -> str:
    """Every number in `value` masked; names and words around them kept."""
    return _NUMBER.sub(lambda m: _mask_number(m.group(0)), value)


def mask_value(value):
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, (int, float)):
        return mask_text(str(value))
    if isinstance(value, (list, tuple)):
        return [mask_value(v) for v in value]
    if isinstance(value, dict):
        return {k: mask_value(v) for k, v in value.items()}
    return mask_text(str(value))


def personal_fields(forms) -> dict[str, tuple]:
    """{data field name: kinds} over every form definition. Case data is one
    namespace per case, so a field marked personal in any form is personal
    wherever its value travels (start data, later forms' read-only copies)."""
    definitions = forms.forms
    cached = getattr(forms, "_gf_personal", None)
    if cached is not None and cached[0] is definitions:   # recomputed when the registry reloads
        return cached[1]
    found = {}
    for form in definitions.values():
        for f in form.fields:
            if f.personal:
                found[f.name] = tuple(dict.fromkeys(found.get(f.name, ()) + tuple(f.personal)))
    forms._gf_personal = (definitions, found)
    return found


def personal_keys_in(data: dict | None, personal: dict) -> list[str]:
    """The personal fields of `data` whose value masking would change: a "parties"
    text with names only reveals no number, and showing it is no view to record."""
    return [k for k in (data or {}) if k in personal and data[k] not in (None, "", [])
            and mask_value(data[k]) != data[k]]


def mask_data(data: dict | None, personal: dict) -> dict:
    if not data:
        return dict(data or {})
    return {k: (mask_value(v) if k in personal else v) for k, v in data.items()}


def is_handler(session, user: User, case: Case) -> bool:
    """Whoever started the case, or holds / held / completed / may claim one of its tasks."""
    if case.created_by_id == user.id:
        return True
    ways = [WorkItem.assignee_id == user.id, WorkItem.completed_by_id == user.id,
            exists().where(WorkItemCandidate.work_item_id == WorkItem.id, WorkItemCandidate.user_id == user.id)]
    ways += [and_(WorkItem.role == ra.role, WorkItem.candidate_node_id == ra.node_id) for ra in user.roles]
    return bool(session.scalar(select(exists().where(WorkItem.case_id == case.id, or_(*ways)))))


class PersonalData:
    """Masking and the audit of unmasked views, for one WorkflowService."""

    def __init__(self, service):
        self.service = service

    @property
    def fields(self) -> dict[str, tuple]:
        return personal_fields(self.service.forms)

    def may_see(self, actor, case_ref) -> bool:
        svc = self.service
        with svc.db.read_session() as session:
            user = svc._user(session, actor)
            return is_handler(session, user, svc._case(session, case_ref))

    def record_view(self, actor, case_ref, via: str, fields) -> None:
        """One `personal_data_viewed` event: who saw which fields of the case, where.
        The event extends the case's audit chain, whose head the case row's version
        check guards: a view racing a transition retries rather than failing the page."""
        data = {"via": str(via)[:100], "fields": sorted(set(fields))}
        for attempt in range(3):
            try:
                return self.service._commit_guarded(self._record_view, actor, case_ref, data)
            except Conflict:
                if attempt == 2:
                    raise

    def _record_view(self, session, actor, case_ref, data):
        svc = self.service
        user = svc._user(session, actor)
        case = svc._case(session, case_ref)
        case = session.scalar(select(Case).where(Case.id == case.id).with_for_update()
                              .execution_options(populate_existing=True))
        audit.record(session, case, VIEW_EVENT, clock.now(), actor_id=user.id, data=data)

    def mask_events(self, events) -> list:
        personal = self.fields
        out = []
        for e in events:
            if personal_keys_in(e.data, personal):
                e = _event_copy(e, mask_data(e.data, personal))
            out.append(e)
        return out

    def guard_case_detail(self, actor, detail, via: str, include_views: bool = False):
        """The case page / API answer as `actor` may see it: in full for a handler
        (and the view audited when it shows personal data), masked otherwise.
        The views themselves stay out of the officials' history (reading a case must
        not change what the next reader sees); the auditor's trace includes them."""
        if not include_views:
            detail = replace(detail, events=[e for e in detail.events if e.event_type != VIEW_EVENT])
        personal = self.fields
        shown = set(personal_keys_in(detail.data, personal))
        for e in detail.events:
            shown.update(personal_keys_in(e.data, personal))
        if not shown:
            return detail
        if self.may_see(actor, detail.case.id):
            self.record_view(actor, detail.case.id, via, shown)
            return detail
        return replace(detail, data=mask_data(detail.data, personal), events=self.mask_events(detail.events))

    def guard_task_detail(self, actor, detail, via: str, record: bool = True):
        """A task page: its worker (a handler) sees the case data in full; another
        official looking at it sees it masked. `record=False` when the same page
        already recorded the view of the case."""
        personal = self.fields
        shown = personal_keys_in(detail.case_data, personal)
        if not shown:
            return detail
        if detail.may_work or self.may_see(actor, detail.case.id):
            if record:
                self.record_view(actor, detail.case.id, via, shown)
            return detail
        return replace(detail, case_data=mask_data(detail.case_data, personal))


def _event_copy(e: AuditEvent, data: dict) -> AuditEvent:
    """A detached copy of an audit row with other data, for display only (never added to a session)."""
    return AuditEvent(id=e.id, case_id=e.case_id, work_item_id=e.work_item_id, event_type=e.event_type,
                      actor_id=e.actor_id, at=e.at, bpmn_id=e.bpmn_id, bpmn_name=e.bpmn_name,
                      flow_from=e.flow_from, data=data)
