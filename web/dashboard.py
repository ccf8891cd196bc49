"""统计看板: the governance figures of a jurisdiction, with charts, drill-down and exports.

The figures come from one engine call (`engine.metrics.Dashboards.figures`, which
also decides who may see which node); this module turns them into labelled
tables (the page, CSV, XLSX and the JSON API show the same numbers) and draws
the charts as inline SVG on the server, so the page needs no chart library and
no network.
"""
from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from flask import Blueprint, Response, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup, escape
from marshmallow import Schema, fields

from engine import clock
from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.metrics import Dashboards

from .errors import engine_status
from .extensions import service
from .i18n import CHINA, current_lang, gettext as _, label, process_name

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
EARLIEST, LATEST = date(2000, 1, 1), date(2099, 12, 31)   # the periods a dashboard may show
CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,63}$")
FORMATS = ("csv", "xlsx")


# ------------------------------------------------------------------ input

def parse_period(args) -> tuple[date, date]:
    """The period's first and last day (inclusive) from ?start=&end= (YYYY-MM-DD, China time);
    by default the last twelve months up to today."""
    today = clock.now().astimezone(CHINA).date()
    problems = {}
    values = {}
    for name in ("start", "end"):
        raw = (args.get(name) or "").strip()
        if not raw:
            continue
        try:
            if not DATE_RE.match(raw):
                raise ValueError
            values[name] = date.fromisoformat(raw)
        except ValueError:
            problems[name] = ["YYYY-MM-DD"]
    if problems:
        raise InvalidInput("dates are written YYYY-MM-DD, e.g. 2026-01-31", fields=problems,
                           zh="日期格式应为 年-月-日，如 2026-01-31，请重新选择")
    outside = {name: [f"{EARLIEST} … {LATEST}"] for name, value in values.items() if not EARLIEST <= value <= LATEST}
    if outside:   # a year 1 or 9999 would overflow the period's arithmetic (found by schemathesis)
        raise InvalidInput(f"dates lie between {EARLIEST} and {LATEST}", fields=outside,
                           zh=f"日期应在 {EARLIEST} 至 {LATEST} 之间，请重新选择")
    end = values.get("end", today)
    first_of_month = end.replace(day=1)
    default_start = (first_of_month.replace(year=first_of_month.year - 1) if first_of_month.month == 12
                     else first_of_month.replace(year=first_of_month.year - 1, month=first_of_month.month + 1))
    start = values.get("start", default_start)
    return start, end


def parse_node(args) -> str | None:
    code = (args.get("node") or "").strip()
    if not code:
        return None
    if not CODE_RE.match(code):
        raise InvalidInput("no such jurisdiction node", fields={"node": ["unknown"]}, zh="找不到该辖区")
    return code


def load_figures(actor_id: int, args) -> tuple[dict, date, date]:
    start, end = parse_period(args)
    start_at = datetime(start.year, start.month, start.day, tzinfo=CHINA)
    end_at = datetime(end.year, end.month, end.day, tzinfo=CHINA) + timedelta(days=1)
    figures = Dashboards(service().db).figures(actor_id, parse_node(args), start_at, end_at)
    figures["period"] = {"start": start.isoformat(), "end": end.isoformat()}
    return figures, start, end


# ------------------------------------------------------------------ labels

def level_label(level: str | None) -> str:
    names = {"city": _("市级"), "county": _("县级"), "town": _("乡镇/街道"), "community": _("村/社区"),
             "grid": _("网格")}
    return names.get(level, level or "—")


def status_label(status: str | None) -> str:
    names = {"open": _("办理中"), "completed": _("已办结"), "cancelled": _("已撤销")}
    return names.get(status, status or "—")


def colour_label(colour: str | None) -> str:
    names = {"blue": _("蓝"), "yellow": _("黄"), "orange": _("橙"), "red": _("红")}
    return names.get(colour, colour or "—")


def category_labels() -> dict[str, str]:
    """Every `category` choice of every form (shipped and saved revisions): each chain has
    its own categories (a consultation's 公共收益与维修资金 is no grid matter's). The grid
    matter report's wording wins where forms share a value, and a form's latest saved
    revision wins over its earlier ones and the shipped file."""
    from engine.form_store import split_key
    forms = service().forms

    def precedence(key):
        base, number = split_key(key)
        return base != "grid_matter_report", base, -(number or 0)
    keys = sorted(forms.keys(), key=precedence)
    labels: dict[str, str] = {}
    for key in keys:
        form = forms.get(key)
        for f in (form.fields if form is not None else ()):
            if f.name == "category":
                for choice in f.choices or ():
                    labels.setdefault(choice["value"], label(choice))
    return labels


