"""The jurisdiction tree and its people, loaded idempotently from YAML.

Format (see demo/org.yaml): `nodes:` a nested list of {code, name, level,
key_prefix?, departments?: [{code, name, dept_type}], children?}, and `users:`
[{username, name, password?, phone?, roles: [{role, node}]}]. Loading twice
changes nothing; a changed name, parent or role set is updated in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from .models import DEPARTMENT, DEPT_TYPES, LEVELS, ROLES, JurisdictionNode, RoleAssignment, User
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
    notes: list[str] = field(default_factory=list)

    def __str__(self):
        return (f"nodes: {self.nodes_created} created, {self.nodes_updated} updated; "
                f"users: {self.users_created} created, {self.users_updated} updated; "
                f"roles: {self.roles_added} added, {self.roles_removed} removed")


def load_org_file(session: Session, path) -> LoadReport:
    with open(path, encoding="utf-8") as fh:
        try:
            raw = yaml.safe_load(fh)
        except yaml.YAMLError as exc:
            raise OrgFileError(f"{path}: not valid YAML ({exc})") from None
    return load_org(session, raw, source=str(path))


def load_org(session: Session, raw: dict, source: str = "<org>") -> LoadReport:
    if not isinstance(raw, dict) or not isinstance(raw.get("nodes"), list):
        raise OrgFileError(f"{source}: expected a mapping with a 'nodes' list")
    report = LoadReport()
    existing = {n.code: n for n in session.scalars(select(JurisdictionNode))}
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
        node = existing.get(code)
        values = dict(name=name, level=level, key_prefix=item.get("key_prefix"),
                      dept_type=item.get("dept_type"), parent_id=parent.id if parent else None)
        if node is None:
            node = JurisdictionNode(code=code, path="", **values)
            session.add(node)
            session.flush()
            report.nodes_created += 1
        elif any(getattr(node, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(node, k, v)
            report.nodes_updated += 1
        path = (parent.path if parent else "/") + f"{node.id}/"
        if node.path != path:
            node.path = path
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
    for item in raw.get("users") or []:
        username = item.get("username")
        if not username:
            raise OrgFileError(f"{source}: a user without 'username'")
        user = users.get(username)
        if user is None:
            user = User(username=username, display_name=item.get("name") or username,
                        phone=item.get("phone"),
                        password_hash=hash_password(str(item["password"])) if item.get("password") else "")
            session.add(user)
            session.flush()
            users[username] = user
            report.users_created += 1
        else:
            changed = False
            if item.get("name") and user.display_name != item["name"]:
                user.display_name, changed = item["name"], True
            if item.get("phone") and user.phone != item.get("phone"):
                user.phone, changed = item.get("phone"), True
            if item.get("password") and not check_password(user.password_hash, str(item["password"])):
                user.password_hash, changed = hash_password(str(item["password"])), True
            report.users_updated += int(changed)
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
        for key in wanted - set(have):
            session.add(RoleAssignment(user_id=user.id, role=key[0], node_id=key[1]))
            report.roles_added += 1
        for key in set(have) - wanted:
            session.delete(have[key])
            report.roles_removed += 1
    session.flush()
    return report
