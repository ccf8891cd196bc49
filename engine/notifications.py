"""In-app notifications, and channels that carry them further (SMS, a messaging app).

A notification is a `notification` row for one official, written in the same
transaction as what caused it:

- `new_task`: a work item was created: its assignee, its explicit candidates,
  or the holders of its (role, candidate node);
- `reminder` / `escalation`: a BPMN element carrying
  `<spiffworkflow:property name="notify" value="reminder"/>` (or `escalation`)
  completed: the holders of the case's open tasks after the transition;
- `urge` (督办): a supervisor pressed 督办 on a task: its holders;
- `incident`: the timer worker gave up on a case: every admin.

Per transition this costs at most one SELECT (the holders of the new tasks'
(role, node) pairs) and one multi-row INSERT.

Channels are called only AFTER the transaction commits (a rolled-back
transition notifies nobody), one `send` per notification; a channel that fails
is logged and never undoes anything. A channel is any object with
`send(notification)`; the service holds the list (`service.channels`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import and_, event, func, or_, select, update
from sqlalchemy.orm import Session

from . import clock
from .db import insert_rows
from .lanes import pair_holders
from .errors import InvalidInput, NotFound
from .models import Case, Notification, RoleAssignment, User, WorkItem, WorkItemCandidate

log = logging.getLogger("gridflow.notifications")

KINDS = ("new_task", "reminder", "escalation", "urge", "incident")
ELEMENT_KINDS = ("reminder", "escalation")          # what a BPMN `notify` property may say
KIND_ZH = {"new_task": "新任务", "reminder": "催办提醒", "escalation": "升级提醒", "urge": "督办",
           "incident": "系统异常"}
NOTE_MAX = 500
SUBJECT_MAX = 200
# An incident notice's subject when a process failed on an official's step (service._process_failed):
# the step's name, or the process a start failed to start.
PROCESS_FAILED = "流程运行出错：{step}"
PROCESS_FAILED_AT_START = "流程运行出错：发起 {process}"
_OUTBOX = "gf_notifications"                          # Session.info key: notices to send after commit


@dataclass(frozen=True)
class Notice:
    """What a channel receives: one notification for one official."""
    user_id: int
    kind: str
    subject: str
    case_id: int | None = None
    business_key: str | None = None
    work_item_id: str | None = None
    note: str | None = None
    actor_id: int | None = None
    created_at: datetime | None = None

    @property
    def text(self) -> str:
        """One line an SMS could carry."""
        text = f"【{KIND_ZH.get(self.kind, self.kind)}】"
        text += " ".join(p for p in (self.business_key, self.subject) if p)
        return text + (f"：{self.note}" if self.note else "")

    def row(self) -> dict:
        return {"user_id": self.user_id, "kind": self.kind, "subject": (self.subject or "")[:SUBJECT_MAX],
                "case_id": self.case_id, "work_item_id": self.work_item_id,
                "note": self.note[:NOTE_MAX] if self.note else None, "actor_id": self.actor_id,
                "created_at": self.created_at, "read_at": None}


class NotificationChannel(Protocol):
    def send(self, notification) -> None: ...


class LoggingChannel:
    """The shipped channel: one log line per notification (replace or add SMS later)."""

    def __init__(self, logger: logging.Logger | None = None):
        self.log = logger or logging.getLogger("gridflow.notify")

    def send(self, notification) -> None:
        self.log.info("notify user=%s kind=%s case=%s task=%s: %s", notification.user_id, notification.kind,
                      notification.business_key or "-", notification.work_item_id or "-", notification.text)


# ------------------------------------------------------- after the commit

@event.listens_for(Session, "after_commit")
def _send_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a SAVEPOINT released: the real commit is still to come
    for channels, notices in session.info.pop(_OUTBOX, []):
        send(channels, notices)


@event.listens_for(Session, "after_transaction_end")
def _drop_after_rollback(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_OUTBOX, None)  # still there: the transaction did not commit


def send(channels, notices) -> None:
    for notice in notices:
        for channel in list(channels):
            try:
                channel.send(notice)
            except Exception:  # a channel never breaks the work it reports on
                log.exception("notification channel %s failed for user %s (%s)",
                              type(channel).__name__, notice.user_id, notice.kind)


# ------------------------------------------------------------- the writer

def element_kind(task_spec) -> str | None:
    """`reminder` / `escalation` if the element carries a `notify` property."""
    props = (getattr(task_spec, "extensions", None) or {}).get("properties") or {}
    value = (props.get("notify") or "").strip()
    return value if value in ELEMENT_KINDS else None


def notify_elements(parsed) -> dict[str, str]:
    """{bpmn id: kind} of the elements of a parsed version that notify, computed once."""
    found = getattr(parsed, "_gf_notify", None)
    if found is None:
        from .bpmn import all_specs
        found = {}
        for _spec, task_spec in all_specs(parsed):
            kind = element_kind(task_spec)
            if kind and getattr(task_spec, "bpmn_id", None):
                found.setdefault(task_spec.bpmn_id, kind)
        parsed._gf_notify = found
    return found


class Notifier:
    """Writes notifications within the caller's transaction, queues them for the
    service's channels, and reads them back for the pages."""

    def __init__(self, service):
        self.service = service

    # writing

    def add(self, session: Session, notices: list[Notice]) -> None:
        """One multi-row INSERT; the channels get the notices after the commit."""
        if not notices:
            return
        insert_rows(session, Notification, [n.row() for n in notices])
        session.info.setdefault(_OUTBOX, []).append((self.service.channels, notices))

    @staticmethod
    def holders(session: Session, items, explicit: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
        """{work item id: user ids who hold it}: the assignee; else the explicit candidates
        (`explicit`, or read from work_item_candidate) and the holders of (role, node).
        One SELECT for all the (role, node) pairs."""
        out: dict[str, list[int]] = {}
        pairs, unknown = set(), []
        for item in items:
            if item.assignee_id:
                out[item.id] = [item.assignee_id]
                continue
            if item.role and item.candidate_node_id:
                pairs.add((item.role, item.candidate_node_id))
            if explicit is not None and item.id in explicit:
                out[item.id] = list(explicit[item.id])
            else:
                unknown.append(item.id)
        if unknown:
            for item_id, user_id in session.execute(
                    select(WorkItemCandidate.work_item_id, WorkItemCandidate.user_id)
                    .where(WorkItemCandidate.work_item_id.in_(unknown))):
                out.setdefault(item_id, []).append(user_id)
        # holders of a (role, node) do not change within a transaction: a batch of
        # transitions asks once per pair
        by_pair: dict[tuple, list[int]] = pair_holders(session)
        pairs -= by_pair.keys()
        if pairs:
            found: dict[tuple, list[int]] = {pair: [] for pair in pairs}
            with session.no_autoflush:   # organisation rows: the transition's writes do not matter here
                rows = session.execute(
                    select(RoleAssignment.role, RoleAssignment.node_id, RoleAssignment.user_id)
                    .join(User, User.id == RoleAssignment.user_id)
                    .where(User.active.is_(True),
                           or_(*[and_(RoleAssignment.role == r, RoleAssignment.node_id == n)
                                 for r, n in sorted(pairs)]))
                    .order_by(RoleAssignment.user_id)).all()
            for role, node_id, user_id in rows:
                found[(role, node_id)].append(user_id)
            by_pair.update(found)
        for item in items:
            if not item.assignee_id:
                ids = out.setdefault(item.id, [])
                ids.extend(u for u in by_pair.get((item.role, item.candidate_node_id), []) if u not in ids)
        return out

    def after_transition(self, session: Session, case: Case, parsed, steps, events, open_items, now) -> None:
        """New tasks -> `new_task` for their holders; completed `notify` elements ->
        `reminder` / `escalation` for the holders of the open tasks."""
        created = {e.work_item_id: (e.data or {}).get("candidates") or []
                   for e in events if e.event_type == "task_created"}
        new_items = [i for i in open_items if i.id in created]
        notifying = notify_elements(parsed)
        fired = [(notifying[s.bpmn_id], s.bpmn_name or s.bpmn_id) for s in steps
                 if s.state == "COMPLETED" and s.bpmn_id in notifying]
        if not new_items and not (fired and open_items):
            return
        targets = open_items if fired else new_items
        holders = self.holders(session, targets, explicit=created)
        notices = []
        for item in new_items:
            notices += [Notice(user_id=u, kind="new_task", subject=item.name, case_id=case.id,
                               business_key=case.business_key, work_item_id=item.id, created_at=now)
                        for u in holders.get(item.id, [])]
        for kind, name in fired:
            first_task = {}
            for item in open_items:
                for u in holders.get(item.id, []):
                    first_task.setdefault(u, item.id)
            notices += [Notice(user_id=u, kind=kind, subject=name, case_id=case.id, business_key=case.business_key,
                               work_item_id=item_id, created_at=now) for u, item_id in first_task.items()]
        self.add(session, notices)

    def urged(self, session: Session, case: Case, item: WorkItem, user_ids, actor_id: int, note: str | None,
              now) -> None:
        self.add(session, [Notice(user_id=u, kind="urge", subject=item.name, case_id=case.id,
                                  business_key=case.business_key, work_item_id=item.id, note=note,
                                  actor_id=actor_id, created_at=now) for u in user_ids])

    def reassigned(self, session: Session, case: Case, item: WorkItem, actor_id: int | None, reason: str,
                   now, leaving: int | None = None) -> None:
        """A task that changed hands (改派, or released when its holder's account was
        deactivated) is a new task to whoever holds it now: its new assignee, or, back in its
        group, the group's members (but the one it left), with who moved it and why."""
        holders = [u for u in self.holders(session, [item]).get(item.id, []) if u != leaving]
        self.add(session, [Notice(user_id=u, kind="new_task", subject=item.name, case_id=case.id,
                                  business_key=case.business_key, work_item_id=item.id, note=reason,
                                  actor_id=actor_id, created_at=now) for u in holders])

    def incident(self, session: Session, case: Case, error: str, now) -> None:
        """Every official holding `admin` anywhere hears of it."""
        self.add(session, [Notice(user_id=u, kind="incident", subject=case.title or "", case_id=case.id,
                                  business_key=case.business_key, note=error, created_at=now)
                           for u in _holders_of(session, ("admin",))])

    def process_failed(self, session: Session, subject: str, error: str, case: Case | None, now) -> None:
        """A process failed on an official's step (`WorkflowService._process_failed`): every
        admin and designer hears of it, unless the same notice is still unread."""
        subject, error = subject[:SUBJECT_MAX], error[:NOTE_MAX]
        holders = _holders_of(session, ("admin", "designer"))
        told = set(session.scalars(select(Notification.user_id).where(   # by the unread index
            Notification.user_id.in_(holders), Notification.read_at.is_(None),
            Notification.kind == "incident", Notification.subject == subject, Notification.note == error))) \
            if holders else set()
        self.add(session, [Notice(user_id=u, kind="incident", subject=subject, note=error, created_at=now,
                                  case_id=case.id if case is not None else None,
                                  business_key=case.business_key if case is not None else None)
                           for u in holders if u not in told])

    # reading

    def unread_count(self, actor) -> int:
        """Shown on every page: with a user id, one indexed COUNT (and a primary-key look-up of
        each unread notice's task) and nothing else. A notice of a task no longer open (done,
        by the official or by another, or withdrawn) asks nothing of anyone: not counted."""
        with self.service.db.read_session() as session:
            user_id = actor if type(actor) is int else self.service._user(session, actor).id
            return session.scalar(select(func.count()).select_from(Notification)
                                  .outerjoin(WorkItem, WorkItem.id == Notification.work_item_id)
                                  .where(Notification.user_id == user_id, Notification.read_at.is_(None),
                                         _TASK_OPEN_OR_NONE))

    def count(self, actor) -> int:
        with self.service.db.read_session() as session:
            user_id = self.service._user(session, actor).id
            return session.scalar(select(func.count()).select_from(Notification).where(
                Notification.user_id == user_id))

    def page(self, actor, limit: int = 50, offset: int = 0) -> list[NotificationRow]:
        """My notifications, newest first, with the case number and who sent a 督办."""
        if not (isinstance(limit, int) and 1 <= limit <= 500 and isinstance(offset, int) and offset >= 0):
            raise InvalidInput("limit 1-500, offset 0 or more", zh="分页参数无效",
                               fields={"limit": ["between 1 and 500"]})
        sender = User.__table__.alias("sender")
        with self.service.db.read_session() as session:
            user_id = self.service._user(session, actor).id
            rows = session.execute(
                select(Notification, Case.business_key, sender.c.display_name, WorkItem.status, Case.process_key)
                .outerjoin(Case, Case.id == Notification.case_id)
                .outerjoin(sender, sender.c.id == Notification.actor_id)
                .outerjoin(WorkItem, WorkItem.id == Notification.work_item_id)
                .where(Notification.user_id == user_id)
                .order_by(Notification.id.desc()).limit(limit).offset(offset)).all()
            return [NotificationRow(*row) for row in rows]

    def mark_read(self, actor, notification_id: int) -> Notification:
        """Mark one of my notifications read (someone else's is NotFound)."""
        if not isinstance(notification_id, int) or not 0 < notification_id < 2 ** 63:
            raise NotFound("no such notification", zh="找不到该通知")
        with self.service.db.unit_of_work() as session:
            user_id = self.service._user(session, actor).id
            row = session.get(Notification, notification_id)
            if row is None or row.user_id != user_id:
                raise NotFound("no such notification", zh="找不到该通知")
            if row.read_at is None:
                row.read_at = clock.now()
            business_key = session.scalar(select(Case.business_key).where(Case.id == row.case_id)) \
                if row.case_id else None
            session.flush()
            return NotificationRow(row, business_key, None)

    def mark_all_read(self, actor) -> int:
        with self.service.db.unit_of_work() as session:
            user_id = self.service._user(session, actor).id
            result = session.execute(update(Notification).where(
                Notification.user_id == user_id, Notification.read_at.is_(None)).values(read_at=clock.now()))
            return result.rowcount or 0


def _holders_of(session: Session, roles: tuple[str, ...]) -> list[int]:
    """The active officials holding any of `roles` anywhere."""
    return session.scalars(select(RoleAssignment.user_id).join(User, User.id == RoleAssignment.user_id)
                           .where(RoleAssignment.role.in_(roles), User.active.is_(True))
                           .distinct().order_by(RoleAssignment.user_id)).all()


# a notice without a task, or whose task is still open (a missing task row counts as none)
_TASK_OPEN_OR_NONE = or_(WorkItem.id.is_(None), WorkItem.status == "open")


@dataclass
class NotificationRow:
    notification: Notification
    business_key: str | None
    actor_name: str | None
    task_status: str | None = None     # the notice's task: open, completed, cancelled (None: no task)
    process_key: str | None = None     # the case's process, whose element the subject may name

    @property
    def task_closed(self) -> bool:
        return self.task_status not in (None, "open")

    @property
    def unread(self) -> bool:
        """Not read, and still asking something of the official (as `unread_count` counts)."""
        return self.notification.read_at is None and not self.task_closed
