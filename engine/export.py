"""Exports of a search result and of a case's trace as CSV, XLSX and JSON.

The rows are what the reader may see: personal data already masked (or, for a
handler, in full with the view audited) by the search and the trace. Column
headings in Chinese or English. Spreadsheet cells that would start a formula
(= + - @) are written as text, so an exported submission cannot run in Excel.

Codes (a status, a colour, an event type, a role …) read as the pages show them:
the caller passes `Labels` in the reader's language (web/audit.py builds them from
the UI catalogue). CSV and XLSX show only the labels; JSON keeps every code as it
was and carries its label beside it (`status` and `status_label`, `event_type` and
`event_label` …), so a program reads the codes and a person the labels. No export shows
a bare database id: the people and units a trace step's data holds by id (督办's holders, a
new task's unit …) read by name in CSV and XLSX, and JSON carries their usernames and node
codes with their names beside the ids (`references`).
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable

from .clock import CHINA
from .trace import SYSTEM_EVENTS

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
# The most rows one search export carries (the page size of the search is at most 1,000).
MAX_SEARCH_ROWS = 10_000

# CSV/XLSX columns: (record key, Chinese heading, English heading); coded values by their labels.
# Not the case's `summary`: the page does not show it, and as a cell it was the stored JSON
# (choice codes, usernames, deadlines in UTC); the JSON export keeps it for programs.
SEARCH_COLUMNS = [
    ("business_key", "案件编号", "Case number"), ("title", "标题", "Title"),
    ("process_label", "流程", "Process"), ("process_key", "流程标识", "Process key"),
    ("status_label", "状态", "Status"), ("grid", "网格", "Grid"), ("category_label", "类别", "Category"),
    ("colour_label", "风险等级", "Colour"), ("created_at", "发起时间", "Started"),
    ("closed_at", "办结时间", "Closed"),
]
TRACE_COLUMNS = [
    ("seq", "序号", "No."), ("at", "时间", "When"), ("event_label", "事件", "Event"),
    ("kind_label", "类别", "Kind"), ("bpmn_label", "环节", "Step"), ("bpmn_id", "环节标识", "Step id"),
    ("flow_from_label", "来自环节", "From step"), ("actor", "办理人", "Who"), ("username", "用户名", "Username"),
    ("role_label", "角色", "Role"), ("node", "单位/辖区", "Unit"), ("submitted_text", "提交内容", "Submitted"),
    ("changed_text", "修改内容", "Changed"), ("task_id", "任务标识", "Task id"),
]


def _code(value, *_context):
    return value


def _process_name(_process_key, name):
    return name


def _element_name(_process_key, _element_id, name):
    return name


@dataclass
class Labels:
    """How each kind of code reads in the export's language. The defaults leave the codes
    (and stored names) as they are; web/audit.py passes the pages' own labels."""
    status: Callable = _code            # case status: open -> 办理中
    colour: Callable = _code            # blue -> 蓝
    category: Callable = _code          # dispute -> 矛盾纠纷
    process: Callable = _process_name   # (process key, stored name) -> its name in the language
    event: Callable = _code             # urged -> 督办
    kind: Callable = _code              # urge -> 督办 (the trace's badges; None for ordinary steps)
    role: Callable = _code              # center_dispatcher -> 派单员
    element: Callable = _element_name   # (process key, BPMN id, stored name) -> the step's name
    # a trace step's data as the trace page reads it: [{"key", "label", "value"}] (form fields by
    # their labels, people and units by name …); None: each key with its value, people and
    # units by name (`TraceStep.refs`)
    step_data: Callable | None = None
    # a trace step's changes as the page reads them: [(field label, before, after)]
    step_changes: Callable | None = None
    # who did a step no person did (SYSTEM_EVENTS), as the page names them: 系统 / System
    system: str = ""


ORG_CHANGE_COLUMNS = [
    ("at", "时间", "When"), ("kind_label", "变更类型", "Kind"), ("kind", "类型代码", "Kind code"),
    ("subject", "对象", "Subject"),
    ("detail", "变更内容", "Change"), ("actor", "操作人", "Loaded by"), ("source", "来源文件", "Source file"),
]


@dataclass
class ExportFile:
    filename: str
    content_type: str
    body: bytes


