"""The task page: the case summary, the task's form, the case's files and history.

Also the helpers the inbox and the case pages share: labels for colours, roles,
statuses and audit events; field messages in the official's language; and the
handling of file fields (uploads are checked first, stored before the
transition that links them to the case).
"""
from __future__ import annotations

from datetime import timedelta

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from engine import clock
from engine.errors import InvalidInput, PermissionDenied
from engine.bpmn import LANE_IN_BRACKETS_RE, parse_lane
from engine.models import ROLE_NAMES_ZH
from forms import FormValidationError
from forms.render import coerce_form_post, form_context

from .auth import safe_next
from .department_routing import department_routing
from .extensions import service
from .i18n import current_lang, gettext as _, localise_errors, task_name

bp = Blueprint("tasks", __name__)

COLOURS = ("blue", "yellow", "orange", "red")


# ------------------------------------------------------------------ labels

@bp.app_template_global()
def colour_label(colour: str | None) -> str:
    labels = {"blue": _("蓝"), "yellow": _("黄"), "orange": _("橙"), "red": _("红")}
    return labels.get(colour or "", colour or "")


@bp.app_template_global()
def role_label(role: str | None) -> str:
    return _(ROLE_NAMES_ZH[role]) if role in ROLE_NAMES_ZH else role or ""


def lane_label(lane: str) -> str:
    """A lane as the diagram shows it in English: `网格长 (grid.grid_leader)` -> `Grid leader
    (grid.grid_leader)`; a lane that names no role stays as drawn."""
    ref = parse_lane(lane)
    if ref is None or ref.role not in ROLE_NAMES_ZH:
        return lane
    bracket = LANE_IN_BRACKETS_RE.search(lane)
    return f"{role_label(ref.role)} ({bracket.group(1) if bracket else lane.strip()})"


@bp.app_template_global()
def event_label(event_type: str) -> str:
    labels = {
        "case_started": _("上报/发起"), "task_created": _("生成任务"), "task_claimed": _("认领"),
        "task_unclaimed": _("退回"), "task_completed": _("办理"), "step": _("流转"),
        "lane_unresolved": _("无人承办·转上级"), "task_cancelled": _("取消"),
        "attachment_added": _("上传附件"), "case_closed": _("办结"),
        "urged": _("督办"), "task_reassigned": _("改派"), "incident": _("系统异常"),
        "incident_resolved": _("异常已处理"), "timers_fired": _("时限到期处理"),
        "personal_data_viewed": _("查看个人信息"), "case_migrated": _("版本迁移"),
    }
    return labels.get(event_type, event_type)


@bp.app_template_global()
def case_status_label(status: str | None) -> str:
    labels = {"open": _("办理中"), "completed": _("已办结"), "cancelled": _("已撤销")}
    return labels.get(status or "", status or "")


@bp.app_template_global()
def task_status_label(status: str | None) -> str:
    labels = {"open": _("待办"), "completed": _("已办理"), "cancelled": _("已取消")}
    return labels.get(status or "", status or "")


@bp.app_template_global()
def due_class(due_at) -> str:
    """`overdue` when past, `due-soon` within 24 hours, else nothing."""
    if due_at is None:
        return ""
    now = clock.now()
    if due_at < now:
        return "overdue"
    if due_at - now <= timedelta(hours=24):
        return "due-soon"
    return ""


@bp.app_template_global()
def holder_text(item, user_names: dict, node_names: dict) -> str:
    """Who holds an open task: the assignee, or 「<role> @ <node>」 while unclaimed."""
    if item.assignee_id:
        return user_names.get(item.assignee_id) or _("（未知用户）")
    if item.role:
        node = node_names.get(item.candidate_node_id, "")
        return f"{role_label(item.role)} @ {node}" if node else role_label(item.role)
    return _("指定人员")


@bp.app_template_global()
def file_size(size: int | None) -> str:
    size = size or 0
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size / 1024 / 1024:.1f} MB"


def stray_errors(form, errors: dict) -> list[str]:
    """Messages under names that are not fields of the form (shown above it)."""
    names = {f.name for f in form.fields} if form else set()
    return [f"{name}: {m}" if name not in ("_schema", "file") else m
            for name, messages in errors.items() if name not in names for m in messages]


# ------------------------------------------------------------------- files

def file_fields(form) -> list:
    return [f for f in form.input_fields if f.type == "file"] if form else []


def collect_files(form) -> dict[str, list[tuple[str, bytes]]]:
    """{file field: [(filename, bytes)]} from the request; empty file inputs are skipped."""
    out = {}
    for f in file_fields(form):
        uploads = [(fs.filename, fs.read()) for fs in request.files.getlist(f.name) if fs and fs.filename]
        if uploads:
            out[f.name] = uploads
    return out


