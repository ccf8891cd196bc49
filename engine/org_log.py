"""The organisation's change log, for auditors: what `gridflow load-org` changed (nodes,
accounts, their activity, role grants), who loaded the file and when.

Who reads it: auditors and administrators, each within the subtrees of the nodes where
they hold that role (as the case search, engine/search.py). A change concerns the nodes
its row names in `scope_paths`; a change that concerns no node (an account created
without roles) is shown to every reader.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, literal, or_, select

from forms.safety import storable_ref

from .errors import InvalidInput, PermissionDenied
from .models import DEPARTMENT, JurisdictionNode, OrgChange

READER_ROLES = ("auditor", "admin")
NODE_KINDS = ("node_created", "node_changed")
ROLE_KINDS = ("role_granted", "role_withdrawn")       # their subject is the user; the node is in `detail`
KINDS = (*NODE_KINDS, "user_created", "user_changed", "user_deactivated", "user_reactivated", *ROLE_KINDS)
MAX_LIMIT = 200


def refuse_bad_filters(texts: dict, choices: dict, limit, offset) -> None:
    """`InvalidInput` naming every bad filter of a log's page: texts {name: (value, most
    characters)}, choices {name: (value, allowed)} (None: no filter), a limit of 1 to
    MAX_LIMIT and an offset of 0 or more."""
    problems = {}
    for name, (value, most) in texts.items():
        if value is not None and not (isinstance(value, str) and storable_ref(value) and len(value) <= most):
            problems[name] = ["not a usable value"]
    for name, (value, allowed) in choices.items():
        if value is not None and value not in allowed:
            problems[name] = [f"one of {', '.join(allowed)}"]
    if not (isinstance(limit, int) and 0 < limit <= MAX_LIMIT and isinstance(offset, int) and offset >= 0):
        problems["limit"] = [f"1..{MAX_LIMIT}, and an offset of 0 or more"]
    if problems:
        raise InvalidInput("invalid filter", fields=problems, zh="查询条件无效")


@dataclass(frozen=True)
class OrgChangeRow:
    at: datetime
    actor: str
    source: str
    kind: str
    subject: str
    detail: dict


@dataclass(frozen=True)
class OrgChangePage:
    rows: list[OrgChangeRow]
    has_more: bool


class OrgChangeLog:
    def __init__(self, service):
        self.service = service

    def may_read(self, actor) -> bool:
        with self.service.db.read_session() as session:
            return bool(self._scope(self.service._user(session, actor)))

    @staticmethod
    def _scope(user) -> list[str]:
        return sorted({ra.node.path for ra in user.roles if ra.role in READER_ROLES})

    def changes(self, actor, subject: str | None = None, kind: str | None = None,
                limit: int = 50, offset: int = 0) -> OrgChangePage:
        """Newest first, within the reader's jurisdiction; `subject` a username, or a node code
        (every change touching the node: `_about`)."""
        refuse_bad_filters({"subject": (subject, 100)}, {"kind": (kind, KINDS)}, limit, offset)
        with self.service.db.read_session() as session:
            scope = self._scope(self.service._user(session, actor))
            if not scope:
                raise PermissionDenied("only auditors and administrators read the organisation's change log",
                                       zh="只有督查和管理员可以查看组织变更记录")
            within = [OrgChange.scope_paths.like(literal(f"% {path}%")) for path in scope]
            query = select(OrgChange).where(or_(OrgChange.scope_paths == " / ", *within))
            if subject:
                query = query.where(self._about(session, subject))
            if kind:
                query = query.where(OrgChange.kind == kind)
            found = list(session.scalars(query.order_by(OrgChange.at.desc(), OrgChange.id.desc())
                                        .limit(limit + 1).offset(offset)))
        rows = [OrgChangeRow(c.at, c.actor, c.source, c.kind, c.subject, dict(c.detail or {})) for c in found[:limit]]
        return OrgChangePage(rows, len(found) > limit)

    @staticmethod
    def _about(session, subject: str):
        """The changes a subject filter means. A username: that account's rows. A node's code:
        every change touching the node, which a role grant's row names only in its detail
        (its subject is the user): the node's own rows, its departments' rows, and the roles
        granted or withdrawn at the node or at one of its departments."""
        node_id = session.scalar(select(JurisdictionNode.id).where(JurisdictionNode.code == subject))
        if node_id is None:
            return OrgChange.subject == subject
        codes = [subject, *session.scalars(select(JurisdictionNode.code).where(
            JurisdictionNode.parent_id == node_id, JurisdictionNode.level == DEPARTMENT))]
        return or_(OrgChange.subject == subject,
                   and_(OrgChange.kind.in_(NODE_KINDS), OrgChange.subject.in_(codes)),
                   and_(OrgChange.kind.in_(ROLE_KINDS), OrgChange.detail["node"].as_string().in_(codes)))

    def all_changes(self, actor, subject: str | None = None, kind: str | None = None,
                    most: int = 10_000) -> list[OrgChangeRow]:
        """Every change `changes` would page through, up to `most` (for an export)."""
        rows: list[OrgChangeRow] = []
        while len(rows) < most:
            page = self.changes(actor, subject, kind, limit=MAX_LIMIT, offset=len(rows))
            rows.extend(page.rows)
            if not page.has_more:
                break
        return rows[:most]