def process_labels() -> dict[str, str]:
    return {p.key: process_name(p.key, p.name) for p in service().processes()}


# ------------------------------------------------------------------ tables

@dataclass
class Table:
    name: str
    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    links: list[str | None] = field(default_factory=list)   # per row: drill-down URL of the first cell
    percent: set = field(default_factory=set)                # indexes of percentage columns


def build_tables(figures: dict, args: dict | None = None) -> dict[str, Table]:
    """Every table of the dashboard, labelled in the current language, in page order."""
    args = dict(args or {})
    head, pet = figures["headline"], figures["petitions"]
    tables: dict[str, Table] = {}

    def add(table: Table):
        tables[table.name] = table

    add(Table("headline", _("核心指标"), [_("指标"), _("数值")], [
        [_("登记事项"), head["registered"]], [_("应结案数"), head["due"]], [_("结案数"), head["closed"]],
        [_("按期结案数"), head["on_time"]], [_("办结率 %"), head["closure_rate"]],
        [_("按期办结率 %"), head["on_time_rate"]], [_("参评事项"), head["rated"]],
        [_("满意及基本满意"), head["satisfied"]], [_("满意率 %"), head["satisfaction_rate"]],
        [_("现场核查"), head["verifications"]], [_("核查不通过（返工）"), head["failed"]],
        [_("返工率 %"), head["rework_rate"]], [_("已化解事项"), head["resolved"]],
        [_("小事不出格率 %"), head["grid_rate"]], [_("当前超期事项"), head["overdue_cases"]],
        [_("当前超期任务"), head["overdue_tasks"]], [_("督办次数"), head["urged"]],
        [_("超期督办任务"), head["supervision_tasks"]]]))

    children = Table("children", _("下级辖区"), [_("辖区"), _("层级"), _("登记"), _("应结"), _("结案"), _("按期"),
                                                 _("办结率 %"), _("按期办结率 %"), _("满意率 %"), _("小事不出格率 %")],
                     percent={6, 7, 8, 9})
    for c in figures["children"]:
        children.rows.append([c["name"], level_label(c["level"]), c["registered"], c["due"], c["closed"],
                              c["on_time"], c["closure_rate"], c["on_time_rate"], c["satisfaction_rate"],
                              c["grid_rate"]])
        children.links.append(url_for("dashboard.index", **{**args, "node": c["code"]}) if c["code"] else None)
    add(children)

    add(Table("resolution", _("化解层级"), [_("层级"), _("事项"), _("占比 %")],
              [[level_label(r["level"]), r["cases"], r["share"]] for r in figures["resolution"]], percent={2}))
    add(Table("escalations", _("逐级上报"), [_("上报至"), _("事项")],
              [[level_label(level), n] for level, n in figures["escalations"].items()]))
    categories = category_labels()
    add(Table("by_category", _("按类别"), [_("类别"), _("事项")],
              [[categories.get(k, k), n] for k, n in figures["by_category"]]))
    add(Table("by_colour", _("按风险等级"), [_("风险等级"), _("事项")],
              [[colour_label(k), n] for k, n in figures["by_colour"]]))
    processes = process_labels()
    add(Table("by_process", _("按流程"), [_("流程"), _("事项")],
              [[processes.get(k, k), n] for k, n in figures["by_process"]]))
    add(Table("by_status", _("按状态"), [_("状态"), _("事项")],
              [[status_label(k), n] for k, n in figures["by_status"]]))
    add(Table("monthly", _("月度趋势"), [_("月份"), _("登记"), _("结案")],
              [[m["month"], m["registered"], m["closed"]] for m in figures["monthly"]]))
    add(Table("petitions", _("信访事项"), [_("指标"), _("数值")], [
        [_("登记信访事项"), pet["registered"]],
        [_("应告知受理决定"), pet["decisions_due"]], [_("15日内告知"), pet["decided_in_time"]],
        [_("按期受理告知率 %"), pet["accepted_in_time_rate"]],
        [_("应办结"), pet["handling_due"]], [_("按期办结"), pet["handled_in_time"]],
        [_("按期办理率 %"), pet["handled_in_time_rate"]],
        [_("申请延期"), pet["extensions_requested"]], [_("批准延期"), pet["extensions_granted"]],
        [_("书面答复"), pet["replied"]], [_("申请复查"), pet["reviews"]], [_("复查率 %"), pet["review_rate"]],
        [_("申请复核"), pet["rechecks"]], [_("复核率 %"), pet["recheck_rate"]],
        [_("答复后办结"), pet["closed"]], [_("息诉罢访"), pet["ceased"]], [_("息诉罢访率 %"), pet["ceased_rate"]]]))
    add(Table("workers", _("网格员工作量"),
              [_("网格员"), _("账号"), _("事件上报"), _("入户走访"), _("回访"), _("现场核查"), _("跟踪记录")],
              [[w["name"], w["username"], w["reports"], w["household_visits"], w["visits"], w["verifications"],
                w["follow_ups"]]
               for w in figures["workers"]]))
    kinds = {"community": _("村/社区"), "town": _("乡镇/街道"), "department": _("职能部门")}
    add(Table("evaluation", _("逆向考评"), [_("单位"), _("类型"), _("平均分"), _("评分次数")],
              [[e["name"], kinds.get(e["kind"], e["kind"]), e["average"], e["scores"]] for e in figures["evaluation"]]))
    return tables


