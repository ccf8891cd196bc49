"""Exports of a search result and of a case's trace as CSV, XLSX and JSON.

The rows are what the reader may see: personal data already masked (or, for a
handler, in full with the view audited) by the search and the trace. Column
headings in Chinese or English. Spreadsheet cells that would start a formula
(= + - @) are written as text, so an exported submission cannot run in Excel.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import date, datetime, timezone

from .clock import CHINA

FORMATS = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
# The most rows one search export carries (the page size of the search is at most 1,000).
MAX_SEARCH_ROWS = 10_000

SEARCH_COLUMNS = [
    ("business_key", "案件编号", "Case number"), ("title", "标题", "Title"),
    ("process", "流程", "Process"), ("process_key", "流程标识", "Process key"),
    ("status", "状态", "Status"), ("grid", "网格", "Grid"), ("category", "类别", "Category"),
    ("colour", "风险等级", "Colour"), ("created_at", "上报时间", "Created"),
    ("closed_at", "办结时间", "Closed"), ("summary", "案件数据", "Case data"),
]
TRACE_COLUMNS = [
    ("seq", "序号", "No."), ("at", "时间", "When"), ("event_type", "事件", "Event"),
    ("kind", "类别", "Kind"), ("bpmn_name", "环节", "Step"), ("bpmn_id", "环节标识", "Step id"),
    ("flow_from", "来自环节", "From step"), ("actor", "办理人", "Who"), ("username", "用户名", "Username"),
    ("role", "角色", "Role"), ("node", "单位/辖区", "Unit"), ("submitted", "提交内容", "Submitted"),
    ("changed", "修改内容", "Changed"), ("task_id", "任务标识", "Task id"),
]


ORG_CHANGE_COLUMNS = [
    ("at", "时间", "When"), ("kind", "变更类型", "Kind"), ("subject", "对象", "Subject"),
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


def search_records(page_rows) -> list[dict]:
    return [{"business_key": r.case.business_key, "title": r.case.title or "", "process": r.process_name,
             "process_key": r.case.process_key, "status": r.case.status, "grid": r.grid_name,
             "category": r.case.category, "colour": r.case.colour, "created_at": _iso(r.case.created_at),
             "closed_at": _iso(r.case.closed_at), "summary": _jsonable(r.summary)} for r in page_rows]


def trace_records(trace) -> list[dict]:
    return [{"seq": s.seq, "at": _iso(s.at), "event_type": s.event_type, "kind": s.kind,
             "bpmn_name": s.bpmn_name, "bpmn_id": s.bpmn_id, "flow_from": s.flow_from,
             "actor": s.actor_name, "username": s.actor_username, "role": s.role, "node": s.node_name,
             "submitted": _jsonable(s.submitted), "changed": _jsonable(s.changed), "task_id": s.task_id}
            for s in trace.steps]


def trace_document(trace) -> dict:
    case, version = trace.case, trace.detail.version
    return {"case": {"business_key": case.business_key, "title": case.title or "", "process_key": case.process_key,
                     "process": version.name, "process_version": version.version, "status": case.status,
                     "created_at": _iso(case.created_at), "closed_at": _iso(case.closed_at),
                     "data": _jsonable(trace.detail.data)},
            "personal_data_masked": trace.masked,
            "path": trace.detail.highlights.get("completed", []),
            "steps": trace_records(trace)}


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


def export_search(page_rows, fmt: str, lang: str = "zh") -> ExportFile:
    records = search_records(page_rows)
    return render(records, SEARCH_COLUMNS, fmt, lang, "cases", {"cases": records})


def export_org_changes(rows, fmt: str, lang: str = "zh") -> ExportFile:
    """The organisation's change log (engine/org_log.py) as the reader may see it."""
    records = [{"at": _iso(r.at), "kind": r.kind, "subject": r.subject, "detail": _jsonable(r.detail),
                "actor": r.actor, "source": r.source} for r in rows]
    return render(records, ORG_CHANGE_COLUMNS, fmt, lang, "org-changes", {"changes": records})


def export_trace(trace, fmt: str, lang: str = "zh") -> ExportFile:
    return render(trace_records(trace), TRACE_COLUMNS, fmt, lang, f"trace-{trace.case.business_key}",
                  trace_document(trace))
