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

A case that needs an earlier one (a repeat petition names the case closed by re-review)
says `earlier: [recheck_closed_and_archived]`: those scenarios of the same folder run first,
on the same clock, and `${earlier}` in the data is the first one's case number.

`run_scenario(service, clock, scenario)` raises `ScenarioFailure` naming the step
that broke and why; `gridflow scenarios` and the test suite run every file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from forms import load_yaml

from .errors import EngineError, InvalidInput, not_utf8
from .service import InboxFilters, WorkflowService

ERROR_CODES = {"forbidden", "not_found", "conflict", "invalid", "process_error"}


class ScenarioFileError(ValueError):
    """A file that is no scenario, in English (the CLI) and in Chinese (`zh`, the designer's
    scenario page, which showed these in English)."""

    def __init__(self, message: str, zh: str):
        super().__init__(message)
        self.zh = zh


class ScenarioFailure(AssertionError):
    """The step that broke and what was wrong, in English (`step`, `message`: the CLI, logs)
    and in Chinese (`step_zh`, `message_zh`: the designer's scenario page)."""

    def __init__(self, scenario: str, step: str, message: str, step_zh: str | None = None,
                 message_zh: str | None = None):
        super().__init__(f"{scenario}: {step}: {message}")
        self.scenario, self.step, self.message = scenario, step, message
        self.step_zh, self.message_zh = step_zh or step, message_zh or message

    def text(self, lang: str = "zh") -> tuple[str, str]:
        """(the step, the message) in `lang`."""
        return (self.step, self.message) if lang == "en" else (self.step_zh, self.message_zh)


