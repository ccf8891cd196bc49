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
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from lxml import etree
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (CycleTimerEventDefinition, DurationTimerEventDefinition,
                                                               TimeDateEventDefinition, TimerEventDefinition)
from sqlalchemy import select
from sqlalchemy.orm import Session

from . import clock
from .bpmn import (BPMN_NS, CamundaAwareParser, data_key, element_properties, is_dmn, is_user_task, lane_parts, parse_lane,
                   process_properties, user_task_info)
from .models import BUSINESS_KEY_PREFIX, DEPT_TYPES, LEVELS, ROLES, WORKING_ROLES, ProcessVersion, User
from .sandbox import SCRIPT_ENGINE, check_source

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
    _flow_ids: dict = field(default_factory=dict, repr=False)

    def flow_ids(self, filename: str) -> dict:
        """(sourceRef, targetRef) -> sequence flow id of a file: built once per file, not once per
        process spec of it (a file's subprocesses and called processes are each a spec)."""
        if filename not in self._flow_ids:
            tree = self.trees.get(filename)
            self._flow_ids[filename] = {(f.get("sourceRef"), f.get("targetRef")): f.get("id")
                               for f in tree.iter(f"{{{BPMN_NS}}}sequenceFlow")} if tree is not None else {}
        return self._flow_ids[filename]


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
        duplicates = _duplicate_ids(name, root)
        if duplicates:   # SpiffWorkflow would name one of them, or another element, in its own words
            problems.extend(duplicates)
            continue
        try:
            if is_dmn(name) or etree.QName(root).namespace in DMN_NAMESPACES:
                if etree.QName(root).namespace not in DMN_NAMESPACES:
                    problems.append(Problem(name, "", "a .dmn file must contain a DMN <definitions> element",
                                            "save the decision table from a DMN modeler, or give a BPMN file the .bpmn ending",
                                            "DMN 文件的根元素须为 DMN 的 <definitions>",
                                            "请用 DMN 建模器保存决策表；BPMN 文件请用 .bpmn 扩展名"))
                    continue
                before = set(parser.dmn_parsers)
                parser.add_dmn_xml(root, filename=name)
                for did in set(parser.dmn_parsers) - before:
                    decision_files[did] = name
            else:
                if etree.QName(root).namespace != BPMN_NS or _local(root) != "definitions":
                    problems.append(Problem(name, "", "not a BPMN 2.0 file: the root must be bpmn:definitions",
                                            "export the diagram as BPMN 2.0 XML from the modeler",
                                            "不是 BPMN 2.0 文件：根元素须为 bpmn:definitions",
                                            "请在建模器中把流程图导出为 BPMN 2.0 XML"))
                    continue
                dangling = _dangling_flows(name, root)
                if dangling:   # SpiffWorkflow would call it "two items, perhaps a form has the same ID?"
                    problems.extend(dangling)
                    continue
                before = set(parser.process_parsers)
                parser.add_bpmn_xml(root, filename=name)
                for pid in set(parser.process_parsers) - before:
                    process_files[pid] = name
        except Exception as exc:  # any parser failure is a finding about this file, never a crash
            problems.append(_problem_from_exception(name, exc, root))
    executable = [pid for pid, pp in parser.process_parsers.items()
                  if pp.process_executable and pid in process_files]
    return _Analysis(parser, trees, process_files, decision_files, executable, problems)


def _dangling_flows(filename: str, root) -> list[Problem]:
    """A sequence flow whose source or target is no element of its process."""
    problems = []
    for process in root.iter(f"{{{BPMN_NS}}}process", f"{{{BPMN_NS}}}subProcess", f"{{{BPMN_NS}}}transaction",
                             f"{{{BPMN_NS}}}adHocSubProcess"):
        ids = {child.get("id") for child in process if isinstance(child.tag, str) and child.get("id")}
        for flow in process:
            if not (isinstance(flow.tag, str) and _local(flow) == "sequenceFlow"):
                continue
            for end, end_zh in (("sourceRef", "起点"), ("targetRef", "终点")):
                ref = flow.get(end)
                if ref not in ids:
                    problems.append(Problem(
                        filename, flow.get("id") or "",
                        f"sequence flow '{flow.get('id')}' leads {'from' if end == 'sourceRef' else 'to'} "
                        f"'{ref}', which is no element of its process",
                        "connect the flow to an element in the modeler, or delete it",
                        f"顺序流“{flow.get('id')}”的{end_zh}“{ref}”不是本流程中的元素", "请在建模器中把该顺序流连到元素上，或删除它"))
    return problems


