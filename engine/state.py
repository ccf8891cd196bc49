"""Workflow state: serialize only the live part of a case.

SpiffWorkflow keeps every task a case ever ran in one tree, and every loop
iteration hangs its tasks *below* the previous ones. Its task iterator stops at
depth 1,000, so a looping case silently stalls after ~333 rounds, and the cost
of a serialize/deserialize round trip grows with the whole history.

After every transition the engine therefore:
1. records each newly finished BPMN element as a `step` (the SQL history the
   case page and the auditor's trace are drawn from), then
2. prunes finished tasks that can no longer influence what happens next,
   splicing the kept tasks onto their nearest kept ancestor, and
3. serializes without the process spec (specs are cached per deployed version).

Under a non-interrupting cycle timer SpiffWorkflow also accumulates *unfinished*
duplicates (a waiting boundary-join instance per firing) and finished join
instances whose data a join will merge; `_fold_repeated_join_instances` folds
them so that a timer firing daily for years keeps a constant-size state.

What must be kept (see `_tasks_to_keep`): the root (event subprocesses are
triggered from it), every unfinished task, the parent of each (a task inherits
its data from its parent; joins ask which input a parent came from), the
children of STARTED tasks (multi-instance and subprocess tasks count their
children), each
workflow's `last_task` (a completed subprocess hands its data back from it),
the split task a structured join waits on (boundary events) and its children,
and, while a join has an unfinished instance, the join's other instances of the
current round and their parents (a join merges the data of the branches that
reached it; a loop's earlier rounds were merged when those rounds fired).
"""
from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from copy import deepcopy
from dataclasses import dataclass

from SpiffWorkflow.bpmn.serializer.config import DEFAULT_CONFIG  # noqa: F401  (keeps import order stable)
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import VERSION as SERIALIZER_VERSION
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.mixins.events.event_types import CatchingEvent
from SpiffWorkflow.bpmn.specs.mixins.events.intermediate_event import IntermediateCatchEvent, ReceiveTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.specs.Join import Join
from SpiffWorkflow.util.deep_merge import DeepMerge
from SpiffWorkflow.util.task import TaskState

from .sandbox import SCRIPT_ENGINE

LOGGED = "gf_logged"      # internal_data flag: this finished task is in the SQL history
CAME_FROM = "gf_from"     # internal_data: bpmn id of the element the token came from


class LiveWorkflowConverter(BpmnWorkflowConverter):
    """Serializes a BpmnWorkflow without its specs; they are passed back in on restore."""

    def to_dict(self, workflow):
        dct = WorkflowConverter.to_dict(self, workflow)
        dct["spec"] = workflow.spec.name
        dct["subprocesses"] = self.mapping_to_dict(workflow.subprocesses)
        dct["bpmn_events"] = self.registry.convert(workflow.bpmn_events)
        return dct

    def from_dict(self, dct, spec=None, subprocess_specs=None):
        from uuid import UUID
        workflow = self.target_class(spec, subprocess_specs, script_engine=SCRIPT_ENGINE, deserializing=True)
        workflow.tasks = self.mapping_from_dict(dct["tasks"], UUID, workflow=workflow)
        workflow.task_tree = workflow.tasks.get(UUID(dct["root"]))
        self.set_default_attributes(workflow, dct)
        self.subprocesses_from_dict(dct["subprocesses"], workflow)
        workflow.bpmn_events = self.registry.restore(dct.pop("bpmn_events", []))
        return workflow


def _make_registry():
    config = dict(SPIFF_CONFIG)
    config[BpmnWorkflow] = LiveWorkflowConverter
    return BpmnWorkflowSerializer.configure(config)


class StateSerializer:
    """JSON text <-> BpmnWorkflow, with the SpiffWorkflow serializer version stored beside it."""

    version = SERIALIZER_VERSION

    def __init__(self):
        self._serializer = BpmnWorkflowSerializer(registry=_make_registry())

    def dumps(self, workflow: BpmnWorkflow) -> str:
        registry = self._serializer.registry
        registry._encoder_mode = True
        try:
            dct = self._serializer.to_dict(workflow)
            return json.dumps(dct, cls=self._serializer._encoder_cls, separators=(",", ":"), ensure_ascii=False)
        finally:
            registry._encoder_mode = False

    def loads(self, text: str, spec, subprocess_specs, version: str | None = None) -> BpmnWorkflow:
        dct = json.loads(text)
        if version and version != self.version:
            dct[self._serializer.VERSION_KEY] = version
            self._serializer.migrate(dct)
        return self._serializer.from_dict(dct, spec=spec, subprocess_specs=subprocess_specs)