@dataclass
class Scenario:
    name: str
    process: str
    title: str
    start: dict
    steps: list
    expect: dict
    source: str = ""
    # scenarios of the same folder run first, each its own case (a repeat petition names the
    # earlier one): `${earlier}` in the data is the first one's case number, `${earlier:name}` any's
    earlier: list = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | str) -> Scenario:
        path = Path(path)
        try:
            raw = load_yaml(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ScenarioFileError(f"{path.name}: {not_utf8(exc)}",
                                    f"{path.name}：不是 UTF-8 文本（第 {exc.start} 字节，可能是 GBK 编码），"
                                    "请另存为 UTF-8") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列" if mark is not None else ""
            raise ScenarioFileError(f"{path.name}: not valid YAML ({' '.join(str(exc).split())})",
                                    f"{path.name}：不是有效的 YAML（{where}{'：' if where else ''}"
                                    f"{getattr(exc, 'problem', None) or '无法解析'}）") from None
        if not isinstance(raw, dict) or "process" not in raw or "start" not in raw:
            raise ScenarioFileError(f"{path.name}: a scenario needs 'process' and 'start'",
                                    f"{path.name}：场景须写明 process（流程）和 start（发起）")
        steps = raw.get("steps") or []
        if not isinstance(raw["start"], dict) or not isinstance(steps, list) or not all(isinstance(s, dict) for s in steps):
            raise ScenarioFileError(f"{path.name}: 'start' must be a mapping and 'steps' a list of mappings",
                                    f"{path.name}：start 须为键值结构，steps 须为由键值结构组成的列表")
        earlier = raw.get("earlier") or []
        earlier = [earlier] if isinstance(earlier, str) else earlier
        if not isinstance(earlier, list) or not all(isinstance(e, str) and e for e in earlier):
            raise ScenarioFileError(f"{path.name}: 'earlier' must name scenarios of the same folder",
                                    f"{path.name}：earlier 须列出同一目录中的场景名称")
        expect = raw.get("expect") or {}
        if not isinstance(expect, dict):
            raise ScenarioFileError(f"{path.name}: 'expect' must be a mapping (status, path, data …)",
                                    f"{path.name}：expect 须为键值结构（status、path、data 等）")
        # a list written as a text (`path: start`) would be compared letter by letter
        lists = [("expect", "expect（最终检查）", key, expect.get(key)) for key in LIST_EXPECTATIONS if key in expect]
        lists += [(f"step {n}", f"第 {n} 步", "expect_tasks", step["expect_tasks"])
                  for n, step in enumerate(steps, 1) if "expect_tasks" in step]
        for where, where_zh, key, value in lists:
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ScenarioFileError(
                    f"{path.name}: {where}: '{key}' must be a list of BPMN ids in brackets, "
                    f"e.g. {key}: [start, decide_dispatch]; it is {value!r}",
                    f"{path.name}：{where_zh}：{key} 须为方括号中的 BPMN 标识列表，"
                    f"如 {key}: [start, decide_dispatch]；现为 {value!r}")
        return cls(name=path.stem, process=raw["process"], title=raw.get("title", path.stem),
                   start=raw["start"], steps=steps, expect=expect,
                   source=str(path), earlier=earlier)


LIST_EXPECTATIONS = ("path", "path_includes", "open_tasks")   # of `expect:`, each a list of BPMN ids


@dataclass
class ScenarioResult:
    scenario: Scenario
    business_key: str | None = None
    steps_done: int = 0
    log: list = field(default_factory=list)


STEP_ZH = {"start": "发起", "expect": "最终检查"}


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


def _check_due(service, clock, key: str, spec: dict) -> tuple[str, str] | None:
    """None when every open `spec['task']` is due at clock + `spec['in']`, else what is wrong
    (in English and in Chinese)."""
    if not isinstance(spec, dict) or "task" not in spec or "in" not in spec:
        return ("expect_due needs 'task' (a BPMN id) and 'in' (an ISO duration such as P30D, or none)",
                "expect_due 须写明 task（环节的 BPMN 标识）和 in（ISO 时长，如 P30D，或 none）")
    items = [i for i in service.get_case(key).open_items if i.spec_id == spec["task"]]
    if not items:
        open_now = sorted(i.spec_id for i in service.get_case(key).open_items)
        return (f"no open '{spec['task']}'; open tasks: {open_now}",
                f"没有待办的“{spec['task']}”；当前待办环节：{open_now}")
    expected_text = spec["in"]
    if expected_text is None or str(expected_text).strip().lower() == "none":
        dated = [i.due_at.isoformat() for i in items if i.due_at is not None]
        return (f"'{spec['task']}' is due {dated}, expected no due date",
                f"“{spec['task']}”的期限为 {dated}，应无期限") if dated else None
    try:
        expected = clock.now() + _signed_duration(str(expected_text))
    except Exception:
        return (f"'in: {expected_text}' is not an ISO duration (write e.g. P15D, PT4H or -P1D)",
                f"“in: {expected_text}”不是有效的 ISO 时长（如 P15D、PT4H 或 -P1D）")
    for item in items:
        if item.due_at is None:
            return (f"'{spec['task']}' has no due date, expected in {expected_text} ({expected.isoformat()})",
                    f"“{spec['task']}”没有期限，应为 {expected_text} 后（{expected.isoformat()}）")
        due = item.due_at if item.due_at.tzinfo else item.due_at.replace(tzinfo=expected.tzinfo)
        if due != expected:
            actual = due - clock.now()
            return (f"'{spec['task']}' is due {due.isoformat()} (in {_describe(actual)}), "
                    f"expected in {expected_text} ({expected.isoformat()})",
                    f"“{spec['task']}”的期限为 {due.isoformat()}（{_describe(actual)} 后），"
                    f"应为 {expected_text} 后（{expected.isoformat()}）")
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


def _with_earlier(scenario: Scenario, keys: dict) -> Scenario:
    """The scenario with `${earlier}` / `${earlier:name}` in its texts replaced by the case
    numbers the earlier scenarios got."""
    first = next(iter(keys.values()))

    def fill(value):
        if isinstance(value, str):
            for name, key in keys.items():
                value = value.replace("${earlier:" + name + "}", key)
            return value.replace("${earlier}", first)
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value
    return dataclasses.replace(scenario, start=fill(scenario.start), steps=fill(scenario.steps),
                               expect=fill(scenario.expect))


def run_scenario(service: WorkflowService, clock, scenario: Scenario) -> ScenarioResult:
    result = ScenarioResult(scenario)
    name = scenario.name

    def fail(step, message, message_zh):
        """`step`: (English, Chinese) of the step's label."""
        en, zh = step if isinstance(step, tuple) else (step, STEP_ZH.get(step, step))
        raise ScenarioFailure(name, en, message, zh, message_zh)

    def refused(exc: EngineError) -> tuple[str, str]:
        fields = getattr(exc, "fields", None)
        fields_zh = exc.field_texts("zh") if isinstance(exc, InvalidInput) else fields
        return (f"refused: {exc.code}: {exc.message}" + (f" {fields}" if fields else ""),
                f"被拒绝（{exc.code}）：{exc.zh}" + (f" {fields_zh}" if fields_zh else ""))

    keys = {}
    for name_before in scenario.earlier:
        path = Path(scenario.source).parent / f"{name_before}.yaml" if scenario.source else None
        if path is None or not path.is_file():
            fail("start", f"earlier scenario '{name_before}' is not in this scenario's folder",
                 f"找不到先行场景“{name_before}”（须与本场景在同一目录）")
        keys[name_before] = run_scenario(service, clock, Scenario.load(path)).business_key
    if keys:
        scenario = _with_earlier(scenario, keys)
    start = scenario.start
    if start.get("at"):
        clock.set(datetime.fromisoformat(str(start["at"])))
    try:
        view = service.start_case(scenario.process, start["grid"], start.get("data") or {}, start["as"])
    except EngineError as exc:
        fail("start", *refused(exc))
    key = result.business_key = view.business_key
    result.log.append(f"start {key} as {start['as']}")

    for index, step in enumerate(scenario.steps, 1):
        label, label_zh = f"step {index}", f"第 {index} 步"
        if "task" in step and "as" in step:
            label += f" ({step['task']} as {step['as']})"
            label_zh += f"（{step['as']} 办理 {step['task']}）"
            rows = [r for r in service.inbox(step["as"], InboxFilters(limit=1000))
                    if r.item.spec_id == step["task"] and r.business_key == key]
            if not rows:
                open_now = [i.spec_id for i in service.get_case(key).open_items]
                fail((label, label_zh), f"not in {step['as']}'s inbox; open tasks: {open_now}",
                     f"不在 {step['as']} 的收件箱中；当前待办环节：{open_now}")
            try:
                service.complete_task(rows[0].item.id, step.get("data") or {}, step["as"])
            except EngineError as exc:
                fail((label, label_zh), *refused(exc))
        elif "advance" in step:
            label += f" (advance {step['advance']})"
            label_zh += f"（时间前进 {step['advance']}）"
            try:
                clock.advance(_duration(str(step["advance"])))
            except Exception:   # SpiffWorkflow's parser raises a bare Exception; the calendar OverflowError
                fail((label, label_zh), f"'advance: {step['advance']}' is not an ISO duration the calendar can "
                     "reach (write e.g. P16D or PT4H)",
                     f"“advance: {step['advance']}”不是可用的 ISO 时长（如 P16D、PT4H），或超出日历范围")
            service.fire_timers(key)
        elif "expect_tasks" in step:
            label += " (expect_tasks)"
            label_zh += "（检查待办环节）"
            open_now = sorted(i.spec_id for i in service.get_case(key).open_items)
            if open_now != sorted(step["expect_tasks"]):
                fail((label, label_zh), f"open tasks are {open_now}, expected {sorted(step['expect_tasks'])}",
                     f"待办环节为 {open_now}，应为 {sorted(step['expect_tasks'])}")
        elif "expect_due" in step:
            spec = step["expect_due"]
            label += f" (expect_due {spec.get('task') if isinstance(spec, dict) else spec})"
            label_zh += f"（检查期限 {spec.get('task') if isinstance(spec, dict) else spec}）"
            problem = _check_due(service, clock, key, spec)
            if problem:
                fail((label, label_zh), *problem)
        elif "refused" in step:
            spec = step["refused"]
            label += f" (refused {spec.get('task')} as {spec.get('as')})"
            label_zh += f"（应拒绝 {spec.get('as')} 办理 {spec.get('task')}）"
            if spec.get("error") not in ERROR_CODES:
                fail((label, label_zh), f"'error' must be one of {sorted(ERROR_CODES)}",
                     f"error 须为以下之一：{sorted(ERROR_CODES)}")
            items = [i for i in service.get_case(key).open_items if i.spec_id == spec["task"]]
            if not items:
                fail((label, label_zh), f"no open '{spec['task']}' to try", f"没有待办的“{spec['task']}”可供尝试")
            try:
                service.complete_task(items[0].id, spec.get("data") or {}, spec["as"])
            except EngineError as exc:
                if exc.code != spec["error"]:
                    fail((label, label_zh), f"refused with {exc.code}, expected {spec['error']}: {exc.message}",
                         f"以 {exc.code} 拒绝，应为 {spec['error']}：{exc.zh}")
            else:
                fail((label, label_zh), "was accepted, expected a refusal", "被接受了，应被拒绝")
        else:
            fail((label, label_zh), f"unknown step {sorted(step)}; use task+as, advance, expect_tasks, expect_due or refused",
                 f"无法识别的步骤 {sorted(step)}；请使用 task+as、advance、expect_tasks、expect_due 或 refused")
        result.steps_done = index
        result.log.append(label)

    expect = scenario.expect
    case = service.get_case(key)
    if "status" in expect and case.status != expect["status"]:
        fail("expect", f"status is {case.status}, expected {expect['status']}",
             f"案件状态为 {case.status}，应为 {expect['status']}")
    path = [b for _, b in service.path(key)]
    if "path" in expect and path != list(expect["path"]):
        fail("expect", f"path was {path}, expected {list(expect['path'])}",
             f"经过的路径为 {path}，应为 {list(expect['path'])}")
    missing = [b for b in expect.get("path_includes") or [] if b not in path]
    if missing:
        fail("expect", f"path {path} lacks {missing}", f"路径 {path} 未经过 {missing}")
    if expect.get("data"):
        data = service.case_data(key)
        wrong = {k: data.get(k) for k, v in expect["data"].items() if data.get(k) != v}
        if wrong:
            expected = {k: expect["data"][k] for k in wrong}
            fail("expect", f"data differs: got {wrong}, expected {expected}", f"案件数据不符：实际 {wrong}，应为 {expected}")
    if "open_tasks" in expect:
        open_now = sorted(i.spec_id for i in case.open_items)
        if open_now != sorted(expect["open_tasks"]):
            fail("expect", f"open tasks are {open_now}, expected {sorted(expect['open_tasks'])}",
                 f"结束时待办环节为 {open_now}，应为 {sorted(expect['open_tasks'])}")
    return result
