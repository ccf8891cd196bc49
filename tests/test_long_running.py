"""Long-running cases: loops of 1,000 rounds, cycle timers firing 1,000 times.

SpiffWorkflow hangs every loop round below the previous one in its task tree and
its task iterator stops at depth 1,000, so without `engine.state.prune_history`
a looping case silently stalls after a few hundred rounds, and every transition
serializes the whole history. The service tests drive such cases to the end and
check that the stored state stays bounded (never 2x its size at round 10); the
in-memory tests check that pruning changes nothing a case does (same steps, same
data as plain SpiffWorkflow) for loops with call activities, parallel and
inclusive joins, boundary timers, event subprocesses and multi-instance tasks,
and pin down joins inside loops and event subprocesses across cases.
"""
from __future__ import annotations

from collections import Counter

import pytest
from SpiffWorkflow.bpmn.util import BpmnEvent
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

from engine.bpmn import parse_process
from engine.models import CaseState
from engine.service import WorkflowService
from engine.state import StateSerializer, collect_finished_steps, prune_history, run_engine
from tests.conftest import FIXTURES, deploy_fixture
from tests.helpers import work

GRID = "linxi-xinguang-g1"
WORKER = "lx_wgy1"
ROUNDS = 1000
PARALLEL_ROUNDS = 1000  # two transitions a round: 2,000 transitions, ~11 ms each on PostgreSQL
SIZE_SAMPLE_AT = 10     # the state size at this round is the yardstick
SIZE_CHECK_EVERY = 25   # re-check the bound this often, so a broken pruning fails fast


# --------------------------------------------------------------------- helpers

def _service(clean_db, fixture_forms, *fixtures):
    deploy_fixture(clean_db, *fixtures, forms=fixture_forms)
    return WorkflowService(clean_db, forms=fixture_forms)


def _state_size(db, case_id) -> int:
    with db.read_session() as session:
        return len(session.get(CaseState, case_id).state)


class SizeWatch:
    """Records the stored state size at round SIZE_SAMPLE_AT and fails as soon as a
    later sample is 2x that or more: a history that is not pruned grows without bound."""

    def __init__(self, db, case_id, what):
        self.db, self.case_id, self.what = db, case_id, what
        self.base = None

    def check(self, round_no, force=False):
        if round_no == SIZE_SAMPLE_AT:
            self.base = _state_size(self.db, self.case_id)
        elif self.base is not None and (force or round_no % SIZE_CHECK_EVERY == 0):
            size = _state_size(self.db, self.case_id)
            assert size < 2 * self.base, (
                f"{self.what}: stored state grew from {self.base} chars at round {SIZE_SAMPLE_AT} "
                f"to {size} at round {round_no}; finished history is not being pruned")


def _only_item(view, spec_id):
    items = [i for i in view.open_items if i.spec_id == spec_id]
    assert len(items) == 1, f"expected one open '{spec_id}', got {[i.spec_id for i in view.open_items]}"
    return items[0]


def _drive_rounds(service, sizes, spec_id, label):
    """ROUNDS rounds of `spec_id`: the first through the inbox (proving the worker sees
    the task), then straight on; `again` until the last; the stored state checked as it goes."""
    view = work(service, WORKER, spec_id, {"again": True, "note": f"{label} 1"})
    for round_no in range(2, ROUNDS + 1):
        sizes.check(round_no - 1)
        item = _only_item(view, spec_id)
        view = service.complete_task(item.id, {"again": round_no < ROUNDS, "note": f"{label} {round_no}"}, WORKER)
        if round_no < ROUNDS:
            assert view.status == "open", f"the case closed early, after round {round_no}"
    sizes.check(ROUNDS - 1, force=True)
    return view


# ------------------------------------------------------- 1. loop.bpmn x 1,000

@pytest.mark.slow
def test_loop_runs_1000_rounds_through_the_service(clean_db, clock, fixture_forms):
    service = _service(clean_db, fixture_forms, "loop.bpmn")
    view = service.start_case("loop", GRID, {}, WORKER)
    sizes = SizeWatch(clean_db, view.case.id, "loop.bpmn")
    view = _drive_rounds(service, sizes, "report", "round")

    assert view.status == "completed"
    assert view.open_items == []
    data = service.case_data(view.business_key)
    assert data["iterations"] == ROUNDS
    assert data["note"] == f"round {ROUNDS}"
    path = service.path(view.business_key)
    counts = Counter(bpmn_id for _, bpmn_id in path)
    assert counts["report"] == ROUNDS
    assert counts["count"] == ROUNDS
    assert counts["end"] == 1
    assert path.count(("more", "join")) == ROUNDS - 1  # every loop-back, flow by flow