# The ids bpmn-js and dmn-js read (moddle-xml's check, "illegal ID <…>"): anything else
# (帮扶, 1st_check, {guid}) SpiffWorkflow runs, but the modeler and the case page's diagram
# leave the element out, and saving the file in the modeler loses it.
DIAGRAM_ID = re.compile(r"([A-Za-z][\w.-]*:)?[A-Za-z_][\w.-]*", re.ASCII)


def _unreadable_ids(filename: str, root) -> list[Problem]:
    """One problem per element whose id the designer's modeler (bpmn-js, dmn-js) cannot read."""
    problems = []
    for element in root.iter():
        element_id = element.get("id") if isinstance(element.tag, str) else None
        if element_id is None or DIAGRAM_ID.fullmatch(element_id):
            continue
        kind, name = _local(element), " ".join((element.get("name") or "").split())
        what = f"{kind} '{name}'" if name else kind
        what_zh = f"{_ELEMENT_KINDS_ZH.get(kind, kind)}“{name}”" if name else _ELEMENT_KINDS_ZH.get(kind, kind)
        problems.append(Problem(
            filename, element_id,
            f"the id '{element_id}' of {what} is not one the modeler can read (English letters, digits, _ - . "
            "starting with a letter or _): the modeler and the case page's diagram leave the element out, "
            "and saving the file in the modeler would lose it",
            "give it an id such as visit_help, and change what refers to it (flows, lanes, the diagram's "
            "bpmnElement) to the new id",
            f"{what_zh}的编号“{element_id}”建模器无法读取（编号须以英文字母或下划线开头，只含英文字母、数字和 _ - .）："
            "建模器和案件页的流程图会缺少该元素，在建模器中保存会丢失它",
            "请改用 visit_help 这样的编号，并把引用它的顺序流、泳道和图形（bpmnElement）一并改为新编号"))
    return problems


def _duplicate_ids(filename: str, root) -> list[Problem]:
    """One problem per id that more than one element of the file carries, naming them all."""
    holders: dict[str, list] = {}
    for element in root.iter():
        if isinstance(element.tag, str) and element.get("id"):
            holders.setdefault(element.get("id"), []).append(element)
    problems = []
    for element_id, elements in holders.items():
        if len(elements) < 2:
            continue
        named = [(_local(e), (e.get("name") or "").strip()) for e in elements]
        en = ", ".join(f"{kind} '{name}'" if name else kind for kind, name in named)
        zh = "、".join(f"{_ELEMENT_KINDS_ZH.get(kind, kind)}“{name}”" if name else _ELEMENT_KINDS_ZH.get(kind, kind)
                      for kind, name in named)
        problems.append(Problem(
            filename, element_id, f"the id '{element_id}' is carried by {len(elements)} elements ({en}); "
            "every element needs an id of its own", "give all but one of them a new id in the modeler's properties",
            f"标识“{element_id}”被 {len(elements)} 个元素同时使用（{zh}），每个元素须有自己的标识",
            "请在建模器的属性中为其余元素改用新的标识"))
    return problems


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
    ("outgoing sequence flow without condition",
     "give the flow a condition, or make it the gateway's default flow",
     "请为该顺序流填写条件，或把它设为网关的默认流"),
)


def _problem_from_exception(filename: str, exc: Exception, root=None) -> Problem:
    element = getattr(exc, "id", "") or ""
    file_name = getattr(exc, "file_name", "") or filename
    line = getattr(exc, "line_number", "")
    # a name with a line break in it cut the message at the break: the whole message, on one line
    msg = " ".join(str(exc).split()) if str(exc) else exc.__class__.__name__
    missing = re.search(r"The process '([^']+)' was not found", msg)
    if missing and not element and root is not None:   # name the call activity that calls it
        element = next((c.get("id") for c in root.iter(f"{{{BPMN_NS}}}callActivity")
                        if c.get("calledElement") == missing.group(1)), "") or ""
    store = re.search(r"Data Store with name (.+) has no implementation", msg)
    if store and not element and root is not None:     # name the data store the designer must remove
        element = next((d.get("id") for d in root.iter(f"{{{BPMN_NS}}}dataStoreReference", f"{{{BPMN_NS}}}dataStore")
                        if " ".join((d.get("name") or "").split()) == store.group(1)), "") or ""
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
        problems.extend(_unreadable_ids(name, root))
        if etree.QName(root).namespace in DMN_NAMESPACES:
            cells = _check_decision_tables(name, root)
            named = {(p.file, p.element) for p in cells}
            # ours name the rule and the column: the parser's English line on the same cell is dropped
            problems = [p for p in problems if (p.file, p.element) not in named]
            problems.extend(cells)
        elif not is_dmn(name):
            problems.extend(_check_reachability(name, root))
            problems.extend(_check_event_subprocess_starts(name, root))
    return unique_problems(problems)


