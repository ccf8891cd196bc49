"""The jurisdiction tree and its people, loaded idempotently from YAML.

Format (see demo/org.yaml): `nodes:` a nested list of {code, name, level,
key_prefix?, departments?: [{code, name, dept_type}], children?}, and `users:`
[{username, name, password?, phone?, active?, roles: [{role, node}]}]. Loading twice
changes nothing; a changed name, parent or role set is updated in place; `active:
false` deactivates an account (it can no longer log in or work tasks), and an account
the file lists without it is active.

Every change is recorded in `org_change` (who loaded which file, when, what changed
from what), append-only, for the auditors (engine/org_log.py). Phone numbers and
passwords are recorded as changed, never by value.

A password in the file is the account's initial one: once its owner has chosen their own
(/account/password), loading the file again leaves it, unless the entry says
`reset_password: true` (a forgotten password).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from forms import load_yaml

from . import clock
from .errors import not_utf8
from .models import BUSINESS_KEY_PREFIX, DEPARTMENT, DEPT_TYPES, LEVELS, ROLES, JurisdictionNode, OrgChange, RoleAssignment, User, WorkItem
from .passwords import check_password, hash_password

CHILD_LEVEL = {LEVELS[i]: LEVELS[i + 1] for i in range(len(LEVELS) - 1)}


class OrgFileError(ValueError):
    pass


@dataclass
class LoadReport:
    nodes_created: int = 0
    nodes_updated: int = 0
    users_created: int = 0
    users_updated: int = 0
    roles_added: int = 0
    roles_removed: int = 0
    users_deactivated: int = 0
    users_reactivated: int = 0
    deactivated: list[str] = field(default_factory=list)   # usernames, for releasing their claims
    notes: list[str] = field(default_factory=list)

    def __str__(self):
        return (f"nodes: {self.nodes_created} created, {self.nodes_updated} updated; "
                f"users: {self.users_created} created, {self.users_updated} updated, "
                f"{self.users_deactivated} deactivated, {self.users_reactivated} reactivated; "
                f"roles: {self.roles_added} added, {self.roles_removed} removed")


class _ChangeLog:
    """The `org_change` rows of one load: one actor, one source, one moment."""

    def __init__(self, session: Session, actor: str, source: str):
        self.session, self.actor, self.source, self.at = session, actor[:64], source[-300:], clock.now()

    def add(self, kind: str, subject: str, detail: dict, paths) -> None:
        paths = sorted({p for p in paths if p})
        self.session.add(OrgChange(at=self.at, actor=self.actor, source=self.source, kind=kind, subject=subject,
                                   detail=detail, scope_paths=f" {' '.join(paths) or '/'} "))


def record_change(session: Session, actor: str, source: str, kind: str, subject: str, detail: dict, paths) -> None:
    """One `org_change` row made outside an organisation file (an official's own password)."""
    _ChangeLog(session, actor, source).add(kind, subject, detail, paths)


def load_org_file(session: Session, path, actor: str | None = None) -> LoadReport:
    with open(path, encoding="utf-8") as fh:
        try:
            raw = load_yaml(fh.read())
        except yaml.YAMLError as exc:
            raise OrgFileError(f"{path}: not valid YAML ({exc})") from None
        except UnicodeDecodeError as exc:   # saved as GBK by an editor: say so, not a traceback
            raise OrgFileError(f"{path}: {not_utf8(exc)}") from None
    return load_org(session, raw, source=str(path), actor=actor)


def load_org(session: Session, raw: dict, source: str = "<org>", actor: str | None = None) -> LoadReport:
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list):
        raise OrgFileError(f"{source}: expected a mapping with a 'nodes' list")
    report = LoadReport()
    log = _ChangeLog(session, actor or "load-org", source)
    existing = {n.code: n for n in session.scalars(select(JurisdictionNode))}
    code_of = {n.id: n.code for n in existing.values()}
    seen: set[str] = set()

    def upsert(item, parent: JurisdictionNode | None, level_expected: str | None):
        code, name, level = item.get("code"), item.get("name"), item.get("level")
        if not code or not name:
            raise OrgFileError(f"{source}: every node needs 'code' and 'name' (near {item!r:.80})")
        if code in seen:
            raise OrgFileError(f"{source}: node code '{code}' appears twice")
        seen.add(code)
        if level not in LEVELS and level != DEPARTMENT:
            raise OrgFileError(f"{source}: node '{code}' has level '{level}', expected one of {', '.join(LEVELS)}")
        if level_expected and level != level_expected and level != DEPARTMENT:
            raise OrgFileError(f"{source}: node '{code}' is a {level} under a {parent.level}; expected {level_expected}")
        prefix = item.get("key_prefix")
        if prefix is not None and not (isinstance(prefix, str) and BUSINESS_KEY_PREFIX.fullmatch(prefix)):
            raise OrgFileError(f"{source}: node '{code}' has key_prefix {prefix!r}: write 1-8 capital letters or "
                               "digits starting with a letter, like LX (case numbers are searched in capitals)")
        node = existing.get(code)
        values = dict(name=name, level=level, key_prefix=prefix,
                      dept_type=item.get("dept_type"), parent_id=parent.id if parent else None)
        old_path = node.path if node is not None else None
        if node is None:
            node = JurisdictionNode(code=code, path="", **values)
            session.add(node)
            session.flush()
            code_of[node.id] = code
            report.nodes_created += 1
            changed = {"name": name, "level": level, "parent": parent.code if parent else None}
        else:
            changed = {("parent" if k == "parent_id" else k):
                       ([code_of.get(getattr(node, k)), code_of.get(v)] if k == "parent_id" else [getattr(node, k), v])
                       for k, v in values.items() if getattr(node, k) != v}
            if changed:
                for k, v in values.items():
                    setattr(node, k, v)
                report.nodes_updated += 1
        path = (parent.path if parent else "/") + f"{node.id}/"
        if node.path != path:
            node.path = path
        if changed:
            log.add("node_created" if old_path is None else "node_changed", code, changed, (path, old_path))
        existing[code] = node
        for dept in item.get("departments") or []:
            if level not in ("city", "county", "town"):
                raise OrgFileError(f"{source}: departments attach to a city, county or town, not to {level} '{code}'")
            if dept.get("dept_type") not in DEPT_TYPES:
                raise OrgFileError(f"{source}: department '{dept.get('code')}' needs a dept_type, one of "
                                   f"{', '.join(DEPT_TYPES)}")
            upsert({**dept, "level": DEPARTMENT}, node, None)
        for child in item.get("children") or []:
            if level == "grid":
                raise OrgFileError(f"{source}: grid '{code}' cannot have children")
            upsert(child, node, CHILD_LEVEL.get(level))

    for top in raw["nodes"]:
        upsert(top, None, None)
    session.flush()

    users = {u.username: u for u in session.scalars(select(User))}
    path_of = {n.id: n.path for n in existing.values()}
    for item in raw.get("users") or []:
        username = item.get("username")
        if not username:
            raise OrgFileError(f"{source}: a user without 'username'")
        active = item.get("active", True)
        if not isinstance(active, bool):
            raise OrgFileError(f"{source}: user '{username}' has active: {active!r}; write true or false")
        user = users.get(username)
        role_paths = [existing[r["node"]].path for r in item.get("roles") or []
                      if isinstance(r, dict) and r.get("node") in existing]
        if user is None:
            user = User(username=username, display_name=item.get("name") or username,
                        phone=item.get("phone"), active=active,
                        password_hash=hash_password(str(item["password"])) if item.get("password") else "")
            session.add(user)
            session.flush()
            users[username] = user
            report.users_created += 1
            log.add("user_created", username, {"name": user.display_name, "active": active}, role_paths)
        else:
            held = [path_of.get(ra.node_id) for ra in user.roles]
            changed = {}
            if item.get("name") and user.display_name != item["name"]:
                changed["name"] = [user.display_name, item["name"]]
                user.display_name = item["name"]
            if item.get("phone") and user.phone != item.get("phone"):
                changed["phone"] = "changed"   # a personal value: never copied into the log
                user.phone = item.get("phone")
            # a password its owner chose stays theirs, unless the file says to reset it
            if (item.get("password") and (user.password_changed_at is None or item.get("reset_password") is True)
                    and not check_password(user.password_hash, str(item["password"]))):
                changed["password"] = "changed"
                user.password_hash, user.password_changed_at = hash_password(str(item["password"])), None
            if changed:
                report.users_updated += 1
                log.add("user_changed", username, changed, held + role_paths)
            if user.active != active:
                user.active = active
                if active:
                    report.users_reactivated += 1
                else:
                    report.users_deactivated += 1
                    report.deactivated.append(username)
                    _note_open_tasks(session, user, report)
                log.add("user_reactivated" if active else "user_deactivated", username, {}, held + role_paths)
        wanted = set()
        for r in item.get("roles") or []:
            role, node_code = r.get("role"), r.get("node")
            if role not in ROLES:
                raise OrgFileError(f"{source}: user '{username}' has unknown role '{role}' (known: {', '.join(ROLES)})")
            if node_code not in existing:
                raise OrgFileError(f"{source}: user '{username}' holds {role} at unknown node '{node_code}'")
            wanted.add((role, existing[node_code].id))
        have = {(ra.role, ra.node_id): ra for ra in session.scalars(
            select(RoleAssignment).where(RoleAssignment.user_id == user.id))}
        for key in sorted(wanted - set(have)):
            session.add(RoleAssignment(user_id=user.id, role=key[0], node_id=key[1]))
            report.roles_added += 1
            log.add("role_granted", username, {"role": key[0], "node": code_of.get(key[1])}, [path_of.get(key[1])])
        for key in sorted(set(have) - wanted):
            session.delete(have[key])
            report.roles_removed += 1
            log.add("role_withdrawn", username, {"role": key[0], "node": code_of.get(key[1])},
                    [path_of.get(key[1])])
    session.flush()
    return report


def _note_open_tasks(session: Session, user: User, report: LoadReport) -> None:
    """Tasks assigned to a deactivated official by name stay theirs, and nobody can work
    them until the account is active again: say how many. (Group tasks they had claimed go
    back to the group: `WorkflowService.release_claims_of`, which `gridflow load-org` calls.)"""
    count = session.scalar(select(func.count()).select_from(WorkItem).where(
        WorkItem.assignee_id == user.id, WorkItem.status == "open", WorkItem.role.is_(None)))
    if count:
        report.notes.append(f"{user.username} was deactivated holding {count} open task(s) assigned to them by "
                            "name; nobody can work those until the account is active again")