def run_engine(workflow: BpmnWorkflow, max_rounds: int = 10_000, timers_due: bool = False) -> None:
    """Run engine tasks (gateways, scripts, rules, fired timers) until only
    user tasks and waiting events are left. `timers_due`: the caller knows a timer has
    fallen due (the timer worker), so it is fired before the first engine pass instead
    of after a pass that would find nothing to do."""
    if timers_due:
        workflow.refresh_timers()
    for _ in range(max_rounds):
        workflow.do_engine_steps()
        workflow.refresh_timers()
        if not any(not t.task_spec.manual for t in tasks_in_state(workflow, TaskState.READY)):
            break  # settled: the common case, decided without walking the tree
        # engine work is left: settled all the same if SpiffWorkflow cannot reach it (its tree
        # walk stops at depth 1,000, which only an unpruned case gets to)
        if not any(not t.task_spec.manual for t in workflow.get_tasks(state=TaskState.READY)):
            break
    else:
        raise RuntimeError("engine did not settle: a loop of engine tasks without a user task or timer?")
    forget_dropped_waits(workflow)


def forget_dropped_waits(workflow: BpmnWorkflow) -> None:
    """Unregister from SpiffWorkflow's event manager the catch events that are no longer
    waiting in the case's tree. `Task.cancel` drops a cancelled task's unfinished
    descendants from the tree *before* its spec's `_on_cancel` unregisters the catch events
    below it (it finds no children left), and `delete_subprocess` unregisters nothing: the
    unit submitting a leader case's `work` cancels the reporting cycle's timer, and with it
    the open progress reports, but each report's missed-report timer (`report_overdue`)
    stayed registered. Everything that reads the waiting events after a run — the case's
    `next_timer_at` (`service._next_timer`), the due list of the next stepped cycle turn
    (`service._fire_as_due`), SpiffWorkflow's own `refresh_timers` — then saw a timer the
    saved state no longer waits on, and the worker fired the case for nothing. What is
    left is what a restore of the saved state registers (the waiting catch events of the
    tree), in SpiffWorkflow's own order. Cheap: a scan of the registered events only."""
    attached = {id(wf) for wf in all_workflows(workflow)}
    registered = workflow.event_manager.tasks
    dropped = [tid for tid, task in registered.items()
               if id(task.workflow) not in attached or task.workflow.tasks.get(tid) is not task
               or not task.has_state(TaskState.WAITING)]
    for tid in dropped:
        del registered[tid]


def all_workflows(workflow: BpmnWorkflow):
    yield workflow
    yield from workflow.subprocesses.values()


def tasks_in_state(workflow: BpmnWorkflow, state: int) -> list:
    """The tasks of the workflow and its subprocesses in `state`, in no set order: a scan of
    their task dicts, about ten times cheaper than SpiffWorkflow's tree walk (`get_tasks`),
    which a caller needs only when the order of several matters. It also sees tasks below
    depth 1,000, which the tree walk does not reach; a pruned case has none."""
    return [task for wf in all_workflows(workflow) for task in wf.tasks.values() if task.state & state]


def tasks_in_tree_order(workflow: BpmnWorkflow, state: int, keep=None) -> list:
    """What SpiffWorkflow's `get_tasks(state=state)` gives (filtered by `keep`), in its tree
    order, walking the tree only when the scan finds several: one task has no order to keep."""
    found = [task for task in tasks_in_state(workflow, state) if keep is None or keep(task)]
    if len(found) > 1:
        found = [task for task in workflow.get_tasks(state=state) if keep is None or keep(task)]
    return found


@dataclass
class Step:
    """A finished BPMN element, for the SQL history."""
    task_id: str
    bpmn_id: str
    bpmn_name: str | None
    spec_type: str
    flow_from: str | None
    state: str
    is_user_task: bool


