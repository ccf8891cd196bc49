"""督办 (supervision): the board of overdue and due-soon tasks, the 督办 action,
and the admins' list of incidents.

Who supervises: centre dispatchers, petition officers and leaders, over the cases
whose grid lies under a node where they hold one of those roles. A role held at
a department (a petition officer at 信访局) counts at the department's parent
(the county the bureau belongs to). Auditors read; they do not urge.

A 督办 on a task: its holders (the assignee; while unclaimed, the holders of its
role at its candidate node and its explicit candidates) get an `urge`
notification, the task's `urge_count` goes up (it shows in their inbox and is
kept for the evaluation), and the case's audit trail gets an `urged` event with
the supervisor and the note. Nobody urges a task they hold themselves.

A 改派 (reassignment) gives an open task to another official, or a claimed group task
back to its group, with a reason; centre dispatchers and leaders over the case may do
it (a task's holder gives a group task back with "unclaim"; one assigned by name only
a 改派 can move). A group task goes only to someone holding its role at its unit; a
task assigned by name, or one that went up to the dispatchers because nobody held its
lane, to an active official holding a role over the case's grid.
The audit trail gets a `task_reassigned` event with who moved it, from whom, to whom
and why, and whoever holds the task now (its new assignee, or its group) a `new_task`
notice with the reason.
"""
from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import aliased

from forms.safety import storable_ref, text_problem

from . import clock
from .access import READ_ONLY_ROLES, is_read_only, start_node_path
from .errors import Conflict, InactiveAccount, InvalidInput, NotFound, PermissionDenied
from .models import DEPARTMENT, Case, Incident, JurisdictionNode, User, WorkItem, WorkItemCandidate

SUPERVISING_ROLES = ("center_dispatcher", "petition_officer", "leader")
REASSIGNING_ROLES = ("center_dispatcher", "leader")
DUE_SOON = timedelta(hours=24)
BOARD_LIMIT = 500
NOTE_MAX = 500


def supervised_paths(user: User, roles=SUPERVISING_ROLES) -> list[str]:
    """Tree paths under which `user` supervises (none under another one)."""
    paths = set()
    for ra in user.roles:
        if ra.role not in roles:
            continue
        path = ra.node.path
        if ra.node.level == DEPARTMENT:
            path = _parent_path(path)
        paths.add(path)
    return sorted(p for p in paths if not any(p != q and p.startswith(q) for q in paths))


def _over(paths: list[str], case: Case, unit_path: str | None) -> bool:
    """The case lies under one of `paths`, and so does the unit holding the task (`unit_path`;
    None: a task named for someone, which has no unit): a town's centre supervises its own
    level and below, not the county's task on a town case."""
    return any(case.grid_path.startswith(p) for p in paths) and (
        unit_path is None or any(unit_path.startswith(p) for p in paths))


def supervises(user: User, case: Case, unit_path: str | None = None) -> bool:
    return _over(supervised_paths(user), case, unit_path)


def reassigns(user: User, case: Case, unit_path: str | None = None) -> bool:
    return not is_read_only(user) and _over(supervised_paths(user, REASSIGNING_ROLES), case, unit_path)


def unit_path_of(session, item: WorkItem) -> str | None:
    """The tree path of the unit holding `item` (its lane's node), None for a named task."""
    if item.candidate_node_id is None:
        return None
    return session.scalar(select(JurisdictionNode.path).where(JurisdictionNode.id == item.candidate_node_id))


class BoardItem(NamedTuple):
    """The columns of a work item the board shows or groups by. Read as plain rows: the
    board lists up to 500, and loading them as ORM objects cost more than the query."""
    id: str
    case_id: int
    process_key: str
    spec_id: str
    name: str
    role: str | None
    candidate_node_id: int | None
    assignee_id: int | None
    due_at: datetime | None
    urge_count: int


# ---------------------------------------------------------------- 超期任务
# One definition of an overdue task (超期任务) of a jurisdiction, for the 督办台 and the
# dashboard (engine/metrics.py), which once counted differently (the dashboard also counted
# the county's tasks on a town's cases, the board only the 500 tasks it listed):
# - open (a completed task, even one completed late, is no longer overdue: 按期办结率 counts those);
# - its due date passed at `now` (the engine's clock): due_at < now; a task without one never is;
# - on a case whose grid lies in the jurisdiction, and held there: by a unit (its lane's node) in
#   the jurisdiction, or named for someone (no unit). A town's figure is what the town's officials
#   answer for and may urge (`_over`): a county department's task on a town's case is the county's.