# SpiffWorkflow ends some messages with what the checked file set offers instead
# ("…, Available DMN ids are: a, b."): the list depends on the set, not on the fault
_AVAILABLE = re.compile(r"^(?P<head>.*\bAvailable [^:]*:)\s*(?P<items>[^:]*?)\.?$")


def unique_problems(problems) -> list[Problem]:
    """One problem per file, element and cause, in the order first found. A file checked in
    several file sets (a called process with each deployed caller, `Designer._check`) gives
    the same fault once per set; where the parser's message lists what the set offers, the
    messages differ only in that list, and the one problem kept lists the ids every set
    offers (those that would mend it everywhere), or, when no id is in all, every id."""
    order, found = [], {}
    for p in problems:
        match = _AVAILABLE.match(p.message)
        key = (p.file, p.element, match.group("head") if match else p.message, p.fix)
        if key not in found:
            order.append(key)
            found[key] = [p, [_split_ids(match.group("items"))] if match else []]
        elif match:
            found[key][1].append(_split_ids(match.group("items")))
    unique = []
    for key in order:
        first, lists = found[key]
        if len(lists) > 1 and any(ids != lists[0] for ids in lists):
            common = set.intersection(*map(set, lists)) or set().union(*lists)
            message = f"{key[2]} {', '.join(sorted(common))}."
            first = replace(first, message=message,
                            zh=first.zh.replace(first.message, message) if first.zh else first.zh)
        unique.append(first)
    return unique


def _split_ids(items: str) -> list[str]:
    return [i.strip() for i in items.split(",") if i.strip()]


def _check_process(analysis: _Analysis, pid: str, form_keys) -> list[Problem]:
    problems = []
    filename = analysis.process_files.get(pid, "?")
    try:
        spec = analysis.parser.get_spec(pid)
        subprocess_specs = analysis.parser.get_subprocess_specs(pid)
    except Exception as exc:
        return [_problem_from_exception(filename, exc, analysis.trees.get(filename))]
    root = analysis.trees.get(filename)
    for proc in root.iter(f"{{{BPMN_NS}}}process") if root is not None else ():
        if proc.get("id") == pid:
            problems.extend(_start_problems(filename, pid, element_properties(proc), form_keys))
    for proc_spec in [spec, *subprocess_specs.values()]:
        file_of_spec = Path(getattr(proc_spec, "file", "") or filename).name
        flows = analysis.flow_ids(file_of_spec)
        for task_spec in proc_spec.task_specs.values():
            problems.extend(_check_scripts(file_of_spec, task_spec, flows, proc_spec.task_specs))
            problems.extend(_timer_problems(file_of_spec, task_spec))
            if not is_user_task(task_spec):
                problems.extend(_waiting_task_problems(file_of_spec, task_spec))
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
            problems.extend(_due_problems(file_of_spec, element, info))
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


def _waiting_task_problems(filename: str, task_spec) -> list[Problem]:
    """A plain task (what a modeler's palette draws) or a manual task: SpiffWorkflow waits for
    someone to complete it, but it is no user task, so nobody is given it and every case
    that reaches it stops there for good."""
    if not getattr(task_spec, "manual", False):
        return []
    manual = "Manual" in type(task_spec).__name__
    kind, kind_zh = ("manual task", "人工任务") if manual else ("task", "任务")
    label = task_spec.bpmn_name or task_spec.bpmn_id
    return [Problem(filename, task_spec.bpmn_id or task_spec.name,
                    f"{kind} '{label}' is given to nobody: a case reaching it would wait there for good",
                    "make it a user task (with a lane and a form) for an official to work, or a script task "
                    "for the engine to run",
                    f"{kind_zh}“{label}”不会交给任何人办理：运行到这里的案件会一直停住",
                    "请改为用户任务（设置泳道和表单）由工作人员办理，或改为脚本任务由系统执行")]