# --------------------------------------------- 2. call activity loop x 1,000

@pytest.mark.slow
def test_call_activity_loop_runs_1000_rounds(clean_db, clock, fixture_forms):
    service = _service(clean_db, fixture_forms, "lr_call_loop.bpmn")
    view = service.start_case("lr_call_loop", GRID, {}, WORKER)
    sizes = SizeWatch(clean_db, view.case.id, "lr_call_loop.bpmn")
    view = _drive_rounds(service, sizes, "c_report", "call")

    assert view.status == "completed"
    data = service.case_data(view.business_key)
    assert data["rounds"] == ROUNDS            # counted in the caller
    assert data["called_runs"] == ROUNDS       # counted in the callee, handed back each round
    assert data["note"] == f"call {ROUNDS}"
    counts = Counter(bpmn_id for _, bpmn_id in service.path(view.business_key))
    assert counts["c_report"] == ROUNDS
    assert counts["call"] == ROUNDS
    assert counts["end"] == 1


# ------------------------------------------- 3. parallel split/join loop x 1000

@pytest.mark.slow
def test_parallel_loop_runs_1000_rounds_and_merges_both_branches(clean_db, clock, fixture_forms):
    """Each round A then B; `count` (after the join) records whether both notes of
    this round were in the merged data, so one wrong merge anywhere shows at the end.
    1,000 rounds: 6 tasks deep each, far past SpiffWorkflow's depth limit."""
    service = _service(clean_db, fixture_forms, "lr_parallel_loop.bpmn")
    view = service.start_case("lr_parallel_loop", GRID, {}, WORKER)
    sizes = SizeWatch(clean_db, view.case.id, "lr_parallel_loop.bpmn")
    assert sorted(i.spec_id for i in view.open_items) == ["part_a", "part_b"]
    for round_no in range(1, PARALLEL_ROUNDS + 1):
        sizes.check(round_no - 1)
        view = service.complete_task(_only_item(view, "part_a").id, {"a_note": f"a{round_no}"}, WORKER)
        assert [i.spec_id for i in view.open_items] == ["part_b"], f"the join fired early in round {round_no}"
        view = service.complete_task(_only_item(view, "part_b").id,
                                     {"b_note": f"b{round_no}", "again": round_no < PARALLEL_ROUNDS}, WORKER)
        if round_no < PARALLEL_ROUNDS:
            assert sorted(i.spec_id for i in view.open_items) == ["part_a", "part_b"], f"after round {round_no}"
        if round_no == 1:
            data = service.case_data(view.business_key)
            assert (data["merged"], data["mismatches"]) == ("a1|b1", 0)
    sizes.check(PARALLEL_ROUNDS - 1, force=True)

    assert view.status == "completed"
    data = service.case_data(view.business_key)
    assert data["rounds"] == PARALLEL_ROUNDS
    assert data["merged"] == f"a{PARALLEL_ROUNDS}|b{PARALLEL_ROUNDS}"   # both branches' data after the last join
    assert data["mismatches"] == 0                      # ... and after every other join
    counts = Counter(bpmn_id for _, bpmn_id in service.path(view.business_key))
    assert (counts["part_a"], counts["part_b"], counts["merge"], counts["count"]) == (PARALLEL_ROUNDS,) * 4


# ------------------------------------ 4. non-interrupting cycle timer x 1,000

