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


def open_item(view, spec_id):
    """The one open work item `spec_id` of a case view (an urgent matter has several open at once)."""
    items = [i for i in view.open_items if i.spec_id == spec_id]
    assert len(items) == 1, f"{len(items)} open '{spec_id}' items; open: {open_spec_ids(view)}"
    return items[0]


def path_ids(service, case):
    return [b for _, b in service.path(case.business_key)]


def csrf_token(client, path="/login"):
    """The CSRF token the app put in a page's <meta name="csrf-token">."""
    import re
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf-token" content="([^"]+)"', html)
    assert match, f"no csrf token on {path}"
    return match.group(1)


def login(client, username, password="demo123"):
    token = csrf_token(client)
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 302, f"login of {username} failed: {response.status_code}"
    return response


def export_rows(fmt: str, body: bytes) -> list[list[str]]:
    """The rows of a CSV (with its BOM, checked) or XLSX export, as text."""
    import csv
    import io
    from openpyxl import load_workbook
    if fmt == "csv":
        text = body.decode("utf-8")
        assert text.startswith("\ufeff")
        return list(csv.reader(io.StringIO(text[1:])))
    sheet = load_workbook(io.BytesIO(body)).active
    return [[("" if c is None else str(c)) for c in row] for row in sheet.iter_rows(values_only=True)]


def stored_timers(service, case_id) -> list:
    """The due moments of the timers a case's saved state waits on, found without the engine's
    own reading of them (`service._timers`, SpiffWorkflow's event manager): the state row read
    back from the database and restored, and the WAITING timer catch events of its tree asked
    when each falls due (a date without an offset read as UTC, as the engine reads it)."""
    from datetime import datetime, timezone

    from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition
    from SpiffWorkflow.util.task import TaskState

    from engine.models import Case, CaseState
    with service.db.read_session() as session:
        case, row = session.get(Case, case_id), session.get(CaseState, case_id)
        spec, subprocess_specs = service._specs_for_one_case(service.specs.for_case(session, case))
        workflow = service.serializer.loads(row.state, spec, subprocess_specs, row.serializer_version)
    moments = []
    for wf in [workflow, *workflow.subprocesses.values()]:
        for task in wf.tasks.values():
            timer = getattr(task.task_spec, "event_definition", None)
            if task.state == TaskState.WAITING and isinstance(timer, TimerEventDefinition):
                value = timer.details(task).value
                value = datetime.fromisoformat(value) if isinstance(value, str) else value
                moments.append(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    return sorted(moments)


def assert_next_timers_true(service) -> None:
    """Every case's `next_timer_at` is the earliest timer its saved state waits on, or None."""
    from sqlalchemy import select

    from engine.models import Case
    with service.db.read_session() as session:
        cases = session.execute(select(Case.id, Case.business_key, Case.next_timer_at)).all()
    for case_id, key, next_timer_at in cases:
        waits = stored_timers(service, case_id)
        assert next_timer_at == (waits[0] if waits else None), (
            f"case {key}: next_timer_at {next_timer_at}, but its saved state waits on {waits or 'no timer'}")
