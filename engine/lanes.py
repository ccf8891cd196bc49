"""Lane resolution: who may work a user task of a given case.

A lane named `level.role` (or just `role`) resolves, per case, to the holders
of that role at the ancestor of the case's grid at that level (the grid itself
for `grid.`; for a bare role, the nearest ancestor that has holders).
`level.role:dept_type` (e.g. `county.petition_officer:xinfangju`) names a role
in a department: the department of that type attached to that ancestor, or to
the nearest ancestor above it that has one. `department_handler` and
`petition_officer` lanes without a type take it from the task data's
`department` (chosen by the DMN or the dispatcher).

Task data may override the lane: a task property `assignee` / `candidateUsers`
names a data key holding a username (or a list of them), e.g. the case-owning
leader chosen in an earlier form.

A lane nobody holds still yields a task: it goes to the center dispatchers of
the nearest ancestor above that has any, flagged `unresolved`, so it is never lost.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from .bpmn import data_key, lane_parts, parse_lane
from .models import DEPARTMENT, JurisdictionNode, RoleAssignment, User, path_ids
from .org_cache import NodeSnapshot, snapshot_nodes, view_of

DEPARTMENT_ROLES = {"department_handler", "petition_officer"}
FALLBACK_ROLE = "center_dispatcher"


def stored_lane(lane: str | None) -> str | None:
    """The lane as a work item keeps it (for display and for noticing a changed lane): a
    long list of candidate groups is cut to the column's 100 characters."""
    return lane[:100] if lane else lane


@dataclass
class Candidates:
    role: str | None = None
    node_id: int | None = None
    assignee_id: int | None = None
    user_ids: list[int] = field(default_factory=list)
    unresolved: bool = False
    reason: str | None = None


PAIR_HOLDERS = "gf_pair_holders"  # Session.info: {(role, node id): active holders' user ids}


def pair_holders(session: Session) -> dict:
    """{(role, node id): active holders' ids}, for this transaction, or shared between
    transactions while the org is unchanged. Fill it with whole lists only: another
    thread may read it at any moment."""
    view = view_of(session)
    return view.holders if view is not None else session.info.setdefault(PAIR_HOLDERS, {})


def holders_of(session: Session, role: str, node_id: int) -> list[int]:
    """The active officials holding `role` at the node, asked once per transaction: lane
    resolution and the new-task notifications of the same transition share the answer."""
    cache = pair_holders(session)
    key = (role, node_id)
    if key not in cache:
        # the organisation is not what the transition changes: its pending rows need not
        # be flushed by the ORM first (they go by the driver at the transition's end)
        with session.no_autoflush:
            cache[key] = list(session.scalars(
                select(RoleAssignment.user_id).join(User, User.id == RoleAssignment.user_id)
                .where(RoleAssignment.role == role, RoleAssignment.node_id == node_id, User.active.is_(True))
                .order_by(RoleAssignment.user_id)))
    return cache[key]