def test_cycle_timer_fires_1000_times(clean_db, clock, fixture_forms):
    """A daily non-interrupting reminder (timeCycle "R1000/P1D") on a long user task.

    Each firing's branch starts from the data of the waiting timer, so `reminders`
    counts 1 in every branch (SpiffWorkflow's data semantics): the firings are
    counted from the SQL history instead."""
    service = _service(clean_db, fixture_forms, "lr_cycle_timer.bpmn")
    view = service.start_case("lr_cycle_timer", GRID, {}, WORKER)
    sizes = SizeWatch(clean_db, view.case.id, "lr_cycle_timer.bpmn")
    (item,) = view.open_items
    assert view.case.next_timer_at is not None
    clock.advance(minutes=1)   # SpiffWorkflow fires a timer only once its due time has passed
    for day in range(1, ROUNDS + 1):
        clock.advance(days=1)
        view = service.fire_timers(view.business_key)
        assert view.status == "open"
        assert [i.id for i in view.open_items] == [item.id], f"the user task changed on day {day}"
        sizes.check(day)
    sizes.check(ROUNDS, force=True)

    steps = [e for e in service.history(view.business_key) if e.event_type == "step"]
    assert sum(1 for e in steps if e.bpmn_id == "remind") == ROUNDS
    assert sum(1 for e in steps if e.bpmn_id == "remind_end") == ROUNDS
    # the cycle is spent: no more reminders
    clock.advance(days=5)
    view = service.fire_timers(view.business_key)
    assert sum(1 for e in service.history(view.business_key) if e.bpmn_id == "remind") == ROUNDS

    view = service.complete_task(item.id, {"again": False, "note": "solved"}, WORKER)
    assert view.status == "completed"
    assert service.path(view.business_key)[-2:] == [("start", "follow_up"), ("follow_up", "end")]


# ------------------------------------------------------------ in memory (no DB)

SERIALIZER = StateSerializer()


def _parsed(filename, process_id):
    # parsed afresh for every run: SpiffWorkflow changes a spec when a message starts
    # an event subprocess (see test_a_nudge_in_one_case_does_not_change_the_next_case)
    return parse_process({filename: (FIXTURES / filename).read_text(encoding="utf-8")}, process_id)


class Run:
    """One case in memory, handled like the service does after every transition:
    run the engine, collect the finished steps, prune (or not), serialize, restore."""

    def __init__(self, filename, process_id, prune=True, data=None, round_trip=True):
        self.parsed = _parsed(filename, process_id)
        self.prune, self.round_trip = prune, round_trip
        self.wf = BpmnWorkflow(self.parsed.spec, self.parsed.subprocess_specs)
        self.wf.task_tree.data.update(data or {})
        self.steps, self.sizes = [], []
        self.settle()

    def settle(self):
        run_engine(self.wf)
        self.steps += [(s.flow_from, s.bpmn_id, s.state) for s in collect_finished_steps(self.wf)]
        if self.prune:
            prune_history(self.wf)
        if self.round_trip:
            text = SERIALIZER.dumps(self.wf)
            self.sizes.append(len(text))
            self.wf = SERIALIZER.loads(text, self.parsed.spec, self.parsed.subprocess_specs)

    def ready(self, bpmn_id=None):
        return [t for t in self.wf.get_tasks(state=TaskState.READY, manual=True)
                if bpmn_id is None or t.task_spec.bpmn_id == bpmn_id]

    def ready_ids(self):
        return sorted(t.task_spec.bpmn_id for t in self.ready())

    def complete(self, bpmn_id, **data):
        tasks = self.ready(bpmn_id)
        assert tasks, f"no READY '{bpmn_id}'; ready: {self.ready_ids()}"
        task = tasks[0]
        task.data.update(data)
        task.run()
        self.settle()

    def send_message(self, name):
        definition = next(
            ts.event_definition
            for spec in [self.parsed.spec, *self.parsed.subprocess_specs.values()]
            for ts in spec.task_specs.values()
            if getattr(getattr(ts, "event_definition", None), "name", None) == name)
        self.wf.send_event(BpmnEvent(definition, payload={}))
        self.settle()

    @property
    def data(self):
        return dict(self.wf.data) if self.wf.is_completed() else None


# Scenarios: the same scripted inputs for any Run. Each plays `rounds` rounds to the end.

def play_loop(run, rounds, clock):
    for k in range(1, rounds + 1):
        run.complete("report", again=k < rounds, note=f"r{k}")


def play_call_loop(run, rounds, clock):
    for k in range(1, rounds + 1):
        run.complete("c_report", again=k < rounds, note=f"c{k}")


def play_parallel_loop(run, rounds, clock):
    for k in range(1, rounds + 1):
        assert run.ready_ids() == ["part_a", "part_b"], f"round {k}"
        run.complete("part_a", a_note=f"a{k}")
        assert run.ready_ids() == ["part_b"], f"round {k}: the join fired before B"
        run.complete("part_b", b_note=f"b{k}", again=k < rounds)


