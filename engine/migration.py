"""Moving running cases of one process version to a later one.

SpiffWorkflow's diff (`SpiffWorkflow.bpmn.util.diff`) aligns the old spec with the
new one (by BPMN id, then by structure) and tells, for one case's live task tree,
which tasks' elements were removed or changed. A case moves only when that is safe:

- no live task (waiting, ready, or a finished task the engine still keeps) stands on
  an element the new version removed, and no running subprocess lost its definition;
- no open element changed type (a user task turned script task would be run, not asked);
- no *waiting* event changed (a timer keeps the deadline computed from the old
  definition; moving it would silently keep or silently restart a legal time limit).

Moving puts the open user tasks on the new definition (SpiffWorkflow resets READY
tasks, keeping their ids, and predicts what follows from the new spec). Waiting
timers are NOT reset: their deadlines stay what they were. The engine stores only the
live part of the task tree (engine/state.py prune_history), so the diff sees exactly
what can still influence the case. The case's work items are then re-synced through
the service's `_after_transition`, and each open item takes its element's new name,
form and lane; its due date stays, and its claim stays unless the lane changed.

`plan()` is the dry run: it migrates each case in memory and reports which move and
which cannot and why; nothing is stored. `apply()` repeats the check per case under
the case's lock, moves it in its own transaction, and records a `case_migrated`
audit event (engine/audit.py) with who, when, from and to which version.
"""
from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass, field


from sqlalchemy import delete, select
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.util.diff import SpecDiff, WorkflowDiff, migrate_workflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.util.task import TaskState

from . import audit, clock
from .designer import EDIT_ROLES, READ_ROLES, require_roles, version_row
from .errors import InvalidInput, PermissionDenied
from .bpmn import user_task_info
from .lanes import LaneResolver, stored_lane
from .models import Case, ProcessVersion, User, WorkItem, WorkItemCandidate
from .state import find_task


_REGISTRY = None


