"""Auditor pages: case search (with exports), a case's trace (with exports), the
organisation's change log and the login record.

Read-only by construction: every route here is a GET, but an administrator's
lifting of a login lock. The engine decides who sees what (jurisdiction,
personal-data masking); the views parse the query string and hand the files of
engine/export.py out.
"""
from __future__ import annotations

import re
from dataclasses import replace
from datetime import date, datetime

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from sqlalchemy import select

from engine.errors import InvalidInput
from engine.export import FORMATS, MAX_SEARCH_ROWS, Labels, export_org_changes, export_search, export_trace
from engine.login_guard import OUTCOMES as LOGIN_OUTCOMES, LoginRecords
from engine.models import DEPT_NAMES_ZH, LEVEL_NAMES_ZH, ROLE_NAMES_ZH, JurisdictionNode
from engine.org_log import KINDS as ORG_CHANGE_KINDS, OrgChangeLog
from engine.readmodels import labels as org_labels
from engine.search import MAX_LIMIT, STATUSES, CaseSearch, SearchFilters
from engine.trace import SUBMISSIONS, SYSTEM_EVENTS, CaseTrace

from . import audit_api  # noqa: F401  (its /api/v1 routes)
from .dashboard import category_labels, level_label
from .extensions import service
from .i18n import (current_lang, element_name, gettext as _, label, local_time, localise_message, process_name,
                   read_stored)
from .tasks import case_status_label, colour_label, event_details, event_label, file_size, form_keys, role_label

bp = Blueprint("audit", __name__)

PAGE_SIZE = 50
ARGS = ("bk", "process", "status", "node", "from", "to", "participant", "task")


def searcher() -> CaseSearch:
    return CaseSearch(service())


def _field_messages() -> dict:
    return {
        "status": _("请选择有效的案件状态。"), "node": _("找不到该辖区，请从列表中选择。"),
        "participant": _("找不到该用户，请填写办理人的用户名（如 lx_wgy1）。"),
        "created_from": _("请填写有效的日期（年-月-日）。"), "created_to": _("结束日期须为有效日期，且不早于开始日期。"),
        "limit": _("每页条数无效。"), "offset": _("页码无效。"), "business_key": _("案件编号无效。"),
        "process_key": _("请选择有效的流程。"), "task": _("任务无效。"),
    }


def _date(value: str, name: str, errors: dict) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        errors[name] = [_field_messages()[name]]
        return None


def parse_filters(args, limit: int = PAGE_SIZE, offset: int = 0) -> tuple[SearchFilters, dict, dict]:
    """(filters, the raw values to refill the form with, field errors). The search itself
    refuses what names nothing (a process, a jurisdiction or a person unknown)."""
    raw = {k: (args.get(k) or "").strip()[:200] for k in ARGS}
    errors: dict = {}
    filters = SearchFilters(
        business_key=raw["bk"] or None, process_key=raw["process"] or None, status=raw["status"] or None,
        node=raw["node"] or None, created_from=_date(raw["from"], "created_from", errors),
        created_to=_date(raw["to"], "created_to", errors), participant=raw["participant"] or None,
        task=raw["task"] or None, limit=limit, offset=offset)
    return filters, raw, errors