def play_parallel_loop_any_order(run, rounds, clock):
    """As play_parallel_loop, but B finishes first every other round."""
    for k in range(1, rounds + 1):
        first, second = ("part_a", "part_b") if k % 2 else ("part_b", "part_a")
        assert run.ready_ids() == ["part_a", "part_b"], f"round {k}: ready {run.ready_ids()}"
        values = {"part_a": {"a_note": f"a{k}"}, "part_b": {"b_note": f"b{k}", "again": k < rounds}}
        run.complete(first, **values[first])
        assert run.ready_ids() == [second], f"round {k}: the join fired before {second} finished"
        run.complete(second, **values[second])


def play_cycle_timer(run, rounds, clock):
    clock.advance(minutes=1)
    for _ in range(rounds):
        clock.advance(days=1)
        run.settle()
    run.complete("follow_up", again=False, note="solved")


def play_boundary_loop(run, rounds, clock):
    """Every third round the one-day deadline passes instead of the task being done."""
    for k in range(1, rounds + 1):
        assert run.ready_ids() == ["handle"], f"round {k}"
        clock.advance(hours=1)
        if k % 3 == 0:
            clock.advance(days=2)
            run.settle()
        else:
            run.complete("handle", again=k < rounds, note=f"h{k}")


def play_event_subprocess(run, rounds, clock):
    """A nudge every fifth round, acknowledged two rounds later."""
    for k in range(1, rounds + 1):
        if k % 5 == 1:
            run.send_message("nudge")
        if k % 5 == 3:
            run.complete("ack", ack_note=f"ack{k}")
        run.complete("report", again=k < rounds, note=f"r{k}")


def play_multiinstance_loop(run, rounds, clock):
    for k in range(1, rounds + 1):
        for j in range(3):
            assert len(run.ready("review")) == 3 - j, f"round {k}"
            run.complete("review", review_note=f"r{k}.{j}")


def play_inclusive_loop(run, rounds, clock):
    """A only, B only, neither, in turn. Rounds with both are left to the tests
    below: without pruning SpiffWorkflow gets them wrong (it takes the join
    instances of earlier rounds for this round's), so there is nothing to compare."""
    for k in range(1, rounds + 1):
        choice = ["a", "b", ""][k % 3]
        run.complete("choose", want_a="a" in choice, want_b="b" in choice, again=k < rounds)
        for part in choice:
            assert run.ready_ids() == sorted("part_" + p for p in choice[choice.index(part):]), f"round {k}"
            run.complete("part_" + part, **({"a_note": f"a{k}"} if part == "a" else {"b_note": f"b{k}"}))
        assert run.ready_ids() == (["choose"] if k < rounds else []), f"round {k}: the join did not fire"


SCENARIOS = {
    "loop": ("loop.bpmn", "loop", play_loop, {}),
    "call_loop": ("lr_call_loop.bpmn", "lr_call_loop", play_call_loop, {}),
    "parallel_loop": ("lr_parallel_loop.bpmn", "lr_parallel_loop", play_parallel_loop, {}),
    "cycle_timer": ("lr_cycle_timer.bpmn", "lr_cycle_timer", play_cycle_timer, {}),
    "boundary_loop": ("lr_boundary_loop.bpmn", "lr_boundary_loop", play_boundary_loop, {}),
    "event_subprocess": ("lr_event_subprocess.bpmn", "lr_event_subprocess", play_event_subprocess, {}),
    "multiinstance_loop": ("lr_multiinstance_loop.bpmn", "lr_multiinstance_loop", play_multiinstance_loop, {}),
    "inclusive_loop": ("lr_inclusive_loop.bpmn", "lr_inclusive_loop", play_inclusive_loop, {}),
}
IN_MEMORY_ROUNDS = 50


def _play(name, clock, prune, rounds=IN_MEMORY_ROUNDS, round_trip=True):
    filename, process_id, play, data = SCENARIOS[name]
    data = dict(data, rounds_wanted=rounds) if name == "multiinstance_loop" else data
    start = clock.now()
    run = Run(filename, process_id, prune=prune, data=data, round_trip=round_trip)
    play(run, rounds, clock)
    clock.set(start)  # the other run starts from the same moment
    return run


