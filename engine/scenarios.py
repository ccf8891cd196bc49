"""Process scenarios: YAML a designer can read, run against the engine service.

One file per scenario under `processes/scenarios/<process>/`:

    process: grid_matter
    title: 小事不出格：网格内化解
    start:
      as: lx_wgy1                     # who starts it
      grid: linxi-xinguang-g1
      data: {category: dispute, colour: blue, ...}
    steps:
      - task: micro_mediation         # the task must be in this official's inbox
        as: lx_wgz1
        data: {resolved: true, mediation_note: 双方达成谅解}
      - advance: P16D                 # move the clock (ISO duration) and fire due timers
      - expect_tasks: [record_result] # the open tasks at this point (spec ids)
      - expect_due: {task: record_result, in: P30D}   # its due date is the scenario clock + 30 days
                                      # (every open task of that id; `in: none` = no due date)
      - refused: {task: record_result, as: lxz_cg, error: forbidden}
    expect:
      status: completed               # or open
      path: [start, decide_dispatch, ...]   # every element passed, in order (optional)
      path_includes: [set_resolved_grid]    # or just some of them
      data: {resolved_level: grid}          # case data values
      open_tasks: []

`run_scenario(service, clock, scenario)` raises `ScenarioFailure` naming the step
that broke and why; `gridflow scenarios` and the test suite run every file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from .errors import EngineError, not_utf8
from .service import InboxFilters, WorkflowService

ERROR_CODES = {"forbidden", "not_found", "conflict", "invalid", "process_error"}


class ScenarioFailure(AssertionError):
    def __init__(self, scenario: str, step: str, message: str):
        super().__init__(f"{scenario}: {step}: {message}")
        self.scenario, self.step, self.message = scenario, step, message


@dataclass
class Scenario:
    name: str
    process: str
    title: str
    start: dict
    steps: list
    expect: dict
    source: str = ""

    @classmethod
    def load(cls, path: Path | str) -> Scenario:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path.name}: {not_utf8(exc)}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"{path.name}: not valid YAML ({' '.join(str(exc).split())})") from None
        if not isinstance(raw, dict) or "process" not in raw or "start" not in raw:
            raise ValueError(f"{path.name}: a scenario needs 'process' and 'start'")
        steps = raw.get("steps") or []
        if not isinstance(raw["start"], dict) or not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise ValueError(f"{path.name}: 'start' must be a mapping and 'steps' a list of mappings")
        return cls(name=path.stem, process=raw["process"], title=raw.get("title", path.stem),
                   start=raw["start"], steps=steps, expect=raw.get("expect") or {},
                   source=str(path))


@dataclass
class ScenarioResult:
    scenario: Scenario
    business_key: str | None = None
    steps_done: int = 0
    log: list = field(default_factory=list)


def find_scenarios(root: Path | str) -> list[Path]:
    return sorted(Path(root).glob("*/*.yaml"))


def _duration(text: str):
    parsed = TimerEventDefinition.parse_iso_duration(text)
    return TimerEventDefinition.get_timedelta_from_start(parsed)


def _signed_duration(text: str):
    """`P30D`, or `-P1D` for a due date already passed."""
    text = text.strip()
    if text.startswith("-"):
        return -_duration(text[1:])
    return _duration(text)


def _check_due(service, clock, key: str, spec: dict) -> str | None:
    """None when every open `spec['task']` is due at clock + `spec['in']`, else what is wrong."""
    if not isinstance(spec, dict) or "task" not in spec or "in" not in spec:
        return "expect_due needs 'task' (a BPMN id) and 'in' (an ISO duration such as P30D, or none)"
    items = [i for i in service.get_case(key).open_items if i.spec_id == spec["task"]]
    if not items:
        open_now = sorted(i.spec_id for i in service.get_case(key).open_items)
        return f"no open '{spec['task']}'; open tasks: {open_now}"
    expected_text = spec["in"]
    if expected_text is None or str(expected_text).strip().lower() == "none":
        dated = [i.due_at.isoformat() for i in items if i.due_at is not None]
        return f"'{spec['task']}' is due {dated}, expected no due date" if dated else None
    try:
        expected = clock.now() + _signed_duration(str(expected_text))
    except Exception:
        return f"'in: {expected_text}' is not an ISO duration (write e.g. P15D, PT4H or -P1D)"
    for item in items:
        if item.due_at is None:
            return f"'{spec['task']}' has no due date, expected in {expected_text} ({expected.isoformat()})"
        due = item.due_at if item.due_at.tzinfo else item.due_at.replace(tzinfo=expected.tzinfo)
        if due != expected:
            actual = due - clock.now()
            return (f"'{spec['task']}' is due {due.isoformat()} (in {_describe(actual)}), "
                    f"expected in {expected_text} ({expected.isoformat()})")
    return None


def _describe(delta) -> str:
    sign = "-" if delta.total_seconds() < 0 else ""
    delta = abs(delta)
    hours, rest = divmod(delta.seconds, 3600)
    minutes = rest // 60
    text = f"{delta.days}D"
    if hours or minutes:
        text += f"T{hours}H{minutes}M" if minutes else f"T{hours}H"
    return f"{sign}P{text}"


def run_scenario(service: WorkflowService, clock, scenario: Scenario) -> ScenarioResult:
    result = ScenarioResult(scenario)
    name = scenario.name

    def fail(step, message):
        raise ScenarioFailure(name, step, message)

    start = scenario.start
    if start.get("at"):
        clock.set(datetime.fromisoformat(str(start["at"])))
    try:
        view = service.start_case(scenario.process, start["grid"], start.get("data") or {}, start["as"])
    except EngineError as exc:
        fail("start", f"{exc.code}: {exc.message}")
    key = result.business_key = view.business_key
    result.log.append(f"start {key} as {start['as']}")

    for index, step in enumerate(scenario.steps, 1):
        label = f"step {index}"
        if "task" in step and "as" in step:
            label += f" ({step['task']} as {step['as']})"
            rows = [r for r in service.inbox(step["as"], InboxFilters(limit=1000))
                    if r.item.spec_id == step["task"] and r.business_key == key]
            if not rows:
                open_now = [i.spec_id for i in service.get_case(key).open_items]
                fail(label, f"not in {step['as']}'s inbox; open tasks: {open_now}")
            try:
                service.complete_task(rows[0].item.id, step.get("data") or {}, step["as"])
            except EngineError as exc:
                detail = f" {exc.fields}" if getattr(exc, "fields", None) else ""
                fail(label, f"refused: {exc.code}: {exc.message}{detail}")
        elif "advance" in step:
            label += f" (advance {step['advance']})"
            clock.advance(_duration(str(step["advance"])))
            service.fire_timers(key)
        elif "expect_tasks" in step:
            label += " (expect_tasks)"
            open_now = sorted(i.spec_id for i in service.get_case(key).open_items)
            if open_now != sorted(step["expect_tasks"]):
                fail(label, f"open tasks are {open_now}, expected {sorted(step['expect_tasks'])}")
        elif "expect_due" in step:
            spec = step["expect_due"]
            label += f" (expect_due {spec.get('task') if isinstance(spec, dict) else spec})"
            problem = _check_due(service, clock, key, spec)
            if problem:
                fail(label, problem)
        elif "refused" in step:
            spec = step["refused"]
            label += f" (refused {spec.get('task')} as {spec.get('as')})"
            if spec.get("error") not in ERROR_CODES:
                fail(label, f"'error' must be one of {sorted(ERROR_CODES)}")
            items = [i for i in service.get_case(key).open_items if i.spec_id == spec["task"]]
            if not items:
                fail(label, f"no open '{spec['task']}' to try")
            try:
                service.complete_task(items[0].id, spec.get("data") or {}, spec["as"])
            except EngineError as exc:
                if exc.code != spec["error"]:
                    fail(label, f"refused with {exc.code}, expected {spec['error']}: {exc.message}")
            else:
                fail(label, "was accepted, expected a refusal")
        else:
            fail(label, f"unknown step {sorted(step)}; use task+as, advance, expect_tasks, expect_due or refused")
        result.steps_done = index
        result.log.append(label)

    expect = scenario.expect
    case = service.get_case(key)
    if "status" in expect and case.status != expect["status"]:
        fail("expect", f"status is {case.status}, expected {expect['status']}")
    path = [b for _, b in service.path(key)]
    if "path" in expect and path != list(expect["path"]):
        fail("expect", f"path was {path}, expected {list(expect['path'])}")
    missing = [b for b in expect.get("path_includes") or [] if b not in path]
    if missing:
        fail("expect", f"path {path} lacks {missing}")
    if expect.get("data"):
        data = service.case_data(key)
        wrong = {k: data.get(k) for k, v in expect["data"].items() if data.get(k) != v}
        if wrong:
            fail("expect", f"data differs: got {wrong}, expected {({k: expect['data'][k] for k in wrong})}")
    if "open_tasks" in expect:
        open_now = sorted(i.spec_id for i in case.open_items)
        if open_now != sorted(expect["open_tasks"]):
            fail("expect", f"open tasks are {open_now}, expected {sorted(expect['open_tasks'])}")
    return result
