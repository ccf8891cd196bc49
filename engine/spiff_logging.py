"""SpiffWorkflow 3.2.0 builds the log record of every task state change whether or not anything
logs it: `Task._set_state` formats its message with `TaskState.get_name` (which builds a dict on
each call) and gathers `collect_log_extras` (another dict, the parent task looked up) before
calling `logger.info`, which then drops the record at the default level. A completion changes
a dozen task states, a start four dozen: about a tenth of a completion's CPU
(docs/performance.md, session 17).

`apply()` puts in its place the same method, building the record only when the `spiff.task`
logger would emit it: a task's state, its `last_state_change` and the records logged at INFO or
DEBUG are what SpiffWorkflow's own gives (tests/test_spiff_logging.py). It replaces only the
method it was written against (the hash of its source below): another SpiffWorkflow keeps its
own. `stock()` brings SpiffWorkflow's own back for a while (the step-cost benchmark measures raw
SpiffWorkflow with it).
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import logging

from SpiffWorkflow import task as spiff_task
from SpiffWorkflow.util.task import TaskState

STOCK_SET_STATE = spiff_task.Task._set_state
# sha256 of SpiffWorkflow 3.2.0's `Task._set_state` source, the method `_set_state` below mirrors
STOCK_SOURCE_SHA256 = "86c4c1d22dc9b70f0db4602e89b186aaddfb37f400116cf4773b943b021e40ac"


def _set_state(self, value: int) -> None:
    """Force set the state on a task (SpiffWorkflow's, its log record built only when logged)."""
    logger = spiff_task.logger
    if value != self.state:
        elapsed = spiff_task.time.time() - self.last_state_change
        self.last_state_change = spiff_task.time.time()
        self._state = value
        if logger.isEnabledFor(logging.INFO):
            logger.info(f'State changed to {TaskState.get_name(value)}',
                        extra=self.collect_log_extras({'elapsed': elapsed}))
    elif logger.isEnabledFor(logging.DEBUG):
        logger.debug(f'State set to {TaskState.get_name(value)}', extra=self.collect_log_extras())


def apply() -> bool:
    """Use `_set_state` in SpiffWorkflow's tasks, if theirs is the one it mirrors; True if it is in use."""
    if spiff_task.Task._set_state is _set_state:
        return True
    try:
        source = inspect.getsource(STOCK_SET_STATE)
    except (OSError, TypeError):
        return False   # no source to compare: keep SpiffWorkflow's own
    if hashlib.sha256(source.encode("utf-8")).hexdigest() != STOCK_SOURCE_SHA256:
        return False
    spiff_task.Task._set_state = _set_state
    return True


@contextlib.contextmanager
def stock():
    """SpiffWorkflow's own `_set_state` for the duration."""
    current = spiff_task.Task._set_state
    spiff_task.Task._set_state = STOCK_SET_STATE
    try:
        yield
    finally:
        spiff_task.Task._set_state = current
