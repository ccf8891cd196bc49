"""Notes on a version: what it would do at run time that a designer should hear of before
its cases do. Notes refuse nothing (a designer may mean it); `gridflow validate`,
`gridflow deploy`, the designer's check, modeler and upload report show them beside
the problems of `engine.deploy.validate_files`.

- the elements and case data the dashboard's figures read, gone from the version
  (`dashboard_notes`; `engine/metrics.py` lists them);
- a decision, or a gateway without a default flow, that leaves some combination of the
  values its forms offer without a rule or a way out (`decision_gap_notes`,
  `gateway_gap_notes`);
- a condition, script, timer or decision input reading a name nothing sets, and a timer written
  as ISO 8601 without quotes (`unset_name_notes`);
- a call activity whose called process needs a data input the caller never sets
  (`call_input_notes`);
- a user task's `assignee` or `candidateUsers` that can name nobody: a case field nothing
  sets, or a username no active account has (`assignee_notes`);
- a condition comparing a form field with a value none of the forms offers for it, never
  true (`choice_value_notes`).

Each reads SpiffWorkflow's parse of the file set once (`deploy._analysis_of`), and only
judges what it can tell: a form that cannot be read, or an expression reading other data,
means nothing is noted (no false alarms).
"""
from __future__ import annotations

import ast
import functools
import io
import itertools
import math
from dataclasses import dataclass

from lxml import etree

from .bpmn import BPMN_NS, camunda_attributes, data_key, element_properties, is_user_task, process_properties, user_task_info
from .deploy import (DMN_NAMESPACES, ISO_8601_TEXT, Problem, _analysis_of, _input_test, _local, _scripts_of)
from .sandbox import SAFE_BUILTINS, SCRIPT_ENGINE
from .scheduled_starts import ScheduledStarts


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


def version_notes(files: dict[str, str], processes=None, forms=None, find_users=None) -> list[Problem]:
    """All a check or deploy notes without refusing (the module's docstring lists them).
    `find_users` (usernames -> those of active accounts) lets an assignee be judged against
    the accounts; without it (no database at hand) only against the case's fields."""
    return (dashboard_notes(files, processes, forms) + decision_gap_notes(files, processes, forms)
            + gateway_gap_notes(files, processes, forms) + unset_name_notes(files, processes, forms)
            + call_input_notes(files, processes, forms) + assignee_notes(files, processes, forms, find_users)
            + choice_value_notes(files, processes, forms))


def _processes_in(analysis, processes):
    """(file, <process> element, id) of each executable process of the files (of `processes`, if given)."""
    for filename, root in sorted(analysis.trees.items()):
        for process in root.iter(f"{{{BPMN_NS}}}process"):
            pid = process.get("id")
            if pid in analysis.executable and (processes is None or pid in processes):
                yield filename, process, pid


def gateway_gap_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each exclusive or inclusive gateway without a default flow whose outgoing
    conditions all test form fields with fixed choices, where some combination of those
    values satisfies none of them: such a case stops at the gateway with an error. As for
    decisions, a gateway whose conditions read anything else is not judged."""
    forms = forms if forms is not None else _shipped_forms()
    frozen, notes = tuple(sorted(files.items())), []
    analysis = _analysis_of(frozen)
    for filename, process, pid in _processes_in(analysis, processes):
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
    total = math.prod(map(len, domains))
    if total > GAP_COMBINATIONS_MAX:
        return None
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
    shown = _combinations_shown(names, gaps)
    return Problem(
        filename, gid,
        f"gateway '{label}' has no way out for {len(gaps)} of the {total} combinations of the values the forms "
        f"offer ({shown}) and no default flow: such a case stops there with an error",
        "add a condition for those values, or make one outgoing flow the default",
        f"网关“{label}”对表单可选值的 {total} 种组合中的 {len(gaps)} 种没有可走的出口（{shown}），也没有默认流："
        "这样的案件会在此出错停下",
        "请为这些值加上条件，或把一条出口设为默认流")


def choice_value_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each sequence flow's condition (of a process in `files`, of `processes` if
    given) that compares a form field with fixed choices with a value none of the forms offers
    for it (`visit_outcome == "need_help"` for the choice `needs_help`, `urgent == "yes"` for a
    yes/no field): the comparison is never true, so every case takes another way, silently.
    Only names that nothing but forms set are judged (no script assigns them, no decision
    outputs them, no form has them as a free field, no data input or event declares them),
    with the values of every form the files' processes show; nothing when a form cannot be read."""
    forms = forms if forms is not None else _shipped_forms()
    frozen = tuple(sorted(files.items()))
    analysis = _analysis_of(frozen)
    free = set(ScheduledStarts.START_DATA_KEYS)
    form_keys = set()
    for pid in analysis.executable:
        found = _data_sources(frozen, pid)
        if found is None:
            return []
        free |= found[0]
        form_keys |= set(found[1])
    for root in analysis.trees.values():
        free |= _declared_names(root)
    offered: dict[str, list] = {}
    for key in sorted(form_keys):
        form = forms.get(key)
        if form is None:
            return []
        for f in form.fields:
            if f.readonly:
                continue   # shows what another step set
            if f.type not in ("choice", "boolean"):
                free.add(f.name)
                continue
            values = offered.setdefault(f.name, [])
            values += [v for v in (f.choice_values if f.type == "choice" else [True, False]) if v not in values]
    judged = {name: values for name, values in offered.items() if name not in free}
    notes = []
    for filename, process, pid in _processes_in(analysis, processes):
        for flow in process.iter(f"{{{BPMN_NS}}}sequenceFlow"):
            condition = flow.find(f"{{{BPMN_NS}}}conditionExpression")
            text = (condition.text or "").strip() if condition is not None else ""
            for name, value in _compared_values(text):
                if name not in judged or any(_same_value(value, v) for v in judged[name]):
                    continue
                label = flow.get("name") or flow.get("id") or ""
                values = ", ".join(_dmn_value(v) for v in judged[name])
                notes.append(Problem(
                    filename, flow.get("id") or "",
                    f"the condition '{text[:80]}' of '{label}' compares {name} with {_dmn_value(value)}, which is "
                    f"none of the values the forms offer for it ({values}): the comparison is never true, so "
                    "every case takes another way",
                    f"compare with one of the values the forms offer: {values}",
                    f"“{label}”的条件“{text[:80]}”把 {name} 与 {_dmn_value(value)} 比较，但表单为它提供的值中没有这个值"
                    f"（{values}）：该比较永远不成立，每个案件都会走其他路径",
                    f"请与表单提供的值之一比较：{values}"))
                break   # one note per condition
    return notes


