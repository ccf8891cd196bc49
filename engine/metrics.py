"""The governance dashboard's figures, by SQL aggregates only.

Every figure is for a jurisdiction node and its subtree (or the whole tree) and a
period [start, end). No workflow is loaded: the queries read the plain columns of
`gf_case` (facts kept by engine/case_facts.py), `work_item` and `audit_event`.
Each figure's definition is in docs/metrics.md; the names here follow it.

Cases are counted in the cohort registered in the period; whether a case was
closed, on time, etc. is judged as of the end of the period (or now, if earlier).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, and_, case as when, distinct, func, literal, literal_column, or_, select, type_coerce
from sqlalchemy.orm import Session

from . import clock
from .models import (DEPARTMENT, AuditEvent, Case, EvaluationScore, JurisdictionNode, RoleAssignment, User,
                     WorkItem)
from .rollup import PETITION_TASKS, RECORD_PROCESSES, month_sql
from .supervision import count_overdue

LEVELS_UP = ("grid", "town", "county", "city")
SATISFIED = ("satisfied", "basically_satisfied")
VERIFY_TASKS = ("verify_on_site", "county_verify", "city_verify")
REWORK_STEPS = ("count_rework", "count_county_rework", "count_city_rework")
FOLLOW_UP_TASKS = ("daily_follow_up",)
VISIT_TASKS = ("satisfaction",)  # 回访: the grid worker's visit back to the resident
HOUSEHOLD_VISIT = "household_visit"  # 入户走访: the process a grid worker records each visit with
# the stage a matter is escalated into, by the script that accepts it there
ESCALATION_STEPS = {"town_accept": "town", "county_accept": "county", "city_accept": "city"}
GRID_START_TASK = "micro_mediation"
# tasks the processes themselves open to supervise an overdue step (督办), by process
SUPERVISION_BY_PROCESS = {"petition": ("supervise_acceptance", "supervise_handling"),
                          "leader_case": ("supervise_report",),
                          "grid_matter": ("county_supervise", "flag_missing_report")}
SUPERVISION_TASKS = tuple(task for tasks in SUPERVISION_BY_PROCESS.values() for task in tasks)
PETITION = "petition"
PETITION_CLOSED = ("closed_after_reply", "closed_after_review", "closed_after_recheck")
PETITION_CEASED = ("closed_after_reply", "closed_after_review")  # the petitioner asked no further (息诉罢访)
HANDLING = "handle+extended"  # engine/rollup.py's pseudo task: handling before or after an extension
DASHBOARD_ROLES = ("leader", "center_dispatcher", "auditor")

# The BPMN elements the figures read, by the process that holds them, with the figure (English,
# Chinese). A new version of the process without one of them leaves that figure short of the
# cases it runs; deploying it says so (engine/notes.py, `dashboard_notes`), and a test holds the
# shipped processes to it.
_LEVEL_ZH = {"town": "镇", "county": "县", "city": "市"}
_VERIFY = ("verifications and the rework rate (核查, 返工率)", "核查数、返工率")
_SUPERVISION = ("supervision tasks opened (督办)", "督办任务数")
DASHBOARD_ELEMENTS: dict[str, dict[str, tuple[str, str]]] = {
    "grid_matter": {
        GRID_START_TASK: ("escalations into the town, which count only matters that began with it",
                          "升级到镇的事项数（只统计从此任务开始的事项）"),
        **{task: _VERIFY for task in VERIFY_TASKS},
        **{step: ("failed verifications: the rework rate (返工率)", "核查不通过数、返工率") for step in REWORK_STEPS},
        **{task: ("each grid worker's follow-ups", "网格员跟进次数") for task in FOLLOW_UP_TASKS},
        **{task: ("each grid worker's visits back (回访)", "网格员回访次数") for task in VISIT_TASKS},
        **{step: (f"escalations into the {level}", f"升级到{_LEVEL_ZH[level]}的事项数")
           for step, level in ESCALATION_STEPS.items()},
        **{task: _SUPERVISION for task in SUPERVISION_BY_PROCESS["grid_matter"]},
    },
    PETITION: {
        **{task: ("the petitions' handling by step and their time limits (信访时限)", "信访各环节办理情况与时限")
           for task in PETITION_TASKS},
        **{task: _SUPERVISION for task in SUPERVISION_BY_PROCESS[PETITION]},
    },
    "leader_case": {task: _SUPERVISION for task in SUPERVISION_BY_PROCESS["leader_case"]},
}
# The case data the figures read (copied into gf_case's columns by engine/case_facts.py), by
# the process whose scripts, decisions or forms set it, with the figure. A new version that no
# longer sets a key leaves its cases out of that figure; deploying it says so too.
DASHBOARD_DATA: dict[str, dict[str, tuple[str, str]]] = {
    "grid_matter": {
        "deadline_days": ("the time limit to close: the closure and on-time rates (办结率, 按期办结率)",
                          "办结时限：办结率、按期办结率"),
        # an escalated matter's limit adds the days of each level it reached (engine/case_facts.py)
        **{key: ("the time limit of escalated matters: the on-time rate (按期办结率)", "升级事项的办结时限：按期办结率")
           for key in ("handling_level", "current_level", "town_days", "county_days", "city_days")},
        "resolved_level": ("where matters were resolved (小事不出格)", "化解层级（小事不出格）"),
        "satisfaction": ("the satisfaction rate (满意率)", "满意率"),
    },
    PETITION: {"outcome": ("the petitions closed and ceased (办结, 息诉罢访)", "信访办结数、息诉罢访数")},
}
WORKER_ROWS = 100


def rate(numerator: int, denominator: int) -> float | None:
    """A percentage with two decimals, or None when there is nothing to divide by."""
    if not denominator:
        return None
    return round(100.0 * numerator / denominator, 2)


@dataclass
class Scope:
    node: JurisdictionNode | None  # None: the whole tree
    start: datetime
    end: datetime                  # exclusive

    @property
    def depth(self) -> int:
        return len(self.node.ancestor_ids()) if self.node is not None else 0

    def case_filter(self, by_index: bool = True):
        """The subtree's cases; `by_index=False`: the same test, written so that the planner
        does not read the subtree's (large) index but the query's other, narrower one."""
        if self.node is None:
            return literal(True)
        depth = self.depth
        name = f"depth{depth}_id" if depth <= 4 else "grid_id"
        if by_index:
            return getattr(Case, name) == self.node.id
        return type_coerce(literal_column(f"+gf_case.{name}"), Integer) == self.node.id

    def child_column(self):
        """The column that names the child of the node each case lies under (None at a grid)."""
        depth = self.depth + 1
        if depth <= 4:
            return getattr(Case, f"depth{depth}_id")
        if depth == 5:
            return Case.grid_id
        return None


def _int(value) -> int:
    return int(value or 0)


class Metrics:
    """`rollups`: read the cohort figures from the roll-ups (engine/rollup.py) — True, False
    (the cases, as before), or None: the roll-ups once they are built. The figures are the same."""

    def __init__(self, session: Session, scope: Scope, now: datetime | None = None, rollups: bool | None = None):
        self.session = session
        self.scope = scope
        self.now = now or clock.now()
        self.asof = min(scope.end, self.now)
        self.rollups = rollups

    # ---------------------------------------------------------------- cases

    def _registered_in_period(self):
        return and_(self.scope.case_filter(), Case.created_at >= self.scope.start, Case.created_at < self.scope.end)

    def _cohort(self):
        """The cases registered in the period: the matters, not the records of routine work."""
        return and_(self._registered_in_period(), Case.process_key.not_in(RECORD_PROCESSES))

    def _case_sums(self):
        closed = and_(Case.closed_at.is_not(None), Case.closed_at < self.scope.end)
        limited = Case.due_at.is_not(None)
        due = and_(limited, or_(closed, and_(Case.due_at < self.scope.end, Case.due_at <= self.now)))
        on_time = and_(limited, closed, Case.closed_at <= Case.due_at)
        return [
            func.count().label("registered"),
            func.sum(when((due, 1), else_=0)).label("due"),
            func.sum(when((and_(limited, closed), 1), else_=0)).label("closed_due"),
            func.sum(when((on_time, 1), else_=0)).label("on_time"),
            func.sum(when((closed, 1), else_=0)).label("closed"),
        ]

    def case_groups(self) -> list[dict]:
        dims = (Case.process_key, Case.category, Case.colour, Case.status, Case.resolved_level, Case.satisfaction,
                Case.outcome)
        rows = self.session.execute(select(*dims, *self._case_sums()).where(self._cohort()).group_by(*dims)).all()
        return [dict(r._mapping) for r in rows]

    def children(self, rows: list[dict] | None = None) -> list[dict]:
        """Each child node's figures; `rows`: their sums from the roll-ups, else from the cases."""
        if rows is None:
            rows = self._children_sums()
        nodes = {n.id: n for n in self.session.scalars(
            select(JurisdictionNode).where(JurisdictionNode.id.in_([r["node_id"] for r in rows])))}
        out = []
        for r in rows:
            node = nodes.get(r["node_id"])
            out.append({
                "node_id": r["node_id"], "code": node.code if node else None, "name": node.name if node else "?",
                "level": node.level if node else None, "registered": r["registered"], "due": r["due"],
                "closed": r["closed_due"], "on_time": r["on_time"],
                "closure_rate": rate(r["closed_due"], r["due"]), "on_time_rate": rate(r["on_time"], r["due"]),
                "satisfaction_rate": rate(r["satisfied"], r["rated"]),
                "grid_rate": rate(r["resolved_grid"], r["resolved"])})
        return sorted(out, key=lambda row: (row["code"] or ""))

    def _children_sums(self, where=None) -> list[dict]:
        column = self.scope.child_column()
        if column is None:
            return []
        resolved = Case.resolved_level.is_not(None)
        rows = self.session.execute(
            select(column.label("node_id"), *self._case_sums(),
                   func.sum(when((Case.satisfaction.is_not(None), 1), else_=0)).label("rated"),
                   func.sum(when((Case.satisfaction.in_(SATISFIED), 1), else_=0)).label("satisfied"),
                   func.sum(when((resolved, 1), else_=0)).label("resolved"),
                   func.sum(when((Case.resolved_level == "grid", 1), else_=0)).label("resolved_grid"))
            .where(self._cohort() if where is None else where, column.is_not(None)).group_by(column)).all()
        return [{k: (v if k == "node_id" else _int(v)) for k, v in r._mapping.items()} for r in rows]

    def monthly(self) -> list[dict]:
        # the officials' (China) month, as the roll-ups count it: one definition for both
        month = month_sql(Case.created_at, self.session.bind.dialect.name)
        closed = and_(Case.closed_at.is_not(None), Case.closed_at < self.scope.end)
        rows = self.session.execute(
            select(month.label("month"), func.count().label("registered"),
                   func.sum(when((closed, 1), else_=0)).label("closed"))
            .where(self._cohort()).group_by(month).order_by(month)).all()
        return [{"month": r.month, "registered": _int(r.registered), "closed": _int(r.closed)} for r in rows]

    # ----------------------------------------------------------- right now

    def overdue_now(self) -> dict:
        # the open and overdue are few next to a city's cases: read them by (status, due), then the subtree
        scope = self.scope.case_filter(by_index=False)
        cases = self.session.scalar(select(func.count()).select_from(Case).where(
            scope, Case.status == "open", Case.due_at < self.now))
        # the 督办台's definition of an overdue task, held in the subtree (engine/supervision.py)
        tasks = count_overdue(self.session, [self.scope.node.path] if self.scope.node is not None else None,
                              self.now)
        return {"cases": _int(cases), "tasks": tasks}

    # ------------------------------------------------- events in the period

    def _scoped(self, query, case_id, by_index: bool = True):
        """`query` limited to the cases of the subtree (the whole tree needs no join: every
        event and task belongs to a case)."""
        if self.scope.node is None:
            return query
        return query.join(Case, Case.id == case_id).where(self.scope.case_filter(by_index))

    def _in_period(self, column):
        return and_(column >= self.scope.start, column < self.scope.end)

    def _step_counts(self, bpmn_ids, event_types=("step", "task_completed")) -> dict[str, int]:
        rows = self.session.execute(
            self._scoped(select(AuditEvent.bpmn_id, func.count()), AuditEvent.case_id)
            .where(AuditEvent.bpmn_id.in_(bpmn_ids), AuditEvent.event_type.in_(event_types),
                   self._in_period(AuditEvent.at))
            .group_by(AuditEvent.bpmn_id)).all()
        return {bpmn_id: _int(n) for bpmn_id, n in rows}

    def verification(self) -> dict:
        verified = sum(self._step_counts(VERIFY_TASKS, ("task_completed",)).values())
        failed = sum(self._step_counts(REWORK_STEPS, ("step",)).values())
        return {"verifications": verified, "failed": failed, "rework_rate": rate(failed, verified)}

    def escalations(self) -> dict[str, int]:
        """Matters escalated into each level in the period (distinct cases)."""
        out = {}
        for step, level in ESCALATION_STEPS.items():
            query = (self._scoped(select(func.count(distinct(AuditEvent.case_id))), AuditEvent.case_id)
                     .where(AuditEvent.bpmn_id == step, AuditEvent.event_type == "step",
                            self._in_period(AuditEvent.at)))
            if level == "town":  # only matters that began in the grid were escalated into the town
                query = query.where(select(WorkItem.id).where(WorkItem.case_id == AuditEvent.case_id,
                                                              WorkItem.spec_id == GRID_START_TASK).exists())
            out[level] = _int(self.session.scalar(query))
        return out

    def supervision(self) -> dict:
        urged = self.session.scalar(
            self._scoped(select(func.count()).select_from(AuditEvent), AuditEvent.case_id)
            .where(AuditEvent.event_type == "urged", self._in_period(AuditEvent.at)))
        opened = sum(_int(self.session.scalar(   # one indexed lookup per kind (an IN list may scan the table)
            self._scoped(select(func.count()).select_from(WorkItem), WorkItem.case_id)
            .where(WorkItem.spec_id == spec, self._in_period(WorkItem.created_at)))) for spec in SUPERVISION_TASKS)
        return {"urged": _int(urged), "supervision_tasks": _int(opened)}

    # ---------------------------------------------------------- petitions

    def petitions(self, groups: list[dict], tasks: dict | None = None) -> dict:
        """`tasks`: per task kind {completed, due, late} (and HANDLING) from the roll-ups, else from the cases."""
        if tasks is None:
            by_task, handling_due, handling_late = self._petition_tasks()
        else:
            by_task = tasks
            handling_due = tasks.get("handle", {}).get("due", 0)
            handling_late = tasks.get(HANDLING, {}).get("late", 0)

        def figure(spec, name):
            return _int(by_task.get(spec, {}).get(name))

        registered = sum(g["registered"] for g in groups if g["process_key"] == PETITION)
        outcomes = {}
        for g in groups:
            if g["process_key"] == PETITION and g["outcome"]:
                outcomes[g["outcome"]] = outcomes.get(g["outcome"], 0) + g["registered"]
        closed = sum(outcomes.get(o, 0) for o in PETITION_CLOSED)
        ceased = sum(outcomes.get(o, 0) for o in PETITION_CEASED)
        decided_due, decided_late = figure("decide", "due"), figure("decide", "late")
        replied, reviews, rechecks = (figure("written_reply", "completed"), figure("review_request", "completed"),
                                      figure("recheck_request", "completed"))
        handling_due, handling_late = _int(handling_due), _int(handling_late)
        return {
            "registered": registered,
            "decisions_due": decided_due, "decided_in_time": decided_due - decided_late,
            "accepted_in_time_rate": rate(decided_due - decided_late, decided_due),
            "handling_due": handling_due, "handled_in_time": handling_due - handling_late,
            "handled_in_time_rate": rate(handling_due - handling_late, handling_due),
            "extensions_requested": figure("approve_extension", "completed"),
            "extensions_granted": figure("notify_extension", "completed"),
            "replied": replied, "reviews": reviews, "review_rate": rate(reviews, replied),
            "rechecks": rechecks, "recheck_rate": rate(rechecks, reviews),
            "closed": closed, "ceased": ceased, "ceased_rate": rate(ceased, closed),
            "outcomes": outcomes,
        }

    def _petition_tasks(self):
        cohort = and_(self._cohort(), Case.process_key == PETITION)
        late = or_(and_(WorkItem.status == "completed", WorkItem.completed_at > WorkItem.due_at),
                   and_(WorkItem.status == "open", WorkItem.due_at < self.asof))
        due = or_(WorkItem.status == "completed", and_(WorkItem.status == "open", WorkItem.due_at < self.asof))
        rows = self.session.execute(
            select(WorkItem.spec_id,
                   func.count(distinct(when((WorkItem.status == "completed", WorkItem.case_id)))).label("completed"),
                   func.count(distinct(when((due, WorkItem.case_id)))).label("due"),
                   func.count(distinct(when((late, WorkItem.case_id)))).label("late"))
            .join(Case, Case.id == WorkItem.case_id).where(cohort, WorkItem.spec_id.in_(PETITION_TASKS))
            .group_by(WorkItem.spec_id)).all()
        by_task = {r.spec_id: {"completed": r.completed, "due": r.due, "late": r.late} for r in rows}
        handling_due = self.session.scalar(
            select(func.count(distinct(WorkItem.case_id))).join(Case, Case.id == WorkItem.case_id)
            .where(cohort, WorkItem.spec_id == "handle", due))
        handling_late = self.session.scalar(
            select(func.count(distinct(WorkItem.case_id))).join(Case, Case.id == WorkItem.case_id)
            .where(cohort, WorkItem.spec_id.in_(("handle", "handle_extended")), late))
        return by_task, handling_due, handling_late

    # -------------------------------------------------------- grid workers

    def workers(self, limit: int = WORKER_ROWS, reports: list[tuple[int, int]] | None = None) -> list[dict]:
        """The grid workers with the most reports in the period, with their other work
        (`reports`: [(user id, reports)], most first, from the roll-ups; else from the cases)."""
        if reports is None:
            reports = self.session.execute(
                select(Case.created_by_id, func.count().label("n")).where(
                    self._cohort(), Case.process_key == "grid_matter", Case.created_by_id.is_not(None))
                .group_by(Case.created_by_id).order_by(func.count().desc(), Case.created_by_id).limit(limit)).all()
        counts = {uid: {"reports": _int(n), "household_visits": 0, "visits": 0, "verifications": 0, "follow_ups": 0}
                  for uid, n in reports}
        kinds = {**{t: "verifications" for t in VERIFY_TASKS}, **{t: "follow_ups" for t in FOLLOW_UP_TASKS},
                 **{t: "visits" for t in VISIT_TASKS}}
        if counts:
            rows = self.session.execute(
                self._scoped(select(WorkItem.completed_by_id, WorkItem.spec_id, func.count()), WorkItem.case_id)
                .where(WorkItem.status == "completed", WorkItem.spec_id.in_(list(kinds)),
                       self._in_period(WorkItem.completed_at), WorkItem.completed_by_id.in_(list(counts)))
                .group_by(WorkItem.completed_by_id, WorkItem.spec_id)).all()
            for uid, spec, n in rows:
                counts[uid][kinds[spec]] += _int(n)
            # by the creator's index: 入户走访 are the most numerous cases of all
            visits = self.session.execute(
                select(Case.created_by_id, func.count()).where(
                    Case.created_by_id.in_(list(counts)), Case.process_key == HOUSEHOLD_VISIT,
                    self._registered_in_period()).group_by(Case.created_by_id)).all()
            for uid, n in visits:
                counts[uid]["household_visits"] = _int(n)
        users = {u.id: u for u in self.session.scalars(select(User).where(User.id.in_(list(counts))))}
        return [{"user_id": uid, "username": users[uid].username if uid in users else None,
                 "name": users[uid].display_name if uid in users else "?", **figures}
                for uid, figures in counts.items()]

    # -------------------------------------------------- reverse evaluation

    def evaluation(self) -> list[dict]:
        """Average reverse-evaluation score of each unit in the subtree, scored in the period."""
        unit = JurisdictionNode
        query = (select(EvaluationScore.unit_node_id, EvaluationScore.unit_kind, unit.name, unit.code,
                        func.avg(EvaluationScore.score), func.count())
                 .join(unit, unit.id == EvaluationScore.unit_node_id)
                 .where(self._in_period(EvaluationScore.scored_at))
                 .group_by(EvaluationScore.unit_node_id, EvaluationScore.unit_kind, unit.name, unit.code))
        if self.scope.node is not None:
            query = query.where(unit.path.like(self.scope.node.path + "%"))
        rows = self.session.execute(query).all()
        out = [{"node_id": nid, "kind": kind, "name": name, "code": code, "average": round(float(avg), 2),
                "scores": _int(n)} for nid, kind, name, code, avg, n in rows]
        return sorted(out, key=lambda r: (r["kind"], -r["average"], r["code"]))

    # ---------------------------------------------------------------- all

    def use_rollups(self) -> bool:
        """Roll-ups (when asked or built) serve the nodes down to the town; a community or a
        grid reads its few cases."""
        from .rollup import ROLLED_DEPTH, is_built
        if self.scope.depth > ROLLED_DEPTH:
            return False
        if self.rollups is None:
            self.rollups = is_built(self.session)
        return self.rollups

    def compute(self) -> dict:
        rolled = None
        if self.use_rollups():
            from .rollup import Rolled
            rolled = Rolled(self)
            groups, monthly = rolled.case_groups()
            dims = rolled.dims()
        else:
            groups, monthly = self.case_groups(), None

        def by(dim, where=lambda g: True):
            totals: dict = {}
            for g in groups:
                if where(g):
                    totals[g[dim]] = totals.get(g[dim], 0) + g["registered"]
            return sorted(([k, n] for k, n in totals.items()), key=lambda kv: (-kv[1], str(kv[0])))

        def by_dim(dim):
            if rolled is None:
                return by(dim, lambda g: g[dim] is not None)
            return sorted(([k, n] for k, n in dims[dim].items()), key=lambda kv: (-kv[1], str(kv[0])))

        registered = sum(g["registered"] for g in groups)
        due = sum(g["due"] for g in groups)
        closed_due = sum(g["closed_due"] for g in groups)
        on_time = sum(g["on_time"] for g in groups)
        rated = sum(g["registered"] for g in groups if g["satisfaction"])
        satisfied = sum(g["registered"] for g in groups if g["satisfaction"] in SATISFIED)
        levels = {level: sum(g["registered"] for g in groups if g["resolved_level"] == level) for level in LEVELS_UP}
        resolved = sum(levels.values())
        verification = self.verification()
        overdue = self.overdue_now()
        supervision = self.supervision()
        return {
            "scope": {"node_id": self.scope.node.id if self.scope.node else None,
                      "code": self.scope.node.code if self.scope.node else None,
                      "name": self.scope.node.name if self.scope.node else None,
                      "level": self.scope.node.level if self.scope.node else None,
                      "start": self.scope.start.isoformat(), "end": self.scope.end.isoformat(),
                      "as_of": self.asof.isoformat()},
            "headline": {
                "registered": registered, "due": due, "closed": closed_due, "on_time": on_time,
                "closure_rate": rate(closed_due, due), "on_time_rate": rate(on_time, due),
                "rated": rated, "satisfied": satisfied, "satisfaction_rate": rate(satisfied, rated),
                **verification,
                "resolved": resolved, "grid_rate": rate(levels["grid"], resolved),
                "overdue_cases": overdue["cases"], "overdue_tasks": overdue["tasks"], **supervision,
            },
            "resolution": [{"level": level, "cases": n, "share": rate(n, resolved)} for level, n in levels.items()],
            "escalations": self.escalations(),
            "by_category": by_dim("category"),
            "by_colour": by_dim("colour"),
            "by_process": by("process_key"),
            "by_status": by("status"),
            "monthly": monthly if rolled is not None else self.monthly(),
            "children": self.children(rolled.children() if rolled is not None else None),
            "petitions": self.petitions(groups, rolled.petition_tasks() if rolled is not None else None),
            "workers": self.workers(reports=rolled.top_reporters(WORKER_ROWS) if rolled is not None else None),
            "evaluation": self.evaluation(),
        }


