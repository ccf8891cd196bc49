"""The organisation in memory between transactions, for the engine's hot paths.

Every task completion asks the same questions of a tree that changes a few times a
month: who is this official and what roles do they hold, which nodes lie above
this grid, who holds this role at that node. Asking the database each time cost
three statements per transition. `OrgCache` keeps the answers for as long as the
database's org generation (one row, bumped by triggers on every change to nodes,
users and role assignments — migration 0011) is the one they were read under. The
transaction reads the generation in a statement it runs anyway, so a change made
by any writer — another process, `gridflow load-org`, plain SQL — is seen by the
next transaction that starts after it commits, exactly as a fresh query would.

The answers are plain frozen snapshots, never ORM objects: they are shared by the
threads of a web worker and outlive the session that read them.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, joinedload

from .models import JurisdictionNode, OrgGeneration, RoleAssignment, User, path_ids

ORG_VIEW = "gf_org_view"  # Session.info: the OrgView this transaction may use


@dataclass(frozen=True)
class NodeSnapshot:
    id: int
    code: str
    name: str
    level: str
    parent_id: int | None
    path: str
    key_prefix: str | None
    dept_type: str | None

    @classmethod
    def of(cls, node: JurisdictionNode) -> NodeSnapshot:
        return cls(node.id, node.code, node.name, node.level, node.parent_id, node.path, node.key_prefix,
                   node.dept_type)

    def ancestor_ids(self) -> list[int]:
        return path_ids(self.path)


@dataclass(frozen=True)
class RoleSnapshot:
    id: int
    role: str
    node_id: int
    node: NodeSnapshot


@dataclass(frozen=True)
class UserSnapshot:
    """Reads like `models.User` for everything a transition asks of the actor."""
    id: int
    username: str
    display_name: str
    phone: str | None
    active: bool
    roles: tuple[RoleSnapshot, ...]
    password_stamp: str   # of the password when read: a bearer token names the one it was issued under

    @classmethod
    def of(cls, user: User) -> UserSnapshot:
        return cls(user.id, user.username, user.display_name, user.phone, user.active,
                   tuple(RoleSnapshot(ra.id, ra.role, ra.node_id, NodeSnapshot.of(ra.node)) for ra in user.roles),
                   user.password_stamp)


@dataclass
class OrgView:
    """The answers read under one generation. Filled lazily; dict writes are atomic
    under the GIL and two threads filling the same key write the same answer."""
    generation: int
    users: dict = field(default_factory=dict)        # username or id -> UserSnapshot
    nodes: dict = field(default_factory=dict)        # node id -> NodeSnapshot
    holders: dict = field(default_factory=dict)      # (role, node id) -> [active holder ids]
    departments: dict = field(default_factory=dict)  # (node id, dept type) -> NodeSnapshot | None
    usernames: dict = field(default_factory=dict)    # (names...) -> [active user ids]
    codes: dict = field(default_factory=dict)        # node code -> NodeSnapshot
    labels: dict = field(default_factory=dict)       # ("u", id) -> display name, ("n", id) -> {id, code, name}

    def node_by_code(self, session: Session, code: str) -> NodeSnapshot | None:
        found = self.codes.get(code)
        if found is None:
            node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == code))
            if node is None:
                return None
            found = self.codes[code] = NodeSnapshot.of(node)
        return found

    def user(self, session: Session, ref) -> UserSnapshot | None:
        """The user by id or username, active or not; None if there is none."""
        key = ref if isinstance(ref, int) else str(ref)
        found = self.users.get(key)
        if found is None:
            user = load_user(session, key)
            if user is None:
                return None
            found = UserSnapshot.of(user)
            self.users[found.id] = self.users[found.username] = found
        return found


def load_user(session: Session, ref: int | str) -> User | None:
    """The user by id (int) or username, with roles and their nodes: one query."""
    query = select(User).options(joinedload(User.roles).joinedload(RoleAssignment.node))
    query = query.where(User.id == ref) if isinstance(ref, int) else query.where(User.username == ref)
    return session.scalars(query).unique().one_or_none()


def snapshot_nodes(session: Session, cache: dict, ids) -> dict[int, NodeSnapshot]:
    """{id: NodeSnapshot} for `ids`, reading only those not yet in `cache` (one query)."""
    missing = [i for i in ids if i not in cache]
    if missing:
        for node in session.scalars(select(JurisdictionNode).where(JurisdictionNode.id.in_(missing))):
            cache[node.id] = NodeSnapshot.of(node)
    return {i: cache[i] for i in ids if i in cache}


class OrgCache:
    """The current OrgView of one process (one per WorkflowService)."""

    def __init__(self):
        self._view: OrgView | None = None
        self._lock = threading.Lock()

    def view(self, generation: int | None) -> OrgView | None:
        if generation is None:  # a database without migration 0011's row: no sharing
            return None
        with self._lock:
            if self._view is None or self._view.generation != generation:
                self._view = OrgView(generation)
            return self._view

    def attach(self, session: Session, generation: int | None) -> OrgView | None:
        """Let this transaction use the view for `generation` (read by the caller)."""
        view = self.view(generation)
        if view is not None:
            session.info[ORG_VIEW] = view
        return view

    def attach_current(self, session: Session) -> OrgView | None:
        """Read the generation with a statement of its own and attach its view."""
        return self.attach(session, session.scalar(_GENERATION))


_GENERATION = select(OrgGeneration.generation).where(OrgGeneration.id == 1)


def current_generation():
    """A scalar subquery: add it to a statement the transaction runs anyway."""
    return _GENERATION.scalar_subquery()


def view_of(session: Session) -> OrgView | None:
    return session.info.get(ORG_VIEW)