def _scripts_of(task_spec):
    """(what, source, mode, target) of every script and expression the engine will run for an
    element; `target` is the task spec a condition's flow leads to (None for the others)."""
    script = getattr(task_spec, "script", None)
    if isinstance(script, str) and script.strip():
        yield "script", script, "exec", None
    for condition, target in getattr(task_spec, "cond_task_specs", None) or []:
        args = getattr(condition, "args", None)
        if args and isinstance(args[0], str):
            yield "condition", args[0], "eval", target
    expression = getattr(getattr(task_spec, "event_definition", None), "expression", None)
    if isinstance(expression, str) and expression.strip():
        yield "timer expression", expression, "eval", None


def _start_problems(file: str, pid: str, props: dict, form_keys) -> list[Problem]:
    """The process's own properties, each of which would fail every start, or hide the process
    from everyone, without a word: the start form, the roles that may start it, the prefix of
    its case numbers (searched for in capitals)."""
    problems = []
    form = (props.get("startForm") or "").strip()
    if form and form_keys is not None and form not in form_keys:
        problems.append(Problem(file, pid, f"start form '{form}' of process '{pid}' does not exist",
                                f"create forms/{form}.yaml or correct the startForm property",
                                f"流程“{pid}”的发起表单“{form}”不存在", f"请创建 forms/{form}.yaml，或修正 startForm 属性"))
    for role in (r.strip() for r in (props.get("startRoles") or "").split(",")):
        if role and role not in ROLES:
            problems.append(Problem(file, pid, f"start role '{role}' of process '{pid}' is not a known role: "
                                    "nobody could start the process", f"use roles from: {', '.join(WORKING_ROLES)}",
                                    f"流程“{pid}”的发起岗位“{role}”不是已知角色，没有人能发起此流程",
                                    f"角色可选：{', '.join(WORKING_ROLES)}"))
        elif role == "auditor":
            problems.append(Problem(file, pid, f"start role 'auditor' of process '{pid}': auditors only read cases, "
                                    "they cannot start one", f"use roles from: {', '.join(WORKING_ROLES)}",
                                    f"流程“{pid}”的发起岗位为督查：督查人员只能查看案件，不能发起",
                                    f"角色可选：{', '.join(WORKING_ROLES)}"))
    prefix = props.get("businessKeyPrefix")
    if prefix and not BUSINESS_KEY_PREFIX.fullmatch(prefix):
        problems.append(Problem(file, pid, f"case number prefix '{prefix}' of process '{pid}' is not 1-8 capital "
                                "letters or digits starting with a letter (case numbers are searched in capitals)",
                                "write it like LX or XF", f"流程“{pid}”的案件编号前缀“{prefix}”须为以字母开头的 1-8 位大写字母或数字",
                                "请写成 LX、XF 这样的前缀"))
    return problems


def _due_problems(file: str, element: str, info) -> list[Problem]:
    """A `dueDate` the engine cannot read leaves every such task without a time limit, silently
    (`service._due_at`): an ISO 8601 duration, a date, a data name or an expression over the
    case data, as `_due_at` reads them."""
    text = data_key(info.due or "")
    looks_like_duration = re.match(r"[Pp][Tt]?\d", text) is not None   # P3D, PT12H; not petition_days
    if not text or (text.isidentifier() and not looks_like_duration):
        return []   # none, or the name of a data field (days or a date)
    if looks_like_duration or text.upper().startswith("P"):
        what, detail = "an ISO 8601 duration", _iso_duration_error(text)
    elif text[:1].isdigit():
        what, detail = "a date", _iso_date_error(text)
    else:
        what, detail = "an expression", _syntax_error(text)
    if detail is None:
        return []
    return [Problem(
        file, element, f"time limit (dueDate) '{info.due}' of user task '{info.name}' is not {what} the engine "
        f"can read ({detail}): its tasks would have no due date",
        "write a duration such as P3D or PT12H, a date such as 2026-12-01T18:00:00+08:00, the name of a case "
        "data field holding days or a date, or an expression over the case data",
        f"用户任务“{info.name}”的办理时限（dueDate）“{info.due}”无法识别（{detail}），此类任务将没有办理期限",
        "请写成时长（如 P3D、PT12H）、日期（如 2026-12-01T18:00:00+08:00）、存放天数或日期的案件数据名称，或基于案件数据的表达式")]