def collect_finished_steps(workflow: BpmnWorkflow) -> list[Step]:
    """Every task that finished since the last call, in the order they finished.

    Also hands each finished task's element down to its children as the element
    the token came from, so the sequence flow taken is known even after the
    parent is pruned."""
    finished = []
    for wf in all_workflows(workflow):
        for task in wf.tasks.values():
            if task.has_state(TaskState.FINISHED_MASK) and not task.internal_data.get(LOGGED):
                finished.append(task)
    finished.sort(key=lambda t: t.last_state_change)
    steps = []
    for task in finished:
        task.internal_data[LOGGED] = True
        spec = task.task_spec
        bpmn_id = getattr(spec, "bpmn_id", None)
        came_from = task.internal_data.get(CAME_FROM)
        if task.has_state(TaskState.COMPLETED):
            passes_on = bpmn_id or came_from
            for child in task.children:
                if passes_on and CAME_FROM not in child.internal_data:
                    child.internal_data[CAME_FROM] = passes_on
        if bpmn_id is None:
            continue
        if task.has_state(TaskState.CANCELLED) and not spec.manual:
            continue  # predicted branches that were never taken are not history
        steps.append(Step(
            task_id=str(task.id),
            bpmn_id=bpmn_id,
            bpmn_name=getattr(spec, "bpmn_name", None),
            spec_type=spec.__class__.__name__,
            flow_from=came_from,
            state=TaskState.get_name(task.state),
            is_user_task=bool(spec.manual),
        ))
    return steps


def _tasks_to_keep(wf) -> set:
    keep = {wf.task_tree.id}
    if wf.last_task is not None and wf.last_task.id in wf.tasks:
        keep.add(wf.last_task.id)
    tasks = wf.tasks
    unfinished = [t for t in tasks.values() if not t.has_state(TaskState.FINISHED_MASK)]
    active_joins = set()
    for task in unfinished:
        keep.add(task.id)
        if task._parent is not None:
            keep.add(task._parent)
        if task.has_state(TaskState.STARTED):
            keep.update(task._children)  # multi-instance / subprocess tasks count their children
        spec = task.task_spec
        if isinstance(spec, Join):
            if getattr(spec, "split_task", None):
                split = task.find_ancestor(spec.split_task)
                if split is not None:
                    keep.add(split.id)
                    keep.update(split._children)
            else:
                active_joins.add((spec, task))
    for spec, live in active_joins:
        boundary = _last_firing(live)
        for other in tasks.values():
            if other.task_spec is not spec or other is live or live.is_descendant_of(other):
                continue
            if boundary is not None and not other.is_descendant_of(boundary):
                continue  # an earlier round's instance: already merged when that round fired
            keep.add(other.id)
            if other._parent is not None:
                keep.add(other._parent)
    return keep


def _last_firing(live):
    """The nearest ancestor of a live join instance that is a completed instance of the
    same join: the previous time the join fired. Instances not below it belong to
    earlier rounds of a loop."""
    task = live.parent
    while task is not None:
        if task.task_spec is live.task_spec and task.has_state(TaskState.COMPLETED):
            return task
        task = task.parent
    return None


def _fold_repeated_join_instances(wf) -> None:
    """Collapse what repeats without end under a non-interrupting cycle timer.

    - Each firing leaves a WAITING instance of the boundary join under the event
      task; they are interchangeable (the main branch's instance fires and cancels
      them), so only the newest per parent is kept.
    - Each firing's branch that reaches an unstructured join (e.g. the process end
      join) leaves a finished instance whose parent's data the join will merge, oldest
      first. Folding the older parents' data into the newest one, in that order, gives
      the join the same merged data with one instance instead of hundreds.
    """
    by_parent: dict = {}
    for task in list(wf.tasks.values()):
        spec = task.task_spec
        if isinstance(spec, Join) and getattr(spec, "split_task", None) and task.state == TaskState.WAITING \
                and not task._children:
            by_parent.setdefault((spec.name, task._parent), []).append(task)
    for group in by_parent.values():
        group.sort(key=lambda t: t.last_state_change)
        for stale in group[:-1]:
            _remove_leaf(wf, stale)

    for live in [t for t in wf.tasks.values() if not t.has_state(TaskState.FINISHED_MASK)]:
        spec = live.task_spec
        if not isinstance(spec, Join) or getattr(spec, "split_task", None):
            continue
        boundary = _last_firing(live)
        finished = sorted(
            (t for t in wf.tasks.values()
             if t.task_spec is spec and t is not live and t.has_state(TaskState.FINISHED_MASK)
             and not t._children and t.parent is not None and not live.is_descendant_of(t)
             and (boundary is None or t.is_descendant_of(boundary))),
            key=lambda t: t.last_state_change)
        if len(finished) < 2:
            continue
        newest = finished[-1]
        merged: dict = {}
        for older in finished:
            DeepMerge.merge(merged, deepcopy(older.parent.data))
        newest.parent.data = merged
        for older in finished[:-1]:
            _remove_leaf(wf, older)


