"""Helpers shared by the process-path tests."""
from engine.service import InboxFilters

REPORT = {
    "category": "dispute", "colour": "blue", "description": "两户村民因宅基地边界发生争执",
    "location": "新光社区3号楼东侧", "parties": "李某, 王某",
}


def work(service, username, spec_id, data=None, claim=False):
    """Find the task `spec_id` in `username`'s inbox (proving they see it) and complete it."""
    rows = [r for r in service.inbox(username, InboxFilters(limit=500)) if r.item.spec_id == spec_id]
    assert rows, f"{username} has no '{spec_id}' in their inbox"
    assert len(rows) == 1, f"{username} has {len(rows)} '{spec_id}' tasks"
    task_id = rows[0].item.id
    if claim:
        service.claim(task_id, username)
    return service.complete_task(task_id, data or {}, username)


def open_spec_ids(view):
    return sorted(i.spec_id for i in view.open_items)


def path_ids(service, case):
    return [b for _, b in service.path(case.business_key)]