def compute(session: Session, node: JurisdictionNode | None, start: datetime, end: datetime,
            now: datetime | None = None, rollups: bool | None = None) -> dict:
    return Metrics(session, Scope(node, start, end), now, rollups).compute()


# ------------------------------------------------------------------ access

def dashboard_roots(user: User) -> list[JurisdictionNode]:
    """The nodes whose dashboards the user may open (with their subtrees): where they
    hold a leader, centre-dispatcher or auditor role; a role held in a department
    counts at the town/county/city the department belongs to."""
    nodes = {}
    for ra in user.roles:
        if ra.role not in DASHBOARD_ROLES:
            continue
        node = ra.node
        if node.level == DEPARTMENT and node.parent is not None:
            node = node.parent
        nodes[node.id] = node
    # drop nodes already inside another one
    tops = [n for n in nodes.values()
            if not any(o.id != n.id and n.path.startswith(o.path) for o in nodes.values())]
    return sorted(tops, key=lambda n: n.path)


def may_view(user: User, node: JurisdictionNode) -> bool:
    return node.level != DEPARTMENT and any(node.path.startswith(root.path) for root in dashboard_roots(user))


def user_with_roles(session: Session, ref) -> User | None:
    from sqlalchemy.orm import joinedload
    query = select(User).options(joinedload(User.roles).joinedload(RoleAssignment.node))
    query = query.where(User.id == ref) if isinstance(ref, int) else query.where(User.username == str(ref))
    user = session.scalars(query).unique().one_or_none()
    return user if user is not None and user.active else None