def _iso_duration_error(text: str) -> str | None:
    try:
        TimerEventDefinition.parse_iso_duration(text)
    except Exception as exc:  # noqa: BLE001 -- whatever it says is the detail
        return str(exc) or "not ISO 8601"
    return None


def _iso_date_error(text: str) -> str | None:
    try:
        datetime.fromisoformat(text)
    except ValueError as exc:
        return str(exc)
    return None


def _syntax_error(text: str) -> str | None:
    try:
        ast.parse(text, mode="eval")
    except SyntaxError as exc:
        return exc.msg
    return None


def _lane_problems(file: str, element: str, info, lane: str) -> list[Problem]:
    """Each lane the task names (candidate groups may name several) must name a known role."""
    problems = []
    # without a lane the task's candidate groups stand for it: the messages name what the designer wrote
    what, what_zh = ("lane", "泳道") if info.lane else ("candidate group", "候选组")
    for part in lane_parts(lane):
        ref = parse_lane(part)
        if (ref is None or ref.role not in ROLES) and not info.lane:
            problems.append(Problem(
                file, element, f"candidate group '{part}' of user task '{info.name}' names no known role",
                "write the group as level.role (e.g. town.center_dispatcher) or as a role name "
                f"(网格员, 乡镇派单员 …); roles that work tasks: {', '.join(WORKING_ROLES)}",
                f"用户任务“{info.name}”的候选组“{part}”不是已知角色",
                f"请写成“层级.角色”（如 town.center_dispatcher）或角色名（网格员、乡镇派单员…）；"
                f"办理任务的角色：{', '.join(WORKING_ROLES)}"))
        elif ref is None or ref.role not in ROLES:
            problems.append(Problem(
                file, element, f"lane '{part}' of user task '{info.name}' names no known role",
                f"name the lane level.role with a role from: {', '.join(WORKING_ROLES)}",
                f"用户任务“{info.name}”的泳道“{part}”不是已知角色",
                f"泳道请命名为“层级.角色”，角色可选：{', '.join(WORKING_ROLES)}"))
        elif ref.role not in WORKING_ROLES:
            problems.append(Problem(
                file, element, f"{what} '{part}' of user task '{info.name}' names the role {ref.role}, whose holders "
                "work no tasks (auditors only read; designers and administrators keep the workbench and the "
                "organisation): nobody could work the task",
                f"name a role that works tasks: {', '.join(WORKING_ROLES)}",
                f"用户任务“{info.name}”的{what_zh}“{part}”的角色 {ref.role} 不办理任务（督查只能查看，流程设计员和管理员"
                "负责流程与组织），没有人能办理此任务",
                f"请选择办理任务的角色：{', '.join(WORKING_ROLES)}"))
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
# BPMN element kinds as the Chinese messages name them
_ELEMENT_KINDS_ZH = {
    "userTask": "用户任务", "task": "任务", "scriptTask": "脚本任务", "serviceTask": "服务任务",
    "businessRuleTask": "业务规则任务", "manualTask": "人工任务", "sendTask": "发送任务", "receiveTask": "接收任务",
    "callActivity": "调用活动", "subProcess": "子流程", "transaction": "事务子流程",
    "exclusiveGateway": "排他网关", "parallelGateway": "并行网关", "inclusiveGateway": "包容网关",
    "eventBasedGateway": "事件网关", "complexGateway": "复杂网关", "startEvent": "开始事件", "endEvent": "结束事件",
    "intermediateCatchEvent": "中间捕获事件", "intermediateThrowEvent": "中间抛出事件", "boundaryEvent": "边界事件",
    "sequenceFlow": "顺序流", "messageFlow": "消息流", "lane": "泳道", "laneSet": "泳道集", "participant": "参与者（池）",
    "process": "流程", "collaboration": "协作", "dataObject": "数据对象", "dataObjectReference": "数据对象引用",
    "dataStoreReference": "数据存储引用", "textAnnotation": "文本注释", "association": "关联", "group": "组",
    "message": "消息", "signal": "信号", "error": "错误", "escalation": "升级",
    # DMN
    "decision": "决策", "decisionTable": "决策表", "rule": "规则", "input": "输入", "output": "输出",
    "inputEntry": "输入单元格", "outputEntry": "输出单元格", "inputExpression": "输入表达式",
}


