"""A case's full trace for auditors: the path on the diagram, and for every
audit event who acted, when, from which role and node, and what they
submitted or changed. Read from SQL (audit_event, work_item), never from the
live workflow.

Personal data follows engine/personal_data.py: in full (and the view audited)
for the case's handlers, masked for everyone else.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select

from .access import start_node_path
from .diagram import diagram_model
from .models import DEPARTMENT, JurisdictionNode, OrgChange, RoleAssignment, User, WorkItem
from .notifications import notify_elements
from .personal_data import PersonalData

# Keys of an event's data (not a form's submission) that hold a person or a node by its
# database id or username: the trace names each (`TraceStep.refs`), so that no export shows
# a bare id where the page shows a name.
USER_ID_KEYS = ("holders", "candidates", "assignee_id")     # 督办's holders, a new task's people
NODE_ID_KEYS = ("node_id", "fallback_node_id")              # a new task's unit, a lane's fallback
USERNAME_KEYS = ("released_by", "from", "to")               # 退回 by whom; 改派 from and to

# What an event is, for the trace's "kind" column (the audit's own event type is kept beside it).
KINDS = {
    "case_started": "started", "task_created": "task_created", "task_claimed": "claimed",
    "task_unclaimed": "released", "task_completed": "completed", "task_cancelled": "cancelled",
    "lane_unresolved": "unresolved", "attachment_added": "attachment", "case_closed": "closed",
    "urged": "urge", "task_reassigned": "reassign", "incident": "incident", "incident_resolved": "incident_resolved",
    "timers_fired": "timers", "personal_data_viewed": "personal_data_viewed",
}


@dataclass
class TraceStep:
    seq: int
    event_id: int
    at: datetime
    event_type: str
    kind: str
    bpmn_id: str | None
    bpmn_name: str | None
    flow_from: str | None
    flow_from_name: str | None     # the element's name in the diagram (the page shows it)
    task_id: str | None
    actor_id: int | None
    actor_name: str | None
    actor_username: str | None
    role: str | None
    node_name: str | None
    node_code: str | None = None
    submitted: dict = field(default_factory=dict)
    changed: dict = field(default_factory=dict)    # {field: [before, after]}
    # {data key: the person ({"username", "name"}) or node ({"code", "name"}) it holds by id,
    # or a list of them}: the people and units of `submitted` by code and name
    refs: dict = field(default_factory=dict)

    @property
    def note(self) -> str | None:
        return self.submitted.get("note") if self.event_type == "urged" else None


@dataclass
class Trace:
    detail: object                # the (possibly masked) CaseDetail of the case page
    steps: list[TraceStep]
    masked: bool                  # personal data shown masked to this reader

    @property
    def case(self):
        return self.detail.case


# the events whose data an official entered (a report, a task's form): form fields, not references
SUBMISSIONS = ("case_started", "task_completed")
ROLE_CHANGE_KINDS = ("role_granted", "role_withdrawn")


@dataclass(frozen=True)
class _Held:
    """A role its holder held at some moment (a RoleAssignment of today or of the past)."""
    role: str
    node_id: int
    node: JurisdictionNode
# events the engine records by itself (a flow, a timer, a task made or cancelled): no person
# acted, and the trace says 系统 (the system) where a person's name would be
SYSTEM_EVENTS = ("step", "timers_fired", "case_closed", "task_created", "task_cancelled", "lane_unresolved", "incident")


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def changes(known: dict, submitted: dict) -> dict:
    """{field: [before, after]} of the submitted values that replace a different earlier one."""
    return {k: [known[k], v] for k, v in submitted.items() if k in known and known[k] != v}


def _kind(event, notifying: dict) -> str:
    if event.event_type == "step" and event.bpmn_id in notifying:
        return notifying[event.bpmn_id]          # reminder | escalation, as the designer said
    if event.event_type == "step" and (event.data or {}).get("type") == "BoundaryEvent":
        # a deadline firing on a task: a reminder before it, an escalation at it
        text = f"{event.bpmn_id or ''} {event.bpmn_name or ''}".lower()
        return "reminder" if ("提醒" in text or "remind" in text) else "escalation"
    if "migrat" in event.event_type:
        return "migration"
    return KINDS.get(event.event_type, event.event_type)


class CaseTrace:
    def __init__(self, service):
        self.service = service
        self.personal = PersonalData(service)

    def trace(self, actor, case_ref, via: str = "trace") -> Trace:
        svc = self.service
        raw = svc.view_case(actor, case_ref)                 # refuses outside the jurisdiction
        detail = self.personal.guard_case_detail(actor, raw, via, include_views=True)
        masked = detail.data is not raw.data
        events = detail.events
        with svc.db.read_session() as session:
            actor_ids = {e.actor_id for e in events if e.actor_id}
            users = {u.id: u for u in session.scalars(select(User).where(User.id.in_(actor_ids)))} if actor_ids else {}
            roles: dict[int, list[RoleAssignment]] = {}
            if actor_ids:
                for ra in session.scalars(select(RoleAssignment).where(RoleAssignment.user_id.in_(actor_ids))):
                    roles.setdefault(ra.user_id, []).append(ra)
            # roles granted or withdrawn since the case's first event (gridflow load-org): undone
            # step by step, so a step reads the role and unit its actor held then, not today's
            role_changes: dict[int, list[OrgChange]] = {}
            if actor_ids and events:
                by_login = {u.username: uid for uid, u in users.items()}
                for c in session.scalars(select(OrgChange).where(
                        OrgChange.subject.in_(sorted(by_login)), OrgChange.kind.in_(ROLE_CHANGE_KINDS),
                        OrgChange.at > min(e.at for e in events)).order_by(OrgChange.at.desc(), OrgChange.id.desc())):
                    role_changes.setdefault(by_login[c.subject], []).append(c)
            item_ids = {e.work_item_id for e in events if e.work_item_id}
            items = {i.id: i for i in session.scalars(select(WorkItem).where(WorkItem.id.in_(item_ids)))} \
                if item_ids else {}
            node_ids = {i.candidate_node_id for i in items.values() if i.candidate_node_id}
            node_ids |= {ra.node_id for ras in roles.values() for ra in ras}
            if role_changes:
                codes = {(c.detail or {}).get("node") for cs in role_changes.values() for c in cs}
                by_code = {n.code: n for n in session.scalars(
                    select(JurisdictionNode).where(JurisdictionNode.code.in_(sorted(c for c in codes if c))))}
                node_ids |= {n.id for n in by_code.values()}

            def held_at(user_id, at) -> list:
                """The actor's role assignments at `at`: today's, with the later grants and
                withdrawals undone, newest first (today's if that leaves none)."""
                today = [_Held(ra.role, ra.node_id, ra.node) for ra in roles.get(user_id, [])]
                held = list(today)
                for c in role_changes.get(user_id, []):
                    if c.at <= at:
                        break
                    role, node = (c.detail or {}).get("role"), by_code.get((c.detail or {}).get("node"))
                    if node is None:
                        continue
                    if c.kind == "role_granted":
                        held = [h for h in held if not (h.role == role and h.node_id == node.id)]
                    elif not any(h.role == role and h.node_id == node.id for h in held):
                        held.append(_Held(role, node.id, node))
                # nothing held then: the step predates the grants on record (a history loaded
                # with earlier dates, as `gridflow demo` does); today's roles say more than none
                return held or today
            # the people and units events' data name by id or username (USER_ID_KEYS …)
            named_ids, named_logins = set(), set()
            for e in events:
                if e.event_type in SUBMISSIONS or not isinstance(e.data, dict):
                    continue
                for key in USER_ID_KEYS:
                    value = e.data.get(key)
                    named_ids.update(v for v in (value if isinstance(value, list) else [value]) if _is_id(v))
                node_ids.update(v for v in (e.data.get(k) for k in NODE_ID_KEYS) if _is_id(v))
                named_logins.update(v for v in (e.data.get(k) for k in USERNAME_KEYS) if isinstance(v, str) and v)
            people = {u.id: u for u in session.scalars(select(User).where(or_(
                User.id.in_(named_ids - set(users)), User.username.in_(named_logins))))} \
                if named_ids or named_logins else {}
            people.update(users)
            logins = {u.username: u for u in people.values()}
            nodes = {n.id: n for n in session.scalars(select(JurisdictionNode).where(JurisdictionNode.id.in_(node_ids)))} \
                if node_ids else {}
            notifying = notify_elements(svc.specs.get(detail.version))
            grid_path = detail.case.grid_path

            def acting_as(event) -> tuple[str | None, str | None]:
                """The role and node the actor acted from: the task's (role, unit) when
                they worked a group task, else their role over the case's grid."""
                item = items.get(event.work_item_id) if event.work_item_id else None
                mine = held_at(event.actor_id, event.at) if event.actor_id else []
                if item is not None and item.role and item.candidate_node_id and event.actor_id and any(
                        ra.role == item.role and ra.node_id == item.candidate_node_id for ra in mine):
                    return item.role, nodes.get(item.candidate_node_id)
                if not event.actor_id:
                    return None, None
                over = [ra for ra in mine if grid_path.startswith(start_node_path(ra))
                        or (ra.node.level != DEPARTMENT and grid_path.startswith(ra.node.path))]
                chosen = (over or mine or [None])[0]
                if chosen is None:
                    return None, None
                return chosen.role, nodes.get(chosen.node_id)

            def person(user) -> dict | None:
                return {"username": user.username, "name": user.display_name} if user is not None else None

            def refs(event) -> dict:
                """The people and units the event's data holds by id or username, by code and name
                (one that no longer exists: None, the id kept in `submitted`)."""
                data = event.data if isinstance(event.data, dict) else {}
                if event.event_type in SUBMISSIONS:
                    return {}
                out = {}
                for key in USER_ID_KEYS:
                    value = data.get(key)
                    if isinstance(value, list):
                        out[key] = [person(people.get(v)) if _is_id(v) else None for v in value]
                    elif _is_id(value):
                        out[key] = person(people.get(value))
                for key in NODE_ID_KEYS:
                    node = nodes.get(data.get(key)) if _is_id(data.get(key)) else None
                    if node is not None:
                        out[key] = {"code": node.code, "name": node.name}
                for key in USERNAME_KEYS:
                    value = data.get(key)
                    if isinstance(value, str) and value:
                        out[key] = person(logins.get(value)) or {"username": value, "name": None}
                return out

            model = diagram_model(detail.version.files)
            element_names = {element_id: found[0].name for element_id, found in
                             model.elements.items() if found and found[0].name}

            def came_from(event) -> str | None:
                """The name of the element a step came from, in the step's own process: the
                petition, the mediation it calls and the leader case all have a `start`, and the
                first file's name (包案交办) is not where a petition's 研判归口 came from."""
                if not event.flow_from:
                    return None
                own = model.elements.get(event.bpmn_id or "", [])
                processes = [el.process for el in own if el.name == event.bpmn_name] or [el.process for el in own]
                for process in [*processes, detail.case.process_key]:
                    found = model.defined_in(event.flow_from, process)
                    if found is not None:
                        return found.name
                return element_names.get(event.flow_from)

            steps, known = [], {}
            for seq, e in enumerate(events, start=1):
                data = dict(e.data or {})
                changed = {}
                if e.event_type in SUBMISSIONS:
                    changed = changes(known, data)
                    known.update(data)
                role, node = acting_as(e)
                user = users.get(e.actor_id) if e.actor_id else None
                steps.append(TraceStep(
                    seq=seq, event_id=e.id, at=e.at, event_type=e.event_type, kind=_kind(e, notifying),
                    bpmn_id=e.bpmn_id, bpmn_name=e.bpmn_name, flow_from=e.flow_from,
                    flow_from_name=came_from(e), task_id=e.work_item_id,
                    actor_id=e.actor_id, actor_name=user.display_name if user else None,
                    actor_username=user.username if user else None, role=role,
                    node_name=node.name if node else None, node_code=node.code if node else None,
                    submitted=data, changed=changed, refs=refs(e)))
        return Trace(detail=detail, steps=steps, masked=masked)