def _page() -> int:
    try:
        return min(max(1, int(request.args.get("page", "1"))), 100_000 // PAGE_SIZE)
    except ValueError:
        return 1


def _localised(exc: InvalidInput) -> dict:
    messages = _field_messages()
    # the page's own words per field, but a department chosen as 辖区 is told why
    return {name: [localise_message(found[0]) if found and found[0] == "must be a jurisdiction"
                   else messages.get(name, _("填写的内容无效。"))]
            for name, found in (exc.fields or {}).items()}


def _node_options(selected: str) -> list:
    """The 辖区 choices: the searcher's jurisdictions down to communities, plus the node the
    query names when it is not among them (a grid, from a link or an earlier search), so that
    the form shows it chosen and searching again keeps it. Its name is shown when it lies in
    the searcher's jurisdiction; otherwise (or when no node has that code) the code itself."""
    nodes = [(n.code, n.name) for n in searcher().scope_nodes(current_user.id)]
    if selected and selected not in {code for code, _name in nodes}:
        user = service().get_user(current_user.id)
        scope = CaseSearch.scope_paths(user) if user is not None else []
        with service().db.read_session() as session:
            node = session.scalar(select(JurisdictionNode).where(JurisdictionNode.code == selected))
            shown = node.name if node is not None and any(node.path.startswith(p) for p in scope) else selected
        nodes.append((selected, shown))
    return nodes


def _search_page(raw: dict, errors: dict, result=None, page: int = 1, searched: bool = True):
    kept = {k: v for k, v in raw.items() if v}
    return render_template(
        "audit/search.html", raw=raw, errors=errors, result=result, page=page, kept=kept, searched=searched,
        statuses=STATUSES, processes=service().processes(), nodes=_node_options(raw["node"]),
        formats=list(FORMATS)), 400 if errors else 200


@bp.route("/audit/cases")
@login_required
def search():
    page = _page()
    filters, raw, errors = parse_filters(request.args, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    result = None
    searched = any(raw.values()) or "go" in request.args
    if searched and not errors:
        try:
            result = searcher().search(current_user.id, filters)
        except InvalidInput as exc:
            errors = _localised(exc)
    return _search_page(raw, errors, result, page, searched)


@bp.route("/audit/cases/export.<fmt>")
@login_required
def export_cases(fmt):
    """The search's rows as a file; bad filters answer the search page (400) saying which."""
    if fmt not in FORMATS:
        abort(404)
    filters, raw, errors = parse_filters(request.args, MAX_LIMIT, 0)
    if errors:
        return _search_page(raw, errors)
    rows = []
    try:
        while len(rows) < MAX_SEARCH_ROWS:
            filters.offset = len(rows)
            result = searcher().search(current_user.id, filters)
            rows.extend(result.rows)
            if not result.has_more:
                break
    except InvalidInput as exc:
        return _search_page(raw, _localised(exc))
    return _file(export_search(rows[:MAX_SEARCH_ROWS], fmt, current_lang(), export_labels()))


def export_labels() -> Labels:
    """The codes of the exports as the pages show them, in the reader's language."""
    categories = category_labels()
    return Labels(status=case_status_label, colour=colour_label, category=lambda code: categories.get(code, code),
                  process=process_name, event=event_label, kind=lambda kind: trace_kind_label(kind) or None,
                  role=role_label, element=element_name, system=_("系统"))


@bp.route("/audit/cases/<business_key>/trace")
@login_required
def trace(business_key):
    result = CaseTrace(service()).trace(current_user.id, business_key, via="trace_page")
    lang = current_lang()
    details = event_details(result.detail, lang)
    return render_template("audit/trace.html", trace=result, view=result.detail, case=result.case,
                           details=details, notes=step_notes(result, details, lang), formats=list(FORMATS),
                           lang=lang, changes=_changes(result, lang), system_events=SYSTEM_EVENTS)


def _changes(trace, lang: str) -> dict[int, list[tuple[str, str, str]]]:
    """{event id: [(field label, before, after)]}: what a step changed, read as its form reads
    (labels for field names, choices and yes/no)."""
    fields = _version_fields(trace.detail.version)

    def value(f, v) -> str:
        if f is not None and f.type == "datetime" and isinstance(v, str):
            # as the step's 提交内容 shows it (the form's local minutes), not the stored ISO text
            try:
                return local_time(datetime.fromisoformat(v), "%Y-%m-%d %H:%M")
            except ValueError:
                return v
        if f is not None and f.choices:
            shown = {c["value"]: label(c, lang) for c in f.choices}
            if isinstance(v, list):
                return _("、").join(shown.get(x, _plain(x)) for x in v) or "—"
            return shown.get(v, _plain(v))
        return _plain(v)
    # A called process (a petition's mediation) may submit a field under a name the caller's
    # forms already use (both have `channel`): the new value reads by the form of the step that
    # submitted it, the earlier one by the form that submitted that, not by the first form of
    # the version holding the name (which read 调解渠道's choice as 信访渠道 and left it a code).
    version = trace.detail.version
    keys, start_form = form_keys(version), version.properties.get("startForm")
    submitted_by: dict = {}       # field name -> the FieldDef that last submitted it
    out = {}
    for step in trace.steps:
        key = (start_form if step.event_type == "case_started"
               else keys.get(step.bpmn_id) if step.event_type == "task_completed" else None)
        form = service().forms.get(key) if key else None
        own = {f.name: f for f in (form.fields if form is not None else ())}
        if step.changed:
            rows = []
            for name, (before, after) in step.changed.items():
                now_f = own.get(name) or fields.get(name)
                was_f = submitted_by.get(name) or fields.get(name)
                rows.append((label(now_f.label, lang) if now_f is not None else name,
                             value(was_f, before), value(now_f, after)))
            out[step.event_id] = rows
        for name in step.submitted or {}:
            if name in own:
                submitted_by[name] = own[name]
    return out


@bp.route("/audit/cases/<business_key>/trace.<fmt>")
@login_required
def trace_export(business_key, fmt):
    if fmt not in FORMATS:
        abort(404)
    result = CaseTrace(service()).trace(current_user.id, business_key, via=f"trace_export_{fmt}")
    lang = current_lang()
    # what each step carried and changed, read as the trace page reads it (people and units by
    # name, fields by their labels), not the stored ids and keys
    details = event_details(result.detail, lang)
    notes, changes = step_notes(result, details, lang), _changes(result, lang)

    def step_data(step) -> list[dict]:
        return [{"key": row.get("key", row.get("name")), "label": row["label"], "value": row["value"]}
                for row in details.get(step.event_id) or notes.get(step.event_id) or []]
    labels = replace(export_labels(), step_data=step_data, step_changes=lambda step: changes.get(step.event_id, []))
    return _file(export_trace(result, fmt, lang, labels))


def _org_change_filters() -> tuple[str, str]:
    """(subject, kind) from the query string, as typed ('' when not given)."""
    return (request.args.get("subject") or "").strip()[:100], (request.args.get("kind") or "").strip()[:40]


def _log_page(read, messages: dict):
    """(page, field errors, status) of a log's page: the engine checks the filters and names
    the bad ones, shown here with `messages` ({field: message})."""
    try:
        return read(), {}, 200
    except InvalidInput as exc:
        errors = {name: [message] for name, message in messages.items() if name in exc.fields}
        return None, errors or {"page": [_("页码无效。")]}, 400


@bp.route("/audit/org-changes")
@login_required
def org_changes():
    """What `gridflow load-org` changed: nodes, accounts, role grants, with who and when."""
    page = _page()
    subject, kind = _org_change_filters()
    result, errors, status = _log_page(
        lambda: OrgChangeLog(service()).changes(current_user.id, subject=subject or None, kind=kind or None,
                                                limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE),
        {"kind": _("请选择有效的变更类型。"), "subject": _("请填写用户名或辖区代码（如 lx_wgy1、linxi）。")})
    kept = {k: v for k, v in (("subject", subject), ("kind", kind)) if v}
    nodes = _node_names(r.detail for r in result.rows) if result is not None else {}
    return render_template("audit/org_changes.html", result=result, errors=errors, page=page, kept=kept,
                           subject=subject, kind=kind, kinds=ORG_CHANGE_KINDS, formats=list(FORMATS),
                           nodes=nodes), status


@bp.route("/audit/org-changes/export.<fmt>")
@login_required
def export_org_change_log(fmt):
    if fmt not in FORMATS:
        abort(404)
    subject, kind = _org_change_filters()
    try:
        rows = OrgChangeLog(service()).all_changes(current_user.id, subject=subject or None, kind=kind or None)
    except InvalidInput:
        return org_changes()   # the page, its form refilled, says which filter is wrong (400)
    nodes = _node_names(r.detail for r in rows)
    return _file(export_org_changes(rows, fmt, current_lang(), org_change_label,
                                    detail_text=lambda detail: "\n".join(
                                        f"{name}: {text}" for name, text in org_change_detail(detail, nodes))))


# notes the engine stores in English (a task's lane nobody holds, a login's outcome), as a
# Chinese reader reads them; English readers see them as stored
_STORED_NOTES_ZH = [
    (re.compile(r"^no (\w+) for department '(\w+)' at or above (.+)$"),
     lambda m: f"{m[3]}及其上级没有{DEPT_NAMES_ZH.get(m[2], m[2])}的{ROLE_NAMES_ZH.get(m[1], m[1])}"),
    (re.compile(r"^nobody holds (\w+) at (.+)$"),
     lambda m: f"{'各级' if m[2] == 'any level' else m[2]}无人担任{ROLE_NAMES_ZH.get(m[1], m[1])}"),
    (re.compile(r"^lane '(.+)' names no role$"), lambda m: f"泳道“{m[1]}”没有写明角色"),
    (re.compile(r"^the case's grid has no (\w+) above it$"),
     lambda m: f"案件所在网格之上没有{LEVEL_NAMES_ZH.get(m[1], m[1])}一级"),
    (re.compile(r"^account deactivated$"), lambda m: "账号已停用"),
    (re.compile(r"^no such account$"), lambda m: "没有该账号"),
    (re.compile(r"^password change$"), lambda m: "修改密码"),
    (re.compile(r"^password change: wrong current password$"), lambda m: "修改密码：原密码错误"),
    (re.compile(r"^by (.+)$"), lambda m: f"由 {m[1]} 解除"),
]


@bp.app_template_global()
def stored_note(text: str | None) -> str:
    return read_stored(text, _STORED_NOTES_ZH)


@bp.app_template_global()
def org_change_label(kind: str) -> str:
    labels = {"node_created": _("新建辖区/单位"), "node_changed": _("修改辖区/单位"), "user_created": _("新建账号"),
              "user_changed": _("修改账号"), "user_deactivated": _("停用账号"), "user_reactivated": _("恢复账号"),
              "role_granted": _("授予角色"), "role_withdrawn": _("撤销角色")}
    return labels.get(kind, kind)


@bp.app_template_global()
def org_change_detail(detail: dict, nodes: dict | None = None) -> list[tuple[str, str]]:
    """[(label, text)] of an organisation change's detail, as an auditor reads it: the fields
    by their names, a role by its name, a level or department type by its label, a node by its
    name with its code, yes/no, and a `[before, after]` pair as 'before → after' (the page and
    the CSV/XLSX export alike; the JSON export keeps the stored detail). `nodes`: {code: name}."""
    names = {"name": _("名称"), "level": _("层级"), "parent": _("上级"), "key_prefix": _("案件编号前缀"),
             "dept_type": _("部门类型"), "active": _("启用"), "phone": _("电话"), "password": _("密码"),
             "role": _("角色"), "node": _("辖区/单位")}
    nodes = nodes if nodes is not None else _node_names([detail])

    def one(field, value) -> str:
        if value is None or value == "":
            return "—"
        if value == "changed":
            return _("已修改（不显示内容）")
        if isinstance(value, bool):
            return _("是") if value else _("否")
        if field == "role":
            return role_label(value)
        if field == "level":
            return _("部门") if value == "department" else level_label(value)
        if field == "dept_type" and isinstance(value, str):
            return _dept_type_label(value)
        if field in ("node", "parent") and isinstance(value, str) and value in nodes:
            return f"{nodes[value]}（{value}）"
        return _plain(value)
    out = []
    for field, value in sorted(detail.items()):
        if isinstance(value, (list, tuple)) and len(value) == 2:
            text = f"{one(field, value[0])} → {one(field, value[1])}"
        else:
            text = one(field, value)
        out.append((names.get(field, field), text))
    return out


def _node_names(details) -> dict[str, str]:
    """{code: name} of the nodes the details name (`node`, `parent`; plain or [before, after]),
    read at once for a page or an export."""
    codes = set()
    for detail in details:
        for field in ("node", "parent"):
            v = detail.get(field)
            codes.update(x for x in (v if isinstance(v, (list, tuple)) else [v]) if isinstance(x, str) and x)
    if not codes:
        return {}
    with service().db.read_session() as session:
        return dict(session.execute(select(JurisdictionNode.code, JurisdictionNode.name)
                                    .where(JurisdictionNode.code.in_(sorted(codes)))).all())


@bp.route("/audit/logins")
@login_required
def login_records():
    """登录日志: who logged in or tried to, when, from where; the names locked now."""
    page = _page()
    username = (request.args.get("username") or "").strip()[:100]
    outcome = (request.args.get("outcome") or "").strip()[:32]
    result, errors, status = _log_page(
        lambda: LoginRecords(service()).attempts(current_user.id, username=username or None, outcome=outcome or None,
                                                 limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE),
        {"outcome": _("请选择有效的登录结果。"), "username": _("请填写有效的用户名（如 lx_wgy1）。")})
    kept = {k: v for k, v in (("username", username), ("outcome", outcome)) if v}
    return render_template("audit/logins.html", result=result, errors=errors, page=page, kept=kept,
                           username=username, outcome=outcome, outcomes=LOGIN_OUTCOMES), status


@bp.route("/audit/logins/unlock", methods=["POST"])
@login_required
def unlock_login():
    """An administrator lifts the lock on a name of their jurisdiction (the engine checks)."""
    username = (request.form.get("username") or "").strip()[:64]
    if LoginRecords(service()).unlock(current_user.id, username):
        flash(_("已解除 {name} 的登录锁定。", name=username))
    else:
        flash(_("{name} 当前未被锁定。", name=username))
    return redirect(url_for("audit.login_records"))


@bp.app_template_global()
def may_unlock_logins() -> bool:
    return current_user.is_authenticated and current_user.has_role("admin")


@bp.app_template_global()
def login_outcome_label(outcome: str) -> str:
    labels = {"succeeded": _("登录成功"), "failed": _("登录失败"), "refused_locked": _("锁定期间被拒绝"),
              "unlocked": _("管理员解锁")}
    return labels.get(outcome, outcome)


@bp.app_template_global()
def may_read_login_records() -> bool:
    return current_user.is_authenticated and LoginRecords(service()).may_read(current_user.id)


@bp.app_template_global()
def may_read_org_changes() -> bool:
    return current_user.is_authenticated and OrgChangeLog(service()).may_read(current_user.id)


def _file(export) -> Response:
    response = Response(export.body, mimetype=export.content_type.split(";")[0])
    response.headers["Content-Type"] = export.content_type
    response.headers["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.app_template_global()
def trace_kind_label(kind: str) -> str:
    """A badge for the events an auditor looks for first; "" for ordinary steps."""
    labels = {"reminder": _("提醒"), "escalation": _("超时升级"), "urge": _("督办"), "reassign": _("改派"),
              "migration": _("版本迁移"),
              "incident": _("系统异常"), "incident_resolved": _("异常已处理"), "unresolved": _("无人承办·转上级"),
              "personal_data_viewed": _("查看个人信息")}
    return labels.get(kind, "")




# --------------------------------------------------------- what a trace step carries

def _via_label(via) -> str:
    """Where a handler was shown personal data (`personal_data_viewed`'s `via`)."""
    labels = {"case_page": _("案件页面"), "task_page": _("任务页面"), "report_form": _("上报表单（引用本案）"),
              "api_case": _("接口：案件"), "api_task": _("接口：任务"), "api_trace": _("接口：全程追溯"),
              "trace_page": _("全程追溯页面")}
    via = str(via or "")
    if via.startswith("trace_export_"):
        return _("导出全程记录（{fmt}）", fmt=via[len("trace_export_"):].upper())
    return labels.get(via, via)


def _dept_type_label(dept_type: str) -> str:
    """A department type (chengguan …) by its Chinese name on a Chinese page; its code on an
    English one, which has no names for them."""
    return DEPT_NAMES_ZH.get(dept_type, dept_type) if current_lang() != "en" else dept_type


def _plain(value) -> str:
    """A value of an event's data as text: lists joined, yes/no, nothing as a dash."""
    if value is None or value == "" or value == []:
        return "—"
    if isinstance(value, bool):
        return _("是") if value else _("否")
    if isinstance(value, (list, tuple)):
        return _("、").join(_plain(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return str(value)


def step_notes(trace, details: dict, lang: str) -> dict[int, list[dict]]:
    """{audit event id: [{"label", "value"}]}: what each step carried that no form labels
    (督办, 改派, uploads, new tasks, personal data views, incidents, migrations, timers …),
    as label and plain text (and the data key each row reads, for the JSON export); people,
    units, roles, steps and fields by their names, in the page's language. The template
    escapes every value (never `|safe`)."""
    steps = [s for s in trace.steps if s.submitted and s.event_type != "step" and s.event_id not in details]
    if not steps:
        return {}
    user_ids, node_ids, usernames = set(), set(), set()
    for s in steps:
        data = s.submitted
        if s.event_type in SUBMISSIONS:
            usernames.update(v for v in (data.get("evaluator"),) if isinstance(v, str))
            continue
        for key in ("holders", "candidates"):
            if isinstance(data.get(key), list):
                user_ids.update(v for v in data[key] if isinstance(v, int))
        user_ids.update(v for v in (data.get("assignee_id"),) if isinstance(v, int))
        node_ids.update(v for v in (data.get("node_id"), data.get("fallback_node_id")) if isinstance(v, int))
        usernames.update(v for v in (data.get("released_by"), data.get("from"), data.get("to")) if isinstance(v, str))
    people, units = org_labels(service().db, user_ids, node_ids)
    logins = service().display_names(usernames)
    process_key = trace.case.process_key
    field_names = _field_labels(trace.detail.version, lang)
    # a field two forms share may read differently in each (报案人电话 / 到场人员及电话): a
    # value is named as the form that recorded it named it, the version's first form only
    # when no form of the case's steps recorded it
    recorded = _recorded_labels(trace, lang)
    step_names = {}
    for process in service().processes():
        if process.key == process_key:
            step_names = dict(process.user_tasks)

    def person(user_id) -> str:
        return (people.get(user_id) if isinstance(user_id, int) else None) or _plain(user_id)

    def login(username, name=None) -> str:
        if not username:
            return "—"
        return f"{name or logins.get(username) or username}（{username}）"

    def lane(role, node_id) -> str:
        node = units.get(node_id, {}).get("name") if isinstance(node_id, int) else None
        return f"{role_label(role)} @ {node}" if node else role_label(role) or "—"

    def step_name(bpmn_id) -> str:
        return element_name(process_key, bpmn_id, step_names.get(bpmn_id, bpmn_id))

    def people_of(ids) -> str:
        return _("、").join(person(i) for i in ids) if isinstance(ids, list) and ids else "—"

    # {key: (label, how its value reads)}; keys an event type shares read the same
    known = {
        "note": (_("督办意见"), _plain), "count": (_("督办次数"), _plain),
        "holders": (_("被督办人"), people_of),
        "reason": (_("原因"), lambda v: stored_note(v) if isinstance(v, str) else _plain(v)),
        "released_by": (_("退回操作人"), login),
        "assignee_id": (_("指定承办人"), person), "candidates": (_("候选承办人"), people_of),
        "lane": (_("原定岗位"), lambda v: role_label(v) if isinstance(v, str) else _plain(v)),
        "filename": (_("文件名"), _plain), "size": (_("文件大小"), file_size),
        "via": (_("查看途径"), _via_label),
        "fields": (_("查看的字段"), lambda v: _("、").join(names.get(f) or field_names.get(f, f) for f in v)
                   if isinstance(v, list) else _plain(v)),
        "kind": (_("类型"), lambda v: _("定时器") if v == "timer" else _plain(v)),
        "error": (_("错误"), _plain), "attempts": (_("尝试次数"), _plain), "incident": (_("异常编号"), _plain),
        "process": (_("流程"), lambda v: process_name(v, trace.detail.version.name) if v == process_key else _plain(v)),
        "from_version": (_("原版本"), _plain), "to_version": (_("新版本"), _plain),
        "changed": (_("定义有变化的环节"), lambda v: _("、").join(step_name(i) for i in v)
                    if isinstance(v, list) else _plain(v)),
        "open_tasks": (_("迁移时的待办环节"), lambda v: _("、").join(step_name(i) for i in v)
                       if isinstance(v, list) else _plain(v)),
        "due": (_("到期时间"), _moment), "next": (_("下次到期"), _moment),
    }
    # internal ids (a file's, a version's), and what is shown above under another label
    hidden = {"attachment", "from_name", "to_name", "from_version_id", "to_version_id", "role", "node_id",
              "fallback_role", "fallback_node_id"}
    out = {}
    for s in steps:
        data, rows = s.submitted, []
        names = recorded.get(s.event_id, {})
        if s.event_type in SUBMISSIONS:
            # what an official entered with no form to label it: its fields by their labels;
            # a scheduled start's data (engine/scheduled_starts.start_data) by its own labels, its
            # units' ids left out (their names are beside them: 村（社区）, 承办过您事项的职能部门)
            for k, v in data.items():
                if k.endswith("_node_id") and isinstance(v, int):
                    continue
                if k in names or k in field_names:
                    rows.append({"key": k, "label": names.get(k) or field_names[k], "value": _plain(v)})
                elif k == "scheduled_for":
                    rows.append({"key": k, "label": _("计划发起时间"), "value": _moment(v)})
                elif k == "evaluator":
                    rows.append({"key": k, "label": _("考评人"), "value": login(v) if isinstance(v, str) else _plain(v)})
                elif k.startswith("dept_") and k.endswith("_name"):
                    dept = k[len("dept_"):-len("_name")]
                    rows.append({"key": k, "label": _("职能部门（{kind}）").format(kind=_dept_type_label(dept)),
                                 "value": _plain(v)})
                else:
                    rows.append({"key": k, "label": k, "value": _plain(v)})
            out[s.event_id] = rows
            continue
        if s.event_type == "task_reassigned":
            rows.append({"key": "from", "label": _("原承办人"), "value": login(data.get("from"), data.get("from_name"))})
            rows.append({"key": "to", "label": _("改派给"), "value": login(data.get("to"), data.get("to_name"))
                         if data.get("to") else _("退回组内")})
            data = {k: v for k, v in data.items() if k not in ("from", "to")}
            if "reason" in data:
                rows.append({"key": "reason", "label": _("改派理由"), "value": _plain(data.pop("reason"))})
        if "role" in data or "node_id" in data:
            rows.append({"key": "node_id", "label": _("承办岗位"), "value": lane(data.get("role"), data.get("node_id"))})
        if "fallback_role" in data or "fallback_node_id" in data:
            rows.append({"key": "fallback_node_id", "label": _("转交"),
                         "value": lane(data.get("fallback_role"), data.get("fallback_node_id"))})
        for key, value in data.items():
            if key in hidden:
                continue
            if value is None or value == "" or value == []:
                continue          # nothing said: no row (an unassigned task, no next timer …)
            name, show = known.get(key, (key, _plain))
            rows.append({"key": key, "label": name, "value": show(value)})
        if rows:
            out[s.event_id] = rows
    return out


def _moment(value) -> str:
    """An ISO time of an event's data in China time, as the page shows times."""
    if not value:
        return "—"
    try:
        return local_time(datetime.fromisoformat(str(value)), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def _version_fields(version) -> dict:
    """{field name: its FieldDef} over the forms of a process version (start form first)."""
    keys = [version.properties.get("startForm")] + list(form_keys(version).values())
    out: dict = {}
    for key in dict.fromkeys(k for k in keys if k):
        form = service().forms.get(key)
        for f in (form.fields if form is not None else ()):
            out.setdefault(f.name, f)
    return out


def _recorded_labels(trace, lang: str) -> dict[int, dict[str, str]]:
    """{event id: {field name: its label}}: at each step, every field of the case's data by
    the label of the form that recorded its value last (a submission: by its own form)."""
    version = trace.detail.version
    keys, start_form = form_keys(version), version.properties.get("startForm")
    forms = service().forms
    last: dict[str, str] = {}
    out = {}
    for step in trace.steps:
        if step.event_type in SUBMISSIONS:
            key = start_form if step.event_type == "case_started" else keys.get(step.bpmn_id)
            form = forms.get(key) if key else None
            own = {f.name: label(f.label, lang) for f in (form.fields if form is not None else ())
                   if not f.readonly}
            last.update((name, own[name]) for name in step.submitted or {} if name in own)
            out[step.event_id] = own
        elif "fields" in (step.submitted or {}):          # a view of personal data: the fields it showed
            out[step.event_id] = dict(last)
    return out


def _field_labels(version, lang: str) -> dict[str, str]:
    """{field name: its label} over the forms of a process version (start form first)."""
    return {name: label(f.label, lang) for name, f in _version_fields(version).items()}