def _check_scripts(filename: str, task_spec, flows: dict | None = None, specs: dict | None = None) -> list[Problem]:
    """Scripts and expressions run in the sandbox (engine/sandbox.py): refuse at deploy
    what it would refuse at run time. A condition's problem names its sequence flow (from
    `flows`: (source id, target id) -> flow id; `specs`: the process's task specs by name),
    where the designer writes it."""
    found = []
    for what, source, mode, target in _scripts_of(task_spec):
        why = check_source(source.strip(), mode)
        if not why:
            continue
        element = task_spec.bpmn_id or task_spec.name
        if target is not None and flows and specs:
            target_spec = specs.get(target)
            # a task with boundary events is entered through SpiffWorkflow's own split (no BPMN id)
            while target_spec is not None and target_spec.bpmn_id is None and target_spec.outputs:
                target_spec = target_spec.outputs[0]
            element = flows.get((task_spec.bpmn_id, getattr(target_spec, "bpmn_id", None)), element)
        if why.startswith("syntax error") or "SyntaxError" in why:
            found.append(Problem(filename, element,
                                 f"{what} '{source.strip()[:60]}' cannot be read: {why}",
                                 "correct it as a Python expression or script: == to compare, quotes around text, "
                                 "and/or/not between tests (e.g. visit_outcome == \"needs_help\")",
                                 f"{_WHAT_ZH.get(what, what)}“{source.strip()[:60]}”有语法错误：{why}",
                                 "请按 Python 写法改正：比较用 ==，文字加引号，多个条件用 and/or/not 连接"
                                 "（如 visit_outcome == \"needs_help\"）"))
        else:
            found.append(Problem(filename, element,
                                 f"{what} '{source.strip()[:60]}' is not allowed: {why}",
                                 "process scripts may use task data, literals and simple built-ins only "
                                 "(no import, open, eval, or names starting with _)",
                                 f"{_WHAT_ZH.get(what, what)}“{source.strip()[:60]}”不允许运行：{why}",
                                 "流程脚本只能使用任务数据、常量和简单的内置函数（不能 import、open、eval，名称不能以 _ 开头）"))
    return found


# a duration, cycle or date and time written as plain text (P7D, R/P1D, 2026-12-01T09:00:00+08:00)
ISO_8601_TEXT = re.compile(r"(R\d*/)?(P[0-9YMWDTHS.,]+|\d{4}-\d\d-\d\d[0-9T:.+\-Z]*)(/P[0-9YMWDTHS.,]+)?")

# what each kind of timer reads its text as, as SpiffWorkflow parses it when a case gets there
_TIMER_KINDS = {
    DurationTimerEventDefinition: (TimerEventDefinition.parse_iso_duration, "an ISO 8601 duration",
                                   "P3D, PT4H", "ISO 8601 时长"),
    CycleTimerEventDefinition: (TimerEventDefinition.parse_iso_recurring_interval, "an ISO 8601 cycle",
                                "R/P1D, R3/PT12H", "ISO 8601 周期"),
    TimeDateEventDefinition: (TimerEventDefinition.parse_time_or_duration, "an ISO 8601 date and time",
                              "2026-12-01T09:00:00+08:00", "ISO 8601 日期时间"),
}