def _iso(moment) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.astimezone(CHINA).isoformat(timespec="seconds")
    if isinstance(moment, date):
        return moment.isoformat()
    return str(moment)


def _jsonable(value):
    if isinstance(value, (datetime, date)):
        return _iso(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _label(fn, code, *context):
    """The label of a code (None stays None: no value, no label)."""
    return None if code is None else fn(code, *context)


def search_records(page_rows, labels: Labels | None = None) -> list[dict]:
    """The rows of a search: codes and, beside each, its label (`labels`, else the code)."""
    lab = labels or Labels()
    return [{"business_key": r.case.business_key, "title": r.case.title or "", "process": r.process_name,
             "process_label": lab.process(r.case.process_key, r.process_name),
             "process_key": r.case.process_key, "status": r.case.status,
             "status_label": _label(lab.status, r.case.status), "grid": r.grid_name,
             "category": r.case.category, "category_label": _label(lab.category, r.case.category),
             "colour": r.case.colour, "colour_label": _label(lab.colour, r.case.colour),
             "created_at": _iso(r.case.created_at),
             "closed_at": _iso(r.case.closed_at), "summary": _jsonable(r.summary)} for r in page_rows]


def _person(ref) -> str | None:
    if not isinstance(ref, dict):
        return None
    if "code" in ref:
        return ref.get("name") or ref["code"]
    return f"{ref['name']}（{ref['username']}）" if ref.get("name") else ref.get("username")


def _plain(value) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(_jsonable(value), ensure_ascii=False, sort_keys=True)
    return "" if value is None else str(value)


def _step_data(step) -> list[dict]:
    """A step's data key by key, with the people and units it holds by id named (`refs`)."""
    rows = []
    for key, value in (step.submitted or {}).items():
        ref = step.refs.get(key) if step.refs else None
        if isinstance(ref, list):
            shown = "、".join(_person(r) or _plain(v) for r, v in zip(ref, value))
        elif ref is not None:
            shown = _person(ref) or _plain(value)
        else:
            shown = _plain(value)
        rows.append({"key": key, "label": key, "value": shown})
    return rows


def _step_changes(step) -> list[tuple]:
    return [(name, _plain(before), _plain(after)) for name, (before, after) in (step.changed or {}).items()]


def trace_records(trace, labels: Labels | None = None) -> list[dict]:
    """Each step with its codes and, beside them, their labels: the event, kind, step, the
    step it came from, the role, the unit (name and code), what it carried as the page reads
    it (`submitted_label`, `changed_label`) and the people and units its data holds by id
    (`references`: username and name, node code and name)."""
    lab = labels or Labels()
    key = trace.case.process_key
    step_data, step_changes = lab.step_data or _step_data, lab.step_changes or _step_changes
    return [{"seq": s.seq, "at": _iso(s.at), "event_type": s.event_type, "event_label": lab.event(s.event_type),
             "kind": s.kind, "kind_label": _label(lab.kind, s.kind),
             "bpmn_name": s.bpmn_name, "bpmn_label": lab.element(key, s.bpmn_id, s.bpmn_name),
             "bpmn_id": s.bpmn_id, "flow_from": s.flow_from,
             "flow_from_label": lab.element(key, s.flow_from, s.flow_from_name) if s.flow_from else None,
             "actor": s.actor_name, "username": s.actor_username, "role": s.role,
             "role_label": _label(lab.role, s.role), "node": s.node_name, "node_code": s.node_code,
             "submitted": _jsonable(s.submitted),
             "submitted_label": [{k: _jsonable(row.get(k)) for k in ("key", "label", "value") if k in row}
                                 for row in step_data(s)],
             "changed": _jsonable(s.changed),
             "changed_label": [{"label": name, "before": _jsonable(before), "after": _jsonable(after)}
                               for name, before, after in step_changes(s)],
             "references": _jsonable(s.refs), "task_id": s.task_id}
            for s in trace.steps]


def _trace_rows(trace, labels: Labels | None = None) -> list[dict]:
    """The steps as CSV and XLSX show them: what a step carried and changed as labelled
    lines, as on the trace page (never a bare id or JSON of codes)."""
    rows = trace_records(trace, labels)
    system = (labels or Labels()).system
    for row in rows:
        if row["actor"] is None and row["event_type"] in SYSTEM_EVENTS:
            row["actor"] = system       # the page's 办理人 of a timer's escalation: 系统, not blank
        row["submitted_text"] = "\n".join(f"{r.get('label')}: {_plain(r.get('value'))}" for r in row["submitted_label"])
        row["changed_text"] = "\n".join(f"{c['label']}: {_plain(c['before'])} → {_plain(c['after'])}"
                                        for c in row["changed_label"])
    return rows


def trace_document(trace, labels: Labels | None = None) -> dict:
    lab = labels or Labels()
    case, version = trace.case, trace.detail.version
    return {"case": {"business_key": case.business_key, "title": case.title or "", "process_key": case.process_key,
                     "process": version.name, "process_label": lab.process(case.process_key, version.name),
                     "process_version": version.version, "status": case.status,
                     "status_label": _label(lab.status, case.status),
                     "created_at": _iso(case.created_at), "closed_at": _iso(case.closed_at),
                     "data": _jsonable(trace.detail.data)},
            "personal_data_masked": trace.masked,
            "path": trace.detail.highlights.get("completed", []),
            "steps": trace_records(trace, labels)}


def _cell(value):
    """A spreadsheet cell: nested data as JSON text, formula-looking text made inert."""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True) if value else ""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _table(records: list[dict], columns, lang: str):
    header = [en if lang == "en" else zh for _key, zh, en in columns]
    return header, [[_cell(r.get(key)) for key, _zh, _en in columns] for r in records]


