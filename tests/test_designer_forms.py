"""The form editor: definition errors point at the field and line, saved revisions
are immutable `key@N`, processes adopt one by a new version, and every task keeps
rendering the form its process version was deployed with."""
from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import delete, func, select

from engine.designer import Designer
from engine.errors import InvalidInput, PermissionDenied
from engine.form_store import FormEditor, VersionedForms, check_definition
from engine.models import FormRevision
from engine.service import WorkflowService
from tests.conftest import FIXTURES
from tests.helpers import csrf_token, login

DESIGNER, WORKER, AUDITOR = "cf_sj", "lx_wgy1", "lxx_dc"
GRID = "linxi-xinguang-g1"
REPORT_FORM = (FIXTURES / "forms" / "progress_report.yaml").read_text(encoding="utf-8")
WITH_HOURS = REPORT_FORM + """  - name: hours
    type: integer
    label: {zh: 工时, en: Hours}
    min: 0
    max: 100
"""


@pytest.fixture
def svc(clean_db, clock, fixture_forms):
    return WorkflowService(clean_db, forms=VersionedForms(fixture_forms.directory, clean_db))


def revisions(db, key="progress_report") -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(FormRevision).where(FormRevision.form_key == key))


@pytest.mark.parametrize("text, field, line, words", [
    ("key: progress_report\nfields: [\n", None, 3, "not valid YAML"),
    (REPORT_FORM.replace("type: boolean", "type: yes_no"), "again", 4, "not one of"),
    (REPORT_FORM.replace("name: note", "name: again"), "again", 4, "defined twice"),
    (REPORT_FORM.replace("max_length: 500", "max_length: 5\n    min_length: 50"), "note", 8, "larger than"),
    (REPORT_FORM.replace("type: text", "type: text\n    pattern: '([a-z'"), "note", 8, "regular expression"),
    (REPORT_FORM.replace("type: text", "type: choice"), "note", 8, "needs 'choices'"),
    (REPORT_FORM.replace("    required: true", "    required: true\n    colour: red"), "again", 4, "unknown keys"),
    (REPORT_FORM.replace("key: progress_report", "key: other_form"), None, 1, "must stay 'progress_report'"),
    (REPORT_FORM.replace("  - name: note", "  - name: 2note"), "2note", 8, "identifier"),
    (REPORT_FORM.replace("max_length: 500", "max_length: lots"), "note", 8, "max_length must be a whole number"),
    (REPORT_FORM.replace("max_length: 500", "max_length: 500\n    min_length: -1"), "note", 8, "min_length must be"),
    (WITH_HOURS.replace("min: 0", "min: abc"), "hours", 12, "min must be a number"),
    (WITH_HOURS.replace("max: 100", "max: true"), "hours", 12, "max must be a number"),
    (WITH_HOURS.replace("max: 100", "max: .nan"), "hours", 12, "max must be a number"),
    (REPORT_FORM.replace("type: text", "type: text\n    pattern: 5"), "note", 8, "pattern must be text"),
    (REPORT_FORM.replace("type: text", "type: text\n    default_from: [1, 2]"), "note", 8, "default_from must name"),
    ("key: progress_report\nfields: []\n", None, None, "no field to fill in"),
    (REPORT_FORM.replace("max_length: 500", "max_length: 500\n    required_unless: {again: [maybe]}"), "note", 8,
     "required_unless: 'maybe' is not a value of 'again'"),
    (REPORT_FORM.replace("max_length: 500", "max_length: 500\n    required_unless: {again: filled}"), "note", 8,
     "required_unless: a yes/no field such as 'again' is always answered"),
    ("", None, None, "empty"),
])
def test_definition_errors_point_at_the_field_and_line(text, field, line, words):
    result = check_definition(text, "progress_report")
    assert not result.ok
    error = result.errors[0]
    assert (error.field, error.line) == (field, line) and words in error.message, result.errors
    # the form editor's page shows it in Chinese
    assert error.text("zh") == error.zh and any("\u4e00" <= ch <= "\u9fff" for ch in error.zh), error
    assert error.text("en") == error.message


@pytest.mark.parametrize("name, kind", [("department", "choice"), ("departments", "multi_choice")])
def test_a_department_choice_that_is_no_department_type_is_an_error_on_its_field(name, kind):
    """The lanes of department tasks read `department` (and each of `departments`): a value
    with a typo would leave the task it picks without a holder."""
    text = (f"key: progress_report\nfields:\n  - name: {name}\n    type: {kind}\n"
            f"    label: {{zh: 承办部门, en: Department}}\n    choices:\n"
            f"      - {{value: sifasuo, zh: 司法所, en: Judicial office}}\n"
            f"      - {{value: sifasou, zh: 司法所（错）, en: Typo}}\n")
    result = check_definition(text, "progress_report")
    assert [(e.field, e.line) for e in result.errors] == [(name, 3)]
    assert "choice sifasou is no department type" in result.errors[0].message
    assert "不是部门类型" in result.errors[0].zh
    assert check_definition(text.replace("value: sifasou", "value: zhujian"), "progress_report").ok


