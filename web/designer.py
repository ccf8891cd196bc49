"""The designer's pages: process library, diagram, modeler (bpmn-js / dmn-js from
node_modules), check and deploy, version diff, upload of files from other modelers.
Thin: every rule and every transaction is in engine/designer.py."""
from __future__ import annotations

import re

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup

from engine.designer import Designer
from engine.errors import EngineError, InvalidInput
from engine.models import LEVELS, WORKING_ROLES

from .department_routing import department_routing
from .extensions import send_npm_dist, service
from .i18n import current_lang, gettext as _, label, read_stored

bp = Blueprint("designer", __name__, url_prefix="/designer")


# the roles a lane may name (auditors, designers and admins work no tasks)


def designer() -> Designer:
    svc = service()
    found = svc.__dict__.get("_gf_designer")
    if found is None:
        found = svc.__dict__["_gf_designer"] = Designer(svc)
    return found


def _problems_json(problems):
    """The problems in the page's language (the CLI says them in English)."""
    lang = current_lang()
    return [dict(zip(("message", "fix"), p.text(lang)), file=p.file, element=p.element) for p in problems]


def _error_json(exc: EngineError, status: int):
    body = {"ok": False, "error": exc.text(current_lang())}
    if getattr(exc, "fields", None):
        body["fields"] = exc.fields
    return jsonify(body), status


def _json_files():
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("files"), dict):
        abort(400)
    return payload["files"]


# ------------------------------------------------------------------ pages

@bp.route("/")
@login_required
def library():
    return render_template("designer/library.html", processes=designer().library(current_user.id),
                           may_edit=designer().may_edit(current_user.id))


@bp.route("/processes/<process_key>")
@login_required
def process(process_key):
    entry = designer().process(current_user.id, process_key)
    number = request.args.get("v", type=int) or entry.latest.version
    detail = designer().version(current_user.id, process_key, number)
    return render_template("designer/process.html", entry=entry, detail=detail,
                           may_edit=designer().may_edit(current_user.id))


@bp.route("/processes/<process_key>/v<int:number>/files/<path:filename>")
@login_required
def version_file(process_key, number, filename):
    detail = designer().version(current_user.id, process_key, number)
    if filename not in detail.files:
        abort(404)
    response = current_app.response_class(detail.files[filename], mimetype="application/xml")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/processes/<process_key>/edit")
@login_required
def edit(process_key):
    if not designer().may_edit(current_user.id):
        abort(403)
    detail = designer().version(current_user.id, process_key, request.args.get("v", type=int))
    filename = request.args.get("file") or detail.main_file
    if filename not in detail.files:
        abort(404)
    forms = service().forms
    form_choices = sorted((key, label(forms.get(key).title)) for key in forms.keys())
    return render_template("designer/edit.html", detail=detail, filename=filename,
                           is_dmn=filename.lower().endswith(".dmn"), form_choices=form_choices,
                           lane_codes=[f"{level}.{role}" for level in LEVELS for role in WORKING_ROLES])


@bp.route("/processes/<process_key>/diff")
@login_required
def diff(process_key):
    entry = designer().process(current_user.id, process_key)
    numbers = [v.version for v in entry.versions]
    new = request.args.get("new", type=int) or numbers[0]
    old = request.args.get("old", type=int) or (new - 1 if new - 1 in numbers else new)
    result = designer().diff(current_user.id, process_key, old, new)
    return render_template("designer/diff.html", entry=entry, diff=result)


@bp.route("/upload", methods=["GET", "POST"])
@login_required
def upload():
    if not designer().may_edit(current_user.id):
        abort(403)
    if request.method == "GET":
        return render_template("designer/upload.html", outcome=None, error=None)
    files = {fs.filename: fs.read() for fs in request.files.getlist("file") if fs and fs.filename}
    try:
        if request.form.get("action") == "deploy":
            outcome = designer().deploy(current_user.id, files)
        else:
            outcome = designer().check(current_user.id, files)
    except EngineError as exc:
        if exc.code == "forbidden":
            raise
        return render_template("designer/upload.html", outcome=None, error=exc.text(current_lang())), 400
    check = getattr(outcome, "check", outcome)
    return render_template("designer/upload.html", outcome=outcome, check=check, error=None,
                           deployed=request.form.get("action") == "deploy"), (200 if check.ok else 400)


# ------------------------------------------------------- JSON for the modeler

@bp.route("/check", methods=["POST"])
@login_required
def check():
    try:
        result = designer().check(current_user.id, _json_files())
    except EngineError as exc:
        return _error_json(exc, 403 if exc.code == "forbidden" else 400)
    return jsonify(ok=result.ok, problems=_problems_json(result.problems), notes=_problems_json(result.notes),
                   processes=result.processes)