def check_files(files: dict) -> dict[str, list[str]]:
    """The type and size of every upload, checked before anything is stored."""
    from engine.attachments import KINDS, mismatch, sniff
    errors: dict[str, list[str]] = {}
    for name, uploads in files.items():
        for filename, data in uploads:
            try:
                service().attachments.check(filename, data)
            except InvalidInput:
                kind = sniff(data)
                wrong = mismatch(filename, kind[0]) if kind else None
                limit = next(lim for ct, lim, _check in KINDS if ct == kind[0]) if kind else None
                too_large = limit is not None and len(data) > limit
                if not data:
                    message = _("文件「{name}」是空的。", name=filename)
                elif kind is None:
                    message = _("文件「{name}」不是可接受的类型：请上传 JPEG、PNG、GIF、WebP 图片（不超过 10 MB）或 PDF 文件（不超过 20 MB）。",
                                name=filename)
                elif too_large and wrong is not None:   # both: renaming alone would be refused for the size
                    message = _("文件「{name}」有两处问题：内容是 {kind}，大小为 {size}，超过此类文件的上限 {limit} MB；文件名为 {suffix}，与内容不符。请选择不超过 {limit} MB 的文件，并改正文件名。",
                                name=filename, size=file_size(len(data)), kind=_kind_name(kind[0]),
                                limit=limit // (1024 * 1024), suffix=wrong[0])
                elif wrong is not None:
                    message = _("文件「{name}」的文件名为 {suffix}，但内容是 {kind}；请改正文件名或重新选择文件。",
                                name=filename, suffix=wrong[0], kind=_kind_name(kind[0]))
                else:
                    message = _("文件「{name}」太大：此类文件不能超过 {limit} MB。", name=filename,
                                limit=limit // (1024 * 1024))
                errors.setdefault(name, []).append(message)
    return errors


def _kind_name(content_type: str) -> str:
    """What an accepted file type is called, in the page's language (engine/attachments.py NAMES)."""
    from engine.attachments import NAMES
    _endings, en, zh = NAMES[content_type]
    return en if current_lang() == "en" else zh


def upload_files(files: dict, case_ref=None) -> dict[str, list[str]]:
    """Store the (checked) uploads; {file field: [attachment ids]} for the submission."""
    return {name: [service().upload_attachment(current_user.id, filename, data, case_ref=case_ref).id
                   for filename, data in uploads]
            for name, uploads in files.items()}


def validate_submission(form, data: dict, files: dict) -> dict[str, list[str]]:
    """The form's own validation, run before any upload is stored (uploads count as given)."""
    if form is None:
        return {}
    trial = dict(data)
    for name, uploads in files.items():
        trial[name] = [f"upload-{i}" for i in range(len(uploads))]
    try:
        form.validate(trial, now=clock.now())
    except FormValidationError as exc:   # some messages carry their own Chinese (another field's label)
        return localise_errors(exc.fields_zh if exc.fields_zh and current_lang() != "en" else exc.fields)
    return {}


# ------------------------------------------------------------------- views

def _case_view(task_detail):
    """The case as its page shows it, or None if the worker may not see the whole case."""
    from engine.personal_data import PersonalData
    try:
        view = service().view_case(current_user.id, task_detail.case.id)
        return PersonalData(service()).guard_case_detail(current_user.id, view, "task_page")
    except PermissionDenied:
        return None


def _render(task_id: str, detail=None, submitted=None, errors=None, status=200):
    from engine.personal_data import PersonalData
    detail = detail or service().task_detail(current_user.id, task_id)
    view = _case_view(detail)
    detail = PersonalData(service()).guard_task_detail(current_user.id, detail, "task_page", record=view is None)
    lang = current_lang()
    errors = errors or {}
    fields = form_context(detail.form, detail.case_data, submitted, errors, lang) if detail.form else []
    _name_department_places(fields, department_routing(detail.form, detail.department_places, lang))
    return render_template(
        "task.html", detail=detail, item=detail.item, case=detail.case, form=detail.form, view=view,
        details=event_details(view, lang), fields=fields, input_fields=[f for f in fields if not f.get("readonly")],
        has_files=bool(file_fields(detail.form)), errors=errors, stray=stray_errors(detail.form, errors),
        lang=lang, next_url=request.path), status


def _name_department_places(fields, routing: dict | None) -> None:
    """A dispatch form's department choices say where a task for them would go when that is not
    a department of the dispatcher's own place (住建 at a town without one: the county's bureau),
    so the dispatcher knows before submitting rather than after."""
    if not routing:
        return
    for f in fields:
        if f["name"] not in routing["fields"] or f.get("readonly"):
            continue
        for choice in f["choices"]:
            note = routing["choices"].get(choice["value"], {}).get("note")
            if note:
                choice["label"] = _("{label}（{note}）", label=choice["label"], note=note)


@bp.route("/tasks/<task_id>", methods=["GET"])
@login_required
def show(task_id):
    return _render(task_id)


@bp.route("/tasks/<task_id>", methods=["POST"])
@login_required
def complete(task_id):
    detail = service().task_detail(current_user.id, task_id)
    form = detail.form
    data = coerce_form_post(form, request.form) if form else {}
    if request.form.get("_resume") == "1":
        # back from the login an idle logout asked for (web/auth.py): the form as it was typed
        flash(_("这是您退出前填写的内容，尚未提交；请核对后提交。"))
        return _render(task_id, detail, data)
    if detail.item.status == "completed" and detail.item.completed_by_id == current_user.id:
        # the official's own second send (a double tap, back and 提交 again): a notice, not an error
        flash(_("您已提交过“{name}”，本次未重复提交。", name=task_name(detail.item)))
        return redirect(url_for("inbox.index"))
    if not detail.may_work:
        # Not (or no longer) theirs: the engine says why (403 not yours, 409 done by another).
        service().complete_task(task_id, data, current_user.id)
        flash(_("已提交：{name}", name=task_name(detail.item)))  # it became theirs meanwhile (rare)
        return redirect(url_for("inbox.index"))
    files = collect_files(form)
    errors = validate_submission(form, data, files)
    errors.update(check_files(files))
    if errors:
        return _render(task_id, detail, data, errors, 400)
    data.update(upload_files(files))
    try:
        service().complete_task(task_id, data, current_user.id)
    except InvalidInput as exc:
        return _render(task_id, detail, data, localise_errors(exc.field_texts(current_lang())) or {"_schema": [exc.text(current_lang())]}, 400)
    flash(_("已提交：{name}", name=task_name(detail.item)))
    return redirect(url_for("inbox.index"))


@bp.route("/tasks/<task_id>/claim", methods=["POST"])
@login_required
def claim(task_id):
    item = service().claim(task_id, current_user.id)
    flash(_("已认领：{name}", name=task_name(item)))
    return redirect(safe_next(request.form.get("next")))


@bp.route("/tasks/<task_id>/unclaim", methods=["POST"])
@login_required
def unclaim(task_id):
    item = service().unclaim(task_id, current_user.id)
    flash(_("已退回：{name}（其他同事可认领）", name=task_name(item)))
    return redirect(safe_next(request.form.get("next")))


# --------------------------------------------------------- case read-outs

_FORM_KEYS: dict[int, dict] = {}


def form_keys(version) -> dict[str, str]:
    """{user task bpmn id: form key} of a deployed version (parsed once, cached)."""
    if version.id not in _FORM_KEYS:
        from engine.bpmn import all_specs, is_user_task, user_task_info
        parsed = service().specs.get(version)
        keys = {}
        for _spec, task_spec in all_specs(parsed):
            if is_user_task(task_spec):
                info = user_task_info(task_spec, parsed.camunda_attrs)
                if info.form_key:
                    keys.setdefault(info.bpmn_id, info.form_key)
        _FORM_KEYS[version.id] = keys
    return _FORM_KEYS[version.id]


def _shown(form, data: dict, lang: str) -> list[dict]:
    """Label and display value of each field of `form` that `data` holds (files are listed apart)."""
    from forms import FormDef
    present = [f for f in form.fields if f.type != "file" and data.get(f.name) not in (None, "", [])]
    if not present:
        return []
    trial = FormDef(key=form.key, title=form.title, fields=present)
    shown = [{"name": f["name"], "label": f["label"], "value": f["display_value"], "type": f["type"]}
             for f in form_context(trial, data, submitted=data, lang=lang)]
    people = service().display_names(e["value"] for e in shown if e["type"] == "person")
    for entry in shown:
        if entry["type"] == "person" and entry["value"] in people:
            entry["value"] = f"{people[entry['value']]}（{entry['value']}）"
    return shown


def case_fields(view, lang: str) -> list[dict]:
    """The case data as labelled values: the start form's fields first, then the
    fields of the process's task forms, each once."""
    keys = [view.version.properties.get("startForm")] + list(form_keys(view.version).values())
    seen, out = set(), []
    for key in dict.fromkeys(k for k in keys if k):
        form = service().forms.get(key)
        if form is None:
            continue
        for entry in _shown(form, view.data, lang):
            if entry["name"] not in seen:
                seen.add(entry["name"])
                out.append(entry)
    return out


def event_details(view, lang: str) -> dict[int, list[dict]]:
    """{audit event id: what was submitted}, for reports and completed tasks."""
    if view is None:
        return {}
    keys = form_keys(view.version)
    out = {}
    for event in view.events:
        if event.event_type == "case_started":
            key = view.version.properties.get("startForm")
        elif event.event_type == "task_completed":
            key = keys.get(event.bpmn_id)
        else:
            continue
        form = service().forms.get(key) if key else None
        if form is not None and event.data:
            shown = _shown(form, event.data, lang)
            if shown:
                out[event.id] = shown
    return out