def branches_a_join_holds(task) -> list:
    """For a waiting unstructured join (a parallel or inclusive gateway's join, the process's
    end): the tasks whose data it will merge when it fires, as SpiffWorkflow merges it
    (`UnstructuredJoin._run_hook`: every finished instance of the join, oldest first, then the
    live one's own branch), as (when the branch arrived, the task holding its data). A branch
    that ended while the others run (a 督办 branch off a non-interrupting timer) holds what it
    recorded only there until then. Anything else: none (the task holds its own data)."""
    spec = task.task_spec
    if not (isinstance(spec, Join) and not getattr(spec, "split_task", None) and task.state == TaskState.WAITING):
        return []
    finished = sorted((t for t in task.workflow.tasks.values()
                       if t.task_spec is spec and t is not task and t.has_state(TaskState.FINISHED_MASK)
                       and t.parent is not None and not task.is_descendant_of(t)),
                      key=lambda t: t.last_state_change)
    held = [(t.last_state_change, t.parent) for t in finished]
    if task.parent is not None:
        held.append((task.last_state_change, task.parent))
    return held


def _remove_leaf(wf, task) -> None:
    parent = task.parent
    if parent is not None and task.id in parent._children:
        parent._children.remove(task.id)
    wf.tasks.pop(task.id, None)


def _prune_workflow(wf, top: BpmnWorkflow) -> int:
    _fold_repeated_join_instances(wf)
    keep = _tasks_to_keep(wf)
    if len(keep) == len(wf.tasks):
        return 0
    # Re-link kept tasks to their nearest kept ancestor, children in tree order.
    new_children: dict = {tid: [] for tid in keep}
    order = []
    stack = [(wf.task_tree, None)]
    while stack:
        task, kept_ancestor = stack.pop()
        if task.id in keep:
            order.append(task)
            task._parent = kept_ancestor
            if kept_ancestor is not None:
                new_children[kept_ancestor].append(task.id)
            kept_ancestor = task.id
        # push in reverse so children are visited in their original order
        for child_id in reversed(task._children):
            child = wf.tasks.get(child_id)
            if child is not None:
                stack.append((child, kept_ancestor))
    removed = [tid for tid in wf.tasks if tid not in keep]
    for task in order:
        task._children = new_children[task.id]
    for tid in removed:
        if tid in top.subprocesses:
            _drop_subprocess(top, tid)
        top.event_manager.tasks.pop(tid, None)
    # Rebuild the mapping in tree order: the serializer restores a child's data as a
    # delta over its parent, so parents must come first.
    wf.tasks = {task.id: task for task in order}
    return len(removed)


def _drop_subprocess(top: BpmnWorkflow, task_id) -> None:
    sub = top.subprocesses.pop(task_id, None)
    if sub is None:
        return
    for tid in list(sub.tasks):
        top.event_manager.tasks.pop(tid, None)
        if tid in top.subprocesses:
            _drop_subprocess(top, tid)


def prune_history(workflow: BpmnWorkflow) -> int:
    """Drop finished tasks that cannot influence the future; returns how many."""
    removed = 0
    for wf in list(all_workflows(workflow)):
        if wf is workflow or any(wf is s for s in workflow.subprocesses.values()):
            removed += _prune_workflow(wf, workflow)
    return removed


def specs_mutate_at_runtime(spec, subprocess_specs) -> bool:
    """True when SpiffWorkflow will change the spec while a case runs: a signal or
    message that starts an event subprocess makes `BpmnStartTask.trigger_wf`
    connect that subprocess into the spec. Such a spec must not be shared."""
    return any(getattr(s.start, "trigger_specs", None) for s in [spec, *subprocess_specs.values()])


def private_specs(spec, subprocess_specs):
    """A copy of the specs for one case (one deepcopy, so shared references stay shared)."""
    return deepcopy((spec, subprocess_specs))


def restore_trigger_connections(workflow: BpmnWorkflow) -> None:
    """Re-apply, on a case's private spec, the connections its triggered event
    subprocesses made before the state was saved (the spec is not in the state)."""
    for wf in all_workflows(workflow):
        start = wf.spec.start
        for child in wf.task_tree.children:
            if child.triggered and start not in child.task_spec.inputs:
                start.connect(child.task_spec)
                child.task_spec.connect(wf.spec.end)


def waiting_event_ids(workflow: BpmnWorkflow) -> list[str]:
    """The BPMN ids of the intermediate catch events and receive tasks the case waits at (a
    signal, message or timer): no work item stands for them, yet the case is there."""
    return list(dict.fromkeys(
        task.task_spec.bpmn_id for task in tasks_in_tree_order(workflow, TaskState.WAITING)
        if isinstance(task.task_spec, (IntermediateCatchEvent, ReceiveTask)) and task.task_spec.bpmn_id))