# ----------------------------------------------------------------- service

MAX_PERIOD_DAYS = 3660


class Dashboards:
    """What the web and the API call: the figures a person may see, with their checks."""

    def __init__(self, db):
        self.db = db

    def _user(self, session, actor) -> User:
        from .errors import PermissionDenied
        user = user_with_roles(session, actor.id if isinstance(actor, User) else actor)
        if user is None:
            raise PermissionDenied("unknown or inactive user", zh="用户不存在或已停用")
        return user

    def roots(self, actor) -> list[JurisdictionNode]:
        with self.db.read_session() as session:
            roots = dashboard_roots(self._user(session, actor))
            for node in roots:
                _ = node.path, node.name, node.code, node.level
            return roots

    def figures(self, actor, node_code: str | None, start: datetime, end: datetime) -> dict:
        """The dashboard of `node_code` (default: the actor's first jurisdiction) for [start, end)."""
        from .errors import InvalidInput, NotFound, PermissionDenied
        if not (isinstance(start, datetime) and isinstance(end, datetime)) or start.tzinfo is None \
                or end.tzinfo is None:
            raise InvalidInput("the period needs a start and an end date", fields={"start": ["required"]},
                               zh="请填写统计起止日期")
        if end <= start:
            raise InvalidInput("the period ends before it starts; choose an end date after the start",
                               fields={"end": ["must be after start"]}, zh="结束日期须晚于开始日期，请重新选择")
        if (end - start).days > MAX_PERIOD_DAYS:
            raise InvalidInput("the period is longer than ten years; choose a shorter one",
                               fields={"start": ["at most ten years"]}, zh="统计区间不能超过十年，请缩短")
        with self.db.read_session() as session:
            if self.db.is_postgres:   # one snapshot: the roll-ups and the cases still to take in agree
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            user = self._user(session, actor)
            roots = dashboard_roots(user)
            if not roots:
                raise PermissionDenied("the dashboard is for leaders, centre dispatchers and auditors",
                                       zh="统计看板仅供领导、社会治理中心派单员和督查人员查看")
            if node_code:
                node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == str(node_code)[:64]))
                if node is None:
                    raise NotFound(f"no jurisdiction node '{str(node_code)[:40]}'", zh="找不到该辖区")
                if node.level == DEPARTMENT:
                    raise InvalidInput(f"{node.name} is a department: the dashboard counts by jurisdiction "
                                       "(city, county, town, community, grid); choose the unit it belongs to",
                                       zh=f"{node.name}是职能部门：统计看板按辖区（市、县、镇、社区、网格）统计，"
                                          "请选择其所属辖区", fields={"node": ["must be a jurisdiction"]})
                if not may_view(user, node):
                    raise PermissionDenied(f"{node.name} is outside your jurisdiction",
                                           zh=f"{node.name}不在您的辖区内，无权查看其统计")
            else:
                node = roots[0]
            figures = Metrics(session, Scope(node, start, end)).compute()
            ancestors = {n.id: n for n in session.scalars(select(JurisdictionNode).where(
                JurisdictionNode.id.in_(node.ancestor_ids())))}
            figures["breadcrumb"] = [
                {"code": ancestors[i].code, "name": ancestors[i].name, "level": ancestors[i].level,
                 "viewable": may_view(user, ancestors[i])} for i in node.ancestor_ids() if i in ancestors]
            return figures
