"""Case search for auditors (and any official, within their jurisdiction).

One SQL statement over `gf_case`, every filter an indexed predicate:

* business key: a prefix, as a range on the unique key (`LX-2026` finds them all);
* process, status: `ix_case_process_status_created`;
* jurisdiction subtree: a range on the materialised `grid_path`
  (`ix_case_grid_created`), the same key the user's own jurisdiction is read by;
* date range (created): `ix_case_created`;
* participant (anyone who acted on the case: started, claimed, completed, urged …):
  `audit_event (actor_id, case_id)`;
* task (a user task's BPMN id or its name): `work_item (spec_id, case_id)`, names
  resolved to BPMN ids through the deployed process definitions (of the chosen process
  only, when one is chosen).

Newest first, `limit` + `offset`; one row more than the page is read to know
whether there is a next page, so no COUNT over a million rows is ever needed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import String, and_, exists, func, literal_column, or_, select, type_coerce
from sqlalchemy.orm import aliased

from forms.safety import storable_ref

from .clock import CHINA   # dates in a search are calendar days where the officials are
from .errors import InvalidInput
from .models import DEPARTMENT, AuditEvent, Case, JurisdictionNode, ProcessVersion, User, WorkItem
from .personal_data import mask_data, personal_fields

STATUSES = ("open", "completed", "cancelled")
MAX_LIMIT = 1000
MAX_OFFSET = 100_000
# index entries a probe reads at most to tell a wide filter from a narrow one
PROBE = 2000


@dataclass
class SearchFilters:
    business_key: str | None = None
    process_key: str | None = None
    status: str | None = None
    node: str | None = None            # jurisdiction node code: cases in its subtree
    created_from: date | None = None   # inclusive, China calendar day
    created_to: date | None = None     # inclusive
    participant: str | None = None     # username of anyone who acted on the case
    task: str | None = None            # a user task's BPMN id or name (of `process_key`, if given)
    limit: int = 50
    offset: int = 0


@dataclass
class SearchRow:
    case: Case
    process_name: str
    grid_name: str
    summary: dict = field(default_factory=dict)


@dataclass
class SearchPage:
    rows: list[SearchRow]
    limit: int
    offset: int
    has_more: bool


def path_range(path: str) -> tuple[str, str]:
    """[path, upper) such that a string starts with `path` iff it lies in the range
    ('/' + 1 == '0' in byte order; paths are digits and slashes)."""
    return path, path[:-1] + chr(ord(path[-1]) + 1)


def _prefix_range(prefix: str) -> tuple[str, str]:
    return prefix, prefix + "\uffff"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=CHINA).astimezone(timezone.utc)


class CaseSearch:
    def __init__(self, service):
        self.service = service

    # ------------------------------------------------------------- scope

    @staticmethod
    def scope_paths(user: User) -> list[str]:
        """The subtrees the user may search: the nodes of their roles, as for the case
        page (engine/access.py). A department is above no grid: its people see only the
        cases dispatched to them, which they find in their inbox, not by searching."""
        paths = [ra.node.path for ra in user.roles if ra.node.level != DEPARTMENT]
        # drop paths inside another one: fewer, wider ranges
        paths = sorted(set(paths))
        out = []
        for p in paths:
            if not any(p.startswith(q) for q in out):
                out.append(p)
        return out

    def scope_nodes(self, actor, limit: int = 500) -> list[JurisdictionNode]:
        """The jurisdictions (down to communities) a user may narrow a search to."""
        svc = self.service
        with svc.db.read_session() as session:
            scope = self.scope_paths(svc._user(session, actor))
            if not scope:
                return []
            ranges = [and_(JurisdictionNode.path >= lo, JurisdictionNode.path < hi) for lo, hi in map(path_range, scope)]
            return list(session.scalars(select(JurisdictionNode).where(
                or_(*ranges), JurisdictionNode.level.in_(("city", "county", "town", "community")))
                .order_by(JurisdictionNode.path).limit(limit)))

    # ------------------------------------------------------------- check

    def _check(self, session, f: SearchFilters) -> dict:
        problems, resolved = {}, {}
        for name in ("business_key", "process_key", "status", "node", "participant", "task"):
            value = getattr(f, name)
            if value is not None and not (isinstance(value, str) and storable_ref(value) and len(value) <= 200):
                problems[name] = ["not a usable value"]
        if f.status and f.status not in STATUSES and "status" not in problems:
            problems["status"] = [f"one of {', '.join(STATUSES)}"]
        for name in ("created_from", "created_to"):
            value = getattr(f, name)
            if value is not None and not isinstance(value, date):
                problems[name] = ["not a date"]
            elif value is not None and not date.min < value < date.max:
                # its China-time day starts before year 1 in UTC (or ends after 9999)
                problems[name] = ["out of the calendar's range"]
        if isinstance(f.created_from, date) and isinstance(f.created_to, date) and f.created_from > f.created_to:
            problems["created_to"] = ["before the start date"]
        if not (isinstance(f.limit, int) and not isinstance(f.limit, bool) and 1 <= f.limit <= MAX_LIMIT):
            problems["limit"] = [f"between 1 and {MAX_LIMIT}"]
        if not (isinstance(f.offset, int) and not isinstance(f.offset, bool) and 0 <= f.offset <= MAX_OFFSET):
            problems["offset"] = [f"between 0 and {MAX_OFFSET:,}"]
        if f.node and "node" not in problems:
            node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == f.node.strip()))
            if node is None:
                problems["node"] = ["no such jurisdiction"]
            elif node.level == DEPARTMENT:   # no case lies under a department: the search would say "none"
                problems["node"] = ["must be a jurisdiction"]
            else:
                resolved["node"] = node
        if f.process_key and "process_key" not in problems and session.scalar(select(ProcessVersion.id).where(
                ProcessVersion.process_key == f.process_key.strip()).limit(1)) is None:
            problems["process_key"] = ["no such process"]   # a typo would look like "no cases"
        if f.participant and "participant" not in problems:
            uid = session.scalar(select(User.id).where(User.username == f.participant.strip()))
            if uid is None:
                problems["participant"] = ["no such user"]
            else:
                resolved["participant"] = uid
        if problems:
            zh = {"status": "状态", "process_key": "流程", "node": "辖区", "participant": "参与人", "created_to": "结束日期",
                  "created_from": "开始日期", "limit": "每页条数", "offset": "起始位置"}
            names = "、".join(zh.get(k, k) for k in problems)
            raise InvalidInput("some search conditions are not valid", fields=problems,
                               zh=f"查询条件有误（{names}），请修改后重试")
        return resolved

    def _task_ids(self, text: str, process_key: str | None) -> list[str]:
        """A task's BPMN id or name: the ids of every user task of that name in the chosen
        process, or in any deployed process when none is chosen. Within the chosen one only:
        two processes may give one id different names (petition's `review` is 复查,
        consultation's 结果研判), and the other process's name must not pull in more ids."""
        return self.service.same_named_tasks(text, process_key)

    # ------------------------------------------------------------- query

    # ------------------------------------------------------------- plan

    def plan(self, session, f: SearchFilters, resolved: dict, scope: list[str]) -> set[str]:
        """The filters that match many cases ("wide"), found by bounded probes (at most
        PROBE index entries each). The newest page of a wide filter is found fastest by
        walking the created-at index and skipping the rows that do not match; a narrow
        filter is best read from its own index and its few rows sorted. PostgreSQL's
        planner knows this from its statistics; SQLite's has no range statistics, so
        on SQLite wide terms are written so that it does not drive from their index."""
        if self.service.db.engine.dialect.name != "sqlite":
            return set()
        wide = set()

        def many(stmt) -> bool:
            return (session.scalar(select(func.count()).select_from(stmt.limit(PROBE).subquery())) or 0) >= PROBE

        ranges = [path_range(resolved["node"].path)] if "node" in resolved else list(map(path_range, scope))
        grids = JurisdictionNode.level == "grid"
        total = session.scalar(select(func.count()).where(grids)) or 0
        inside = session.scalar(select(func.count()).where(grids, or_(*[
            and_(JurisdictionNode.path >= lo, JurisdictionNode.path < hi) for lo, hi in ranges]))) or 0
        if total and inside * 20 >= total:           # 5 % of the grids or more
            wide.add("path")
        if f.business_key and f.business_key.strip():
            lo, hi = _prefix_range(f.business_key.strip().upper())
            if many(select(Case.id).where(Case.business_key >= lo, Case.business_key < hi)):
                wide.add("business_key")
        if f.process_key and many(select(Case.id).where(Case.process_key == f.process_key.strip())):
            wide.add("process_key")
        if "participant" in resolved and many(select(AuditEvent.case_id).where(
                AuditEvent.actor_id == resolved["participant"])):
            wide.add("participant")
        if resolved.get("task_ids") and many(select(WorkItem.case_id).where(
                WorkItem.spec_id.in_(resolved["task_ids"]))):
            wide.add("task")
        return wide

    def query(self, user: User, f: SearchFilters, resolved: dict, scope: list[str], wide: set = frozenset()):
        def col(name: str, column):
            # SQLite does not use an index for `+column`: a wide term is checked row by row
            return type_coerce(literal_column(f"+gf_case.{name}"), String) if name in wide else column

        path = type_coerce(literal_column("+gf_case.grid_path"), String) if "path" in wide else Case.grid_path
        where = [or_(*[and_(path >= lo, path < hi) for lo, hi in map(path_range, scope)])]
        if "node" in resolved:
            lo, hi = path_range(resolved["node"].path)
            where += [path >= lo, path < hi]
        if f.business_key and f.business_key.strip():
            lo, hi = _prefix_range(f.business_key.strip().upper())
            key = col("business_key", Case.business_key)
            where += [key >= lo, key < hi]
        if f.process_key:
            where.append(col("process_key", Case.process_key) == f.process_key.strip())
        if f.status:
            where.append(Case.status == f.status)
        if f.created_from:
            where.append(Case.created_at >= _day_start(f.created_from))
        if f.created_to:
            where.append(Case.created_at < _day_start(f.created_to + timedelta(days=1)))
        if "participant" in resolved:
            if "participant" in wide:      # probe each candidate row: (actor_id, case_id) index
                where.append(exists().where(AuditEvent.actor_id == resolved["participant"],
                                            AuditEvent.case_id == Case.id))
            else:                          # drive from the person's few cases
                where.append(Case.id.in_(select(AuditEvent.case_id).where(
                    AuditEvent.actor_id == resolved["participant"])))
        if resolved.get("task_ids"):
            if "task" in wide:
                where.append(exists().where(WorkItem.spec_id.in_(resolved["task_ids"]), WorkItem.case_id == Case.id))
            else:
                where.append(Case.id.in_(select(WorkItem.case_id).where(WorkItem.spec_id.in_(resolved["task_ids"]))))
        grid = aliased(JurisdictionNode)
        return (select(Case, ProcessVersion.name, grid.name)
                .join(ProcessVersion, ProcessVersion.id == Case.process_version_id)
                .join(grid, grid.id == Case.grid_id)
                .where(*where)
                .order_by(Case.created_at.desc(), Case.id.desc())
                .limit(f.limit + 1).offset(f.offset))

    def search(self, actor, f: SearchFilters) -> SearchPage:
        """A page of the cases in the actor's jurisdiction matching `f`. Personal data
        in the case summaries is always masked in a list."""
        svc = self.service
        personal = personal_fields(svc.forms)
        # names resolved before the session opens: SQLite allows one open transaction at a time
        process_key = f.process_key.strip() if isinstance(f.process_key, str) and f.process_key.strip() else None
        task_ids = self._task_ids(f.task.strip(), process_key) if isinstance(f.task, str) and f.task.strip() else None
        with svc.db.read_session() as session:
            user = svc._user(session, actor)
            resolved = self._check(session, f)
            resolved["task_ids"] = task_ids
            scope = self.scope_paths(user)
            if not scope:
                return SearchPage([], f.limit, f.offset, False)
            wide = self.plan(session, f, resolved, scope)
            rows = session.execute(self.query(user, f, resolved, scope, wide)).all()
        page = [SearchRow(case=c, process_name=pname, grid_name=gname, summary=mask_data(c.summary, personal))
                for c, pname, gname in rows[:f.limit]]
        return SearchPage(page, f.limit, f.offset, len(rows) > f.limit)