def open_overdue(now):
    """Open, and its due date passed at `now` (sort_due: read through the (status, sort_due) index)."""
    return and_(WorkItem.status == "open", WorkItem.sort_due < now, WorkItem.due_at < now)


def held_within(paths: list[str] | None, unit):
    """Tasks of cases under `paths` held there (`unit`: the task's unit, outer-joined); None: everywhere."""
    if paths is None:
        return true()
    return and_(or_(*[WorkItem.grid_path.like(p + "%") for p in paths]),
                or_(WorkItem.candidate_node_id.is_(None), *[unit.path.like(p + "%") for p in paths]))


def count_overdue(session, paths: list[str] | None, now) -> int:
    """The overdue tasks (超期任务) of the jurisdiction under `paths` (None: the whole tree)."""
    unit = aliased(JurisdictionNode)
    query = select(func.count()).select_from(WorkItem)
    if paths is not None:
        query = query.outerjoin(unit, unit.id == WorkItem.candidate_node_id)
    return int(session.scalar(query.where(held_within(paths, unit), open_overdue(now))) or 0)


def board_query(paths: list[str], now, limit: int):
    """Open tasks under `paths` overdue or due within DUE_SOON, most urgent first: the
    `BoardItem` columns, then the case's key, title and colour, grid, unit and claimer names."""
    grid, unit, claimer = aliased(JurisdictionNode), aliased(JurisdictionNode), aliased(User)
    item_columns = [getattr(WorkItem, name) for name in BoardItem._fields]
    return (select(*item_columns, Case.business_key, Case.title, Case.colour, grid.name, unit.name,
                   claimer.display_name)
            .join(Case, Case.id == WorkItem.case_id)
            .join(grid, grid.id == Case.grid_id)
            .outerjoin(unit, unit.id == WorkItem.candidate_node_id)
            .outerjoin(claimer, claimer.id == WorkItem.assignee_id)
            .where(WorkItem.status == "open", WorkItem.sort_due <= now + DUE_SOON,
                   # held at the supervisor's level or below (`_over`), or named for someone
                   held_within(paths, unit))
            .order_by(WorkItem.sort_due, WorkItem.created_at, WorkItem.id)
            .limit(limit))


def _parent_path(path: str) -> str:
    parts = path.strip("/").split("/")
    return "/" + "/".join(parts[:-1]) + "/" if len(parts) > 1 else path


@dataclass
class BoardRow:
    item: BoardItem
    business_key: str
    case_title: str
    colour: str | None
    grid_name: str
    overdue: bool
    mine: bool            # the viewer holds this task: no 督办 on one's own work


@dataclass
class BoardGroup:
    """One unit: a node (unclaimed tasks of a role there), an official (claimed
    tasks), or named people (explicit candidates); `name` None for the last."""
    name: str | None
    claimed: bool
    rows: list[BoardRow] = field(default_factory=list)

    @property
    def overdue(self) -> int:
        return sum(1 for r in self.rows if r.overdue)

    @property
    def due_soon(self) -> int:
        return len(self.rows) - self.overdue


@dataclass
class Board:
    groups: list[BoardGroup]
    now: datetime
    truncated: bool       # more than `limit` tasks: the most urgent are shown
    # 超期任务 of the jurisdiction (`count_overdue`'s definition) and open tasks falling due within
    # DUE_SOON. Exact unless the `*_at_least` flag says the list was cut before their end: the
    # rows come most overdue first, so a cut list that reaches a due-soon row lists every overdue
    # task. Not counted past the cut: a count scans every overdue task of the tree (1/2 s at 10^6
    # tasks against the board's 12 ms); the dashboard gives the exact figure.
    overdue: int
    due_soon: int
    overdue_at_least: bool = False
    due_soon_at_least: bool = False

    @property
    def total(self) -> int:
        """The tasks listed."""
        return sum(len(g.rows) for g in self.groups)


