"""Starting a case, the case page (data, open tasks, history, files, diagram),
attachment downloads, and the bpmn-js files served from node_modules."""
from __future__ import annotations

import re
import uuid

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, send_file, url_for
from flask_login import current_user, login_required

from engine.diagram import relabel
from engine.errors import AlreadyStarted, InvalidInput

from .extensions import send_npm_dist, service
from .i18n import current_lang, element_name, gettext as _, localise_errors
from .tasks import (case_fields, check_files, collect_files, event_details, file_fields, lane_label,
                    stray_errors, upload_files, validate_submission)

bp = Blueprint("cases", __name__)

INLINE_TYPES = ("image/", "application/pdf")
START_TOKEN_RE = re.compile(r"[0-9a-f]{32}")


# ------------------------------------------------------------------- start

@bp.route("/start")
@login_required
def start_list():
    if current_user.read_only:
        abort(403)
    return render_template("start_list.html", options=service().startable(current_user.id))


def _option(process_key: str):
    """The StartOption of `process_key` for the current user: 403 if deployed but not theirs, else 404."""
    if current_user.read_only:
        abort(403)
    for option in service().startable(current_user.id):
        if option.process_key == process_key:
            return option
    from .inbox import process_choices
    abort(403 if any(p.key == process_key for p in process_choices()) else 404)


def _start_form(option):
    if not option.start_form:
        return None
    form = service().forms.get(option.start_form)
    if form is None:
        abort(500)
    return form


def _start_token(posted: str | None = None) -> str:
    """The token a report form carries (engine: Case.start_token): the one it was sent with, when
    it comes back refused, so that sending it again still starts one case; else a new one."""
    return posted if posted and START_TOKEN_RE.fullmatch(posted) else uuid.uuid4().hex


def _render_start(option, form, submitted=None, grid=None, errors=None, status=200, source=None):
    from forms.render import form_context
    lang = current_lang()
    errors = errors or {}
    if grid is None and len(option.grids) == 1:
        grid = option.grids[0][0]
    # a report made from another case (a household visit's findings): its fields' `default_from`
    fields = form_context(form, source.data if source else {}, submitted, errors, lang) if form else []
    return render_template(
        "start_form.html", option=option, form=form, fields=fields, grid=grid, source=source,
        grid_errors=errors.get("grid", []), stray=stray_errors(form, {k: v for k, v in errors.items() if k != "grid"}),
        errors=errors, has_files=bool(file_fields(form)), lang=lang,
        start_token=_start_token(request.form.get("start_token") if submitted is not None else None)), status


@bp.route("/start/<process_key>", methods=["GET"])
@login_required
def start_form(process_key):
    option = _option(process_key)
    source, grid = None, None
    key = (request.args.get("from_case") or "").strip()
    if key:
        source = _case_detail(key, via="report_form")   # 403/404 as the case page: only a case the official may see
        # the report's grid: the source case's, when it is one of the official's (by its code:
        # grids of different communities may share a name, 第一网格)
        grid = source.grid_code if any(code == source.grid_code for code, _name, _id in option.grids) else None
    return _render_start(option, _start_form(option), grid=grid, source=source)


@bp.route("/start/<process_key>", methods=["POST"])
@login_required
def start_submit(process_key):
    from forms.render import coerce_form_post
    option = _option(process_key)
    form = _start_form(option)
    data = coerce_form_post(form, request.form) if form else {}
    grid = (request.form.get("grid") or "").strip()
    if request.form.get("_resume") == "1":
        # back from the login an idle logout asked for (web/auth.py): the form as it was typed
        flash(_("这是您退出前填写的内容，尚未提交；请核对后提交。"))
        return _render_start(option, form, data, grid)
    errors = {}
    if grid not in {code for code, _name, _id in option.grids}:
        errors["grid"] = [_("请选择事项所在的网格。")]
    files = collect_files(form)
    errors.update(validate_submission(form, data, files))
    errors.update(check_files(files))
    if errors:
        return _render_start(option, form, data, grid, errors, 400)
    token = request.form.get("start_token") or ""
    token = token if START_TOKEN_RE.fullmatch(token) else None
    data.update(upload_files(files))
    try:
        view = service().start_case(process_key, grid, data, current_user.id, start_token=token)
    except AlreadyStarted as done:
        # the same form sent again (a double tap, or back and 提交): its case, not a second one
        flash(_("此表单已提交过，案件编号 {key}，未重复上报。如需上报另一事项，请重新打开上报页面。", key=done.business_key))
        return redirect(url_for("cases.show", business_key=done.business_key))
    except InvalidInput as exc:
        return _render_start(option, form, data, grid, localise_errors(exc.field_texts(current_lang())) or {"_schema": [exc.text(current_lang())]}, 400)
    flash(_("已提交，案件编号 {key}", key=view.business_key))
    return redirect(url_for("cases.show", business_key=view.business_key))