@bp.route("/deploy", methods=["POST"])
@login_required
def deploy():
    try:
        outcome = designer().deploy(current_user.id, _json_files())
    except EngineError as exc:
        return _error_json(exc, 403 if exc.code == "forbidden" else 400)
    created = [{"process": v.process_key, "version": v.version, "hash": v.content_hash[:12],
                "url": f"/designer/processes/{v.process_key}?v={v.version}"} for v in outcome.created]
    return jsonify(ok=outcome.check.ok, problems=_problems_json(outcome.check.problems),
                   notes=_problems_json(outcome.check.notes), created=created,
                   unchanged=outcome.unchanged), (200 if outcome.check.ok else 400)


# ------------------------------------------------------------------ vendor

@bp.route("/vendor/dmn-js/<path:filename>")
def vendor_dmn(filename):
    return send_npm_dist("dmn-js", filename)



# -------------------------------------------------------------- migration

@bp.route("/processes/<process_key>/migrate", methods=["GET"])
@login_required
def migrate_plan(process_key):
    from engine.migration import Migrator
    if not designer().may_edit(current_user.id):
        abort(403)
    entry = designer().process(current_user.id, process_key)
    numbers = [v.version for v in entry.versions]
    if len(numbers) < 2 and "from" not in request.args and "to" not in request.args:
        # nothing to move to: said so (was "cases move only to a later version")
        raise InvalidInput("the process has one version only: deploy a newer one first",
                           zh=f"{entry.name} 只有一个版本，没有可以迁移到的新版本：请先部署新版本。")
    old = request.args.get("from", type=int) or (numbers[1] if len(numbers) > 1 else numbers[0])
    new = request.args.get("to", type=int) or numbers[0]
    plan = Migrator(service()).plan(current_user.id, process_key, old, new)
    return render_template("designer/migrate.html", entry=entry, plan=plan, result=None,
                           task_names=_task_names(process_key))


_SPEC_KINDS_ZH = {"UserTask": "用户任务", "ManualTask": "人工任务", "NoneTask": "任务", "ScriptTask": "脚本任务",
                  "CallActivity": "调用活动", "SubWorkflowTask": "子流程", "BusinessRuleTask": "业务规则任务",
                  "ServiceTask": "服务任务", "ReceiveTask": "接收任务", "SendTask": "发送任务"}
# engine/migration.py's reasons, as a Chinese designer reads them
_MIGRATION_REASONS_ZH = [
    (re.compile(r"^the running subprocess (.+) no longer exists in the new version$"),
     lambda m: f"运行中的子流程“{m[1]}”在新版本中已不存在"),
    (re.compile(r"^the case is at or has open '(.+)', which the new version removed$"),
     lambda m: f"案件正在“{m[1]}”，新版本删除了该环节"),
    (re.compile(r"^the case is at or has passed '(.+)', which the new version removed$"),
     lambda m: f"案件已经过“{m[1]}”，新版本删除了该环节"),
    (re.compile(r"^'(.+)' changes type from (\w+) to (\w+) while the case is at it$"),
     lambda m: f"案件正在“{m[1]}”，新版本把它从{_SPEC_KINDS_ZH.get(m[2], m[2])}改为{_SPEC_KINDS_ZH.get(m[3], m[3])}"),
    (re.compile(r"^the waiting '(.+)' changed; its deadline or trigger would stay as the old version computed it$"),
     lambda m: f"等待中的“{m[1]}”已修改，其期限或触发条件仍会按旧版本计算"),
    (re.compile(r"^the case's state could not be compared: (.+)$"), lambda m: f"无法比较案件的状态：{m[1]}"),
]


@bp.app_template_global()
def element_kind(kind: str) -> str:
    """A BPMN/DMN element type (userTask) as the page's language names it: the diff's 类型
    column showed userTask, sequenceFlow … on the Chinese page."""
    from engine.deploy import _ELEMENT_KINDS_ZH
    return _ELEMENT_KINDS_ZH.get(kind, kind) if current_lang() == "zh" else kind


@bp.app_template_global()
def migration_reason(text: str) -> str:
    return read_stored(text, _MIGRATION_REASONS_ZH)


def _task_names(process_key: str) -> dict[str, str]:
    """{BPMN id: name} of the process's user tasks, for the migration page's 当前环节."""
    return {spec_id: name for p in service().processes() if p.key == process_key for spec_id, name in p.user_tasks}


@bp.route("/processes/<process_key>/migrate", methods=["POST"])
@login_required
def migrate_apply(process_key):
    from engine.migration import Migrator
    if not designer().may_edit(current_user.id):
        abort(403)
    entry = designer().process(current_user.id, process_key)
    old, new = request.form.get("from", type=int), request.form.get("to", type=int)
    chosen = request.form.getlist("case")
    if not chosen:   # moving nothing is no migration: say so rather than "0 moved"
        Migrator(service()).plan(current_user.id, process_key, old, new)   # bad versions refused as before
        flash(_("请勾选要迁移的案件。"), "error")
        return redirect(url_for("designer.migrate_plan", process_key=process_key, **{"from": old, "to": new}))
    result = Migrator(service()).apply(current_user.id, process_key, old, new, business_keys=chosen)
    plan = Migrator(service()).plan(current_user.id, process_key, old, new)
    return render_template("designer/migrate.html", entry=entry, plan=plan, result=result,
                           task_names=_task_names(process_key))