def _check_scenario_ran(name, run):
    """The scenario did what it is there to exercise."""
    data, n = run.data, IN_MEMORY_ROUNDS
    counts = Counter(bpmn_id for _, bpmn_id, state in run.steps if state == "COMPLETED")
    if name == "loop":
        assert data["iterations"] == n
    elif name == "call_loop":
        assert (data["rounds"], data["called_runs"], counts["c_report"]) == (n, n, n)
    elif name == "parallel_loop":
        assert (data["rounds"], data["mismatches"], data["merged"]) == (n, 0, f"a{n}|b{n}")
    elif name == "cycle_timer":
        assert counts["remind"] == n and counts["follow_up"] == 1
    elif name == "boundary_loop":
        timeouts = n // 3
        assert (data["iterations"], data["timeouts"], counts["escalate"]) == (n - timeouts, timeouts, timeouts)
        assert Counter(bpmn_id for _, bpmn_id, state in run.steps if state == "CANCELLED")["handle"] == timeouts
    elif name == "event_subprocess":
        nudges = len(range(1, n + 1, 5))
        assert (counts["count_nudge"], counts["ack"], counts["on_nudge"]) == (nudges, nudges, nudges)
        assert data["iterations"] == n
    elif name == "multiinstance_loop":
        assert data["all_notes"] == [f"r{k}.{j}" for k in range(1, n + 1) for j in range(3)]
    elif name == "inclusive_loop":
        assert data["log"] == [["a", "b", ""][k % 3] for k in range(1, n + 1)]
        assert counts["skip"] == data["log"].count("") > 0


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_pruning_changes_nothing_a_case_does(name, clock):
    """Same inputs to the engine's way (prune, then a serialize/restore round trip
    after every transition) and to plain SpiffWorkflow (one workflow object, nothing
    pruned): same steps (came from, element, state) in the same order, same final
    data. (Plain SpiffWorkflow with the round trip gives the same steps and data as
    without it, for all these scenarios; without it the reference runs 3x faster.)"""
    pruned = _play(name, clock, prune=True)
    full = _play(name, clock, prune=False, round_trip=False)
    assert pruned.wf.is_completed() and full.wf.is_completed()
    _check_scenario_ran(name, pruned)
    assert pruned.steps == full.steps
    assert pruned.data == full.data


@pytest.mark.parametrize("name", ["boundary_loop", "event_subprocess", "multiinstance_loop", "inclusive_loop"])
def test_pruned_state_stays_bounded(name, clock):
    """The constructs not driven 1,000 times through the service above: the pruned
    state after round 10 never reaches 2x its size at round 10 (data that grows by
    design, like all_notes, stays well inside that)."""
    run = _play(name, clock, prune=True)
    base = run.sizes[SIZE_SAMPLE_AT]
    largest = max(run.sizes[SIZE_SAMPLE_AT:-1])
    assert largest < 2 * base, f"{name}: state grew from {base} to {largest} chars"


def test_without_pruning_a_loop_stalls_at_spiffworkflows_depth_limit():
    """Why prune_history exists. Each round of loop.bpmn hangs 4 tasks (join, report,
    count, more) below the last; SpiffWorkflow's task iterator stops at depth 1,000,
    so after round 250 the engine cannot see the next READY task: the case stalls,
    and SpiffWorkflow even reports it completed (its completion check uses the same
    iterator), with none of its data."""
    full = Run("loop.bpmn", "loop", prune=False, round_trip=False)  # the round trip changes nothing here
    stalled_at = None
    for k in range(1, 401):
        if not full.ready("report"):
            stalled_at = k
            break
        full.complete("report", again=k < 400, note=f"r{k}")
    assert stalled_at == 251
    assert full.wf.get_tasks(state=TaskState.READY) == []
    hidden = [t for t in full.wf.tasks.values() if t.state == TaskState.READY]
    assert [(t.task_spec.bpmn_id, t.depth) for t in hidden] == [("more", 1001)]
    assert full.wf.is_completed() and "iterations" not in full.wf.data

    pruned = Run("loop.bpmn", "loop", prune=True)
    play_loop(pruned, 400, None)
    assert pruned.wf.is_completed()
    assert pruned.wf.data["iterations"] == 400
    assert Counter(bpmn_id for _, bpmn_id, _ in pruned.steps)["report"] == 400


