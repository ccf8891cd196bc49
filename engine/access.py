"""Who may see what. The jurisdiction rule: a person holding a role at node N
sees the cases whose grid lies under N. A department is not above any grid, so a
department's people see the cases dispatched to their department. Anyone who
started a case, or was asked to work a task of it, sees that case."""
from __future__ import annotations

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from .models import DEPARTMENT, Case, User, WorkItem, WorkItemCandidate

READ_ONLY_ROLES = {"auditor"}


def can_view_case(session: Session, user: User, case: Case) -> bool:
    dept_nodes = []
    for ra in user.roles:
        if ra.node.level == DEPARTMENT:
            dept_nodes.append(ra.node_id)
        elif case.grid_path.startswith(ra.node.path):
            return True
    if case.created_by_id == user.id:
        return True
    involved = [WorkItem.assignee_id == user.id, WorkItem.completed_by_id == user.id,
                exists().where(WorkItemCandidate.work_item_id == WorkItem.id,
                               WorkItemCandidate.user_id == user.id)]
    if dept_nodes:
        involved.append(WorkItem.candidate_node_id.in_(dept_nodes))
    return session.scalar(select(exists().where(WorkItem.case_id == case.id, or_(*involved))))


def is_read_only(user: User) -> bool:
    """Auditors read everything in their jurisdiction and change nothing."""
    return bool(user.roles) and all(ra.role in READ_ONLY_ROLES for ra in user.roles)


def start_node_id(assignment) -> int:
    """Where a role lets its holder start cases: its node, or for a role held in a
    department (信访局, 司法所 …) the town/county/city the department belongs to."""
    node = assignment.node
    return node.parent_id if node.level == DEPARTMENT and node.parent_id else node.id


def holds_role_within(user: User, node_ids: set, roles) -> bool:
    """Whether the user holds one of `roles` (any role if none are named) at one of the nodes
    (a grid and its ancestors): who may start a case there, or be named on its forms. A
    department's role counts at its town or county (`start_node_id`)."""
    return any(start_node_id(ra) in node_ids and (not roles or ra.role in roles) for ra in user.roles)


def start_node_path(assignment) -> str:
    node = assignment.node
    if node.level == DEPARTMENT and node.parent_id:
        return node.path.rsplit("/", 2)[0] + "/"
    return node.path