def find_task(workflow, task_id: str):
    """The task with this id in the workflow or one of its subprocesses; None when it is
    gone (finished and pruned, or never there). Not `BpmnWorkflow.get_task_from_id`: it
    asks each subprocess in turn, and the first that lacks the task raises."""
    tid = uuid.UUID(task_id)
    task = workflow.tasks.get(tid)
    if task is None:
        for subprocess in workflow.subprocesses.values():
            task = subprocess.tasks.get(tid)
            if task is not None:
                break
    return task


class LiveWorkflowCache:
    """Workflows kept in memory after the transaction that saved them committed, so the
    next transition of the same case skips deserializing its state.

    An entry is used only while the stored state is *exactly* the text it was saved as
    (and the case is on the same process version): any other writer — another web
    worker, the timer worker, a migration — changes the text and the entry is ignored.
    `take` removes the entry, so two transactions never share a workflow object, and a
    transaction that fails simply never puts it back. Bounded (least recently used
    dropped) because each entry holds a live task tree."""

    def __init__(self, size: int = 256):
        self.size = max(0, int(size))
        # case id: (process version id, state text, workflow, {its open work item's id: form key})
        self._entries: "OrderedDict[int, tuple[int, str, BpmnWorkflow, dict]]" = OrderedDict()
        self._case_of_task: dict[str, int] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def _pop(self, case_id: int):
        entry = self._entries.pop(case_id, None)
        if entry is not None:
            for task_id in entry[3]:
                self._case_of_task.pop(task_id, None)
        return entry

    def take(self, case_id: int, version_id: int, text: str) -> BpmnWorkflow | None:
        with self._lock:
            entry = self._pop(case_id)
            if entry is not None and self._hit(entry[0], entry[1], version_id, text):
                return entry[2]
            self.misses += 1
            return None

    def confirm(self, saved_version_id: int, saved_text: str, version_id: int, text: str) -> bool:
        """For a workflow `take_for_task` gave out: is it still the stored state (`text` on
        `version_id`)? A hit is counted as `take` counts it; a miss is left for the `take`
        that then restores the stored state."""
        with self._lock:
            return self._hit(saved_version_id, saved_text, version_id, text)

    def _hit(self, saved_version_id: int, saved_text: str, version_id: int, text: str) -> bool:
        """The one rule: a kept workflow stands for the stored state only while that is
        exactly the text it was saved as, on the same process version."""
        same = saved_version_id == version_id and saved_text == text
        if same:
            self.hits += 1
        return same

    def take_for_task(self, task_id: str) -> tuple[int, int, str, BpmnWorkflow, str | None] | None:
        """(case id, process version id, state text, workflow, the task's form key) of the
        case whose open work item `task_id` is, removed from the cache: the caller may run it
        ahead of reading the stored state, and uses it only if that state is still the text
        it was saved as."""
        with self._lock:
            case_id = self._case_of_task.get(task_id)
            entry = self._pop(case_id) if case_id is not None else None
            return None if entry is None else (case_id, entry[0], entry[1], entry[2], entry[3][task_id])

    def put(self, case_id: int, version_id: int, text: str, workflow: BpmnWorkflow,
            form_keys: dict | None = None) -> None:
        """Keep the workflow; `form_keys`: {open work item id: its form key}, for `take_for_task`."""
        if not self.size:
            return
        _as_if_restored(workflow)
        with self._lock:
            self._pop(case_id)
            form_keys = dict(form_keys or {})
            self._entries[case_id] = (version_id, text, workflow, form_keys)
            for task_id in form_keys:
                self._case_of_task[task_id] = case_id
            while len(self._entries) > self.size:
                self._pop(next(iter(self._entries)))

    def __len__(self) -> int:
        return len(self._entries)


def _as_if_restored(workflow: BpmnWorkflow) -> None:
    """Make the in-memory workflow what a restore of its saved text would give, where the
    two can differ: the event manager (SpiffWorkflow registers waiting catch events as
    they arise, in that order; a restore registers exactly the waiting ones still in the
    tree, in tree order; those a cancelled branch or pruning dropped are already gone:
    `forget_dropped_waits`, `_prune_workflow`), and `last_task` (restored as None when its
    task is gone)."""
    waiting = {}
    for wf in all_workflows(workflow):
        if wf.last_task is not None and wf.last_task.id not in wf.tasks:
            wf.last_task = None
        for task in wf.tasks.values():
            if isinstance(task.task_spec, CatchingEvent) and task.has_state(TaskState.WAITING):
                waiting[task.id] = task
    workflow.event_manager.tasks = waiting