# -------------------------------------------------------------- scenarios

def _runner():
    from engine.designer import ScenarioRunner
    return ScenarioRunner(designer(), scenario_dir=current_app.config.get("SCENARIO_DIR"))


@bp.route("/processes/<process_key>/scenarios", methods=["GET", "POST"])
@login_required
def scenarios(process_key):
    if not designer().may_edit(current_user.id):
        abort(403)
    entry = designer().process(current_user.id, process_key)
    available = _runner().scenarios(current_user.id, process_key)
    outcome, text, name = None, None, request.values.get("name")
    if request.method == "POST":
        text = request.form.get("text") if request.form.get("action") == "edited" else None
        try:
            outcome = _runner().run(current_user.id, process_key, name=name, text=text,
                                    number=request.form.get("v", type=int))
        except EngineError as exc:
            if exc.code == "forbidden":
                raise
            return render_template("designer/scenarios.html", entry=entry, scenarios=available, outcome=None,
                                   error=exc.text(current_lang()), text=text, name=name), 400
    if text is None and name:
        text = next((s.text for s in available if s.name == name), None)
    return render_template("designer/scenarios.html", entry=entry, scenarios=available, outcome=outcome,
                           error=None, text=text, name=name)


# ------------------------------------------------------------------- forms

def _form_editor():
    from engine.form_store import FormEditor
    return FormEditor(service())


def _preview_html(form):
    from forms.render import form_context
    lang = current_lang()
    fields = form_context(form, {}, None, {}, lang)
    # no task, no place: a dispatch form's department choices get the rule that picks their unit
    routing = department_routing(form, None, lang)
    # our own template's output, every value in it autoescaped: safe to embed as HTML
    return Markup(render_template("designer/_form_preview.html", form=form, lang=lang, fields=fields,
                                  input_fields=[f for f in fields if not f.get("readonly")], routing=routing))


def _errors_json(check):
    lang = current_lang()
    return [{"field": e.field, "line": e.line, "message": e.text(lang)} for e in check.errors]


@bp.route("/forms/")
@login_required
def forms_list():
    return render_template("designer/forms.html", forms=_form_editor().forms(current_user.id))


@bp.route("/forms/<key>", methods=["GET", "POST"])
@login_required
def form_edit(key):
    editor = _form_editor()
    if request.method == "POST":
        text = request.form.get("definition", "")
        if request.form.get("action") == "adopt":
            outcomes = editor.adopt(current_user.id, request.form.get("reference", ""),
                                    request.form.getlist("process"))
            for process_key, outcome in outcomes:
                if outcome.check.ok:
                    flash(_("{process} 已部署新版本：{versions}", process=process_key,
                            versions=", ".join(f"v{v.version}" for v in outcome.created) or "—"))
                else:
                    flash(_("{process} 未部署：{problems}", process=process_key,
                            problems="; ".join(f"{p.file}:{p.element}: {p.text(current_lang())[0]}"
                                               for p in outcome.check.problems)), "error")
            return redirect(url_for("designer.form_edit", key=key))
        try:
            reference, created = editor.save(current_user.id, key, text)
        except EngineError as exc:
            if exc.code == "forbidden":
                raise
            check = editor.check(current_user.id, key, text)
            return render_template("designer/form_edit.html", key=key, reference=None, text=text, check=check,
                                   preview=_preview_html(check.form) if check.form else None,
                                   entry=None), 400
        flash(_("已保存为 {ref}。", ref=reference) if created else _("内容与 {ref} 相同，未创建新版本。", ref=reference))
        return redirect(url_for("designer.form_edit", key=reference))
    reference, text = editor.text(current_user.id, key)
    check = editor.check(current_user.id, reference, text)
    entry = next((f for f in editor.forms(current_user.id) if f.key == reference.split("@")[0]), None)
    return render_template("designer/form_edit.html", key=key, reference=reference, text=text, check=check,
                           preview=_preview_html(check.form) if check.form else None, entry=entry)


@bp.route("/forms/<key>/preview", methods=["POST"])
@login_required
def form_preview(key):
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("definition"), str):
        abort(400)
    try:
        check = _form_editor().check(current_user.id, key, payload["definition"])
    except EngineError as exc:
        return _error_json(exc, 403 if exc.code == "forbidden" else 400)
    return jsonify(ok=check.ok, errors=_errors_json(check),
                   html=_preview_html(check.form) if check.form else None)