def test_every_shipped_form_is_a_valid_definition(fixture_forms):
    for key in fixture_forms.keys():
        text = (fixture_forms.directory / f"{key}.yaml").read_text(encoding="utf-8")
        assert check_definition(text, key).ok, key


def test_save_makes_immutable_revisions_with_who_and_when(svc, clean_db, clock):
    editor = FormEditor(svc)
    start = revisions(clean_db)
    ref, created = editor.save(DESIGNER, "progress_report", WITH_HOURS)
    assert created and ref == f"progress_report@{start + 1}"
    assert editor.save(DESIGNER, "progress_report", WITH_HOURS) == (ref, False)      # same text: nothing new
    with clean_db.read_session() as s:
        row = s.scalar(select(FormRevision).where(FormRevision.form_key == "progress_report")
                       .order_by(FormRevision.revision.desc()).limit(1))
        assert (row.saved_by, row.saved_at, row.definition) == (DESIGNER, clock.now(), WITH_HOURS)
    assert editor.text(DESIGNER, ref) == (ref, WITH_HOURS)
    assert editor.text(DESIGNER, "progress_report")[0] == ref     # the newest revision is what the editor opens
    with pytest.raises(InvalidInput) as exc:
        editor.save(DESIGNER, "progress_report", WITH_HOURS.replace("max: 100", "max: -1"))
    assert "hours" in exc.value.fields
    assert revisions(clean_db) == start + 1
    assert svc.forms.get(ref).input_fields[-1].name == "hours" and svc.forms.get("progress_report@999") is None


@pytest.mark.parametrize("who", [WORKER, AUDITOR])
def test_only_designers_and_admins_edit_forms(svc, clean_db, who):
    editor = FormEditor(svc)
    before = revisions(clean_db)
    for call in (lambda: editor.forms(who), lambda: editor.check(who, "progress_report", WITH_HOURS),
                 lambda: editor.save(who, "progress_report", WITH_HOURS),
                 lambda: editor.text(who, "progress_report")):
        with pytest.raises(PermissionDenied):
            call()
    assert revisions(clean_db) == before


def test_tasks_keep_the_form_their_version_was_deployed_with(svc, clean_db):
    key = f"fp_{uuid.uuid4().hex[:8]}"
    loop = (FIXTURES / "loop.bpmn").read_text(encoding="utf-8").replace('id="loop"', f'id="{key}"')
    assert Designer(svc).deploy(DESIGNER, {f"{key}.bpmn": loop}).created
    old_case = svc.start_case(key, GRID, {}, WORKER)
    assert old_case.open_items[0].form_key == "progress_report"

    editor = FormEditor(svc)
    ref, _ = editor.save(DESIGNER, "progress_report", WITH_HOURS)
    entry = next(f for f in editor.forms(DESIGNER) if f.key == "progress_report")
    assert entry.used_by[key] == "progress_report" and entry.latest_ref == ref
    [(process, outcome)] = editor.adopt(DESIGNER, ref, [key])
    assert process == key and [v.version for v in outcome.created] == [2]
    new_case = svc.start_case(key, GRID, {}, WORKER)
    assert new_case.open_items[0].form_key == ref

    # the old task renders and validates the shipped form; the new one the revision
    detail_old = svc.task_detail(WORKER, old_case.open_items[0].id)
    detail_new = svc.task_detail(WORKER, new_case.open_items[0].id)
    assert [f.name for f in detail_old.form.input_fields] == ["again", "note"]
    assert [f.name for f in detail_new.form.input_fields] == ["again", "note", "hours"]
    with pytest.raises(InvalidInput):
        svc.complete_task(old_case.open_items[0].id, {"again": False, "hours": 3}, WORKER)
    with pytest.raises(InvalidInput):
        svc.complete_task(new_case.open_items[0].id, {"again": False, "hours": 300}, WORKER)
    assert svc.complete_task(new_case.open_items[0].id, {"again": False, "hours": 3}, WORKER).status == "completed"

    # a later revision changes nothing for tasks deployed with this one
    newer, _ = editor.save(DESIGNER, "progress_report", WITH_HOURS.replace("工时", "用时"))
    third = svc.start_case(key, GRID, {}, WORKER)
    assert newer != ref and third.open_items[0].form_key == ref
    assert svc.forms.get(ref).input_fields[-1].label["zh"] == "工时"