# --------------------------------------------- joins inside loops, any order

def test_parallel_join_in_a_loop_waits_for_both_branches_whatever_order(clock):
    """Two workers finish A and B in either order, round after round; the join must
    wait for both every round. Plain SpiffWorkflow gets this wrong: it takes the
    join instance cancelled under round 1's A for this round's A, and fires when
    only B is done. Pruning must drop such leftovers of earlier rounds (a pruning
    that keeps every finished instance of a join with an unfinished one keeps them,
    and the join fires early in round 2)."""
    run = Run("lr_parallel_loop.bpmn", "lr_parallel_loop", prune=True)
    play_parallel_loop_any_order(run, 10, clock)
    assert run.wf.is_completed()
    assert (run.wf.data["rounds"], run.wf.data["mismatches"]) == (10, 0)


def test_inclusive_join_in_a_loop_waits_for_every_chosen_branch(clock):
    """Both branches chosen in several rounds, finished in either order. A join
    instance left over from an earlier round makes the join fire early (plain
    SpiffWorkflow: already in round 2), as in the parallel test above."""
    run = Run("lr_inclusive_loop.bpmn", "lr_inclusive_loop", prune=True)
    choices = ["ab", "a", "ba", "b", "", "ab", "ba"]
    for k, choice in enumerate(choices, 1):
        run.complete("choose", want_a="a" in choice, want_b="b" in choice, again=k < len(choices))
        for i, part in enumerate(choice):
            assert run.ready_ids() == sorted("part_" + p for p in choice[i:]), \
                f"round {k} ({choice!r}): the join fired before part_{part} was done"
            run.complete("part_" + part, **({"a_note": f"a{k}"} if part == "a" else {"b_note": f"b{k}"}))
    assert run.wf.is_completed()
    assert run.wf.data["log"] == ["".join(sorted(c)) for c in choices]  # the notes that reached each join


def test_inclusive_join_in_a_loop_merges_only_this_rounds_branches(clock):
    """After a round where both A and B ran, rounds with one branch (or none) must not
    see the earlier round's notes: the join merges the branches of this round only.
    (Plain SpiffWorkflow merges the parents of every finished instance of the join,
    earlier rounds' included: its log reads ab, a, a, ab, ...)"""
    run = Run("lr_inclusive_loop.bpmn", "lr_inclusive_loop", prune=True)
    choices = ["ab"] + ["a", "b", ""] * 3
    for k, choice in enumerate(choices, 1):
        run.complete("choose", want_a="a" in choice, want_b="b" in choice, again=k < len(choices))
        for part in choice:
            run.complete("part_" + part, **({"a_note": f"a{k}"} if part == "a" else {"b_note": f"b{k}"}))
    assert run.wf.is_completed()
    assert run.wf.data["log"] == choices


# ------------------------------- event subprocess started by a thrown signal

def test_a_nudge_in_one_case_does_not_change_the_next_case(clean_db, clock, fixture_forms):
    """lr_signal_subprocess: each further round signals `nudge`, which starts a
    non-interrupting event subprocess. A case that never signals must complete as
    soon as its report says `again: False`, whatever other cases did before it."""
    service = _service(clean_db, fixture_forms, "lr_signal_subprocess.bpmn")

    quiet = service.start_case("lr_signal_subprocess", GRID, {}, WORKER)
    view = service.complete_task(_only_item(quiet, "report").id, {"again": False}, WORKER)
    assert view.status == "completed"

    nudged = service.start_case("lr_signal_subprocess", GRID, {}, WORKER)
    view = service.complete_task(_only_item(nudged, "report").id, {"again": True}, WORKER)
    view = service.complete_task(_only_item(view, "report").id, {"again": False}, WORKER)
    assert view.status == "completed"
    assert Counter(b for _, b in service.path(view.business_key))["count_nudge"] == 1

    quiet_again = service.start_case("lr_signal_subprocess", GRID, {}, WORKER)
    view = service.complete_task(_only_item(quiet_again, "report").id, {"again": False}, WORKER)
    assert view.open_items == []
    assert view.status == "completed", (
        "the case passed its end event but stays open, its event subprocess waiting for a nudge: "
        "the earlier case's signal changed the process spec shared by every case of the version")