def _compared_values(expression: str):
    """(name, constant) for each `name == constant`, `constant != name`, `name in (c1, c2)` …
    of an expression; nothing when it does not parse."""
    try:
        tree = ast.parse(expression, mode="eval")
    except SyntaxError:
        return
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for left, op, right in zip(operands, node.ops, operands[1:]):
            if isinstance(op, (ast.Eq, ast.NotEq)):
                pairs = [(left, right), (right, left)]
                for name, constant in pairs:
                    if isinstance(name, ast.Name) and isinstance(constant, ast.Constant):
                        yield name.id, constant.value
            elif (isinstance(op, (ast.In, ast.NotIn)) and isinstance(left, ast.Name)
                  and isinstance(right, (ast.Tuple, ast.List, ast.Set))):
                for element in right.elts:
                    if isinstance(element, ast.Constant):
                        yield left.id, element.value


def _same_value(value, offered) -> bool:
    """`value` equals an offered one as a comparison in a condition finds it: True is not 1,
    "1" is not 1; 3 and 3.0 are the same number."""
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, offered))
    return value == offered and (numbers or type(value) is type(offered))


def unset_name_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each gateway condition, script task and timer expression of a process in `files` (of
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
    known = _names_set(frozen, forms)
    if known is None:
        return []
    known |= set(SAFE_BUILTINS) | {"dir"}
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
    for filename, process, pid in _processes_in(analysis, processes):
        for node in process.iter():
            local = _local(node)
            if local == "conditionExpression":
                holder, what, what_zh = node.getparent(), "condition", "条件"
            elif local in ("timeDuration", "timeDate", "timeCycle"):
                holder, what, what_zh = node.getparent().getparent(), "timer", "定时器表达式"
            elif local == "script" and _local(node.getparent()) == "scriptTask":
                # a script reading a misspelt name raises NameError in every case that runs it
                holder, what, what_zh = node.getparent(), "script", "脚本"
            else:
                continue
            text = (node.text or "").strip()
            reads = _script_free_names if what == "script" else _free_names
            unset = sorted(reads(text) - known) if text else []
            if not unset or holder is None:
                continue
            element = holder.get("id") or ""
            label = holder.get("name") or element
            if what == "timer" and ISO_8601_TEXT.fullmatch(text):
                continue   # a problem, not a note: engine/deploy.py, _timer_problems
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
        notes += _unset_due_notes(filename, process, known)
    return notes


def _unset_due_notes(filename: str, process, known: set[str]) -> list[Problem]:
    """A user task's time limit (`dueDate`) naming a case field, or an expression over some,
    that nothing sets: its tasks silently get no due date (`service._due_at`). An ISO
    duration or a date is the deploy check's to judge."""
    notes = []
    for task in process.iter(f"{{{BPMN_NS}}}userTask"):
        due = ({**camunda_attributes(task), **element_properties(task)}.get("dueDate") or "").strip()
        expression = data_key(due) if due else ""
        if not expression or expression[:1].isdigit() or (
                expression.upper().startswith("P") and expression not in known):
            continue
        unset = sorted(_free_names(expression) - known)
        if not unset:
            continue
        element, label = task.get("id") or "", task.get("name") or task.get("id") or ""
        names = ", ".join(f"'{n}'" for n in unset)
        notes.append(Problem(
            filename, element,
            f"the time limit '{due[:80]}' of '{label}' reads {names}, which nothing in this version sets (no "
            "script, decision output, form field or data input of that name): its tasks get no due date, "
            "silently, and are never overdue",
            "correct the name (e.g. grid_days, which the dispatch rules set), or write a duration such as P3D",
            f"“{label}”的办理时限“{due[:80]}”读取 {names}，但此版本中没有任何脚本、决策输出、表单字段或数据输入"
            "设置它：其任务没有办理期限，永远不会超期",
            "请改正名称（如派单规则设置的 grid_days），或写成 P3D 这样的时长"))
    return notes


def _names_set(frozen: tuple, forms) -> set[str] | None:
    """Every data name something in the files sets: the processes' scripts, decisions and forms
    (`_keys_set_by`), declared data (`_declared_names`) and what a scheduled start gives.
    Names from any process count (a called process may read what its caller set). None when
    that cannot be told (a form that cannot be read)."""
    analysis = _analysis_of(frozen)
    known = set(ScheduledStarts.START_DATA_KEYS)
    for pid in analysis.executable:
        keys = _keys_set_by(frozen, pid, forms)
        if keys is None:
            return None
        known |= keys
    for root in analysis.trees.values():
        known |= _declared_names(root)
    return known


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


def assignee_notes(files: dict[str, str], processes=None, forms=None, find_users=None) -> list[Problem]:
    """Notes for each user task of a process in `files` (of `processes`, if given) whose
    `assignee` or `candidateUsers` can name nobody, as `lanes.LaneResolver.resolve` reads them:
    a case field (`${owning_leader}`, or a bare name something sets) that nothing in the files
    sets, `candidateUsers` (always a case field) likewise, or a bare name that is neither such a
    field nor, by `find_users` (usernames -> those of active accounts; None: not judged), an
    account. Such a task is not lost: it goes to its lane's holders, or to the centre
    dispatchers as unassigned; but not to whom the designer meant."""
    forms = forms if forms is not None else _shipped_forms()
    frozen = tuple(sorted(files.items()))
    analysis = _analysis_of(frozen)
    declared = set(ScheduledStarts.START_DATA_KEYS)
    for root in analysis.trees.values():
        declared |= _declared_names(root)
    found: list[tuple[str, str, str, str, str]] = []   # (file, task id, task name, property, the name it reads)
    literal: list[tuple[str, str, str, str]] = []     # (file, task id, task name, the username it names)
    for filename, process, pid in _processes_in(analysis, processes):
        # what this process (and what it calls) sets: a task's data is its own process's
        keys = _keys_set_by(frozen, pid, forms)
        if keys is None:
            continue   # a form that cannot be read: what it sets cannot be told, nothing is noted
        known = declared | keys
        for task in process.iter(f"{{{BPMN_NS}}}userTask"):
            element = task.get("id") or ""
            props = {**camunda_attributes(task), **element_properties(task)}   # as user_task_info reads them
            label = task.get("name") or element
            for prop in ("assignee", "candidateUsers"):
                expr = (props.get(prop) or "").strip()
                key = data_key(expr) if expr else ""
                if not key or key in known:
                    continue
                if prop == "assignee" and not expr.startswith("${"):
                    literal.append((filename, element, label, key))   # a username, as Camunda files write it
                else:
                    found.append((filename, element, label, prop, key))
    accounts = find_users({name for *_rest, name in literal}) if find_users is not None and literal else None
    notes = []
    for filename, element, label, prop, key in found:
        notes.append(Problem(
            filename, element,
            f"the {prop} of '{label}' reads the case field '{key}', which nothing in this version sets (no "
            "form field, script, decision output or data input of that name): every case's task goes to its "
            "lane's holders instead (without a lane, to the centre dispatchers as unassigned)",
            "correct the name to the form field that holds the username (e.g. the leader chosen earlier), "
            "or set it before this task",
            f"“{label}”的 {prop} 读取案件字段 “{key}”，但此版本中没有任何表单字段、脚本、决策输出或数据输入"
            "设置它：每个案件的这项任务都会改由泳道对应的人员办理（没有泳道时作为未分配任务交给派单员）",
            "请把名称改为保存用户名的表单字段（例如之前选定的包案领导），或在此任务之前设置它"))
    for filename, element, label, name in literal:
        if accounts is None or name in accounts:
            continue
        notes.append(Problem(
            filename, element,
            f"the assignee of '{label}' is '{name}', which is neither a case field this version sets nor an "
            "active account: every case's task goes to its lane's holders instead (without a lane, to the "
            "centre dispatchers as unassigned)",
            "name an active official's username, or the form field that holds one",
            f"“{label}”的办理人为 “{name}”，它既不是此版本设置的案件字段，也不是在用的账号：每个案件的这项任务"
            "都会改由泳道对应的人员办理（没有泳道时作为未分配任务交给派单员）",
            "请填写在用人员的用户名，或保存用户名的表单字段"))
    return notes


def call_input_notes(files: dict[str, str], processes=None, forms=None) -> list[Problem]:
    """Notes for each call activity of a process in `files` (of `processes`, if given)
    whose called process declares data inputs the caller never sets (no script, decision
    output, form field or declared name of the caller's): SpiffWorkflow stops the call
    ("You are missing a required Data Input for a call activity")."""
    forms = forms if forms is not None else _shipped_forms()
    frozen, notes = tuple(sorted(files.items())), []
    analysis = _analysis_of(frozen)
    for filename, process, pid in _processes_in(analysis, processes):
        keys = _keys_set_by(frozen, pid, forms)
        if keys is None:
            continue
        keys = keys | _declared_names(process) | ScheduledStarts.START_DATA_KEYS
        built = _specs_of(frozen, pid)
        if built is None:
            continue
        callees = built[1]
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


def _script_free_names(source: str) -> set[str]:
    """The names a script reads that it never binds itself (anywhere in it: an assignment, a
    loop or comprehension variable, a function and its arguments, an `except … as` name, or a
    name read only where `"x" in dir()` holds); nothing when it does not parse (a problem the
    check reports on its own). A name the script binds after reading it is not judged."""
    try:
        tree = ast.parse(source, mode="exec")
    except SyntaxError:
        return set()
    bound = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            if not isinstance(node, ast.Lambda):
                bound.add(node.name)
            bound |= {a.arg for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs}
            bound |= {a.arg for a in (node.args.vararg, node.args.kwarg) if a is not None}
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound |= set(node.names)
        elif (isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant)
              and isinstance(node.left.value, str) and isinstance(node.ops[0], ast.In)
              and isinstance(node.comparators[0], ast.Call) and getattr(node.comparators[0].func, "id", "") == "dir"):
            bound.add(node.left.value)   # `if "x" in dir(): …`: read only where it is set
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
def _specs_of(files: tuple, pid: str) -> tuple | None:
    """(the process's spec, {id: spec} of its subprocesses and the processes it calls) as
    SpiffWorkflow builds them from the files, once per file set and process; None when they
    cannot be built (the check reports the process's own problem)."""
    parser = _analysis_of(files).parser
    try:
        return parser.get_spec(pid), parser.get_subprocess_specs(pid)
    except Exception:  # noqa: BLE001
        return None