def test_a_revision_saved_by_another_worker_is_found_inside_this_ones_transactions(svc, clean_db, fixture_forms):
    """Two web workers, each with its own forms in memory: the one that did not save the
    revision finds it when a case it starts, or a task it completes, names it; on SQLite
    inside the write transaction that holds the lock (the lookup must not wait for it)."""
    key = f"fw_{uuid.uuid4().hex[:8]}"
    loop = (FIXTURES / "loop.bpmn").read_text(encoding="utf-8").replace('id="loop"', f'id="{key}"')
    other = WorkflowService(clean_db, forms=VersionedForms(fixture_forms.directory, clean_db))   # started first
    assert Designer(svc).deploy(DESIGNER, {f"{key}.bpmn": loop}).created
    ref, created = FormEditor(svc).save(DESIGNER, "progress_report", WITH_HOURS.replace("工时", f"工时 {key}"))
    FormEditor(svc).adopt(DESIGNER, ref, [key])
    assert created and ref not in other.forms._revisions
    case = other.start_case(key, GRID, {}, WORKER)
    assert case.open_items[0].form_key == ref
    assert [f.name for f in other.task_detail(WORKER, case.open_items[0].id).form.input_fields][-1] == "hours"
    with pytest.raises(InvalidInput):
        other.complete_task(case.open_items[0].id, {"again": False, "hours": 300}, WORKER)
    assert other.complete_task(case.open_items[0].id, {"again": False, "hours": 3}, WORKER).status == "completed"


@pytest.fixture
def satisfaction_revisions_removed(clean_db):
    """The revision of the shipped satisfaction form a test saves is gone after it: the
    other tests (the designer's browser test among them) see the shipped form."""
    yield
    with clean_db.unit_of_work() as session:
        session.execute(delete(FormRevision).where(FormRevision.form_key == "satisfaction"))


def test_a_saved_form_revision_without_a_field_the_dashboard_reads_is_noted_at_check(
        svc, satisfaction_revisions_removed):
    """The designer's check reads the forms in use, saved revisions included: grid_matter
    pointed at a revision of its satisfaction form that lost the `satisfaction` field
    checks clean, with a note naming the key and the satisfaction rate."""
    from tests.conftest import ROOT
    without = ("key: satisfaction\ntitle: {zh: 群众满意度回访, en: Satisfaction follow-up}\nfields:\n"
               "  - name: feedback\n    type: long_text\n    label: {zh: 群众意见, en: Feedback}\n")
    ref, created = FormEditor(svc).save(DESIGNER, "satisfaction", without)
    assert created
    shipped = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
    assert shipped.count('name="formKey" value="satisfaction"') == 1
    pointed = shipped.replace('name="formKey" value="satisfaction"', f'name="formKey" value="{ref}"')
    designer = Designer(svc)
    result = designer.check(DESIGNER, {"grid_matter.bpmn": pointed})
    assert result.problems == []
    dashboard = [n for n in result.notes if n.element == "grid_matter"]
    assert [n.message.split("'")[1] for n in dashboard] == ["satisfaction"] and "满意率" in dashboard[0].text("zh")[0]
    # and the gateway that asks whether the resident was satisfied now reads a name nothing sets
    others = [n for n in result.notes if n not in dashboard]
    assert others and all(n.message.startswith("the condition 'satisfaction == ") and "reads 'satisfaction'"
                          in n.message for n in others)
    assert designer.check(DESIGNER, {"grid_matter.bpmn": shipped}).notes == []


def test_adopting_an_unknown_revision_is_refused(svc):
    with pytest.raises(Exception) as exc:
        FormEditor(svc).adopt(DESIGNER, "progress_report@999", ["grid_matter"])
    assert exc.value.code == "not_found"


# ------------------------------------------------------------------ pages

@pytest.fixture
def client_for(app, svc):
    app.extensions["gridflow"] = svc

    def make(username):
        client = app.test_client()
        login(client, username)
        return client
    return make