def cell(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


# ------------------------------------------------------------------ charts (inline SVG)

PALETTE = ("#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d")


def _svg(width: int, height: int, title: str, body: str) -> Markup:
    return Markup(f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" '
                  f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>')


def bar_chart(title: str, items: list[tuple[str, list]], series: list[str], maximum: float | None = None,
              unit: str = "") -> Markup:
    """Horizontal bars: one row per item, one bar per series (None = no figure)."""
    if not items:
        return Markup("")
    row_h, bar_h, label_w, width = 14 + 12 * len(series), 12, 150, 640
    plot_w = width - label_w - 70
    values = [v for _label, vs in items for v in vs if v is not None]
    top = maximum or (max(values) if values else 1) or 1
    height = 28 + row_h * len(items)
    parts = []
    for i, name in enumerate(series):   # legend
        x = label_w + i * 140
        parts.append(f'<rect x="{x}" y="4" width="10" height="10" fill="{PALETTE[i]}"/>'
                     f'<text x="{x + 14}" y="13" class="legend">{escape(name)}</text>')
    for r, (name, vs) in enumerate(items):
        y = 24 + r * row_h
        short = name if len(name) <= 12 else name[:11] + "…"
        parts.append(f'<text x="{label_w - 6}" y="{y + row_h / 2 + 4:.0f}" text-anchor="end" class="label">'
                     f'<title>{escape(name)}</title>{escape(short)}</text>')
        for i, v in enumerate(vs):
            by = y + 4 + i * bar_h
            if v is None:
                parts.append(f'<text x="{label_w + 4}" y="{by + 10}" class="value">—</text>')
                continue
            w = max(1.0, plot_w * min(v, top) / top)
            parts.append(f'<rect x="{label_w}" y="{by}" width="{w:.1f}" height="{bar_h - 2}" fill="{PALETTE[i]}">'
                         f'<title>{escape(name)} {escape(series[i])}: {cell(v)}{unit}</title></rect>'
                         f'<text x="{label_w + w + 4:.1f}" y="{by + 10}" class="value">{cell(v)}{unit}</text>')
    return _svg(width, height, title, "".join(parts))


def column_chart(title: str, labels: list[str], series: list[tuple[str, list[int]]]) -> Markup:
    """Vertical columns per label (months), one per series side by side."""
    if not labels:
        return Markup("")
    width, height, left, bottom, top_pad = 640, 240, 44, 36, 26
    plot_w, plot_h = width - left - 10, height - bottom - top_pad
    top = max([v for _n, vs in series for v in vs] + [1])
    step = 10 ** max(0, int(math.log10(top)))
    top = math.ceil(top / step) * step or 1
    group_w = plot_w / len(labels)
    bar_w = max(2.0, min(18.0, (group_w - 6) / len(series)))
    parts = []
    for i, (name, _vs) in enumerate(series):
        x = left + i * 120
        parts.append(f'<rect x="{x}" y="6" width="10" height="10" fill="{PALETTE[i]}"/>'
                     f'<text x="{x + 14}" y="15" class="legend">{escape(name)}</text>')
    for k in range(5):
        value = top * k / 4
        y = top_pad + plot_h - plot_h * k / 4
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" class="axis">{value:g}</text>')
    for j, name in enumerate(labels):
        gx = left + j * group_w + (group_w - bar_w * len(series)) / 2
        for i, (sname, vs) in enumerate(series):
            v = vs[j]
            h = plot_h * v / top
            parts.append(f'<rect x="{gx + i * bar_w:.1f}" y="{top_pad + plot_h - h:.1f}" width="{bar_w - 1:.1f}" '
                         f'height="{h:.1f}" fill="{PALETTE[i]}"><title>{escape(name)} {escape(sname)}: {v}</title></rect>')
        parts.append(f'<text x="{left + j * group_w + group_w / 2:.1f}" y="{height - bottom + 16}" '
                     f'text-anchor="middle" class="axis">{escape(name[2:] if len(labels) > 6 else name)}</text>')
    return _svg(width, height, title, "".join(parts))


def share_bar(title: str, parts_in: list[tuple[str, int]]) -> Markup:
    """One 100 % stacked bar with a legend (where matters were resolved)."""
    total = sum(n for _name, n in parts_in)
    if not total:
        return Markup("")
    width, x, parts = 640, 0.0, []
    for i, (name, n) in enumerate(parts_in):
        w = (width - 2) * n / total
        if w > 0:
            parts.append(f'<rect x="{x + 1:.1f}" y="8" width="{w:.1f}" height="28" fill="{PALETTE[i]}">'
                         f'<title>{escape(name)}: {n} ({100 * n / total:.2f}%)</title></rect>')
            if w > 50:
                parts.append(f'<text x="{x + 1 + w / 2:.1f}" y="27" text-anchor="middle" class="inbar">'
                             f'{100 * n / total:.1f}%</text>')
        x += w
        lx = 4 + i * 150
        parts.append(f'<rect x="{lx}" y="46" width="10" height="10" fill="{PALETTE[i]}"/>'
                     f'<text x="{lx + 14}" y="55" class="legend">{escape(name)} {n}</text>')
    return _svg(width, 64, title, "".join(parts))


def build_charts(figures: dict, tables: dict[str, Table]) -> dict[str, Markup]:
    months = figures["monthly"]
    children = figures["children"]
    return {
        "monthly": column_chart(_("月度登记与结案"), [m["month"] for m in months],
                                [(_("登记"), [m["registered"] for m in months]),
                                 (_("结案"), [m["closed"] for m in months])]),
        "children": bar_chart(_("下级辖区办结率与按期办结率"),
                              [(c["name"], [c["closure_rate"], c["on_time_rate"]]) for c in children],
                              [_("办结率"), _("按期办结率")], maximum=100, unit="%"),
        "resolution": share_bar(_("化解层级占比"), [(level_label(r["level"]), r["cases"])
                                                     for r in figures["resolution"]]),
        "category": bar_chart(_("按类别"), [(row[0], [row[1]]) for row in tables["by_category"].rows[:12]],
                              [_("事项")]),
        "colour": bar_chart(_("按风险等级"), [(row[0], [row[1]]) for row in tables["by_colour"].rows],
                            [_("事项")]),
    }


# ------------------------------------------------------------------ exports

def table_csv(table: Table) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if v is None else v for v in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")   # BOM: Excel opens UTF-8 Chinese correctly


SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def tables_xlsx(tables: list[Table], figures: dict) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font
    book = Workbook()
    book.remove(book.active)
    scope = figures["scope"]
    for table in tables:
        sheet = book.create_sheet(SHEET_BAD.sub(" ", table.title)[:31])
        sheet.append([f"{scope['name'] or ''} {figures['period']['start']} — {figures['period']['end']}"])
        sheet.append(table.columns)
        for c in sheet[2]:
            c.font = Font(bold=True)
        for row in table.rows:
            sheet.append([_safe_cell(v) for v in row])
        for i, _col in enumerate(table.columns):
            sheet.column_dimensions[chr(ord("A") + i)].width = 16 if i else 24
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def _safe_cell(value):
    """Text that a spreadsheet would run as a formula is written as text."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


# ------------------------------------------------------------------ views

def _args() -> dict:
    return {k: v for k, v in request.args.items() if k in ("node", "start", "end") and v}


# what the dashboard refuses about a request (its period, its 辖区, the export asked for): answered
# by the page again, saying why, as the other pages answer a refused filter
REFUSALS = (InvalidInput, NotFound, PermissionDenied)


def refused(exc):
    """The dashboard page (with the status of the refusal) saying why, its form refilled with what
    was asked; when the 辖区 was refused, the official's own jurisdictions to choose from instead.
    An official with no dashboard at all has nothing to ask again: the error page says so."""
    roots = Dashboards(service().db).roots(current_user.id)
    if not roots:
        raise exc
    bad = set(getattr(exc, "fields", None) or ())
    if isinstance(exc, (NotFound, PermissionDenied)):   # an unknown node, or one outside the jurisdiction
        bad.add("node")
    typed = {name: (request.args.get(name) or "").strip()[:10] for name in ("start", "end")}
    default_start, default_end = parse_period({})   # a date not typed: the default period's
    return render_template(
        "dashboard/refused.html", reason=exc.text(current_lang()), roots=roots, bad=bad,
        node_choices=roots if "node" in bad else None, node_value=(request.args.get("node") or "")[:64],
        start_value=typed["start"] or default_start.isoformat(), end_value=typed["end"] or default_end.isoformat(),
    ), engine_status(exc)


@bp.route("")
@login_required
def index():
    try:
        figures, start, end = load_figures(current_user.id, request.args)
    except REFUSALS as exc:
        return refused(exc)
    args = {"node": figures["scope"]["code"], "start": start.isoformat(), "end": end.isoformat()}
    tables = build_tables(figures, args)
    return render_template("dashboard/index.html", figures=figures, tables=tables, charts=build_charts(figures, tables),
                           args=args, start=start, end=end, cell=cell, level_label=level_label)


@bp.route("/export/<name>.<fmt>")
@login_required
def export(name, fmt):
    try:
        if fmt not in FORMATS:
            raise InvalidInput("export as csv or xlsx", fields={"format": ["csv or xlsx"]},
                               zh="导出格式只能是 CSV 或 XLSX")
        figures, start, end = load_figures(current_user.id, request.args)
        tables = build_tables(figures, _args())
        if name != "all" and name not in tables:
            raise InvalidInput(f"no table '{name[:40]}'", fields={"table": ["unknown"]}, zh="没有这张统计表")
        if name == "all" and fmt == "csv":
            raise InvalidInput("all tables together export as xlsx", fields={"format": ["xlsx"]},
                               zh="全部统计表请导出为 XLSX")
    except REFUSALS as exc:
        return refused(exc)
    chosen = list(tables.values()) if name == "all" else [tables[name]]
    stem = f"dashboard-{figures['scope']['code'] or 'all'}-{start.isoformat()}-{end.isoformat()}-{name}"
    if fmt == "csv":
        body, mime = table_csv(chosen[0]), "text/csv; charset=utf-8"
    else:
        body, mime = tables_xlsx(chosen, figures), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, mimetype=mime, headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'})


# ------------------------------------------------------------------ JSON API (registered in web/api.py)

class DashboardQuerySchema(Schema):
    start = fields.Date(metadata={"description": "first day (YYYY-MM-DD, China time, 2000-01-01 … 2099-12-31); "
                                                 "default: 12 months ago"})
    end = fields.Date(metadata={"description": "last day, inclusive (2000-01-01 … 2099-12-31); default: today"})
    node = fields.String(metadata={"description": "jurisdiction node code; default: your jurisdiction"})


QUERY_FIELDS = ("start", "end", "node")

_RATE = {"type": "number", "nullable": True, "description": "percent, 2 decimals; null when the denominator is 0"}
RESPONSE_SCHEMA = {
    "type": "object",
    "description": "Every figure of the dashboard; definitions in docs/metrics.md",
    "properties": {
        "scope": {"type": "object", "description": "the node, the period [start, end) and the moment judged"},
        "period": {"type": "object", "properties": {"start": {"type": "string", "format": "date"},
                                                     "end": {"type": "string", "format": "date"}}},
        "headline": {"type": "object", "properties": {
            **{k: {"type": "integer"} for k in ("registered", "due", "closed", "on_time", "rated", "satisfied",
                                                  "verifications", "failed", "resolved", "overdue_cases",
                                                  "overdue_tasks", "urged", "supervision_tasks")},
            **{k: _RATE for k in ("closure_rate", "on_time_rate", "satisfaction_rate", "rework_rate", "grid_rate")}}},
        "resolution": {"type": "array", "items": {"type": "object", "properties": {
            "level": {"type": "string"}, "cases": {"type": "integer"}, "share": _RATE}}},
        "escalations": {"type": "object", "additionalProperties": {"type": "integer"},
                        "description": "matters escalated into town / county / city"},
        **{k: {"type": "array", "items": {"type": "array", "items": {}}, "description": "[code, cases]"}
           for k in ("by_category", "by_colour", "by_process", "by_status")},
        "monthly": {"type": "array", "items": {"type": "object"}},
        "children": {"type": "array", "items": {"type": "object"}, "description": "drill-down: each child node"},
        "petitions": {"type": "object"},
        "workers": {"type": "array", "items": {"type": "object"}},
        "evaluation": {"type": "array", "items": {"type": "object"}},
        "breadcrumb": {"type": "array", "items": {"type": "object"}},
    },
}


def api_dashboard(user):
    from .api import ApiError, json_response, msg
    unknown = set(request.args) - set(QUERY_FIELDS)
    if unknown:
        raise ApiError(400, "invalid", msg("invalid"), fields={k[:100]: [msg("unknown_field")] for k in unknown})
    figures, _start, _end = load_figures(user.id, request.args)
    return json_response(figures)