# -------------------------------------------------------------- case page

def _case_detail(business_key: str, via: str = "case_page"):
    """The case as the current official may see it (personal data masked unless theirs to see;
    an unmasked view audited as seen `via` this page)."""
    from engine.personal_data import PersonalData
    view = service().view_case(current_user.id, business_key)
    return PersonalData(service()).guard_case_detail(current_user.id, view, via)


def _report_from(view) -> str | None:
    """The process the official may report this case's findings as (据此上报): the one its
    process names in `reportAs` (入户走访: grid_matter), if the official may start it."""
    target = (view.version.properties or {}).get("reportAs")
    if not target or current_user.read_only:
        return None
    return target if any(o.process_key == target for o in service().startable(current_user.id)) else None


def render_case(business_key: str, upload_errors=None, status=200, reassign_refused=None):
    """The case page; `reassign_refused`: a refused 改派 ({task_id, to, reason, error}) shown
    with its form open and what was typed (web/supervision.py)."""
    view = _case_detail(business_key)
    lang = current_lang()
    reassignable = service().supervision.reassignable(current_user.id, view.case, view.open_items) \
        if view.open_items else set()
    return render_template(
        "case.html", view=view, case=view.case, fields=case_fields(view, lang), details=event_details(view, lang),
        may_contribute=view.may_contribute and not current_user.read_only, upload_errors=upload_errors or [],
        workable={i.id for i in view.open_items if service().may_work(current_user.id, i.id)},
        reassignable=reassignable, report_from=_report_from(view), reassign_choices=(
            service().supervision.reassign_choices([i for i in view.open_items if i.id in reassignable])),
        reassign_refused=reassign_refused or {}, lang=lang), status


@bp.route("/cases/<business_key>")
@login_required
def show(business_key):
    return render_case(business_key)


@bp.route("/cases/<business_key>/diagram.json")
@login_required
def diagram(business_key):
    view = service().view_case(current_user.id, business_key)
    xml = view.diagram_xml
    if xml and current_lang() == "en":
        xml = relabel(xml, lambda tag, element_id, name: lane_label(name) if tag == "lane"
                      else element_name(view.case.process_key, element_id, name))
    response = jsonify(xml=xml, highlights=view.highlights)
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/cases/<business_key>/attachments", methods=["POST"])
@login_required
def add_attachment(business_key):
    view = service().view_case(current_user.id, business_key)
    if current_user.read_only or not view.may_contribute:
        abort(403)
    uploads = [(fs.filename, fs.read()) for fs in request.files.getlist("file") if fs and fs.filename]
    if not uploads:
        return render_case(business_key, [_("请选择要上传的文件。")], 400)
    errors = check_files({"file": uploads})
    if errors:
        return render_case(business_key, errors["file"], 400)
    upload_files({"file": uploads}, case_ref=view.case.business_key)
    flash(_("已上传 {n} 个文件。", n=len(uploads)))
    return redirect(url_for("cases.show", business_key=view.case.business_key) + "#attachments")


# ------------------------------------------------------------- attachments

@bp.route("/attachments/<attachment_id>")
@login_required
def attachment(attachment_id):
    att, path = service().open_attachment(current_user.id, attachment_id)
    if not path.is_file():
        abort(404)
    inline = att.content_type.startswith(INLINE_TYPES)
    response = send_file(path, mimetype=att.content_type, as_attachment=not inline, download_name=att.filename,
                         conditional=True, etag=True, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    return response


# ------------------------------------------------------------------ vendor

@bp.route("/vendor/bpmn-js/<path:filename>")
def vendor_bpmn(filename):
    return send_npm_dist("bpmn-js", filename)
