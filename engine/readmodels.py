"""Small read models for the web layer's hot paths.

The JSON API answers a start or a completion with the case as the step left it.
The engine's transition already hands back the case row and its open work items
(`CaseView`); all the answer still needs is labels: the names of the people who
hold those tasks or started the case, and the code and name of the grid and of
the candidate units. `labels()` reads them in one statement, where rebuilding the
case page (`WorkflowService.view_case`) costs a dozen and deserializes the workflow.

Read-only, no Flask: the views call these with the service's `Database`.
"""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Integer, String, bindparam, cast, literal, null, select, union_all

from .models import JurisdictionNode, RoleAssignment, User
from .passwords import password_stamp


def _ids(values: Iterable) -> list[int]:
    return sorted({v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 0})


# Built once: the statements' shapes never change, only their parameters.
_USER_NAMES = (select(literal("u").label("kind"), cast(User.id, Integer).label("id"),
                      cast(null(), String).label("code"), User.display_name.label("name"))
               .where(User.id.in_(bindparam("user_ids", expanding=True))))
_NODE_NAMES = (select(literal("n").label("kind"), cast(JurisdictionNode.id, Integer).label("id"),
                      JurisdictionNode.code.label("code"), JurisdictionNode.name.label("name"))
               .where(JurisdictionNode.id.in_(bindparam("node_ids", expanding=True))))
_LABELS = union_all(_USER_NAMES, _NODE_NAMES)


def labels(db, user_ids: Iterable = (), node_ids: Iterable = (), org=None) -> tuple[dict, dict]:
    """({user id: display name}, {node id: {"id", "code", "name"}}) in one round trip.
    Unknown ids are simply absent; no ids, no query.

    `org`: the OrgView (engine/org_cache.py) a transaction just used. Names and codes are
    organisation data, so the view's generation vouches for them as it does for roles:
    what it already knows costs no statement, and what is read is kept in it for the
    next answer (a rename bumps the generation, and with it the view)."""
    users, nodes = _ids(user_ids), _ids(node_ids)
    names: dict[int, str | None] = {}
    found: dict[int, dict] = {}
    if org is not None:
        users, nodes = _known(org, users, nodes, names, found)
    if not users and not nodes:
        return names, found
    statement = _LABELS if users and nodes else _USER_NAMES if users else _NODE_NAMES
    with _read(db) as conn:
        for kind, id_, code, name in conn.execute(statement, {"user_ids": users, "node_ids": nodes}):
            if kind == "u":
                names[id_] = name
            else:
                found[id_] = {"id": id_, "code": code, "name": name}
            if org is not None:
                org.labels[(kind, id_)] = names[id_] if kind == "u" else dict(found[id_])
    return names, found


def _known(org, users: list[int], nodes: list[int], names: dict, found: dict) -> tuple[list[int], list[int]]:
    """Fill `names` and `found` from the view; the ids it does not know yet."""
    missing_users, missing_nodes = [], []
    for id_ in users:
        label = org.labels.get(("u", id_))
        if label is None:
            user = org.users.get(id_)
            label = user.display_name if user is not None else None
        if label is None:
            missing_users.append(id_)
        else:
            names[id_] = label
    for id_ in nodes:
        label = org.labels.get(("n", id_))
        if label is None:
            node = org.nodes.get(id_)
            label = {"id": node.id, "code": node.code, "name": node.name} if node is not None else None
        if label is None:
            missing_nodes.append(id_)
        else:
            found[id_] = dict(label)
    return missing_users, missing_nodes


@dataclass(frozen=True)
class RoleRef:
    role: str
    node_id: int


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: enough to authorize it (id and roles, so that
    `engine.access.is_read_only` applies). The service re-reads the user in full
    inside each transaction; views pass it `principal.id`."""
    id: int
    username: str
    display_name: str
    roles: tuple[RoleRef, ...]
    password_stamp: str = ""   # of the account's password: a bearer token must name the same


_PRINCIPAL = (select(User.id, User.username, User.display_name, User.password_hash, RoleAssignment.role,
                     RoleAssignment.node_id)
              .outerjoin(RoleAssignment, RoleAssignment.user_id == User.id)
              .where(User.id == bindparam("user_id"), User.active == True)  # noqa: E712 - SQL, not Python
              .order_by(RoleAssignment.id))


def active_principal(db, user_id: int) -> Principal | None:
    """The active user `user_id` with their roles, or None if unknown or deactivated:
    one statement (the account is re-checked on every request, so a deactivated
    official is stopped at once)."""
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2 ** 31:
        return None
    with _read(db) as conn:
        rows = conn.execute(_PRINCIPAL, {"user_id": user_id}).all()
    if not rows:
        return None
    uid, username, display_name, stored = rows[0][:4]
    return Principal(uid, username, display_name,
                     tuple(RoleRef(role, node_id) for *_, role, node_id in rows if role is not None),
                     password_stamp(stored or ""))


@contextmanager
def _read(db):
    """A connection for one read statement. On PostgreSQL outside a transaction
    (autocommit: no BEGIN and ROLLBACK round trips around a single SELECT); on SQLite
    as every other read (engine/db.py's connection set-up owns its transactions)."""
    with db.engine.connect() as conn:
        if db.is_postgres:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn
