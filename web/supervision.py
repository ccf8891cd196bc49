"""督办台 (the supervision board), notifications, and the admins' incident list.

The engine decides who may see and do what (`engine/supervision.py`,
`engine/notifications.py`); these views turn requests into calls and flash
what happened. The unread count in the top bar comes from a context processor.
"""
from __future__ import annotations

import logging
import math
import re

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied

from .auth import safe_next
from .errors import engine_status
from .extensions import service
from .i18n import current_lang, gettext as _, task_name

log = logging.getLogger("gridflow.web")

bp = Blueprint("supervision", __name__)

PAGE_SIZE = 50
CASE_PAGE_RE = re.compile(r"/cases/([^/?#]+)")


@bp.app_context_processor
def _unread_notifications():
    """`unread_notifications` for the top bar: one indexed COUNT per page."""
    if not current_user.is_authenticated:
        return {"unread_notifications": 0}
    try:
        return {"unread_notifications": service().notifier.unread_count(current_user.id)}
    except Exception:  # never let the badge break a page (error pages use the layout too)
        log.exception("unread notification count failed")
        return {"unread_notifications": 0}


@bp.app_template_global()
def notification_label(kind: str) -> str:
    labels = {"new_task": _("新任务"), "reminder": _("催办提醒"), "escalation": _("升级提醒"),
              "urge": _("督办"), "incident": _("系统异常")}
    return labels.get(kind, kind)


def _page() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


# ------------------------------------------------------------------ board

@bp.route("/supervision")
@login_required
def board():
    return render_template("supervision.html", board=service().supervision.board(current_user.id),
                           urge_refused={})


@bp.route("/supervision/tasks/<task_id>/urge", methods=["POST"])
@login_required
def urge(task_id):
    back = safe_next(request.form.get("next") or url_for("supervision.board"))
    note = request.form.get("note", "")
    try:
        item = service().supervision.urge(task_id, current_user.id, note)
    except (InvalidInput, Conflict, PermissionDenied, NotFound) as exc:
        return _urge_refused(task_id, note, exc)
    flash(_("已督办：{name}（第 {n} 次）", name=task_name(item), n=item.urge_count))
    return redirect(back)


def _urge_refused(task_id: str, note, exc):
    """The board again, saying why, with the note as it was typed in its field (a redirect lost
    it, and a 督办意见 is often a paragraph); the urge recorded nothing (the engine refused it in
    its transaction). A task with no form on the board (finished meanwhile, or one's own) gets
    the note shown at the top, to copy. Someone the board is refused to gets the error page."""
    try:
        board_ = service().supervision.board(current_user.id)
    except PermissionDenied:
        raise   # not the urge's reason: the board itself is not theirs (403)
    # where its form is: a row of one's own task has none (it is one's to work, not to urge)
    on_board = any(row.item.id == task_id and not row.mine for group in board_.groups for row in group.rows)
    refused = {"task_id": task_id, "note": note if isinstance(note, str) else "", "on_board": on_board,
               "error": _("未督办：{why}", why=exc.text(current_lang()))}
    return render_template("supervision.html", board=board_, urge_refused=refused), engine_status(exc)


@bp.route("/supervision/tasks/<task_id>/reassign", methods=["POST"])
@login_required
def reassign(task_id):
    """改派: to another official (`to`, a username), or back to the task's group (`to` empty)."""
    back = safe_next(request.form.get("next") or url_for("supervision.board"))
    to, reason = request.form.get("to"), request.form.get("reason")
    try:
        item = service().supervision.reassign(task_id, _username_of(task_id, to), reason, current_user.id)
    except (InvalidInput, Conflict) as exc:   # back where the official was, told what to change
        message = _("未改派：{why}", why=exc.text(current_lang()))
        case_page = CASE_PAGE_RE.fullmatch(back)
        if case_page and isinstance(exc, InvalidInput):
            # the case page again, its form open with what was typed (a redirect lost the reason)
            from .cases import render_case
            return render_case(case_page.group(1), status=400, reassign_refused={
                "task_id": task_id, "to": to or "", "reason": reason or "", "error": message})
        flash(message, "error")
        return redirect(back)
    if item.assignee_id:
        flash(_("已改派：{name}", name=task_name(item)))
    else:
        flash(_("已退回组内：{name}（同岗位人员可认领）", name=task_name(item)))
    return redirect(back)


def _username_of(task_id: str, to: str | None) -> str | None:
    """The username `to` names: officials type the name they see in the list (马俊) as often as
    its username (lxz_cg); a name that is exactly one official's in the task's list is theirs."""
    if not to or not to.strip():
        return to
    typed = to.strip()
    choices = service().supervision.reassign_choices_of(task_id)
    if any(username == typed for username, _name in choices):
        return typed
    named = [username for username, name in choices if name == typed]
    return named[0] if len(named) == 1 else to


# ---------------------------------------------------------- notifications

@bp.route("/notifications")
@login_required
def notifications():
    notifier = service().notifier
    total = notifier.count(current_user.id)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(_page(), pages)
    rows = notifier.page(current_user.id, limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE) if total else []
    return render_template("notifications.html", rows=rows, total=total, page=page, pages=pages)


def _target(row) -> str:
    n = row.notification
    if n.work_item_id:
        return url_for("tasks.show", task_id=n.work_item_id)
    if row.business_key:
        return url_for("cases.show", business_key=row.business_key)
    if n.kind == "incident" and current_user.has_role("designer", "admin"):
        return url_for("designer.library")   # a process that failed on a start: where it is mended
    return url_for("supervision.notifications")


@bp.route("/notifications/<int:notification_id>/open")
@login_required
def open_notification(notification_id):
    """Follow a notification to its task or case, marking it read."""
    return redirect(_target(service().notifier.mark_read(current_user.id, notification_id)))


@bp.route("/notifications/<int:notification_id>/read", methods=["POST"])
@login_required
def mark_read(notification_id):
    service().notifier.mark_read(current_user.id, notification_id)
    return redirect(safe_next(request.form.get("next") or url_for("supervision.notifications")))


@bp.route("/notifications/read-all", methods=["POST"])
@login_required
def mark_all_read():
    count = service().notifier.mark_all_read(current_user.id)
    flash(_("已将 {n} 条通知标为已读", n=count))
    return redirect(url_for("supervision.notifications"))


# -------------------------------------------------------------- incidents

@bp.route("/admin/incidents")
@login_required
def incidents():
    return render_template("incidents.html", rows=service().supervision.open_incidents(current_user.id))


@bp.route("/admin/incidents/<int:incident_id>/resolve", methods=["POST"])
@login_required
def resolve_incident(incident_id):
    service().supervision.resolve_incident(incident_id, current_user.id)
    flash(_("已处理，案件的定时器已重新启用"))
    return redirect(url_for("supervision.incidents"))
