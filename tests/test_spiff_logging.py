"""engine/spiff_logging.py: SpiffWorkflow's task state changes, their log records built only when
something logs them, and otherwise exactly SpiffWorkflow's own."""
from __future__ import annotations

import logging

import pytest
from SpiffWorkflow import task as spiff_task
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from SpiffWorkflow.util.task import TaskState

from engine import spiff_logging
from tests.conftest import FIXTURES


class Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)


def loop_steps(rounds: int = 3) -> list[tuple[str, str]]:
    """(task spec, state) of every task after each of `rounds` completions of loop.bpmn."""
    parser = SpiffBpmnParser()
    parser.add_bpmn_file(str(FIXTURES / "loop.bpmn"))
    workflow = BpmnWorkflow(parser.get_spec("loop"), parser.get_subprocess_specs("loop"))
    workflow.do_engine_steps()
    seen = []
    for _ in range(rounds):
        [task] = workflow.get_tasks(state=TaskState.READY, manual=True)
        task.data["again"] = True
        task.run()
        workflow.do_engine_steps()
        seen.append(sorted((t.task_spec.name, TaskState.get_name(t.state)) for t in workflow.get_tasks()))
        [ready] = workflow.get_tasks(state=TaskState.READY, manual=True)
        ready._set_state(ready.state)   # the same state again: logged at DEBUG only
    return seen


def logged(level) -> tuple[list, list]:
    """The loop run with the `spiff.task` logger at `level`: (tasks and states, records as
    (level, message, state, task spec, extras' keys))."""
    logger, handler = spiff_task.logger, Records()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        steps = loop_steps()
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return steps, [(r.levelname, r.getMessage(), r.state, r.task_spec, sorted(k for k in vars(r) if k in (
        "workflow_spec", "task_spec", "task_id", "task_type", "state", "last_state_change", "elapsed", "parent")))
        for r in handler.records]


def test_the_engine_uses_it_with_the_spiffworkflow_it_was_written_for():
    assert spiff_task.Task._set_state is spiff_logging._set_state


@pytest.mark.parametrize("level", [logging.DEBUG, logging.INFO])
def test_what_is_logged_is_what_spiffworkflow_logs(level):
    ours = logged(level)
    with spiff_logging.stock():
        assert spiff_task.Task._set_state is spiff_logging.STOCK_SET_STATE
        theirs = logged(level)
    assert ours == theirs
    assert any(message.startswith("State changed to READY") for _level, message, *_ in ours[1])
    assert (level == logging.DEBUG) == any(lvl == "DEBUG" for lvl, *_ in ours[1])


def test_nothing_is_built_when_nothing_logs(monkeypatch):
    built = []
    monkeypatch.setattr(spiff_task.Task, "collect_log_extras", lambda self, dct=None: built.append(1) or {})
    steps, records = logged(logging.WARNING)
    assert records == [] and built == []
    with spiff_logging.stock():
        assert logged(logging.WARNING)[0] == steps   # the same states, one completion after another
        assert built                                  # SpiffWorkflow's own builds them all the same


def test_another_spiffworkflow_keeps_its_own(monkeypatch):
    with spiff_logging.stock():
        monkeypatch.setattr(spiff_logging, "STOCK_SOURCE_SHA256", "0" * 64)   # as if its method had changed
        assert spiff_logging.apply() is False
        assert spiff_task.Task._set_state is spiff_logging.STOCK_SET_STATE
    assert spiff_task.Task._set_state is spiff_logging._set_state            # restored after the block


def test_the_timer_worker_logs_its_own_lines_not_every_task_state_change():
    """`gridflow worker` logs at INFO; SpiffWorkflow's `spiff.task` would then log every state
    change of every case it fires (and build each record)."""
    from engine.cli import worker_logging
    root, spiff = logging.getLogger(), logging.getLogger("spiff")
    saved_level, saved_handlers, saved_spiff = root.level, list(root.handlers), spiff.level
    try:
        for handler in saved_handlers:      # basicConfig configures only a root without handlers
            root.removeHandler(handler)
        worker_logging()
        assert logging.getLogger("gridflow.timers").isEnabledFor(logging.INFO)
        assert not spiff_task.logger.isEnabledFor(logging.INFO)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
        spiff.setLevel(saved_spiff)