class LaneResolver:
    """Cache of the tree lookups lane resolution needs: for the transaction, or shared
    between transactions while the org is unchanged (engine/org_cache.py)."""

    def __init__(self, session: Session):
        self.session = session
        self.view = view_of(session)
        self._nodes: dict[int, NodeSnapshot] = self.view.nodes if self.view is not None else {}
        self._departments: dict = self.view.departments if self.view is not None else {}
        self._usernames: dict = self.view.usernames if self.view is not None else {}

    def node(self, node_id: int) -> NodeSnapshot | None:
        if node_id not in self._nodes:
            node = self.session.get(JurisdictionNode, node_id)
            if node is None:
                return None
            self._nodes[node_id] = NodeSnapshot.of(node)
        return self._nodes[node_id]

    def ancestors(self, grid_path: str) -> list[NodeSnapshot]:
        """From the grid up to the root (one query for the whole chain)."""
        ids = path_ids(grid_path)
        found = snapshot_nodes(self.session, self._nodes, ids)
        return [found[i] for i in reversed(ids) if i in found]

    def has_holders(self, role: str, node_id: int) -> bool:
        return bool(holders_of(self.session, role, node_id))

    def department_under(self, node, dept_type: str) -> NodeSnapshot | None:
        key = (node.id, dept_type)
        if key not in self._departments:
            dept = self.session.scalar(select(JurisdictionNode).where(
                JurisdictionNode.parent_id == node.id, JurisdictionNode.level == DEPARTMENT,
                JurisdictionNode.dept_type == dept_type).order_by(JurisdictionNode.id).limit(1))
            self._departments[key] = NodeSnapshot.of(dept) if dept is not None else None
        return self._departments[key]

    def users_by_name(self, names) -> list[int]:
        names = names.split(",") if isinstance(names, str) else list(names or [])
        names = tuple(n.strip() for n in names if isinstance(n, str) and n.strip())
        if not names:
            return []
        if names not in self._usernames:
            found = dict(self.session.execute(select(User.username, User.id).where(
                User.username.in_(names), User.active.is_(True))).all())
            # in the order the data names them: the first is the assignee
            self._usernames[names] = [found[n] for n in dict.fromkeys(names) if n in found]
        return list(self._usernames[names])

    def resolve(self, lane: str | None, grid_path: str, data: dict,
                assignee_key: str | None = None, candidates_key: str | None = None) -> Candidates:
        if assignee_key:
            ids = self.users_by_name(_data_value(data, assignee_key))
            if ids:
                return Candidates(assignee_id=ids[0], user_ids=ids[:1])
        if candidates_key:
            ids = self.users_by_name(data.get(data_key(candidates_key)))
            if ids:
                return Candidates(user_ids=ids)

        parts = lane_parts(lane) if lane else []
        if len(parts) > 1:
            return self._resolve_groups(parts, grid_path, data)
        ref = parse_lane(lane)
        chain = self.ancestors(grid_path)
        if ref is None:
            return self._fallback(chain, 0, f"lane '{lane}' names no role")
        if ref.level:
            start = next((i for i, n in enumerate(chain) if n.level == ref.level), None)
            if start is None:
                return self._fallback(chain, 0, f"the case's grid has no {ref.level} above it")
            candidates_at = [start]
        else:
            start, candidates_at = 0, list(range(len(chain)))

        dept_type = ref.dept_type or (data.get("department") if ref.role in DEPARTMENT_ROLES else None)
        if dept_type:
            for i in range(start, len(chain)):
                dept = self.department_under(chain[i], dept_type)
                if dept is not None and self.has_holders(ref.role, dept.id):
                    return Candidates(role=ref.role, node_id=dept.id)
            return self._fallback(chain, start + 1,
                                  f"no {ref.role} for department '{dept_type}' at or above {chain[start].name}")
        for i in candidates_at:
            if self.has_holders(ref.role, chain[i].id):
                return Candidates(role=ref.role, node_id=chain[i].id)
        where = chain[start].name if ref.level else "any level"
        return self._fallback(chain, start + 1, f"nobody holds {ref.role} at {where}")

    def _resolve_groups(self, lanes: list[str], grid_path: str, data: dict) -> Candidates:
        """Several candidate groups: any of their holders may work the task. The first group
        that resolves finds it by its role, as a single lane would (inbox, supervision by
        unit); the holders of the other groups are named as candidates. None resolving: the
        first group's fallback, flagged unresolved."""
        found = [self.resolve(lane, grid_path, data) for lane in lanes]
        resolved = [c for c in found if not c.unresolved]
        if not resolved:
            return found[0]
        first = resolved[0]
        named: list[int] = []
        for other in resolved[1:]:
            named += [u for u in holders_of(self.session, other.role, other.node_id) if u not in named]
        return Candidates(role=first.role, node_id=first.node_id, user_ids=named)

    def _fallback(self, chain, from_index: int, reason: str) -> Candidates:
        for node in chain[from_index:]:
            if node.level != DEPARTMENT and self.has_holders(FALLBACK_ROLE, node.id):
                return Candidates(role=FALLBACK_ROLE, node_id=node.id, unresolved=True, reason=reason)
        # Nobody anywhere: keep the task, visible to the top node's dispatchers once someone is appointed.
        return Candidates(role=FALLBACK_ROLE, node_id=chain[-1].id if chain else None, unresolved=True, reason=reason)


def _data_value(data: dict, expr: str):
    """The username an `assignee` names: a data key (`owning_leader`, `${owning_leader}`),
    or, as Camunda Modeler files write it, a literal username that is no data key."""
    key = data_key(expr)
    if key in data or expr.strip().startswith("${"):
        return data.get(key)
    return key
