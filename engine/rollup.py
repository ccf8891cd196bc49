"""Dashboard roll-ups: the cohort figures of engine/metrics.py from pre-counted rows.

A province's dashboard over 10⁶ cases cannot scan the cases on every view, so the
cases are counted ahead, per jurisdiction node at every level (0 = the whole tree,
1-4 = `depthN_id`; the nodes down to depth 3 read them, their children's rows giving
the drill-down; a community or a grid reads its few cases) × month of registration
(China time, UTC+8) × the dimensions the metrics group by:

- `rollup_cases`: status, process, where resolved, satisfaction, outcome, and the month
  the case closed and fell due (with its on-time flag) — enough to say, for any end of
  period and any now, whether it was due, closed, on time;
- `rollup_dims`: categories and colours; `rollup_tasks`: each petition's tasks of each
  kind (done, done late, earliest open due month); `rollup_reports`: grid matters per
  reporter.

`rollup_case` / `rollup_case_task` keep what each case counted for; the counts are
always exactly their sum. **Freshness**: every write of a case sets
`gf_case.rollup_dirty` (engine/case_facts.py, on the case's own row: no shared counter,
so completions never queue on each other). `refresh()` — the worker after each timer
round, or `gridflow metrics refresh` — moves each dirty case's counts from its old
key to its new one and clears the flag if the case did not change meanwhile
(`row_version`). A dashboard view adds, for the cases still dirty, their current
facts minus what they counted for: the figures are exact at every moment, and
the worker only keeps that correction small.

**Exactness at the edges**: a month bucket serves a period only where it cannot differ
from the cases: a partly covered month of registration is read from the cases unless
no case was registered in the uncovered part; a closing / due / task-due month that
contains the end of the period or now is decided the same way, and the few cases it
cannot decide (typically: open cases falling due this month) are read from the cases.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, case as when, delete, false, func, insert, literal_column, or_, select, text, update
from sqlalchemy.orm import Session

from .clock import CHINA
from .models import (Case, RollupCase, RollupCases, RollupCaseTask, RollupDims, RollupReports, RollupState,
                     RollupTasks, WorkItem)

UTC = timezone.utc
FAR = datetime(9999, 1, 1, tzinfo=UTC)
LEVELS = (0, 1, 2, 3, 4)   # whole tree, depth1 … depth4 (a community in the standard tree)
ROLLED_DEPTH = 3            # nodes down to here read roll-ups (their children are level ≤ 4); below, a
                            # community or grid has few cases and reads them directly
PETITION = "petition"
PETITION_TASKS = ("decide", "handle", "handle_extended", "approve_extension", "notify_extension",
                  "written_reply", "review_request", "recheck_request")
HANDLING = "handle+extended"   # pseudo task: a petition's handling, before or after an extension
REPORTED_PROCESS = "grid_matter"
# processes that record routine work instead of registering a matter: a grid worker's household
# visits (入户走访) and the monthly reverse evaluation (逆向考评). The roll-ups count them like any
# case; the cohort figures (登记事项, the drill-down, the monthly trend) leave them out: they have
# figures of their own (per grid worker; the scores)
RECORD_PROCESSES = ("household_visit", "reverse_evaluation")
SATISFIED = ("satisfied", "basically_satisfied")
CASE_KEYS = ("month", "process_key", "status", "resolved_level", "satisfaction", "outcome", "closed_month",
             "due_month", "limited", "on_time")
TASK_KEYS = ("spec", "completed", "late", "open_due_month")
BATCH = 2000


# ------------------------------------------------------------------ time

# Months are the officials' months (China Standard Time, UTC+8 all year): a case reported at
# 2026-03-31 20:00 UTC is reported on April 1st in China and is an April case. Python and SQL use
# the same fixed offset (not a zone's rules), so a month's bounds here and its key in SQL agree.
CHINA_OFFSET_HOURS = 8


def month_sql(column, dialect: str):
    """The China month ('YYYY-MM') of a UTC datetime column."""
    if dialect == "postgresql":
        # an interval as the zone: ISO sign (east positive), unlike a POSIX zone name like '+08'
        return func.to_char(func.timezone(literal_column(f"interval '{CHINA_OFFSET_HOURS} hours'"), column),
                            "YYYY-MM")
    # SQLite stores 'YYYY-MM-DD HH:MM:SS.ffffff' in UTC: shift it, then take the month
    return func.strftime("%Y-%m", column, f"+{CHINA_OFFSET_HOURS} hours")


def month_of(at: datetime) -> str:
    """The China month of an instant."""
    at = _utc(at).astimezone(CHINA)
    return f"{at.year:04d}-{at.month:02d}"


def month_start(month: str) -> datetime:
    """The instant (UTC) a China month begins: the 1st, 00:00 China time."""
    return datetime(int(month[:4]), int(month[5:7]), 1, tzinfo=CHINA).astimezone(UTC)


def next_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    return f"{y + (m == 12):04d}-{m % 12 + 1:02d}"


def prev_month(month: str) -> str:
    y, m = int(month[:4]), int(month[5:7])
    return f"{y - (m == 1):04d}-{(m - 2) % 12 + 1:02d}"


def _utc(at):
    """The instant as UTC, as every datetime column stores it (models.UtcDateTime)."""
    return at.astimezone(UTC) if at is not None else None


# ------------------------------------------------------------------ keys of a case

def case_key_select(dialect: str, exact: bool = False):
    """What a case counts for (one row per case), from its fact columns."""
    month = lambda column: month_sql(column, dialect)  # noqa: E731
    columns = [
        Case.id.label("case_id"), Case.row_version.label("row_version"), month(Case.created_at).label("month"),
        func.coalesce(Case.depth1_id, 0).label("d1"), func.coalesce(Case.depth2_id, 0).label("d2"),
        func.coalesce(Case.depth3_id, 0).label("d3"), func.coalesce(Case.depth4_id, 0).label("d4"),
        func.coalesce(Case.grid_id, 0).label("grid"), Case.process_key.label("process_key"),
        func.coalesce(Case.category, "").label("category"), func.coalesce(Case.colour, "").label("colour"),
        func.coalesce(Case.status, "").label("status"),
        func.coalesce(Case.resolved_level, "").label("resolved_level"),
        func.coalesce(Case.satisfaction, "").label("satisfaction"), func.coalesce(Case.outcome, "").label("outcome"),
        func.coalesce(month(Case.closed_at), "").label("closed_month"),
        func.coalesce(month(Case.due_at), "").label("due_month"),
        when((Case.due_at.is_not(None), 1), else_=0).label("limited"),
        when((and_(Case.closed_at.is_not(None), Case.due_at.is_not(None), Case.closed_at <= Case.due_at), 1),
             else_=0).label("on_time"),
        when((and_(Case.process_key == REPORTED_PROCESS, Case.created_by_id.is_not(None)), Case.created_by_id),
             else_=0).label("reporter_id"),
    ]
    if exact:
        columns += [Case.created_at.label("created_at"), Case.closed_at.label("closed_at"),
                    Case.due_at.label("due_at")]
    return select(*columns)


SNAPSHOT_COLUMNS = ("case_id", "row_version", "month", "d1", "d2", "d3", "d4", "grid", "process_key", "category",
                    "colour", "status", "resolved_level", "satisfaction", "outcome", "closed_month", "due_month",
                    "limited", "on_time", "reporter_id")


def task_key_select(dialect: str, *where, having=None):
    """Each petition's tasks of each kind (and the pseudo kind HANDLING): done, done late,
    earliest open due date (and its month)."""
    def grouped(spec_column, specs, group_by):
        open_due = func.min(when((WorkItem.status == "open", WorkItem.due_at)))
        query = (select(WorkItem.case_id.label("case_id"), spec_column.label("spec"),
                        func.max(when((WorkItem.status == "completed", 1), else_=0)).label("completed"),
                        func.max(when((and_(WorkItem.status == "completed", WorkItem.completed_at > WorkItem.due_at),
                                       1), else_=0)).label("late"),
                        open_due.label("open_due"))
                 .join(Case, Case.id == WorkItem.case_id)
                 .where(Case.process_key == PETITION, WorkItem.spec_id.in_(specs), *where)
                 .group_by(*group_by))
        if having is not None:
            query = query.having(having(open_due))
        return query

    per_task = grouped(WorkItem.spec_id, PETITION_TASKS, (WorkItem.case_id, WorkItem.spec_id))
    handling = grouped(literal_column(f"'{HANDLING}'"), ("handle", "handle_extended"), (WorkItem.case_id,))
    both = per_task.union_all(handling).subquery()
    return select(both.c.case_id, both.c.spec, both.c.completed, both.c.late,
                  func.coalesce(month_sql(both.c.open_due, dialect), "").label("open_due_month"),
                  both.c.open_due)


def _node(row, level: int) -> int:
    if level == 0:
        return 0
    return getattr(row, f"d{level}") if level <= 4 else row.grid


def node_column(level: int, table=RollupCase):
    if level == 0:
        return literal_column("0")
    return getattr(table, f"d{level}") if level <= 4 else table.grid


# ------------------------------------------------------------------ build and refresh

def is_built(session: Session) -> bool:
    return session.get(RollupState, 1) is not None


def rebuild(session: Session, now: datetime) -> int:
    """Count every case afresh (the first time, or to repair). Returns the cases counted."""
    dialect = session.bind.dialect.name
    for table in (RollupCases, RollupDims, RollupTasks, RollupReports, RollupCaseTask, RollupCase, RollupState):
        session.execute(delete(table))
    cases = case_key_select(dialect).subquery()
    session.execute(insert(RollupCase).from_select(SNAPSHOT_COLUMNS, select(*[cases.c[c] for c in SNAPSHOT_COLUMNS])))
    tasks = task_key_select(dialect).subquery()
    session.execute(insert(RollupCaseTask).from_select(
        ("case_id", "spec", "completed", "late", "open_due_month"),
        select(tasks.c.case_id, tasks.c.spec, tasks.c.completed, tasks.c.late, tasks.c.open_due_month)))
    rc, rt = RollupCase, RollupCaseTask
    for level in LEVELS:
        node = node_column(level)
        parent = node_column(level - 1) if level else literal_column("0")
        keep = [node != 0] if level else []
        by_node = ([node] if level else []) + ([parent] if level > 1 else [])
        lvl = literal_column(str(level))
        keys = [getattr(rc, k) for k in CASE_KEYS]
        session.execute(insert(RollupCases).from_select(
            ("level", "node_id", "parent_id", *CASE_KEYS, "n"),
            select(lvl, node, parent, *keys, func.count()).where(*keep).group_by(*by_node, *keys)))
        for dim in ("category", "colour"):
            value = getattr(rc, dim)
            session.execute(insert(RollupDims).from_select(
                ("level", "node_id", "month", "dim", "value", "n"),
                select(lvl, node, rc.month, literal_column(f"'{dim}'"), value, func.count())
                .where(value != "", rc.process_key.not_in(RECORD_PROCESSES), *keep)
                .group_by(*by_node[:1], rc.month, value)))
        task_keys = [rt.spec, rt.completed, rt.late, rt.open_due_month]
        session.execute(insert(RollupTasks).from_select(
            ("level", "node_id", "month", *TASK_KEYS, "n"),
            select(lvl, node, rc.month, *task_keys, func.count()).join(rc, rc.case_id == rt.case_id)
            .where(*keep).group_by(*by_node[:1], rc.month, *task_keys)))
        session.execute(insert(RollupReports).from_select(
            ("level", "node_id", "user_id", "month", "n"),
            select(lvl, node, rc.reporter_id, rc.month, func.count()).where(rc.reporter_id != 0, *keep)
            .group_by(*by_node[:1], rc.reporter_id, rc.month)))
    # clean: the cases counted as they are now (a case written meanwhile stays dirty)
    snapshot_version = select(rc.row_version).where(rc.case_id == Case.id).scalar_subquery()
    session.execute(update(Case).where(Case.rollup_dirty == True, Case.row_version == snapshot_version)  # noqa: E712
                    .values(rollup_dirty=False).execution_options(synchronize_session=False))
    session.add(RollupState(id=1, built_at=now, refreshed_at=now))
    session.flush()
    return session.scalar(select(func.count()).select_from(RollupCase))


def _row_keys(case, tasks) -> Counter:
    """Every roll-up row a case counts in, as (table, key) → 1, with the parent of its node."""
    out = Counter()
    for level in LEVELS:
        node = _node(case, level)
        if level and not node:
            continue
        parent = _node(case, level - 1) if level else 0
        out[("cases", (level, node, *[getattr(case, k) for k in CASE_KEYS]), parent)] += 1
        for dim in ("category", "colour"):
            value = getattr(case, dim)
            if value != "" and case.process_key not in RECORD_PROCESSES:
                out[("dims", (level, node, case.month, dim, value), None)] += 1
        for task in tasks:
            out[("tasks", (level, node, case.month, *[getattr(task, k) for k in TASK_KEYS]), None)] += 1
        if case.reporter_id:
            out[("reports", (level, node, case.reporter_id, case.month), None)] += 1
    return out


ROLLUP_TABLES = {
    "cases": (RollupCases, ("level", "node_id", *CASE_KEYS)),
    "dims": (RollupDims, ("level", "node_id", "month", "dim", "value")),
    "tasks": (RollupTasks, ("level", "node_id", "month", *TASK_KEYS)),
    "reports": (RollupReports, ("level", "node_id", "user_id", "month")),
}


def _apply(session: Session, deltas: dict) -> None:
    for (table_name, key, parent), n in sorted(deltas.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        if not n:
            continue
        table, names = ROLLUP_TABLES[table_name]
        match = [getattr(table, name) == value for name, value in zip(names, key)]
        left = session.execute(update(table).where(*match).values(n=table.n + n).returning(table.n)).scalar()
        if left is None:
            values = dict(zip(names, key), n=n)
            if table_name == "cases":
                values["parent_id"] = parent
            session.execute(insert(table).values(**values))
        elif left == 0:
            session.execute(delete(table).where(*match))


def mark_counted(session: Session, rows) -> int:
    """Clear the flag of the cases counted, unless written since they were read (`row_version`)."""
    cleared = 0
    for row in rows:
        cleared += session.execute(update(Case).where(Case.id == row.case_id, Case.row_version == row.row_version)
                                   .values(rollup_dirty=False).execution_options(synchronize_session=False)).rowcount
    return cleared


def refresh(session: Session, now: datetime, batch: int = BATCH, limit: int | None = None) -> int:
    """Take in the cases written since they were last counted (at most `limit`: a caller
    that must not hold the SQLite write lock long commits between rounds). Returns how many."""
    if not is_built(session):
        return rebuild(session, now)
    dialect = session.bind.dialect.name
    if dialect == "postgresql":   # one refresher at a time (two workers may run)
        session.execute(text("SELECT pg_advisory_xact_lock(8008)"))
    done, after = 0, 0
    while limit is None or done < limit:
        take = batch if limit is None else min(batch, limit - done)
        new = session.execute(case_key_select(dialect).where(Case.rollup_dirty == True, Case.id > after)  # noqa
                              .order_by(Case.id).limit(take)).all()
        if not new:
            break
        ids = [r.case_id for r in new]
        after = ids[-1]
        old = {r.case_id: r for r in session.scalars(select(RollupCase).where(RollupCase.case_id.in_(ids)))}
        old_tasks, new_tasks = defaultdict(list), defaultdict(list)
        for t in session.scalars(select(RollupCaseTask).where(RollupCaseTask.case_id.in_(ids))):
            old_tasks[t.case_id].append(t)
        for t in session.execute(task_key_select(dialect, WorkItem.case_id.in_(ids))).all():
            new_tasks[t.case_id].append(t)
        deltas = Counter()
        for row in new:
            deltas.update(_row_keys(row, new_tasks[row.case_id]))
            if row.case_id in old:
                deltas.subtract(_row_keys(old[row.case_id], old_tasks[row.case_id]))
        _apply(session, deltas)
        session.execute(delete(RollupCaseTask).where(RollupCaseTask.case_id.in_(ids)))
        session.execute(delete(RollupCase).where(RollupCase.case_id.in_(ids)))
        session.execute(insert(RollupCase), [{c: getattr(r, c) for c in SNAPSHOT_COLUMNS} for r in new])
        task_rows = [{"case_id": t.case_id, **{k: getattr(t, k) for k in TASK_KEYS}}
                     for rows in new_tasks.values() for t in rows]
        if task_rows:
            session.execute(insert(RollupCaseTask), task_rows)
        mark_counted(session, new)
        done += len(new)
    state = session.get(RollupState, 1)
    state.refreshed_at = now
    session.flush()
    return done


# ------------------------------------------------------------------ reading

@dataclass
class Threshold:
    """`value < at`, for a value known exactly or only by its month."""
    at: datetime
    month: str
    decided: bool | None   # what "the month of `at`" means: before it (True), not (False), unknown (None)

    def before(self, exact: datetime | None = None, month: str = "") -> bool:
        if exact is not None:
            return _utc(exact) < self.at
        if not month:
            return False
        if month != self.month:
            return month < self.month
        assert self.decided is not None, "an undecided month must be read from the cases"
        return self.decided

    def sql_before(self, month_column):
        if self.decided:
            return and_(month_column != "", month_column <= self.month)
        return and_(month_column != "", month_column < self.month)


class Rolled:
    """The cohort figures of one Metrics scope from the roll-ups, plus the live corrections."""

    def __init__(self, metrics):
        self.m = metrics
        self.session: Session = metrics.session
        self.dialect = self.session.bind.dialect.name
        scope = metrics.scope
        depth = scope.depth
        assert depth <= ROLLED_DEPTH, "nodes below the town level read their cases"
        self.level = depth
        self.node_id = scope.node.id if scope.node is not None else 0
        self.child_level = self.level + 1
        self.start, self.end, self.now = _utc(scope.start), _utc(scope.end), _utc(metrics.now)
        self.closed = self._threshold(self.end, Case.closed_at)
        due_at = self.end if self.end <= self.now else self.now + timedelta(microseconds=1)
        self.due = self._threshold(due_at, Case.due_at)
        self.asof = min(self.end, self.now)
        self.task_due = self._threshold(self.asof, WorkItem.due_at, tasks=True)
        self._months()
        self._load_changes()

    # ---- what the buckets can tell

    def _any(self, column, lo, hi, tasks=False) -> bool:
        if hi <= lo:
            return False
        where = [column >= lo, column < hi]
        if tasks:
            where = [WorkItem.status == "open", WorkItem.sort_due >= lo, WorkItem.sort_due < hi, *where]
        table = WorkItem if tasks else Case
        return self.session.scalar(select(table.id).where(*where).limit(1)) is not None

    def _threshold(self, at: datetime, column, tasks=False) -> Threshold:
        month = month_of(at)
        lo, hi = month_start(month), month_start(next_month(month))
        if not self._any(column, at, hi, tasks):
            decided = True
        elif not self._any(column, lo, at, tasks):
            decided = False
        else:
            decided = None
        return Threshold(at, month, decided)

    def _months(self):
        """The months of registration the buckets serve whole: [first, last] (or none)."""
        first, last = month_of(self.start), month_of(self.end - timedelta(microseconds=1))
        if month_start(first) < self.start and self._any(Case.created_at, month_start(first), self.start):
            first = next_month(first)
        if month_start(next_month(last)) > self.end and self._any(Case.created_at, self.end,
                                                                 month_start(next_month(last))):
            last = prev_month(last)
        self.first, self.last = (first, last) if first <= last else (None, None)
        if self.first:
            self.rolled_from, self.rolled_to = month_start(self.first), month_start(next_month(self.last))
        else:
            self.rolled_from = self.rolled_to = self.start

    def in_rolled(self, month: str) -> bool:
        return self.first is not None and self.first <= month <= self.last

    # ---- which keys the buckets cannot decide (read from the cases instead)

    def case_undecided(self, k) -> bool:
        if self.closed.decided is None and k.closed_month == self.closed.month:
            return True
        if self.due.decided is None and k.due_month == self.due.month:
            return not self.closed.before(month=k.closed_month)
        return False

    def task_undecided(self, t) -> bool:
        return self.task_due.decided is None and t.open_due_month == self.task_due.month

    def _case_undecided_sql(self, table):
        parts = []
        if self.closed.decided is None:
            parts.append(table.closed_month == self.closed.month)
        if self.due.decided is None:
            parts.append(and_(table.due_month == self.due.month, ~self.closed.sql_before(table.closed_month)))
        return or_(*parts) if parts else None

    def in_scope(self, k, level=None) -> bool:
        level = self.level if level is None else level
        return level == 0 or _node(k, level) == self.node_id

    # ---- the cases the buckets do not hold right now

    def _live_case_filters(self) -> list:
        """Cases of the scope registered in the period that the buckets do not serve, as
        disjoint filters (one indexed range each): registered in a month not served whole;
        closed in the month of the end if that month is undecided; falling due in the month
        of the due moment if undecided, and not closed by the end."""
        scope = and_(self.m.scope.case_filter(), Case.process_key.not_in(RECORD_PROCESSES))
        parts = [or_(false(), *[and_(scope, Case.created_at >= lo, Case.created_at < hi)
                                for lo, hi in self.partial_ranges()])]
        if self.first is None:
            return parts
        in_rolled = and_(scope, Case.created_at >= self.rolled_from, Case.created_at < self.rolled_to)
        closed_lo, closed_hi = month_start(self.closed.month), month_start(next_month(self.closed.month))
        if self.closed.decided is None:
            parts.append(and_(in_rolled, Case.closed_at >= closed_lo, Case.closed_at < closed_hi))
        if self.due.decided is None:
            due_lo, due_hi = month_start(self.due.month), month_start(next_month(self.due.month))
            # closed after the end (those closing in its month, if undecided, are read above)
            later = closed_hi if self.closed.decided is None else self.end
            falls_due = and_(in_rolled, Case.due_at >= due_lo, Case.due_at < due_hi)
            parts.append(and_(falls_due, Case.closed_at.is_(None)))
            if self._any(Case.closed_at, later, FAR):   # none closed that late (the usual): nothing to read
                parts.append(and_(falls_due, Case.closed_at >= later))
        return parts

    def partial_ranges(self) -> list[tuple[datetime, datetime]]:
        """The parts of the period in months not served whole (none, one or two ranges)."""
        if self.first is None:
            return [(self.start, self.end)]
        return [(lo, hi) for lo, hi in ((self.start, self.rolled_from), (self.rolled_to, self.end)) if lo < hi]

    def _load_changes(self):
        dialect = self.dialect
        partial, *self.undecided = self._live_case_filters()
        self.live = (self.session.execute(case_key_select(dialect, exact=True).where(partial)).all()
                     if self.partial_ranges() else [])
        self.dirty = [r for r in self.session.execute(case_key_select(dialect, exact=True)
                                                      .where(Case.rollup_dirty == True)).all()  # noqa: E712
                      if r.process_key not in RECORD_PROCESSES]
        ids = [r.case_id for r in self.dirty]
        self.old, self.old_tasks, self.dirty_tasks = {}, defaultdict(list), defaultdict(list)
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for r in self.session.scalars(select(RollupCase).where(RollupCase.case_id.in_(chunk))):
                self.old[r.case_id] = r
            for t in self.session.scalars(select(RollupCaseTask).where(RollupCaseTask.case_id.in_(chunk))):
                self.old_tasks[t.case_id].append(t)
            for t in self.session.execute(task_key_select(dialect, WorkItem.case_id.in_(chunk))).all():
                self.dirty_tasks[t.case_id].append(t)

    def corrections(self):
        """(sign, case row, exact?) for every case whose figures are not in the buckets used:
        cases of months not served whole (+, exact), dirty cases now (+, exact) and as last
        counted (−, by month). The cases undecided by their time keys: `undecided_sums`."""
        for row in self.live:
            yield 1, row, True
        for row in self.dirty:
            if self.in_scope(row) and self.in_rolled(row.month) and not self.case_undecided(row):
                yield 1, row, True
            old = self.old.get(row.case_id)
            if old is not None and self.in_scope(old) and self.in_rolled(old.month) and not self.case_undecided(old):
                yield -1, old, False

    # ---- case figures

    def flags(self, k, exact: bool) -> dict:
        if exact:
            closed = k.closed_at is not None and _utc(k.closed_at) < self.end
            due_by = lambda: k.due_at is not None and _utc(k.due_at) < self.end and _utc(k.due_at) <= self.now  # noqa
        else:
            closed = self.closed.before(month=k.closed_month)
            due_by = lambda: self.due.before(month=k.due_month)  # noqa: E731
        limited = bool(k.limited)
        return {"registered": 1, "due": int(limited and (closed or due_by())), "closed_due": int(limited and closed),
                "on_time": int(bool(k.on_time) and closed), "closed": int(closed)}

    def _sums(self, table):
        limited = table.limited == 1
        closed = self.closed.sql_before(table.closed_month)
        due = and_(limited, or_(closed, self.due.sql_before(table.due_month)))
        flag = lambda cond: func.sum(when((cond, table.n), else_=0))  # noqa: E731
        return [func.sum(table.n).label("registered"), flag(due).label("due"),
                flag(and_(limited, closed)).label("closed_due"), flag(and_(table.on_time == 1, closed)).label("on_time"),
                flag(closed).label("closed")]

    def _rolled_where(self, table, *where):
        if self.first is None:
            return None
        undecided = self._case_undecided_sql(table)
        extra = [~undecided] if undecided is not None else []
        if table is RollupCases:
            extra.append(table.process_key.not_in(RECORD_PROCESSES))
        return [table.month >= self.first, table.month <= self.last, *where, *extra]

    def case_groups(self) -> tuple[list[dict], list[dict]]:
        """(groups, monthly): the cohort by process, status, resolved level, satisfaction,
        outcome with its sums; registered and closed per month of registration."""
        dims = ("process_key", "status", "resolved_level", "satisfaction", "outcome")
        sums = ("registered", "due", "closed_due", "on_time", "closed")
        groups, months = defaultdict(Counter), defaultdict(Counter)
        t = RollupCases
        where = self._rolled_where(t, t.level == self.level, t.node_id == self.node_id)
        if where is not None:
            for r in self.session.execute(select(t.month, *[getattr(t, d) for d in dims], *self._sums(t))
                                          .where(*where).group_by(t.month, *[getattr(t, d) for d in dims])).all():
                figures = {s: int(getattr(r, s) or 0) for s in sums}
                groups[tuple(getattr(r, d) for d in dims)].update(figures)
                months[r.month].update({"registered": figures["registered"], "closed": figures["closed"]})
        for sign, k, exact in self.corrections():
            figures = self.flags(k, exact)
            groups[tuple(getattr(k, d) for d in dims)].update({s: sign * figures[s] for s in sums})
            months[k.month].update({"registered": sign, "closed": sign * figures["closed"]})
        month = month_sql(Case.created_at, self.dialect)
        columns = [func.coalesce(getattr(Case, d), "") for d in dims]
        for part in self.undecided:   # an aggregate of the cases, as Metrics does it
            for r in self.session.execute(select(month.label("month"), *[c.label(d) for c, d in zip(columns, dims)],
                                                 *self.m._case_sums()).where(part)
                                          .group_by(month, *columns)).all():
                figures = {s: int(getattr(r, s) or 0) for s in sums}
                groups[tuple(getattr(r, d) for d in dims)].update(figures)
                months[r.month].update({"registered": figures["registered"], "closed": figures["closed"]})
        out = [{**{d: (v or None) for d, v in zip(dims, key)}, **{s: counts[s] for s in sums}}
               for key, counts in groups.items() if counts["registered"]]
        monthly = [{"month": month, "registered": c["registered"], "closed": c["closed"]}
                   for month, c in sorted(months.items()) if c["registered"]]
        return out, monthly

    def children(self) -> list[dict]:
        if self.child_level is None:
            return []
        t = RollupCases
        rows = defaultdict(Counter)
        where = self._rolled_where(t, t.level == self.child_level, t.parent_id == self.node_id)
        if where is not None:
            flag = lambda cond: func.sum(when((cond, t.n), else_=0))  # noqa: E731
            for r in self.session.execute(
                    select(t.node_id, *self._sums(t), flag(t.satisfaction != "").label("rated"),
                           flag(t.satisfaction.in_(SATISFIED)).label("satisfied"),
                           flag(t.resolved_level != "").label("resolved"),
                           flag(t.resolved_level == "grid").label("resolved_grid"))
                    .where(*where).group_by(t.node_id)).all():
                rows[r.node_id].update({k: int(v or 0) for k, v in r._mapping.items() if k != "node_id"})
        for sign, k, exact in self.corrections():
            child = _node(k, self.child_level)
            if not child:
                continue
            figures = self.flags(k, exact)
            figures.update(rated=int(k.satisfaction != ""), satisfied=int(k.satisfaction in SATISFIED),
                           resolved=int(k.resolved_level != ""), resolved_grid=int(k.resolved_level == "grid"))
            rows[child].update({name: sign * v for name, v in figures.items()})
        child = func.coalesce(self.m.scope.child_column(), 0)   # an expression: the plan reads the part's index
        resolved = Case.resolved_level.is_not(None)
        for part in self.undecided:
            for r in self.session.execute(
                    select(child.label("node_id"), *self.m._case_sums(),
                           func.sum(when((Case.satisfaction.is_not(None), 1), else_=0)).label("rated"),
                           func.sum(when((Case.satisfaction.in_(SATISFIED), 1), else_=0)).label("satisfied"),
                           func.sum(when((resolved, 1), else_=0)).label("resolved"),
                           func.sum(when((Case.resolved_level == "grid", 1), else_=0)).label("resolved_grid"))
                    .where(part).group_by(child)).all():
                if r.node_id:
                    rows[r.node_id].update({k: int(v or 0) for k, v in r._mapping.items() if k != "node_id"})
        return [{"node_id": node, **counts} for node, counts in rows.items() if counts["registered"]]

    def dims(self) -> dict[str, Counter]:
        out = {"category": Counter(), "colour": Counter()}
        t = RollupDims
        if self.first is not None:
            for dim, value, n in self.session.execute(
                    select(t.dim, t.value, func.sum(t.n)).where(
                        t.level == self.level, t.node_id == self.node_id, t.month >= self.first, t.month <= self.last)
                    .group_by(t.dim, t.value)).all():
                out[dim][value] += int(n)
        for sign, k, _exact in self._cohort_changes():
            for dim in ("category", "colour"):
                if getattr(k, dim) != "":
                    out[dim][getattr(k, dim)] += sign
        return {dim: Counter({v: n for v, n in c.items() if n}) for dim, c in out.items()}

    def _cohort_changes(self):
        """Like corrections(), for figures that depend on registration only (no time keys)."""
        for row in self.live:
            yield 1, row, True
        for row in self.dirty:
            if self.in_scope(row) and self.in_rolled(row.month):
                yield 1, row, True
            old = self.old.get(row.case_id)
            if old is not None and self.in_scope(old) and self.in_rolled(old.month):
                yield -1, old, False

    # ---- petitions

    def petition_tasks(self) -> dict[str, Counter]:
        """Per task kind: petitions with it done, due by the moment judged, late."""
        out = defaultdict(Counter)
        t = RollupTasks
        open_by = self.task_due.sql_before(t.open_due_month)
        flag = lambda cond: func.sum(when((cond, t.n), else_=0))  # noqa: E731
        if self.first is not None:
            where = [t.level == self.level, t.node_id == self.node_id, t.month >= self.first, t.month <= self.last]
            if self.task_due.decided is None:
                where.append(t.open_due_month != self.task_due.month)
            for r in self.session.execute(
                    select(t.spec, flag(t.completed == 1).label("completed"),
                           flag(or_(t.completed == 1, open_by)).label("due"),
                           flag(or_(t.late == 1, open_by)).label("late")).where(*where).group_by(t.spec)).all():
                out[r.spec].update({"completed": int(r.completed or 0), "due": int(r.due or 0),
                                    "late": int(r.late or 0)})

        def add(sign, task, exact):
            if exact:
                open_by_now = task.open_due is not None and _utc(task.open_due) < self.asof
            else:
                open_by_now = self.task_due.before(month=task.open_due_month)
            out[task.spec].update({"completed": sign * task.completed,
                                   "due": sign * int(bool(task.completed) or open_by_now),
                                   "late": sign * int(bool(task.late) or open_by_now)})

        # live: petitions registered in months not served whole, and tasks whose due month is undecided
        scope = self.m.scope.case_filter()
        for lo, hi in self.partial_ranges():
            for task in self.session.execute(task_key_select(self.dialect, scope, Case.created_at >= lo,
                                                             Case.created_at < hi)).all():
                add(1, task, True)
        if self.task_due.decided is None and self.first is not None:
            lo, hi = (month_start(self.task_due.month), month_start(next_month(self.task_due.month)))
            open_then = (select(WorkItem.case_id).where(
                WorkItem.status == "open", WorkItem.sort_due >= lo, WorkItem.sort_due < hi, WorkItem.due_at >= lo,
                WorkItem.due_at < hi, WorkItem.spec_id.in_(PETITION_TASKS)))
            for task in self.session.execute(task_key_select(
                    self.dialect, scope, Case.created_at >= self.rolled_from, Case.created_at < self.rolled_to,
                    WorkItem.case_id.in_(open_then), having=lambda open_due: and_(open_due >= lo, open_due < hi))).all():
                add(1, task, True)
        dirty = {r.case_id: r for r in self.dirty}
        for case_id, row in dirty.items():
            if row.process_key != PETITION:
                continue
            if self.in_scope(row) and self.in_rolled(row.month):
                for task in self.dirty_tasks[case_id]:
                    if not self.task_undecided(task):
                        add(1, task, True)
            old = self.old.get(case_id)
            if old is not None and self.in_scope(old) and self.in_rolled(old.month):
                for task in self.old_tasks[case_id]:
                    if not self.task_undecided(task):
                        add(-1, task, False)
        return out

    # ---- grid workers

    def top_reporters(self, limit: int) -> list[tuple[int, int]]:
        adjust = Counter()
        for sign, k, _exact in self._cohort_changes():
            if k.reporter_id:
                adjust[k.reporter_id] += sign
        adjust = Counter({u: n for u, n in adjust.items() if n})
        t = RollupReports
        totals = {}
        if self.first is not None:
            where = [t.level == self.level, t.node_id == self.node_id, t.month >= self.first, t.month <= self.last]
            query = select(t.user_id, func.sum(t.n).label("n")).where(*where).group_by(t.user_id)
            others = query
            if adjust:
                others = query.where(t.user_id.not_in(list(adjust)))
            for uid, n in self.session.execute(others.order_by(func.sum(t.n).desc(), t.user_id).limit(limit)).all():
                totals[uid] = int(n)
            if adjust:
                for uid, n in self.session.execute(query.where(t.user_id.in_(list(adjust)))).all():
                    totals[uid] = int(n)
        for uid, n in adjust.items():
            totals[uid] = totals.get(uid, 0) + n
        ranked = sorted(((uid, n) for uid, n in totals.items() if n > 0), key=lambda un: (-un[1], un[0]))
        return ranked[:limit]