@dataclass
class IncidentRow:
    incident: Incident
    business_key: str
    case_title: str


class Supervision:
    def __init__(self, service):
        self.service = service

    # ------------------------------------------------------------- board

    def board(self, actor, limit: int = BOARD_LIMIT) -> Board:
        """Open tasks overdue or due within 24 hours in the actor's jurisdiction,
        most urgent first, grouped by the unit holding them."""
        svc = self.service
        with svc.db.read_session() as session:
            user = svc._user(session, actor)
            paths = supervised_paths(user)
            if not paths:
                raise PermissionDenied("the supervision board is for centre dispatchers, petition officers and leaders",
                                       zh="督办台仅供派单员、信访干部和包案领导使用")
            now = clock.now()
            rows = session.execute(board_query(paths, now, limit + 1)).all()
            truncated = len(rows) > limit
            rows = rows[:limit]
            width = len(BoardItem._fields)
            rows = [(BoardItem(*row[:width]), *row[width:]) for row in rows]
            unclaimed = [r[0].id for r in rows if r[0].assignee_id is None]
            named = set(session.scalars(select(WorkItemCandidate.work_item_id).where(
                WorkItemCandidate.user_id == user.id, WorkItemCandidate.work_item_id.in_(unclaimed)))) \
                if unclaimed else set()
            pairs = {(ra.role, ra.node_id) for ra in user.roles}
            groups: dict[tuple, BoardGroup] = {}
            for item, key, title, colour, grid_name, unit_name, claimer_name in rows:
                if item.assignee_id:
                    gkey, group = ("user", item.assignee_id), BoardGroup(claimer_name, True)
                    mine = item.assignee_id == user.id
                else:
                    gkey = ("node", item.candidate_node_id) if item.role else ("named", None)
                    group = BoardGroup(unit_name if item.role else None, False)
                    mine = (item.role, item.candidate_node_id) in pairs or item.id in named
                groups.setdefault(gkey, group).rows.append(BoardRow(
                    item=item, business_key=key, case_title=title, colour=colour, grid_name=grid_name,
                    overdue=item.due_at is not None and item.due_at < now, mine=mine))   # as `open_overdue`
            overdue = sum(1 for g in groups.values() for r in g.rows if r.overdue)
            due_soon = len(rows) - overdue
            return Board(groups=list(groups.values()), now=now, truncated=truncated, overdue=overdue,
                         due_soon=due_soon, overdue_at_least=truncated and not due_soon,
                         due_soon_at_least=truncated)

    # ---------------------------------------------------------------- 督办

    def urge(self, task_id: str, actor, note: str | None = None) -> WorkItem:
        """督办 a task: notify its holders, count it, record it. Refused to anyone
        without a supervising role over the case, and to the task's own holders."""
        note = _clean_note(note)
        return self.service._commit_guarded(self._urge, task_id, actor, note)

    def _urge(self, session, task_id, actor, note):
        svc = self.service
        user = svc._user(session, actor)
        item, case = svc._locked_item(session, task_id)
        if not supervises(user, case, unit_path_of(session, item)):
            raise PermissionDenied(
                f"only centre dispatchers, petition officers and leaders over case {case.business_key} "
                "and over the unit holding the task may urge it",
                zh=f"只有对案件 {case.business_key} 及其承办单位有管辖权的派单员、信访干部或包案领导才能督办")
        svc._refuse_unless_open(session, item)
        if item.assignee_id == user.id or (item.assignee_id is None and svc._is_candidate(session, user, item)):
            raise PermissionDenied(f"task '{item.name}' is yours to work; you cannot urge yourself",
                                   zh=f"任务“{item.name}”由您承办，不能督办自己")
        holders = svc.notifier.holders(session, [item]).get(item.id, [])
        now = clock.now()
        item.urge_count = (item.urge_count or 0) + 1
        svc._audit(session, case, "urged", user, now, item=item,
                   data={"note": note, "count": item.urge_count, "holders": holders})
        svc.notifier.urged(session, case, item, holders, user.id, note, now)
        session.flush()
        return item

    # ---------------------------------------------------------- reassign

    def reassignable(self, actor, case: Case, items) -> set[str]:
        """The ids of `items` (open tasks of `case`) that `actor` may reassign."""
        with self.service.db.read_session() as session:
            user = self.service._user(session, actor)
            return {item.id for item in items if reassigns(user, case, unit_path_of(session, item))}

    def reassign_choices(self, items) -> dict[str, list[tuple[str, str]]]:
        """{task id: [(username, name)]}: who a group task may go to (the active holders of its
        role at its unit, but its holder), for the case page's list; one query per (role, unit)."""
        from .lanes import holders_of
        out = {}
        with self.service.db.read_session() as session:
            for item in items:
                if not (item.role and item.candidate_node_id) or item.unresolved:
                    continue
                ids = [u for u in holders_of(session, item.role, item.candidate_node_id) if u != item.assignee_id]
                if ids:
                    out[item.id] = [(u.username, u.display_name) for u in session.scalars(
                        select(User).where(User.id.in_(ids)).order_by(User.username))]
        return out

    def reassign_choices_of(self, task_id: str) -> list[tuple[str, str]]:
        """[(username, name)] a group task may go to (reassign_choices), by the task's id."""
        with self.service.db.read_session() as session:
            item = session.get(WorkItem, task_id) if storable_ref(task_id) else None
            if item is not None:
                session.expunge(item)
        return self.reassign_choices([item]).get(task_id, []) if item is not None else []

    def reassign(self, task_id: str, to_username: str | None, reason, actor) -> WorkItem:
        """改派: give an open task to `to_username`, or (None) a claimed group task back to its group."""
        reason = _clean_text(reason, "reason", "the reason", "改派理由", required=True)
        if to_username is not None and not isinstance(to_username, str):
            raise InvalidInput("name the official by username", fields={"to": ["not text"]}, zh="请填写承办人的用户名")
        return self.service._commit_guarded(self._reassign, task_id, (to_username or "").strip() or None,
                                            reason, actor)

    def _reassign(self, session, task_id, to_username, reason, actor):
        svc = self.service
        user = svc._user(session, actor)
        item, case = svc._locked_item(session, task_id)
        if not reassigns(user, case, unit_path_of(session, item)):
            raise PermissionDenied(
                f"only centre dispatchers and leaders over case {case.business_key} and over the unit holding "
                "the task may reassign it",
                zh=f"只有对案件 {case.business_key} 及其承办单位有管辖权的派单员或领导才能改派")
        svc._refuse_unless_open(session, item)
        target = self._reassign_target(session, item, case, to_username)
        if (target.id if target else None) == item.assignee_id:
            raise InvalidInput(f"task '{item.name}' is already {'with ' + target.username if target else 'unclaimed'}",
                               fields={"to": ["already the holder"]},
                               zh=f"任务“{item.name}”已由{target.display_name}承办" if target
                               else f"任务“{item.name}”尚未被认领")
        was = session.get(User, item.assignee_id) if item.assignee_id else None
        svc._hand_over(session, item, case, user, target, "task_reassigned",
                       data={"from": was.username if was else None, "from_name": was.display_name if was else None,
                             "to": target.username if target else None,
                             "to_name": target.display_name if target else None, "reason": reason})
        svc.notifier.reassigned(session, case, item, user.id, reason, case.updated_at,
                                leaving=was.id if was else None)
        session.flush()
        return item

    def _reassign_target(self, session, item: WorkItem, case: Case, to_username: str | None):
        if to_username is None:
            if not item.role:
                raise InvalidInput(f"task '{item.name}' was assigned by name: name the official who takes it over",
                                   fields={"to": ["required"]}, zh=f"任务“{item.name}”是指定承办的，请填写接手人员的用户名")
            if item.assignee_id is None:
                raise InvalidInput(f"task '{item.name}' is not claimed: it is with its group already",
                                   fields={"to": ["already unclaimed"]}, zh=f"任务“{item.name}”尚未被认领，已在组内")
            return None
        if not storable_ref(to_username) or len(to_username) > 64:
            raise InvalidInput("not a username", fields={"to": ["not a username"]}, zh="用户名无效")
        try:
            target = self.service._user(session, to_username)
        except InactiveAccount:
            raise InvalidInput(f"no active official '{to_username}'", fields={"to": ["no such active official"]},
                               zh=f"找不到在岗人员 {to_username}") from None
        if is_read_only(target):
            raise InvalidInput(f"{to_username} is an auditor: auditors read cases, they do not work tasks",
                               fields={"to": ["an auditor"]}, zh=f"{target.display_name}是督查人员，不能承办任务")
        if item.role and item.candidate_node_id and not item.unresolved:
            if not any(ra.role == item.role and ra.node_id == item.candidate_node_id for ra in target.roles):
                raise InvalidInput(
                    f"{to_username} does not hold the task's role ({item.role}) at its unit",
                    fields={"to": ["not in the task's group"]},
                    zh=f"{target.display_name}不在该任务的承办岗位上，请改派给本岗位人员")
        elif not any(case.grid_path.startswith(start_node_path(ra)) for ra in target.roles
                     if ra.role not in READ_ONLY_ROLES):
            raise InvalidInput(f"{to_username} holds no role over case {case.business_key}'s grid",
                               fields={"to": ["outside the case's jurisdiction"]},
                               zh=f"{target.display_name}对案件 {case.business_key} 没有管辖权")
        return target

    # ----------------------------------------------------------- incidents

    @staticmethod
    def _require_admin(user: User) -> None:
        if not any(ra.role == "admin" for ra in user.roles):
            raise PermissionDenied("only administrators handle incidents", zh="仅管理员可查看和处理系统异常")

    def open_incidents(self, actor) -> list[IncidentRow]:
        svc = self.service
        with svc.db.read_session() as session:
            self._require_admin(svc._user(session, actor))
            rows = session.execute(
                select(Incident, Case.business_key, Case.title).join(Case, Case.id == Incident.case_id)
                .where(Incident.resolved_at.is_(None))
                .order_by(Incident.created_at.desc(), Incident.id.desc())).all()
            return [IncidentRow(incident, key, title) for incident, key, title in rows]

    def resolve_incident(self, incident_id: int, actor) -> Incident:
        """Mark it resolved and re-arm the case's timers: the worker tries again now."""
        return self.service._commit_guarded(self._resolve_incident, incident_id, actor)

    def _resolve_incident(self, session, incident_id, actor):
        svc = self.service
        user = svc._user(session, actor)
        self._require_admin(user)
        valid = isinstance(incident_id, int) and storable_ref(incident_id)
        incident = session.get(Incident, incident_id) if valid else None
        if incident is None:
            raise NotFound("no such incident", zh="找不到该异常")
        case = session.scalar(select(Case).where(Case.id == incident.case_id).with_for_update()
                              .execution_options(populate_existing=True))
        session.refresh(incident)
        if incident.resolved_at is not None:
            raise Conflict("this incident was already resolved", zh="该异常已处理")
        now = clock.now()
        incident.resolved_at = now
        case.next_timer_at, case.timer_failures = now, 0
        svc._audit(session, case, "incident_resolved", user, now,
                   data={"incident": incident.id, "kind": incident.kind})
        session.flush()
        return incident


def _clean_note(note) -> str:
    return _clean_text(note, "note", "the note", "督办意见")


def _clean_text(value, field: str, what: str, what_zh: str, required: bool = False) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text", fields={field: ["not text"]}, zh=f"{what_zh}必须是文字")
    # one line of printable text: control characters dropped, as the notice built from it drops
    # them (NUL is refused below, as in every form)
    value = " ".join("".join(ch for ch in value if ch in "\x00" or ch.isspace()
                             or unicodedata.category(ch) != "Cc").split())
    if text_problem(value):
        raise InvalidInput(f"{what} contains characters that cannot be stored", fields={field: ["bad text"]},
                           zh=f"{what_zh}包含无法保存的字符")
    if len(value) > NOTE_MAX:
        raise InvalidInput(f"{what} is longer than {NOTE_MAX} characters",
                           fields={field: [f"at most {NOTE_MAX} characters"]},
                           zh=f"{what_zh}最多 {NOTE_MAX} 字")
    if required and not value:
        raise InvalidInput(f"give {what}", fields={field: ["required"]}, zh=f"请填写{what_zh}")
    return value