def render(records: list[dict], columns, fmt: str, lang: str, name: str, document=None) -> ExportFile:
    """`records` as a file of format `fmt`; JSON is `document` (or the records) as is."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}")
    filename = f"{name}.{fmt}"
    if fmt == "json":
        body = json.dumps(document if document is not None else records, ensure_ascii=False, indent=1)
        return ExportFile(filename, FORMATS[fmt], body.encode("utf-8"))
    header, rows = _table(records, columns, lang)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
        # the BOM makes Excel read the Chinese as UTF-8
        return ExportFile(filename, FORMATS[fmt], ("\ufeff" + out.getvalue()).encode("utf-8"))
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet(title=name[:31])
    sheet.append(header)
    for row in rows:
        # control characters a form may accept but the XLSX format cannot hold
        sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v for v in row])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return ExportFile(filename, FORMATS[fmt], buffer.getvalue())


def export_search(page_rows, fmt: str, lang: str = "zh", labels: Labels | None = None) -> ExportFile:
    """The rows of a search; `labels` in `lang` (the codes themselves without them)."""
    records = search_records(page_rows, labels)
    return render(records, SEARCH_COLUMNS, fmt, lang, "cases", {"cases": records})


def export_org_changes(rows, fmt: str, lang: str = "zh", kind_label: Callable = _code,
                       detail_text: Callable | None = None) -> ExportFile:
    """The organisation's change log (engine/org_log.py) as the reader may see it; each kind
    as the page names it (`kind_label`) beside its code. CSV/XLSX show the detail as the page
    reads it (`detail_text`: one 'label: value' line each, roles and nodes by name); JSON keeps
    the stored detail."""
    records = [{"at": _iso(r.at), "kind_label": kind_label(r.kind), "kind": r.kind, "subject": r.subject,
                "detail": _jsonable(r.detail), "actor": r.actor, "source": r.source} for r in rows]
    if fmt != "json" and detail_text is not None:
        table = [{**rec, "detail": detail_text(r.detail or {})} for rec, r in zip(records, rows)]
        return render(table, ORG_CHANGE_COLUMNS, fmt, lang, "org-changes", {"changes": records})
    return render(records, ORG_CHANGE_COLUMNS, fmt, lang, "org-changes", {"changes": records})


def export_trace(trace, fmt: str, lang: str = "zh", labels: Labels | None = None) -> ExportFile:
    """A case's trace; `labels` in `lang` (the codes themselves without them)."""
    return render(_trace_rows(trace, labels), TRACE_COLUMNS, fmt, lang, f"trace-{trace.case.business_key}",
                  trace_document(trace, labels))