def _registry():
    """A converter registry: SpecDiff compares task specs by their serialized form."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = BpmnWorkflowSerializer.configure(dict(SPIFF_CONFIG))
    return _REGISTRY


@dataclass
class CasePlan:
    case_id: int
    business_key: str
    title: str
    movable: bool
    reasons: list[str] = field(default_factory=list)       # why it cannot move
    open_tasks: list[str] = field(default_factory=list)    # bpmn ids of its open user tasks
    changed: list[str] = field(default_factory=list)       # live elements whose definition changed


@dataclass
class MigrationPlan:
    process_key: str
    from_version: int
    to_version: int
    cases: list[CasePlan]

    @property
    def movable(self) -> list[CasePlan]:
        return [c for c in self.cases if c.movable]

    @property
    def blocked(self) -> list[CasePlan]:
        return [c for c in self.cases if not c.movable]


@dataclass
class MigrationResult:
    plan: MigrationPlan
    moved: list[str] = field(default_factory=list)           # business keys
    not_moved: dict[str, list[str]] = field(default_factory=dict)


class _Blocked(Exception):
    def __init__(self, reasons):
        super().__init__("; ".join(reasons))
        self.reasons = reasons


def _label(task) -> str:
    spec = task.task_spec
    name = getattr(spec, "bpmn_name", None) or getattr(spec, "bpmn_id", None) or spec.name
    bpmn_id = getattr(spec, "bpmn_id", None) or spec.name
    return f"{name} ({bpmn_id})" if name != bpmn_id else bpmn_id


def _is_internal(spec) -> bool:
    """Engine-made specs (Start, End, BoundaryEventSplit …) carry no BPMN id."""
    return not getattr(spec, "bpmn_id", None)


def migrate_in_memory(workflow, new_spec, new_subprocess_specs) -> list[str]:
    """Move `workflow` onto the new specs if safe; returns the live elements whose
    definition changed. Raises `_Blocked` with the reasons otherwise."""
    registry = _registry()
    reasons, changed = [], []
    top_diff = WorkflowDiff(workflow, SpecDiff(registry, workflow.spec, new_spec))
    sub_diffs = {}
    for sp_id, sp in workflow.subprocesses.items():
        new_sub = new_subprocess_specs.get(sp.spec.name)
        if new_sub is None:
            owner = workflow.get_task_from_id(sp_id)
            reasons.append(f"the running subprocess {_label(owner) if owner else sp.spec.name} "
                           f"no longer exists in the new version")
            continue
        sub_diffs[sp_id] = (sp, new_sub, WorkflowDiff(sp, SpecDiff(registry, sp.spec, new_sub)))
    for diff in [top_diff, *[d for _sp, _new, d in sub_diffs.values()]]:
        for task in diff.removed:
            if _is_internal(task.task_spec):
                continue
            state = "open" if task.has_state(TaskState.READY | TaskState.WAITING | TaskState.STARTED) else "passed"
            reasons.append(f"the case is at or has {state} '{_label(task)}', which the new version removed")
        for task in diff.changed:
            if not task.has_state(TaskState.READY | TaskState.WAITING | TaskState.STARTED):
                continue
            new = diff.alignment.get(task)
            if new is not None and type(new) is not type(task.task_spec):
                reasons.append(f"'{_label(task)}' changes type from {type(task.task_spec).__name__} "
                               f"to {type(new).__name__} while the case is at it")
            elif task.has_state(TaskState.WAITING | TaskState.STARTED) and not _is_internal(task.task_spec):
                reasons.append(f"the waiting '{_label(task)}' changed; its deadline or trigger would "
                               "stay as the old version computed it")
            elif not _is_internal(task.task_spec):
                changed.append(task.task_spec.bpmn_id)
    if reasons:
        raise _Blocked(sorted(set(reasons)))
    try:
        migrate_workflow(top_diff, workflow, new_spec, reset_mask=TaskState.READY)
        workflow.subprocess_specs = new_subprocess_specs
        for sp_id, (sp, new_sub, diff) in sub_diffs.items():
            migrate_workflow(diff, sp, new_sub, reset_mask=TaskState.READY)
    except Exception as exc:  # SpiffWorkflow could not rebuild the tree: the case stays where it is
        raise _Blocked([f"SpiffWorkflow could not move the task tree: {exc.__class__.__name__}: {exc}"]) from None
    return sorted(set(changed))


class Migrator:
    """Dry run and apply over a `WorkflowService` (its specs, state loading and work-item sync)."""

    def __init__(self, service):
        self.service = service
        self.db = service.db

    def _actor(self, session, actor, roles=EDIT_ROLES) -> User:
        return require_roles(self.service, session, actor, roles,
                             "only process designers and administrators may migrate cases",
                             "只有流程设计员和管理员可以迁移案件")

    def _versions(self, session, process_key, from_number, to_number):
        old, new = (version_row(session, process_key, number) for number in (from_number, to_number))
        if new.version <= old.version:
            raise InvalidInput("cases move only to a later version", fields={"to": ["must be later than from"]},
                               zh="案件只能迁移到更新的版本")
        return old, new

    def _new_specs(self, parsed):
        if parsed.mutable:  # SpiffWorkflow changes such specs while a case runs: one copy per case
            return deepcopy((parsed.spec, parsed.subprocess_specs))
        return parsed.spec, parsed.subprocess_specs

    def _plan_case(self, session, case, old_parsed, new_parsed) -> CasePlan:
        open_tasks = list(session.scalars(select(WorkItem.spec_id).where(
            WorkItem.case_id == case.id, WorkItem.status == "open")))
        plan = CasePlan(case.id, case.business_key, case.title, movable=False, open_tasks=sorted(open_tasks))
        try:
            workflow = self.service._load(session, case, old_parsed)
            plan.changed = migrate_in_memory(workflow, *self._new_specs(new_parsed))
            plan.movable = True
        except _Blocked as exc:
            plan.reasons = exc.reasons
        except Exception as exc:  # a state that cannot be read is a reason, never a crash of the page
            plan.reasons = [f"the case's state could not be compared: {exc.__class__.__name__}: {exc}"]
        return plan

    def plan(self, actor, process_key: str, from_number, to_number) -> MigrationPlan:
        """The dry run: every open case of the old version, movable or not and why. Stores nothing."""
        with self.db.read_session() as session:
            self._actor(session, actor)
            old, new = self._versions(session, process_key, from_number, to_number)
            old_parsed, new_parsed = self.service.specs.get(old), self.service.specs.get(new)
            cases = session.scalars(select(Case).where(Case.process_version_id == old.id, Case.status == "open")
                                    .order_by(Case.id)).all()
            plans = [self._plan_case(session, case, old_parsed, new_parsed) for case in cases]
            session.rollback()  # nothing loaded here may be flushed
            return MigrationPlan(old.process_key, old.version, new.version, plans)

    def apply(self, actor, process_key: str, from_number, to_number, business_keys=None) -> MigrationResult:
        """Move every movable case (or only `business_keys`), each in its own transaction."""
        plan = self.plan(actor, process_key, from_number, to_number)
        wanted = set(business_keys) if business_keys is not None else None
        result = MigrationResult(plan)
        for case_plan in plan.cases:
            if wanted is not None and case_plan.business_key not in wanted:
                continue
            if not case_plan.movable:
                result.not_moved[case_plan.business_key] = case_plan.reasons
                continue
            try:
                self._apply_one(actor, case_plan.case_id, process_key, plan.from_version, plan.to_version)
                result.moved.append(case_plan.business_key)
            except _Blocked as exc:
                result.not_moved[case_plan.business_key] = exc.reasons
        return result

    @staticmethod
    def _refresh_items(session, case, workflow, parsed, open_items) -> None:
        """A task SpiffWorkflow kept (same id) but whose element changed: its work item
        takes the new name, form and lane. Its due date stays (a deadline never restarts);
        a claim stays unless the lane changed."""
        for item in open_items:
            task = find_task(workflow, item.id)
            if task is None:
                continue
            info = user_task_info(task.task_spec, parsed.camunda_attrs)
            lane = info.effective_lane
            item.name, item.form_key = info.name, info.form_key
            if stored_lane(lane) != item.lane:
                cands = LaneResolver(session).resolve(lane, case.grid_path, task.data, info.assignee, info.candidate_users)
                item.lane, item.role, item.candidate_node_id = stored_lane(lane), cands.role, cands.node_id
                item.unresolved = cands.unresolved
                item.assignee_id = cands.assignee_id
                item.claimed_at = case.updated_at if cands.assignee_id else None
                session.execute(delete(WorkItemCandidate).where(WorkItemCandidate.work_item_id == item.id))
                session.flush()
                for uid in cands.user_ids:
                    session.add(WorkItemCandidate(work_item_id=item.id, user_id=uid))

    def _apply_one(self, actor, case_id: int, process_key, from_number, to_number) -> None:
        with self.db.unit_of_work() as session:
            user = self._actor(session, actor)
            old, new = self._versions(session, process_key, from_number, to_number)
            case = session.scalar(select(Case).where(Case.id == case_id).with_for_update())
            if case is None or case.status != "open" or case.process_version_id != old.id:
                raise _Blocked(["the case changed meanwhile (closed or already moved)"])
            old_parsed, new_parsed = self.service.specs.get(old), self.service.specs.get(new)
            workflow = self.service._load(session, case, old_parsed)
            changed = migrate_in_memory(workflow, *self._new_specs(new_parsed))
            now = clock.now()
            case.process_version_id = new.id
            open_before = sorted(session.scalars(select(WorkItem.spec_id).where(
                WorkItem.case_id == case.id, WorkItem.status == "open")))
            audit.record(session, case, "case_migrated", now, actor_id=user.id, data={
                "process": case.process_key, "from_version": old.version, "to_version": new.version,
                "from_version_id": old.id, "to_version_id": new.id, "changed": changed,
                "open_tasks": open_before})
            open_items = self.service._after_transition(session, case, workflow, new_parsed, user, now)
            self._refresh_items(session, case, workflow, new_parsed, open_items)
            session.flush()


def migration_rows(service, actor, process_key: str) -> list[tuple[int, int]]:
    """(version, open cases) of a process, for the migration page's choice of source version."""
    with service.db.read_session() as session:
        user = service._user(session, actor)
        if not any(ra.role in READ_ROLES for ra in user.roles):
            raise PermissionDenied("not allowed", zh="无权查看")
        from sqlalchemy import func
        rows = session.execute(select(ProcessVersion.version, func.count(Case.id))
                               .join(Case, (Case.process_version_id == ProcessVersion.id) & (Case.status == "open"),
                                     isouter=True)
                               .where(ProcessVersion.process_key == process_key)
                               .group_by(ProcessVersion.version).order_by(ProcessVersion.version)).all()
        return [(v, n) for v, n in rows]