def _timer_problems(filename: str, task_spec) -> list[Problem]:
    """A timer written as text (a quoted literal) that its kind cannot read, or a timer with
    no expression at all: the first case that reaches it stops with an error. An expression
    over case data (f"P{grid_days}D") is judged only when a case runs it."""
    definition = getattr(task_spec, "event_definition", None)
    kind = next((k for k in _TIMER_KINDS if isinstance(definition, k)), None)
    if kind is None:
        return []
    parse, what, examples, what_zh = _TIMER_KINDS[kind]
    label = task_spec.bpmn_name or task_spec.bpmn_id
    expression = (definition.expression or "").strip() if isinstance(definition.expression, str) else ""
    fix = (f'write it in quotes as {what}, e.g. "{examples.split(", ")[0]}" ({examples})',
           f'请加引号写成{what_zh}，如 "{examples.split(", ")[0]}"（{examples}）')
    element = task_spec.bpmn_id or task_spec.name
    if not expression:
        return [Problem(filename, element, f"the timer of '{label}' has no expression: the first case that "
                        "reaches it stops with an error", fix[0],
                        f"“{label}”的定时器没有填写：第一个运行到这里的案件会出错停下", fix[1])]
    if ISO_8601_TEXT.fullmatch(expression):   # as Camunda Modeler writes timers: read as an expression, it fails
        return [Problem(filename, element, f"the timer '{expression}' of '{label}' is ISO 8601 text without "
                        "quotes: the engine reads a timer as an expression, so the first case that reaches it "
                        "stops with an error", f'write it in quotes: "{expression}" (or an expression giving such text)',
                        f"“{label}”的定时器“{expression}”是未加引号的 ISO 8601 文本：引擎把定时器当作表达式计算，"
                        "第一个运行到这里的案件会出错停下", f'请加上引号："{expression}"（或写成得出这种文本的表达式）')]
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return []   # the script check reports it
    if not (isinstance(tree.body, ast.Constant) and isinstance(tree.body.value, str)):
        return []
    text = tree.body.value.strip()
    try:
        parsed = parse(text)
    except Exception:  # noqa: BLE001 -- whatever SpiffWorkflow raises for text it cannot read
        return [Problem(filename, element, f"the timer of '{label}' is '{text}', which is not {what}: the first "
                        "case that reaches it stops with an error", fix[0],
                        f"“{label}”的定时器“{text}”不是有效的{what_zh}：第一个运行到这里的案件会出错停下", fix[1])]
    if parsed == {}:   # no amount at all ('', 'P'): it fires the moment a case gets there
        return [Problem(filename, element, f"the timer of '{label}' is '{text}', a duration of nothing: it fires "
                        "the moment a case gets there", fix[0],
                        f"“{label}”的定时器“{text}”时长为零：案件一到这里就会触发", fix[1])]
    return []


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
            counts = [(len(_children(rule, kind)), len(columns), en, zh)
                      for kind, columns, en, zh in (("inputEntry", inputs, "input", "输入"),
                                                    ("outputEntry", outputs, "output", "输出"))]
            wrong = [(n, m, en, zh) for n, m, en, zh in counts if n != m]
            if wrong:   # SpiffWorkflow matches cells to columns by position: every later cell would shift
                n, m, en, zh = wrong[0]
                problems.append(Problem(
                    filename, rule.get("id") or "",
                    f"decision '{label}', rule {row} has {n} {en} cells for {m} {en} columns: its cells would be "
                    "read into the wrong columns", f"give the rule one {en} cell per column (- for any value)",
                    f"决策“{label}”第 {row} 条规则有 {n} 个{zh}单元格，而表有 {m} 个{zh}列：各单元格会被读入错误的列",
                    f"请为该规则的每个{zh}列各填一个单元格（任意值填 -）"))
                continue
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
                kind = _local(node)
                problems.append(Problem(filename, nid, f"{kind} '{label}' can never be reached",
                                        "connect it with a sequence flow from the path, or delete it",
                                        f"{_ELEMENT_KINDS_ZH.get(kind, '元素')}“{label}”永远不会被执行到",
                                        "请用顺序流把它连到流程路径上，或删除它"))
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


def active_usernames(session: Session):
    """usernames -> those of them that active accounts have: how the notes judge an assignee
    named in a file (`notes.assignee_notes`)."""
    def find(names: set[str]) -> set[str]:
        return set(session.scalars(select(User.username).where(
            User.username.in_(sorted(names)), User.active.is_(True)))) if names else set()
    return find


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
        # unchanged only against the newest version: the files of an older one deployed again
        # are a rollback, a new version that new cases start on
        newest = session.execute(select(ProcessVersion.version, ProcessVersion.content_hash).where(
            ProcessVersion.process_key == pid).order_by(ProcessVersion.version.desc()).limit(1)).first()
        if newest is not None and newest.content_hash == digest:
            unchanged.append(pid)
            continue
        latest = newest.version if newest is not None else 0
        spec = analysis.parser.get_spec(pid)
        version = ProcessVersion(
            process_key=pid, version=latest + 1, name=spec.description or pid,
            content_hash=digest, files=needed, properties=process_properties(needed, pid),
            deployed_at=clock.now(), deployed_by=actor)
        session.add(version)
        created.append(version)
    session.flush()
    from .notes import version_notes   # (notes reads this module's parse)
    notes = (version_notes(files, {v.process_key for v in created}, forms, active_usernames(session))
             if created and with_notes else [])
    return DeployResult(created, unchanged, notes)