def test_form_pages_preview_and_save(client_for, clean_db):
    client = client_for(DESIGNER)
    listing = client.get("/designer/forms/").get_data(as_text=True)
    assert 'data-form="progress_report"' in listing
    page = client.get("/designer/forms/progress_report")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'id="definition"' in html
    assert 'name="again"' in html.split('id="form-preview"')[1]     # the preview is markup, not escaped text
    token = csrf_token(client, "/designer/forms/progress_report")

    def preview(text):
        return client.post("/designer/forms/progress_report/preview", data=json.dumps({"definition": text}),
                           content_type="application/json", headers={"X-CSRFToken": token})
    good = preview(WITH_HOURS).get_json()
    assert good["ok"] and 'name="hours"' in good["html"] and "工时" in good["html"]
    hostile = preview(WITH_HOURS.replace("工时", "<script>alert(1)</script>")).get_json()
    assert hostile["ok"] and "<script>" not in hostile["html"] and "&lt;script&gt;" in hostile["html"]
    bad = preview(WITH_HOURS.replace("type: integer", "type: integr")).get_json()
    assert not bad["ok"] and bad["errors"][0]["field"] == "hours" and bad["errors"][0]["line"] == 12
    assert client.post("/designer/forms/progress_report/preview", data="x", content_type="application/json",
                       headers={"X-CSRFToken": token}).status_code == 400

    before = revisions(clean_db)
    refused = client.post("/designer/forms/progress_report", data={"csrf_token": token, "action": "save",
                                                                   "definition": "key: progress_report\nfields: ["})
    assert refused.status_code == 400 and "不是有效的 YAML" in refused.get_data(as_text=True)
    assert revisions(clean_db) == before
    saved = client.post("/designer/forms/progress_report", data={"csrf_token": token, "action": "save",
                                                                 "definition": WITH_HOURS.replace("工时", "工时数")})
    assert saved.status_code == 302 and saved.headers["Location"].endswith(f"/designer/forms/progress_report@{before + 1}")
    assert revisions(clean_db) == before + 1


def test_a_dispatch_forms_preview_says_how_its_departments_unit_is_chosen(client_for):
    """The task page and the API tell where each department choice goes; the preview (no task,
    no place) tells the rule, so the designer sees the form as officials will."""
    client = client_for(DESIGNER)
    page = client.get("/designer/forms/town_dispatch").get_data(as_text=True)
    assert '<p class="hint department-routing">承办单位按案件所在辖区确定' in page.split('id="form-preview"')[1]
    assert "department-routing" not in client.get("/designer/forms/progress_report").get_data(as_text=True)


@pytest.mark.parametrize("who", [WORKER, AUDITOR])
def test_form_pages_refuse_others(client_for, clean_db, who):
    client = client_for(who)
    assert client.get("/designer/forms/").status_code == 403
    assert client.get("/designer/forms/progress_report").status_code == 403
    token = csrf_token(client, "/inbox")
    before = revisions(clean_db)
    assert client.post("/designer/forms/progress_report", data={"csrf_token": token, "action": "save",
                                                                "definition": WITH_HOURS}).status_code == 403
    preview = client.post("/designer/forms/progress_report/preview", data=json.dumps({"definition": WITH_HOURS}),
                          content_type="application/json", headers={"X-CSRFToken": token})
    assert preview.status_code == 403 and revisions(clean_db) == before


def test_cli_deploy_knows_saved_form_revisions(clean_db, clock, tmp_path):
    """`gridflow deploy` accepts a process naming a saved revision (key@N) of the database it deploys to."""
    from click.testing import CliRunner

    from engine.cli import main as cli
    svc = WorkflowService(clean_db, forms=VersionedForms(None, clean_db))
    shipped = (svc.forms.directory / "record_result.yaml").read_text(encoding="utf-8")
    ref, _ = FormEditor(svc).save(DESIGNER, "record_result", shipped.replace("处置结果", "处置结果说明"))
    key = f"cl_{uuid.uuid4().hex[:8]}"
    camunda = (FIXTURES / "camunda_report.bpmn").read_text(encoding="utf-8")
    (tmp_path / f"{key}.bpmn").write_text(
        camunda.replace('id="camunda_report"', f'id="{key}"').replace('bpmnElement="camunda_report"', f'bpmnElement="{key}"')
        .replace('camunda:formKey="record_result" camunda:assignee', f'camunda:formKey="{ref}" camunda:assignee'),
        encoding="utf-8")
    result = CliRunner().invoke(cli, ["deploy", str(tmp_path), "--actor", "cli"], env={"DATABASE_URL": clean_db.url})
    assert result.exit_code == 0, result.output
    assert f"deployed {key} v1" in result.output
    missing = (tmp_path / f"{key}.bpmn").read_text(encoding="utf-8").replace(ref, "record_result@999")
    (tmp_path / f"{key}.bpmn").write_text(missing, encoding="utf-8")
    refused = CliRunner().invoke(cli, ["deploy", str(tmp_path)], env={"DATABASE_URL": clean_db.url})
    assert refused.exit_code == 1 and "record_result@999" in refused.output
