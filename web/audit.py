"""Auditor pages: case search (with exports), a case's trace (with exports), the
organisation's change log and the login record.

Read-only by construction: every route here is a GET, but an administrator's
lifting of a login lock. The engine decides who sees what (jurisdiction,
personal-data masking); the views parse the query string and hand the files of
engine/export.py out.
"""
from __future__ import annotations

from datetime import date

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from engine.errors import InvalidInput
from engine.export import FORMATS, MAX_SEARCH_ROWS, export_org_changes, export_search, export_trace
from engine.login_guard import OUTCOMES as LOGIN_OUTCOMES, LoginRecords
from engine.org_log import KINDS as ORG_CHANGE_KINDS, OrgChangeLog
from engine.search import MAX_LIMIT, STATUSES, CaseSearch, SearchFilters
from engine.trace import CaseTrace

from . import audit_api  # noqa: F401  (its /api/v1 routes)
from .extensions import service
from .i18n import current_lang, gettext as _
from .tasks import event_details

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
    """(filters, the raw values to refill the form with, field errors)."""
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
    return {name: [messages.get(name, _("填写的内容无效。"))] for name in (exc.fields or {})}


@bp.route("/audit/cases")
@login_required
def search():
    page = _page()
    filters, raw, errors = parse_filters(request.args, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    result, status = None, 200
    searched = any(raw.values()) or "go" in request.args
    if searched and not errors:
        try:
            result = searcher().search(current_user.id, filters)
        except InvalidInput as exc:
            errors = _localised(exc)
    if errors:
        status = 400
    kept = {k: v for k, v in raw.items() if v}
    return render_template(
        "audit/search.html", raw=raw, errors=errors, result=result, page=page, kept=kept, searched=searched,
        statuses=STATUSES, processes=service().processes(), nodes=searcher().scope_nodes(current_user.id),
        formats=list(FORMATS)), status


@bp.route("/audit/cases/export.<fmt>")
@login_required
def export_cases(fmt):
    if fmt not in FORMATS:
        abort(404)
    filters, _raw, errors = parse_filters(request.args, MAX_LIMIT, 0)
    if errors:
        abort(400)
    rows = []
    try:
        while len(rows) < MAX_SEARCH_ROWS:
            filters.offset = len(rows)
            result = searcher().search(current_user.id, filters)
            rows.extend(result.rows)
            if not result.has_more:
                break
    except InvalidInput:
        abort(400)
    return _file(export_search(rows[:MAX_SEARCH_ROWS], fmt, current_lang()))


@bp.route("/audit/cases/<business_key>/trace")
@login_required
def trace(business_key):
    result = CaseTrace(service()).trace(current_user.id, business_key, via="trace_page")
    lang = current_lang()
    return render_template("audit/trace.html", trace=result, view=result.detail, case=result.case,
                           details=event_details(result.detail, lang), formats=list(FORMATS), lang=lang)


@bp.route("/audit/cases/<business_key>/trace.<fmt>")
@login_required
def trace_export(business_key, fmt):
    if fmt not in FORMATS:
        abort(404)
    result = CaseTrace(service()).trace(current_user.id, business_key, via=f"trace_export_{fmt}")
    return _file(export_trace(result, fmt, current_lang()))


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
    return render_template("audit/org_changes.html", result=result, errors=errors, page=page, kept=kept,
                           subject=subject, kind=kind, kinds=ORG_CHANGE_KINDS, formats=list(FORMATS)), status


@bp.route("/audit/org-changes/export.<fmt>")
@login_required
def export_org_change_log(fmt):
    if fmt not in FORMATS:
        abort(404)
    subject, kind = _org_change_filters()
    try:
        rows = OrgChangeLog(service()).all_changes(current_user.id, subject=subject or None, kind=kind or None)
    except InvalidInput:
        abort(400)
    return _file(export_org_changes(rows, fmt, current_lang()))


@bp.app_template_global()
def org_change_label(kind: str) -> str:
    labels = {"node_created": _("新建辖区/单位"), "node_changed": _("修改辖区/单位"), "user_created": _("新建账号"),
              "user_changed": _("修改账号"), "user_deactivated": _("停用账号"), "user_reactivated": _("恢复账号"),
              "role_granted": _("授予角色"), "role_withdrawn": _("撤销角色")}
    return labels.get(kind, kind)


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
    labels = {"reminder": _("提醒"), "escalation": _("超时升级"), "urge": _("督办"), "migration": _("版本迁移"),
              "incident": _("系统异常"), "incident_resolved": _("异常已处理"), "unresolved": _("无人承办·转上级"),
              "personal_data_viewed": _("查看个人信息")}
    return labels.get(kind, "")