@functools.lru_cache(maxsize=16)
def _called_tables(files: tuple, pid: str) -> tuple[_Table, ...]:
    """The decision tables the business rule tasks of `pid` (and its subprocesses) call,
    as SpiffWorkflow parsed them."""
    built = _specs_of(files, pid)
    if built is None:
        return ()
    specs = [built[0], *built[1].values()]
    analysis = _analysis_of(files)
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
    total = math.prod(map(len, domains))
    if total > GAP_COMBINATIONS_MAX:
        return None
    gaps = _unmatched(table, domains)
    if not gaps:
        return None
    shown = _combinations_shown(table.inputs, gaps)
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
    answers: dict[tuple, bool] = {}

    def holds(column: int, cell: str, value) -> bool:
        key = (column, cell, repr(value))
        if key not in answers:
            expression = table.inputs[column]
            test, why = _input_test(expression, cell)
            if why or not _free_names(test) <= {expression, "dmninputexpr"}:
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


def _combinations_shown(names, combinations) -> str:
    """The first few combinations as a designer would test them: `category = "other", colour = "blue"; …`."""
    return "; ".join(", ".join(f"{name} = {_dmn_value(value)}" for name, value in zip(names, combination))
                     for combination in combinations[:_GAPS_SHOWN]) + (" …" if len(combinations) > _GAPS_SHOWN else "")


def _dmn_value(value) -> str:
    """A value as a DMN cell would test it: "other", True."""
    return f'"{value}"' if isinstance(value, str) else repr(value)


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
    built = _specs_of(files, pid)
    if built is None:
        return None
    specs = [built[0], *built[1].values()]
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
            sources = [source for _what, source, mode, _target in _scripts_of(task_spec) if mode == "exec"]
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
