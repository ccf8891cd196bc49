"""Deploying and validating the BPMN/DMN files of `processes/`.

`validate_files` runs SpiffWorkflow's own parsing plus our checks and returns
one `Problem` per finding (file, element id, what is wrong, how to fix it).
`deploy_files` stores a new `ProcessVersion` per process whose files changed,
keyed by a hash of the files the process needs: redeploying unchanged files
creates nothing, and running cases stay on the version they started on.
A set of files with any problem is refused whole; nothing is stored.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import clock
from .bpmn import (BPMN_NS, CamundaAwareParser, is_dmn, is_user_task, lane_parts, parse_lane,
                   process_properties, user_task_info)
from .models import DEPT_TYPES, LEVELS, ROLES, ProcessVersion
from .sandbox import SAFE_BUILTINS, SCRIPT_ENGINE, check_source

SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
DMN_NAMESPACES = (
    "https://www.omg.org/spec/DMN/20191111/MODEL/",
    "http://www.omg.org/spec/DMN/20180521/MODEL/",
    "http://www.omg.org/spec/DMN/20151101/dmn.xsd",
)
FLOW_NODE_TAGS = {
    "task", "userTask", "manualTask", "scriptTask", "serviceTask", "sendTask", "receiveTask",
    "businessRuleTask", "callActivity", "subProcess", "transaction", "adHocSubProcess",
    "startEvent", "endEvent", "intermediateCatchEvent", "intermediateThrowEvent", "boundaryEvent",
    "exclusiveGateway", "parallelGateway", "inclusiveGateway", "eventBasedGateway", "complexGateway",
}


@dataclass(frozen=True)
class Problem:
    """One finding: the file, the element's id, what is wrong and how to fix it, in English
    (the CLI, logs) and Chinese (the designer's pages; `zh`/`fix_zh`, empty when there is none:
    SpiffWorkflow's own parser messages are English only)."""
    file: str
    element: str
    message: str
    fix: str = ""
    zh: str = ""
    fix_zh: str = ""

    def text(self, lang: str = "en") -> tuple[str, str]:
        """(message, fix) in `lang`, English where there is no Chinese."""
        if lang == "zh":
            return self.zh or self.message, self.fix_zh or self.fix
        return self.message, self.fix

    def __str__(self):
        where = f"{self.file}:{self.element}" if self.element else self.file
        return f"{where}: {self.message}" + (f" — {self.fix}" if self.fix else "")


class DeployError(Exception):
    def __init__(self, problems: list[Problem]):
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def read_process_dir(directory) -> dict[str, str]:
    directory = Path(directory)
    return read_model_files(sorted(list(directory.glob("*.bpmn")) + list(directory.glob("*.dmn"))))


def read_model_files(paths) -> dict[str, str]:
    """{name: text} of BPMN/DMN files (a folder with such a name is passed over); a file that
    is not UTF-8 (a modeler that saved GBK) is a DeployError naming each such file, not a
    traceback."""
    files, problems = {}, []
    for path in map(Path, paths):
        if not path.is_file():
            continue
        try:
            files[path.name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            problems.append(Problem(
                path.name, f"byte {exc.start}", "the file is not UTF-8 text (perhaps GBK)",
                "save it again from the modeler as UTF-8, or convert it: iconv -f GBK -t UTF-8",
                "文件不是 UTF-8 文本（可能是 GBK 编码）", "请在建模器中另存为 UTF-8，或用 iconv -f GBK -t UTF-8 转换"))
    if problems:
        raise DeployError(problems)
    return files


def _q(ns, tag):
    return f"{{{ns}}}{tag}"


def _local(node) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


@dataclass
class _Analysis:
    """What parsing a set of files yielded."""
    parser: CamundaAwareParser
    trees: dict            # filename -> lxml root (files that are well-formed)
    process_files: dict    # process id -> filename
    decision_files: dict   # decision id -> filename
    executable: list       # executable top-level process ids
    problems: list


@functools.lru_cache(maxsize=4)
def _analysis_of(files: tuple) -> _Analysis:
    """`_analyse` of a file set ((name, text) pairs, sorted) for the notes, which read it per
    process: parsed once for all of them (and for the next check or deploy of the same files)."""
    return _analyse(dict(files))


def _analyse(files: dict[str, str]) -> _Analysis:
    problems: list[Problem] = []
    trees = {}
    for name, text in files.items():
        try:
            data = text.encode("utf-8") if isinstance(text, str) else text
            trees[name] = etree.parse(io.BytesIO(data)).getroot()
        except etree.XMLSyntaxError as exc:
            problems.append(Problem(name, f"line {exc.lineno}", f"not well-formed XML: {exc.msg}",
                                    "open it in a modeler and save it again, or fix the XML by hand",
                                    f"XML 格式错误：{exc.msg}", "请在建模器中打开并重新保存，或手工修正 XML"))
    parser = CamundaAwareParser()
    process_files, decision_files = {}, {}
    for name, root in trees.items():
        try:
            if is_dmn(name) or etree.QName(root).namespace in DMN_NAMESPACES:
                if etree.QName(root).namespace not in DMN_NAMESPACES:
                    raise ValueError("a .dmn file must contain a DMN <definitions> element")
                before = set(parser.dmn_parsers)
                parser.add_dmn_xml(root, filename=name)
                for did in set(parser.dmn_parsers) - before:
                    decision_files[did] = name
            else:
                if etree.QName(root).namespace != BPMN_NS or _local(root) != "definitions":
                    raise ValueError("not a BPMN 2.0 file: the root must be bpmn:definitions")
                before = set(parser.process_parsers)
                parser.add_bpmn_xml(root, filename=name)
                for pid in set(parser.process_parsers) - before:
                    process_files[pid] = name
        except Exception as exc:  # any parser failure is a finding about this file, never a crash
            problems.append(_problem_from_exception(name, exc))
    executable = [pid for pid, pp in parser.process_parsers.items()
                  if pp.process_executable and pid in process_files]
    return _Analysis(parser, trees, process_files, decision_files, executable, problems)


_FIX_HINTS = (   # (words of the parser's message, the fix, the fix in Chinese)
    ("data store", "gridflow runs no data stores: remove the data store and keep the data in the case's form fields",
     "本系统不运行数据存储：请删除数据存储，把数据放在案件的表单字段中"),
    ("service task must have an operator",
     "gridflow calls no external services: make it a script task or a user task, or remove it",
     "本系统不调用外部服务：请改为脚本任务或用户任务，或删除它"),
    ("cannot resolve data", "connect the data association to a data object of the same process, or remove it",
     "请把数据关联连到同一流程的数据对象，或删除它"),
    ("multiinstance", "set the loop cardinality or the input collection of the multi-instance task",
     "请设置多实例任务的循环次数或输入集合"),
    ("exactly one start event", "give the subprocess exactly one start event", "子流程须有且只有一个开始事件"),
)


def _problem_from_exception(filename: str, exc: Exception) -> Problem:
    element = getattr(exc, "id", "") or ""
    file_name = getattr(exc, "file_name", "") or filename
    line = getattr(exc, "line_number", "")
    msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    # lxml elements print with a memory address: name the tag instead
    msg = re.sub(r"<Element \{[^}]*\}(\w+) at 0x[0-9a-f]+>", r"<\1>", msg).strip()
    if not element and line:
        element = f"line {line}"
    fix, fix_zh = "correct the element in the modeler", "请在建模器中修正该元素"
    low = msg.lower()
    hint = next((h for h in _FIX_HINTS if h[0] in low), None)
    if hint:
        fix, fix_zh = hint[1], hint[2]
    elif "no dmn" in low or "decision" in low:
        fix = "deploy the DMN file that defines this decision, or correct the decision id"
        fix_zh = "请部署定义该决策的 DMN 文件，或修正决策标识"
    elif "process" in low and ("not found" in low or "no such" in low or "unable" in low):
        fix, fix_zh = "add the called process's BPMN file, or correct calledElement", "请加入被调用流程的 BPMN 文件，或修正 calledElement"
    return Problem(Path(str(file_name)).name or filename, element, msg, fix, f"流程文件解析错误：{msg}", fix_zh)


def executable_processes(files: dict[str, str]) -> list[str]:
    """Ids of the executable processes the files define (parse problems ignored)."""
    return sorted(_analyse(files).executable)


def validate_files(files: dict[str, str], form_keys: set[str] | None = None) -> list[Problem]:
    analysis = _analyse(files)
    problems = list(analysis.problems)
    for pid in analysis.executable:
        problems.extend(_check_process(analysis, pid, form_keys))
    for name, root in analysis.trees.items():
        if etree.QName(root).namespace in DMN_NAMESPACES:
            problems.extend(_check_decision_tables(name, root))
        elif not is_dmn(name):
            problems.extend(_check_reachability(name, root))
            problems.extend(_check_event_subprocess_starts(name, root))
    # the same finding from two processes sharing a file is one finding
    seen, unique = set(), []
    for p in problems:
        if p not in seen:
            seen.add(p)
            unique.append(p)
    return unique


def dashboard_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes, not problems (they refuse nothing): each element the dashboard's figures read
    (`metrics.DASHBOARD_ELEMENTS`) that a process in `files` (of `processes`, if given) no
    longer has, and each case data key they read (`metrics.DASHBOARD_DATA`) that nothing of
    the process sets any more: no script assigns it, no decision outputs it, no form its
    tasks or its start show has a field of that name (`forms`: the forms in use, by key;
    the shipped ones if not given). A designer may rename or remove it on purpose, but the
    figure then misses the cases that run on the new version, so deploying and checking say
    which figure and how to keep it."""
    from .metrics import DASHBOARD_DATA, DASHBOARD_ELEMENTS
    read = DASHBOARD_ELEMENTS.keys() | DASHBOARD_DATA.keys()
    notes, setting = [], []
    for filename in sorted(files):
        if not any(pid in files[filename] for pid in read):
            continue   # only the XML of the files that may hold such a process is read
        try:
            root = etree.parse(io.BytesIO(files[filename].encode("utf-8"))).getroot()
        except (etree.XMLSyntaxError, ValueError):
            continue   # a problem of its own, which the check reports
        for process in root.iter(f"{{{BPMN_NS}}}process"):
            pid = process.get("id")
            if pid not in read or (processes is not None and pid not in processes):
                continue
            present = set(process.xpath(".//@id"))
            notes += _missing_elements(filename, pid, DASHBOARD_ELEMENTS.get(pid, {}), present)
            if pid in DASHBOARD_DATA:
                setting.append((filename, pid))
    if setting:
        notes += _unset_data(files, setting, forms)
    return notes


def version_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """All a check or deploy notes without refusing: the dashboard's (`dashboard_notes`),
    the decisions that leave some of the form's values without a rule (`decision_gap_notes`)
    and the conditions and timers that read a name nothing sets (`unset_name_notes`)."""
    return (dashboard_notes(files, processes, forms) + decision_gap_notes(files, processes, forms)
            + gateway_gap_notes(files, processes, forms) + unset_name_notes(files, processes, forms)
            + call_input_notes(files, processes, forms))


def gateway_gap_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each exclusive or inclusive gateway without a default flow whose outgoing
    conditions all test form fields with fixed choices, where some combination of those
    values satisfies none of them: such a case stops at the gateway with an error. As for
    decisions, a gateway whose conditions read anything else is not judged."""
    forms = forms if forms is not None else _shipped_forms()
    frozen, notes = tuple(sorted(files.items())), []
    analysis = _analysis_of(frozen)
    for filename, root in sorted(analysis.trees.items()):
        for process in root.iter(f"{{{BPMN_NS}}}process"):
            pid = process.get("id")
            if pid not in analysis.executable or (processes is not None and pid not in processes):
                continue
            found = _data_sources(frozen, pid)
            offered = _offered_values(found[1], forms) if found is not None else None
            if not offered:
                continue
            for gateway in process.iter(f"{{{BPMN_NS}}}exclusiveGateway", f"{{{BPMN_NS}}}inclusiveGateway"):
                note = _gateway_gap(filename, gateway, offered)
                if note is not None:
                    notes.append(note)
    return notes


def _gateway_gap(filename: str, gateway, offered: dict[str, list]) -> Problem | None:
    if gateway.get("default") or gateway.getparent() is None:
        return None
    gid = gateway.get("id") or ""
    conditions = []
    for flow in gateway.getparent().iter(f"{{{BPMN_NS}}}sequenceFlow"):
        if flow.get("sourceRef") != gid:
            continue
        condition = flow.find(f"{{{BPMN_NS}}}conditionExpression")
        text = (condition.text or "").strip() if condition is not None else ""
        if not text:
            return None   # a flow without a condition is always a way out
        conditions.append(text)
    if len(conditions) < 2:
        return None
    names = sorted(set().union(*map(_free_names, conditions)))
    if not names or not all(name in offered for name in names):
        return None
    domains = [offered[name] for name in names]
    total = 1
    for values in domains:
        total *= len(values)
    if total > GAP_COMBINATIONS_MAX:
        return None
    import itertools
    gaps = []
    try:
        for combination in itertools.product(*domains):
            context = dict(zip(names, combination))
            if not any(SCRIPT_ENGINE.environment.evaluate(text, dict(context)) for text in conditions):
                gaps.append(combination)
    except Exception:  # noqa: BLE001 -- a condition that fails on a value is not judged here
        return None
    if not gaps:
        return None
    label = gateway.get("name") or gid
    shown = "; ".join(", ".join(f"{n} = {_dmn_value(v)}" for n, v in zip(names, combination))
                      for combination in gaps[:_GAPS_SHOWN]) + (" …" if len(gaps) > _GAPS_SHOWN else "")
    return Problem(
        filename, gid,
        f"gateway '{label}' has no way out for {len(gaps)} of the {total} combinations of the values the forms "
        f"offer ({shown}) and no default flow: such a case stops there with an error",
        "add a condition for those values, or make one outgoing flow the default",
        f"网关“{label}”对表单可选值的 {total} 种组合中的 {len(gaps)} 种没有可走的出口（{shown}），也没有默认流："
        "这样的案件会在此出错停下",
        "请为这些值加上条件，或把一条出口设为默认流")


def unset_name_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each gateway condition and timer expression of a process in `files` (of
    `processes`, if given) that reads a name nothing in the files sets: no script assigns
    it, no decision outputs it, no form shown has a field of that name, no data input,
    multi-instance item or data object declares it. A misspelt `handlinglevel` would
    otherwise stop the first case that reaches the gateway ("Error evaluating
    expression"). Names from anywhere in the files count (a called process may read what
    its caller set); when what is set cannot be told (a form that cannot be read), nothing
    is noted."""
    forms = forms if forms is not None else _shipped_forms()
    frozen = tuple(sorted(files.items()))
    analysis = _analysis_of(frozen)
    from .scheduled_starts import ScheduledStarts
    known = set(SAFE_BUILTINS) | {"dir"} | ScheduledStarts.START_DATA_KEYS   # what a scheduled start gives
    for pid in analysis.executable:
        keys = _keys_set_by(frozen, pid, forms)
        if keys is None:
            return []
        known |= keys
    for root in analysis.trees.values():
        known |= _declared_names(root)
    notes = []
    for pid in sorted(analysis.executable):
        if processes is not None and pid not in processes:
            continue
        for table in _called_tables(frozen, pid):
            for expression, (column, label) in zip(table.inputs, table.input_columns):
                unset = sorted(_free_names(expression) - known)
                note = Problem(
                    table.file, column,
                    f"decision '{table.label}', input '{label}': '{expression[:80]}' reads "
                    f"{', '.join(repr(n) for n in unset)}, which nothing in this version sets (no script, decision "
                    "output, form field or data input of that name): the first case that asks the decision stops "
                    "with an error",
                    "give the input the case field it tests (a form field's name), or set that name first",
                    f"决策“{table.label}”的输入“{label}”：“{expression[:80]}”读取 {', '.join(repr(n) for n in unset)}，"
                    "但此版本中没有任何脚本、决策输出、表单字段或数据输入设置它：第一个使用该决策的案件会出错停下",
                    "请让输入列检查案件中确有的字段（表单字段名），或先设置该名称") if unset else None
                if note is not None and note not in notes:
                    notes.append(note)
    for filename, root in sorted(analysis.trees.items()):
        for process in root.iter(f"{{{BPMN_NS}}}process"):
            pid = process.get("id")
            if pid not in analysis.executable or (processes is not None and pid not in processes):
                continue
            for node in process.iter():
                local = _local(node)
                if local == "conditionExpression":
                    holder, what, what_zh = node.getparent(), "condition", "条件"
                elif local in ("timeDuration", "timeDate", "timeCycle"):
                    holder, what, what_zh = node.getparent().getparent(), "timer", "定时器表达式"
                else:
                    continue
                text = (node.text or "").strip()
                unset = sorted(_free_names(text) - known) if text else []
                if not unset or holder is None:
                    continue
                element = holder.get("id") or ""
                label = holder.get("name") or element
                if what == "timer" and _ISO_8601_TEXT.fullmatch(text):
                    notes.append(Problem(   # as Camunda Modeler writes timers
                        filename, element,
                        f"the timer '{text}' of '{label}' is ISO 8601 text without quotes: the engine reads a "
                        "timer as an expression, so the first case that reaches it stops with an error",
                        f'write it in quotes: "{text}" (or an expression giving such text)',
                        f"“{label}”的定时器“{text}”是未加引号的 ISO 8601 文本：引擎把定时器当作表达式计算，"
                        "第一个运行到这里的案件会出错停下",
                        f'请加上引号："{text}"（或写成得出这种文本的表达式）'))
                    continue
                names = ", ".join(f"'{n}'" for n in unset)
                notes.append(Problem(
                    filename, element,
                    f"the {what} '{text[:80]}' of '{label}' reads {names}, which nothing "
                    "in this version sets (no script, decision output, form field or data input of that name): "
                    "the first case that reaches it stops with an error",
                    "correct the name, or set it before this point (a form field, a script, a decision's output)",
                    f"“{label}”的{what_zh}“{text[:80]}”读取 {names}，但此版本中没有任何脚本、"
                    "决策输出、表单字段或数据输入设置它：第一个运行到这里的案件会出错停下",
                    "请改正名称，或在此之前设置它（表单字段、脚本或决策输出）"))
    return notes


# a duration (P7D, PT4H), a repetition (R6/P1D, R/2026-01-01T01:00:00+08:00/P1M) or a date
_ISO_8601_TEXT = re.compile(r"(R\d*/)?(P[0-9YMWDTHS.,]+|\d{4}-\d\d-\d\d[0-9T:.+\-Z]*)(/P[0-9YMWDTHS.,]+)?")


def _declared_names(element) -> set[str]:
    """The data names the model under `element` declares: data inputs and outputs,
    multi-instance items, data objects, what a message or an event brings in, Camunda's
    input/output parameters and result variables."""
    known = set()
    for node in element.iter():
        local = _local(node)
        if local in ("dataInput", "dataOutput", "inputDataItem", "outputDataItem", "dataObject",
                     "dataObjectReference", "property"):
            known |= {node.get("id"), node.get("name")} - {None}
        elif local in ("loopDataInputRef", "loopDataOutputRef", "loopCardinality", "messageVariable",
                       "variableName"):   # what an event brings in lands under these
            known.add((node.text or "").strip())
        elif local in ("outputParameter", "inputParameter"):   # Camunda's input/output mappings
            known.add(node.get("name") or "")
        for attribute, value in (node.attrib.items() if isinstance(node.tag, str) else ()):
            if etree.QName(attribute).localname in ("resultVariable", "variableName"):
                known.add(value)
    return known


def call_input_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each call activity of a process in `files` (of `processes`, if given)
    whose called process declares data inputs the caller never sets (no script, decision
    output, form field or declared name of the caller's): SpiffWorkflow stops the call
    ("You are missing a required Data Input for a call activity")."""
    from .scheduled_starts import ScheduledStarts
    forms = forms if forms is not None else _shipped_forms()
    frozen, notes = tuple(sorted(files.items())), []
    analysis = _analysis_of(frozen)
    for filename, root in sorted(analysis.trees.items()):
        for process in root.iter(f"{{{BPMN_NS}}}process"):
            pid = process.get("id")
            if pid not in analysis.executable or (processes is not None and pid not in processes):
                continue
            keys = _keys_set_by(frozen, pid, forms)
            if keys is None:
                continue
            keys = keys | _declared_names(process) | ScheduledStarts.START_DATA_KEYS
            try:
                callees = analysis.parser.get_subprocess_specs(pid)
            except Exception:  # noqa: BLE001 -- the check reports the process's own problem
                continue
            for call in process.iter(f"{{{BPMN_NS}}}callActivity"):
                callee = callees.get(call.get("calledElement") or "")
                io = getattr(callee, "io_specification", None)
                if io is None:
                    continue
                missing = [i.bpmn_id for i in io.data_inputs if i.bpmn_id not in keys]
                if not missing:
                    continue
                label, names = call.get("name") or call.get("id"), ", ".join(f"'{n}'" for n in missing)
                notes.append(Problem(
                    filename, call.get("id") or "",
                    f"call activity '{label}' calls '{call.get('calledElement')}', which needs the data input(s) "
                    f"{names}; nothing in '{pid}' sets them (no script, decision output or form field of that "
                    "name), so the call stops with an error",
                    "set them before the call (a form field, a script, a decision's output), or take them out of "
                    "the called process's data inputs",
                    f"调用活动“{label}”调用的“{call.get('calledElement')}”需要数据输入 {names}，但“{pid}”中没有任何"
                    "脚本、决策输出或表单字段设置它们：调用会出错停下",
                    "请在调用之前设置它们（表单字段、脚本或决策输出），或从被调用流程的数据输入中去掉"))
    return notes


def _free_names(expression: str) -> set[str]:
    """The names an expression reads that it does not bind itself (comprehension and lambda
    variables); nothing when it does not parse (a problem the check reports on its own)."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return set()
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.comprehension):
            bound |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Lambda):
            bound |= {a.arg for a in node.args.args + node.args.kwonlyargs}
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.left.value, str) and isinstance(node.ops[0], ast.In)
              and isinstance(node.comparators[0], ast.Call) and getattr(node.comparators[0].func, "id", "") == "dir"):
            bound.add(node.left.value)   # `"x" in dir() and x == …`: read only where it is set
    return {node.id for node in ast.walk(tree)
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)} - bound - {"True", "False", "None"}


# More combinations than this of a decision's input values are not tried (the notes stay quick).
GAP_COMBINATIONS_MAX = 5000
_GAPS_SHOWN = 4


def decision_gap_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each decision a process in `files` (of `processes`, if given) calls that has
    no rule for some combination of the values its forms offer: where every input of the
    table is a form field with fixed choices (a choice or a yes/no field of the forms its
    start and user tasks show), each combination is run through the rules as SpiffWorkflow's
    DMN engine runs them. Such a case gets none of the decision's outputs, and the first step
    that reads one stops with an error, typically right after the report is submitted.
    A table with any other input (a number, an expression), a rule that cannot be run on a
    value, or a form that cannot be read is not judged: no false alarms."""
    forms = forms if forms is not None else _shipped_forms()
    frozen, notes = tuple(sorted(files.items())), []
    for pid in sorted(_analysis_of(frozen).executable):
        if processes is not None and pid not in processes:
            continue
        found = _data_sources(frozen, pid)
        if found is None:
            continue
        offered = _offered_values(found[1], forms)
        if offered is None:
            continue
        for table in _called_tables(frozen, pid):
            note = _gap_note(table, offered)
            if note is not None and note not in notes:
                notes.append(note)
    return notes


def _offered_values(form_keys, forms) -> dict[str, list] | None:
    """{field name: the values a form offers for it} over the forms shown (None: a form cannot be read)."""
    offered: dict[str, list] = {}
    for key in form_keys:
        form = forms.get(key)
        if form is None:
            return None
        for f in form.fields:
            values = f.choice_values if f.type == "choice" else [True, False] if f.type == "boolean" else []
            known = offered.setdefault(f.name, []) if values else []
            known += [v for v in values if v not in known]
    return offered


@dataclass(frozen=True)
class _Table:
    file: str
    decision: str            # the decision's id, where a designer finds it
    label: str
    inputs: tuple            # input expressions
    outputs: tuple           # output names
    rules: tuple             # per rule: one cell per input (None: any value)
    input_columns: tuple = ()   # (id, label) of each input column
    collects: bool = False   # hit policy COLLECT: no rule is an answer there


@functools.lru_cache(maxsize=16)
def _called_tables(files: tuple, pid: str) -> tuple[_Table, ...]:
    """The decision tables the business rule tasks of `pid` (and its subprocesses) call,
    as SpiffWorkflow parsed them."""
    analysis = _analysis_of(files)
    try:
        specs = [analysis.parser.get_spec(pid), *analysis.parser.get_subprocess_specs(pid).values()]
    except Exception:  # noqa: BLE001 -- the check reports the process's own problem
        return ()
    where = {}   # decision table id -> (file, decision id, decision name)
    for filename, root in analysis.trees.items():
        for node in root.iter():
            if _local(node) == "decisionTable" and node.getparent() is not None:
                decision = node.getparent()
                where[node.get("id")] = (filename, decision.get("id") or "", decision.get("name") or "")
    tables, seen = [], set()
    for spec in specs:
        for task_spec in spec.task_specs.values():
            table = getattr(getattr(task_spec, "dmnEngine", None), "decision_table", None)
            if table is None or table.id in seen or table.id not in where:
                continue
            seen.add(table.id)
            filename, decision_id, name = where[table.id]
            tables.append(_Table(
                filename, decision_id, name or decision_id,
                tuple((i.expression or "").strip() for i in table.inputs),
                tuple(o.name or o.label or "" for o in table.outputs),
                tuple(tuple(e.lhs[0] if len(e.lhs) == 1 else None for e in rule.inputEntries)
                      for rule in table.rules),
                tuple((i.id or "", i.label or i.id or "") for i in table.inputs),
                str(table.hit_policy) == "COLLECT"))
    return tuple(tables)


def _gap_note(table: _Table, offered: dict[str, list]) -> Problem | None:
    if table.collects or not table.inputs or not all(name in offered for name in table.inputs):
        return None
    domains = [offered[name] for name in table.inputs]
    total = 1
    for values in domains:
        total *= len(values)
    if total > GAP_COMBINATIONS_MAX:
        return None
    gaps = _unmatched(table, domains)
    if not gaps:
        return None
    shown = "; ".join(", ".join(f"{name} = {_dmn_value(value)}" for name, value in zip(table.inputs, combination))
                      for combination in gaps[:_GAPS_SHOWN]) + (" …" if len(gaps) > _GAPS_SHOWN else "")
    outputs = ", ".join(table.outputs)
    return Problem(
        table.file, table.decision,
        f"decision '{table.label}' has no rule for {len(gaps)} of the {total} combinations of the values "
        f"the forms offer ({shown}): such a case gets none of its outputs ({outputs}) and stops with an "
        "error at the first step that reads one",
        "add rules for those values, or a last rule with - in every input (the default)",
        f"决策“{table.label}”对表单可选值的 {total} 种组合中的 {len(gaps)} 种没有匹配的规则（{shown}）："
        f"这样的案件得不到它的任何输出（{outputs}），会在第一个读取输出的环节出错停下",
        "请为这些值补充规则，或在最后加一条各输入均为 - 的兜底规则")


def _unmatched(table: _Table, domains: list[list]):
    """The combinations of input values no rule matches, in the table's order; None when a
    cell cannot be run on a value (then it cannot be told)."""
    import itertools

    answers: dict[tuple, bool] = {}

    def holds(column: int, cell: str, value) -> bool:
        key = (column, cell, repr(value))
        if key not in answers:
            expression = table.inputs[column]
            test, why = _input_test(expression, cell)
            if why or not _names_in(test) <= {expression, "dmninputexpr"}:
                raise LookupError(cell)   # a cell reading other data: not judged
            answers[key] = bool(SCRIPT_ENGINE.environment.evaluate(test, {expression: value, "dmninputexpr": value}))
        return answers[key]

    gaps = []
    try:
        for combination in itertools.product(*domains):
            if not any(all(cell is None or holds(column, cell, value)
                           for column, (cell, value) in enumerate(zip(rule, combination)))
                       for rule in table.rules):
                gaps.append(combination)
    except Exception:  # noqa: BLE001 -- a cell that fails on a value: the engine's error, not this note's
        return None
    return gaps


def _dmn_value(value) -> str:
    """A value as a DMN cell would test it: "other", True."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _names_in(expression: str) -> set[str]:
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return {"?"}
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} - {"True", "False", "None"}


def _unset_data(files: dict[str, str], setting: list[tuple[str, str]], forms) -> list[Problem]:
    from .metrics import DASHBOARD_DATA
    forms = forms if forms is not None else _shipped_forms()
    notes, frozen = [], tuple(sorted(files.items()))   # hashable: the parse's cache key
    for filename, pid in setting:
        keys = _keys_set_by(frozen, pid, forms)
        if keys is None:
            continue   # it cannot be told (a form that cannot be read, a process that does not parse): no note
        for key, (figure, figure_zh) in DASHBOARD_DATA[pid].items():
            if key in keys:
                continue
            notes.append(Problem(
                filename, pid,
                f"the dashboard reads the case data '{key}' of {pid} for {figure}; nothing in this version "
                "sets it (no script assigns it, no decision outputs it, no form has a field of that name), "
                "so its cases will be missing from that figure",
                f"set '{key}' where the version decides it (a script, a decision's output or a form field of "
                "that name), or have engine/metrics.py (DASHBOARD_DATA) and engine/case_facts.py read the new key",
                f"统计看板的“{figure_zh}”读取 {pid} 的案件数据 “{key}”；此版本中没有任何脚本、决策输出或表单字段"
                "设置它，按此版本运行的案件将不计入该指标",
                f"请在此版本作出相应判断的地方设置 “{key}”（脚本、决策输出或同名表单字段），或请开发人员让 "
                "engine/metrics.py（DASHBOARD_DATA）和 engine/case_facts.py 读取新的数据项"))
    return notes


@functools.cache
def _shipped_forms():
    from forms import FormRegistry
    return FormRegistry()


def _keys_set_by(files: tuple, pid: str, forms) -> set[str] | None:
    """The task data keys that the process `pid` may set: the names its scripts assign, its
    decisions' outputs and the fields of the forms its user tasks and its start show, with
    what the processes it calls give back (only their data outputs, where they declare
    some). None when that cannot be told."""
    found = _data_sources(files, pid)
    if found is None:
        return None
    keys, form_keys = found
    for key in form_keys:
        form = forms.get(key)
        if form is None:
            return None
        keys = keys | {f.name for f in form.fields}
    return keys


@functools.lru_cache(maxsize=16)
def _data_sources(files: tuple, pid: str) -> tuple[frozenset, tuple] | None:
    """(names that scripts assign or decisions output, form keys shown) for `_keys_set_by`:
    SpiffWorkflow's parse of the files, kept for the next check or deploy of the same files."""
    texts = dict(files)
    analysis = _analysis_of(files)
    try:
        specs = [analysis.parser.get_spec(pid), *analysis.parser.get_subprocess_specs(pid).values()]
    except Exception:  # noqa: BLE001 -- the check reports the process's own problem
        return None
    decided = {node.get("name") for root in analysis.trees.values() for node in root.iter()
               if isinstance(node.tag, str) and etree.QName(node).namespace in DMN_NAMESPACES
               and etree.QName(node).localname == "output"}
    names, form_keys = set(), [process_properties(texts, pid).get("startForm")]
    for n, proc_spec in enumerate(specs):
        io = getattr(proc_spec, "io_specification", None)
        if n and io is not None and io.data_outputs:
            names |= {output.bpmn_id for output in io.data_outputs}   # a called process gives back these only
            continue
        for task_spec in proc_spec.task_specs.values():
            sources = [source for _what, source, mode in _scripts_of(task_spec) if mode == "exec"]
            sources += [script for script in (getattr(task_spec, "prescript", None),
                                              getattr(task_spec, "postscript", None)) if isinstance(script, str)]
            for source in sources:
                try:
                    tree = ast.parse(source)
                except SyntaxError:
                    return None   # a problem of its own, which the check reports
                names |= {node.id for node in ast.walk(tree)
                          if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
            if is_user_task(task_spec):
                form_keys.append(user_task_info(task_spec, analysis.parser.camunda_attrs).form_key)
    return frozenset(names | decided), tuple(filter(None, form_keys))


def _missing_elements(filename: str, pid: str, wanted: dict, present: set) -> list[Problem]:
    notes = []
    for element, (figure, figure_zh) in wanted.items():
        if element not in present:
            notes.append(Problem(
                filename, element,
                f"the dashboard counts the element '{element}' of {pid} for {figure}; this version has "
                "no element with that id, so its cases will be missing from that figure",
                "keep the element's id when you change the element (its name may change freely), or "
                "have engine/metrics.py (DASHBOARD_ELEMENTS) read the new one",
                f"统计看板的“{figure_zh}”读取 {pid} 的元素 “{element}”；此版本中没有这个 id，"
                "按此版本运行的案件将不计入该指标",
                "修改该元素时请保留其 id（名称可以随意改），或请开发人员让 engine/metrics.py"
                "（DASHBOARD_ELEMENTS）读取新的元素"))
    return notes


def _check_process(analysis: _Analysis, pid: str, form_keys) -> list[Problem]:
    problems = []
    filename = analysis.process_files.get(pid, "?")
    try:
        spec = analysis.parser.get_spec(pid)
        subprocess_specs = analysis.parser.get_subprocess_specs(pid)
    except Exception as exc:
        return [_problem_from_exception(filename, exc)]
    for proc_spec in [spec, *subprocess_specs.values()]:
        file_of_spec = Path(getattr(proc_spec, "file", "") or filename).name
        for task_spec in proc_spec.task_specs.values():
            problems.extend(_check_scripts(file_of_spec, task_spec))
            if not is_user_task(task_spec):
                continue
            info = user_task_info(task_spec, analysis.parser.camunda_attrs)
            element = info.bpmn_id
            lane = info.effective_lane
            if not lane and not (info.assignee or info.candidate_users):
                problems.append(Problem(file_of_spec, element, f"user task '{info.name}' is in no lane",
                                        "put it in a lane named level.role, e.g. town.center_dispatcher",
                                        f"用户任务“{info.name}”不在任何泳道中",
                                        "请把它放进以“层级.角色”命名的泳道，如 town.center_dispatcher"))
            elif lane:
                problems.extend(_lane_problems(file_of_spec, element, info, lane))
            if form_keys is not None:
                if not info.form_key:
                    problems.append(Problem(file_of_spec, element, f"user task '{info.name}' names no form",
                                            "add a formKey property naming a file in forms/",
                                            f"用户任务“{info.name}”没有指定表单", "请添加 formKey 属性，写 forms/ 中的表单名"))
                elif info.form_key not in form_keys:
                    problems.append(Problem(
                        file_of_spec, element,
                        f"user task '{info.name}' names form '{info.form_key}', which does not exist",
                        f"create forms/{info.form_key}.yaml or correct the formKey",
                        f"用户任务“{info.name}”指定的表单“{info.form_key}”不存在",
                        f"请创建 forms/{info.form_key}.yaml，或修正 formKey"))
    return problems


def _scripts_of(task_spec):
    """(what, source, mode) of every script and expression the engine will run for an element."""
    script = getattr(task_spec, "script", None)
    if isinstance(script, str) and script.strip():
        yield "script", script, "exec"
    for condition, _target in getattr(task_spec, "cond_task_specs", None) or []:
        args = getattr(condition, "args", None)
        if args and isinstance(args[0], str):
            yield "condition", args[0], "eval"
    expression = getattr(getattr(task_spec, "event_definition", None), "expression", None)
    if isinstance(expression, str) and expression.strip():
        yield "timer expression", expression, "eval"


def _lane_problems(file: str, element: str, info, lane: str) -> list[Problem]:
    """Each lane the task names (candidate groups may name several) must name a known role."""
    problems = []
    for part in lane_parts(lane):
        ref = parse_lane(part)
        if (ref is None or ref.role not in ROLES) and not info.lane:
            problems.append(Problem(
                file, element, f"candidate group '{part}' of user task '{info.name}' names no known role",
                "write the group as level.role (e.g. town.center_dispatcher) or as a role name "
                f"(网格员, 乡镇派单员 …); roles: {', '.join(ROLES)}",
                f"用户任务“{info.name}”的候选组“{part}”不是已知角色",
                f"请写成“层级.角色”（如 town.center_dispatcher）或角色名（网格员、乡镇派单员…）；角色：{', '.join(ROLES)}"))
        elif ref is None or ref.role not in ROLES:
            problems.append(Problem(
                file, element, f"lane '{part}' of user task '{info.name}' names no known role",
                f"name the lane level.role with a role from: {', '.join(ROLES)}",
                f"用户任务“{info.name}”的泳道“{part}”不是已知角色",
                f"泳道请命名为“层级.角色”，角色可选：{', '.join(ROLES)}"))
        elif ref.dept_type and ref.dept_type not in DEPT_TYPES:
            problems.append(Problem(
                file, element,
                f"lane '{part}' of user task '{info.name}' names unknown department type '{ref.dept_type}'",
                f"use one of: {', '.join(DEPT_TYPES)}",
                f"用户任务“{info.name}”的泳道“{part}”中的部门类型“{ref.dept_type}”未知",
                f"可选：{', '.join(DEPT_TYPES)}"))
        elif ref.level and ref.level not in LEVELS:
            problems.append(Problem(
                file, element, f"lane '{part}' of user task '{info.name}' names unknown level '{ref.level}'",
                f"use one of: {', '.join(LEVELS)}",
                f"用户任务“{info.name}”的泳道“{part}”中的层级“{ref.level}”未知", f"可选：{', '.join(LEVELS)}"))
    return problems


_WHAT_ZH = {"script": "脚本", "condition": "条件", "timer expression": "定时表达式"}


def _check_scripts(filename: str, task_spec) -> list[Problem]:
    """Scripts and expressions run in the sandbox (engine/sandbox.py): refuse at deploy
    what it would refuse at run time."""
    found = []
    for what, source, mode in _scripts_of(task_spec):
        why = check_source(source.strip(), mode)
        if why:
            found.append(Problem(filename, task_spec.bpmn_id or task_spec.name,
                                 f"{what} '{source.strip()[:60]}' is not allowed: {why}",
                                 "process scripts may use task data, literals and simple built-ins only "
                                 "(no import, open, eval, or names starting with _)",
                                 f"{_WHAT_ZH.get(what, what)}“{source.strip()[:60]}”不允许运行：{why}",
                                 "流程脚本只能使用任务数据、常量和简单的内置函数（不能 import、open、eval，名称不能以 _ 开头）"))
    return found


def _children(node, local: str) -> list:
    return [c for c in node if _local(c) == local]


def _child(node, local: str):
    return next(iter(_children(node, local)), None)


def _text_of(node) -> str:
    """The expression in an element's <text>, stripped ('' when there is none)."""
    text = _child(node, "text") if node is not None else None
    return (text.text or "").strip() if text is not None else ""


# `?` outside quotes stands for the input's value (SpiffWorkflow's DMNEngine.evaluate)
_DMN_INPUT_MARK = re.compile(r'(\?)(?=(?:[^\'"]|[\'"][^\'"]*[\'"])*$)')


def _input_test(input_expression: str, entry: str) -> tuple[str, str | None]:
    """The expression SpiffWorkflow's DMN engine evaluates for one input cell, and why it
    cannot be parsed (None when it can): `?` stands for the input's value, a cell that
    parses alone is compared with ==, one that parses after a value (`> 5`, `in [...]`)
    is appended to the input expression."""
    marked = _DMN_INPUT_MARK.sub("dmninputexpr", entry)
    if "dmninputexpr" in marked:
        return marked, None
    for candidate, test in ((entry, f"({input_expression}) == ({entry})"),
                            (f"v {entry}", f"{input_expression} {entry}")):
        try:
            SCRIPT_ENGINE.validate(candidate)   # the very check DMNEngine.needs_eq makes at run time
        except SyntaxError:
            continue
        return test, None
    try:
        ast.parse(entry, mode="eval")
    except SyntaxError as exc:
        return "", f"syntax error: {exc.msg}"
    return "", "not a value or a comparison"


def _check_decision_tables(filename: str, root) -> list[Problem]:
    """Every expression of every decision table, checked as the DMN engine will run it in
    the sandbox: the input expressions, each rule's input cells (tests) and output cells.
    SpiffWorkflow itself only parses output cells, and only when a process first uses the
    decision; a broken cell would otherwise fail the case that reaches it."""
    problems = []
    for decision in root.iter():
        if _local(decision) != "decision":
            continue
        table = _child(decision, "decisionTable")
        if table is None:
            continue
        label = decision.get("name") or decision.get("id") or "?"
        inputs, outputs = _children(table, "input"), _children(table, "output")
        input_expressions = []
        for column in inputs:
            name = column.get("label") or column.get("id") or "?"
            holder = _child(column, "inputExpression")
            expression = _text_of(holder)
            element = (holder.get("id") if holder is not None else None) or column.get("id") or ""
            why = check_source(expression, "eval") if expression else "it has no expression"
            if why:
                problems.append(Problem(
                    filename, element, f"decision '{label}', input '{name}': {why}",
                    "give the input column the case field or expression it tests, e.g. colour",
                    f"决策“{label}”的输入“{name}”：{'没有表达式' if not expression else why}",
                    "请为输入列填写它检查的案件字段或表达式，如 colour"))
            input_expressions.append(expression if not why else None)
        rules = _children(table, "rule")
        for row, rule in enumerate(rules, start=1):
            for cell, column, expression in zip(_children(rule, "inputEntry"), inputs, input_expressions):
                entry = _text_of(cell)
                if not entry or entry == "-" or expression is None:
                    continue
                test, why = _input_test(expression, entry)
                why = why or check_source(test, "eval")
                if why:
                    name = column.get("label") or column.get("id") or "?"
                    problems.append(Problem(
                        filename, cell.get("id") or rule.get("id") or "",
                        f"decision '{label}', rule {row}, input '{name}': test '{entry[:60]}' is not valid: {why}",
                        'write a value ("red"), a comparison (> 3, in ["a", "b"]), a test on ? (? > 3 and ? < 9), '
                        "or - for any value",
                        f"决策“{label}”第 {row} 条规则，输入“{name}”：条件“{entry[:60]}”无效：{why}",
                        '请写一个值（"red"）、一个比较（> 3、in ["a", "b"]）、对 ? 的条件（? > 3 and ? < 9），'
                        "或用 - 表示任意值"))
            for cell, column in zip(_children(rule, "outputEntry"), outputs):
                value = _text_of(cell)
                why = check_source(value, "eval") if value else None
                unknown = _unknown_department(column, value) if not why else None
                if unknown is not None:
                    # the lanes of department tasks read `department`: an unknown type would
                    # leave every such task without a holder (sent up to the dispatchers)
                    problems.append(Problem(
                        filename, cell.get("id") or rule.get("id") or "",
                        f"decision '{label}', rule {row}, output 'department': '{unknown}' is no department type",
                        f"use one of: {', '.join(DEPT_TYPES)}",
                        f"决策“{label}”第 {row} 条规则，输出“department”：“{unknown}”不是部门类型",
                        f"可选：{', '.join(DEPT_TYPES)}"))
                if why:
                    name = column.get("label") or column.get("name") or column.get("id") or "?"
                    problems.append(Problem(
                        filename, cell.get("id") or rule.get("id") or "",
                        f"decision '{label}', rule {row}, output '{name}': '{value[:60]}' is not valid: {why}",
                        'write the output as a value ("town", 3) or an expression of the case\'s fields',
                        f"决策“{label}”第 {row} 条规则，输出“{name}”：“{value[:60]}”无效：{why}",
                        '输出请写成一个值（"town"、3）或案件字段的表达式'))
    return problems


def _unknown_department(column, value: str | None) -> str | None:
    """The department type an output cell named `department` gives, if it is a plain value
    and not one of DEPT_TYPES (an expression is not judged)."""
    if column.get("name") != "department" or not value:
        return None
    try:
        given = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return None
    return given if isinstance(given, str) and given and given not in DEPT_TYPES else None


# Start events of event subprocesses that SpiffWorkflow 3.2 parses as plain (none) starts:
# such a subprocess would run at once when the case starts instead of on the event.
_UNSUPPORTED_EVENT_SUBPROCESS_STARTS = {"errorEventDefinition": "an error",
                                        "escalationEventDefinition": "an escalation",
                                        "compensateEventDefinition": "a compensation"}


_KIND_ZH = {"an error": "错误", "an escalation": "升级", "a compensation": "补偿"}


def _check_event_subprocess_starts(filename: str, root) -> list[Problem]:
    problems = []
    for sub in root.iter():
        if _local(sub) != "subProcess" or sub.get("triggeredByEvent") != "true":
            continue
        for start in sub:
            if _local(start) != "startEvent":
                continue
            for definition in start:
                kind = _UNSUPPORTED_EVENT_SUBPROCESS_STARTS.get(_local(definition))
                if kind:
                    problems.append(Problem(
                        filename, start.get("id") or sub.get("id") or "?",
                        f"event subprocess '{sub.get('name') or sub.get('id')}' starts on {kind} event, which "
                        "the engine cannot wait for: the subprocess would run as soon as the case starts",
                        f"catch {kind.split()[1]}s with a boundary event on the activity that raises them, or start the "
                        "event subprocess with a message, signal or timer",
                        f"事件子流程“{sub.get('name') or sub.get('id')}”由{_KIND_ZH[kind]}事件启动，引擎无法等待这种事件："
                        "案件一开始它就会运行",
                        f"请在引发{_KIND_ZH[kind]}的活动上用边界事件捕获，或改用消息、信号或定时器启动该事件子流程"))
    return problems


def _check_reachability(filename: str, root) -> list[Problem]:
    """Flow nodes no path from a start event reaches (per process / subprocess)."""
    problems = []
    containers = [n for n in root.iter() if _local(n) in ("process", "subProcess", "transaction", "adHocSubProcess")]
    for container in containers:
        if _local(container) == "adHocSubProcess":
            continue
        nodes = {c.get("id"): c for c in container if _local(c) in FLOW_NODE_TAGS and c.get("id")}
        if not nodes:
            continue
        edges = defaultdict(list)
        for flow in container:
            if _local(flow) == "sequenceFlow":
                edges[flow.get("sourceRef")].append(flow.get("targetRef"))
        boundary = defaultdict(list)
        for nid, node in nodes.items():
            if _local(node) == "boundaryEvent":
                boundary[node.get("attachedToRef")].append(nid)
        has_incoming = {t for targets in edges.values() for t in targets}
        roots = [nid for nid, n in nodes.items()
                 if _local(n) == "startEvent"
                 or (_local(n) == "subProcess" and n.get("triggeredByEvent") == "true")]
        if not roots:
            # no start event: BPMN starts every node without incoming flow
            roots = [nid for nid, n in nodes.items() if nid not in has_incoming and _local(n) != "boundaryEvent"]
        # link events connect throw -> catch by name
        catches_by_link = defaultdict(list)
        throws_link = {}
        for nid, n in nodes.items():
            for ed in n:
                if _local(ed) == "linkEventDefinition":
                    if _local(n) == "intermediateCatchEvent":
                        catches_by_link[ed.get("name")].append(nid)
                    elif _local(n) == "intermediateThrowEvent":
                        throws_link[nid] = ed.get("name")
        seen, stack = set(), list(roots)
        while stack:
            nid = stack.pop()
            if nid in seen:
                continue
            seen.add(nid)
            stack.extend(edges.get(nid, []))
            stack.extend(boundary.get(nid, []))
            if nid in throws_link:
                stack.extend(catches_by_link.get(throws_link[nid], []))
        for nid, node in nodes.items():
            # compensation handlers are reached through associations, not sequence flows
            if nid not in seen and node.get("isForCompensation") != "true":
                label = node.get("name") or nid
                problems.append(Problem(filename, nid, f"{_local(node)} '{label}' can never be reached",
                                        "connect it with a sequence flow from the path, or delete it",
                                        f"{_local(node)}“{label}”永远不会被执行到", "请用顺序流把它连到流程路径上，或删除它"))
    return problems


def _closure_files(analysis: _Analysis, pid: str, files: dict[str, str]) -> dict[str, str]:
    """The files process `pid` needs: its own, its called processes', and the DMN it calls."""
    needed = {analysis.process_files[pid]}
    for sub_id in analysis.parser.get_subprocess_specs(pid):
        if sub_id in analysis.process_files:
            needed.add(analysis.process_files[sub_id])
    decision_ids = set()
    for name in list(needed):
        root = analysis.trees[name]
        for node in root.iter(_q(SPIFF_NS, "calledDecisionId")):
            if node.text:
                decision_ids.add(node.text.strip())
        for node in root.iter():
            ref = node.get(_q(CAMUNDA_NS, "decisionRef")) if isinstance(node.tag, str) else None
            if ref:
                decision_ids.add(ref)
    for did in decision_ids:
        if did in analysis.decision_files:
            needed.add(analysis.decision_files[did])
    return {name: files[name] for name in sorted(needed)}


def content_hash(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode("utf-8") + b"\0" + files[name].encode("utf-8") + b"\0")
    return h.hexdigest()


@dataclass
class DeployResult:
    created: list[ProcessVersion]
    unchanged: list[str]
    notes: list[Problem] = field(default_factory=list)   # `version_notes` of the new versions


def deploy_files(session: Session, files: dict[str, str], form_keys: set[str] | None = None,
                 actor: str | None = None, forms=None, with_notes: bool = True) -> DeployResult:
    """Validate `files` and store a new version of each process they change (DeployError
    and nothing stored if any problem). `forms`: the forms in use, by key, for the
    notes (the shipped ones if not given); `with_notes=False` for a caller
    that noted the files already (the designer's check)."""
    problems = validate_files(files, form_keys)
    if problems:
        raise DeployError(problems)
    analysis = _analyse(files)
    created, unchanged = [], []
    for pid in sorted(analysis.executable):
        needed = _closure_files(analysis, pid, files)
        digest = content_hash(needed)
        existing = session.scalar(select(ProcessVersion).where(
            ProcessVersion.process_key == pid, ProcessVersion.content_hash == digest))
        if existing is not None:
            unchanged.append(pid)
            continue
        latest = session.scalar(select(func.max(ProcessVersion.version)).where(ProcessVersion.process_key == pid)) or 0
        spec = analysis.parser.get_spec(pid)
        version = ProcessVersion(
            process_key=pid, version=latest + 1, name=spec.description or pid,
            content_hash=digest, files=needed, properties=process_properties(needed, pid),
            deployed_at=clock.now(), deployed_by=actor)
        session.add(version)
        created.append(version)
    session.flush()
    notes = version_notes(files, {v.process_key for v in created}, forms) if created and with_notes else []
    return DeployResult(created, unchanged, notes)
