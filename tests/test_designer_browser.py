"""A real browser on the designer's modeler: open a process in bpmn-js's Modeler,
rename a task on the canvas, save (the server's check runs and problems show on
their elements), deploy, and see the new version in the library."""
import re
import uuid

import pytest

from engine.designer import Designer
from tests.conftest import FIXTURES, ROOT
from tests.helpers import REPORT
from tests.test_browser import browser, live_server, log_in, shot  # noqa: F401 (fixtures)

# the pages' scripts in Chromium: run once, in the PostgreSQL run (tests/conftest.py)
pytestmark = pytest.mark.sqlite_run_only   # once (tests/conftest.py)

CAMUNDA = (FIXTURES / "camunda_report.bpmn").read_text(encoding="utf-8")


def test_modeler_rename_task_save_deploy_and_see_the_new_version(service, live_server, browser):  # noqa: F811
    key = f"br_{uuid.uuid4().hex[:8]}"
    text = CAMUNDA.replace('id="camunda_report"', f'id="{key}"').replace('bpmnElement="camunda_report"',
                                                                       f'bpmnElement="{key}"')
    assert Designer(service).deploy("cf_sj", {f"{key}.bpmn": text}).created
    base = live_server

    page = log_in(browser, base, "cf_sj")
    page.goto(f"{base}/designer/processes/{key}/edit")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    assert page.locator("#modeler [data-element-id=Task_Verify]").count() >= 1

    # rename the task on the canvas: double-click opens bpmn-js's direct editing
    page.dblclick("#modeler g.djs-element[data-element-id=Task_Verify]")
    editor = page.locator(".djs-direct-editing-parent")
    editor.wait_for(timeout=5_000)
    page.keyboard.press("Control+A")
    page.keyboard.type("现场核实（新）")
    page.mouse.click(page.locator("#modeler").bounding_box()["x"] + 20, page.locator("#modeler").bounding_box()["y"] + 400)
    assert page.locator("#modeler [data-element-id=Task_Verify] text").text_content() == "现场核实（新）"
    # …and give it an English name in the element panel: a Camunda file, no spiffworkflow namespace yet
    page.evaluate("""() => { const m = window.gridflowModeler;
                             m.get('selection').select(m.get('elementRegistry').get('Task_Verify')); }""")
    page.locator("#element-panel[data-element=Task_Verify]").wait_for(timeout=5_000)
    assert page.input_value("#el-name") == "现场核实（新）"
    # what the engine reads of a Camunda task: its camunda:formKey (as the form it means) and camunda:dueDate
    assert page.input_value("#el-form") == "verify_on_site" and page.input_value("#el-due") == "P3D"
    page.fill("#el-name-en", "On-site check (new)")
    page.locator("#el-name-en").dispatch_event("change")

    page.click("#btn-save")
    page.locator("#modeler[data-checked=ok]").wait_for(timeout=20_000)
    assert page.locator("#problems li").count() == 0
    shot(page, "designer-01-modeler-saved")

    page.click("#btn-deploy")
    page.locator("#modeler[data-deployed=created]").wait_for(timeout=20_000)
    link = page.locator("#deployed a")
    assert link.inner_text().startswith(f"{key} v2")
    link.click()
    page.wait_for_url(f"{base}/designer/processes/{key}?v=2")
    assert page.locator("h1").inner_text().endswith("v2")
    page.locator("#diagram[data-imported=true]").wait_for(timeout=20_000)
    assert page.locator("#diagram [data-element-id=Task_Verify] text").text_content() == "现场核实（新）"
    shot(page, "designer-02-new-version")
    names = service.english_names.catalogue()
    assert names.element(key, "Task_Verify", "现场核实（新）") == "On-site check (new)"

    page.goto(f"{base}/designer/")
    row = page.locator(f"[data-process={key}] tr[data-version='2']")
    assert row.count() == 1 and "cf_sj" in row.inner_text()

    # a problem shows next to its element and selects it when clicked
    page.goto(f"{base}/designer/processes/{key}/edit")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    page.evaluate("""() => {
        const m = window.gridflowModeler;
        const el = m.get('elementRegistry').get('Task_Town');
        m.get('modeling').updateProperties(el, {'camunda:candidateGroups': 'accounting'});
    }""")
    page.click("#btn-save")
    page.locator("#modeler[data-checked=problems]").wait_for(timeout=20_000)
    assert page.locator(".problem-badge").count() == 1
    assert page.locator("#modeler [data-element-id=Task_Town].has-problem").count() == 1
    page.click("#problems button.problem[data-element=Task_Town]")
    assert page.locator("#modeler [data-element-id=Task_Town].selected").count() == 1
    shot(page, "designer-03-problem-on-element")


def test_dmn_modeler_and_form_live_preview(live_server, browser):  # noqa: F811
    base = live_server
    page = log_in(browser, base, "cf_sj")
    # the decision table opens in dmn-js's modeler, served from node_modules
    page.goto(f"{base}/designer/processes/grid_matter/edit?file=dispatch_rules.dmn")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    assert page.locator("#modeler .tjs-table").count() == 1      # the decision table itself, rules and all
    assert page.locator("#modeler .tjs-table tbody tr").count() >= 5
    shot(page, "designer-04-dmn-modeler")

    # the form editor previews as you type and points at the field that is wrong
    page.goto(f"{base}/designer/forms/satisfaction")
    preview = page.locator("#form-preview")
    assert preview.locator("select#satisfaction, input[name=satisfaction]").count() >= 1
    text = page.input_value("#definition")
    page.fill("#definition", text.replace("label: {zh: 群众意见, en: Feedback}", "label: {zh: 群众意见和建议, en: Feedback}"))
    page.locator("#form-preview[data-state=ok]").wait_for(timeout=10_000)
    assert "群众意见和建议" in preview.inner_text()
    page.fill("#definition", text.replace("type: long_text", "type: longtext"))
    page.locator("#form-preview[data-state=errors]").wait_for(timeout=10_000)
    error = page.locator("#definition-errors li").first
    assert error.get_attribute("data-field") == "feedback" and "longtext" in error.inner_text()
    shot(page, "designer-05-form-preview-error")


def test_read_only_diagrams_say_when_their_source_fails_to_load(service, live_server, browser):  # noqa: F811
    """The library's and the case page's diagrams share their set-up (diagram-viewer.js):
    a source that answers 500 leaves each marked not imported, with the reason and the
    page's message to the user."""
    case = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    page = log_in(browser, live_server, "cf_sj")
    page.route("**/v*/files/**", lambda route: route.fulfill(status=500, body="broken"))
    page.route("**/diagram.json", lambda route: route.fulfill(status=500, body="broken"))
    for path, message in (("/designer/processes/grid_matter", "流程图加载失败。"),
                          (f"/cases/{case.business_key}", "流程图加载失败，请刷新页面重试。")):
        page.goto(live_server + path)
        diagram = page.locator("#diagram[data-imported=false]")
        diagram.wait_for(timeout=20_000)
        assert diagram.get_attribute("data-error") == "HTTP 500", path
        assert page.locator("#diagram-status").inner_text() == message, path


def open_with_draft(browser, base, filename, replacements):  # noqa: F811
    """grid_matter's `filename` in the modeler, opened from a draft in this browser: the stored
    file with `replacements` made: (old, new) everywhere, (old, new, "first") the first one only.
    The editor opens a draft made from the version it shows (keyed by its content hash)."""
    page = log_in(browser, base, "cf_sj")
    page.goto(f"{base}/designer/processes/grid_matter/edit?file={filename}")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    page.evaluate("""async ([filename, replacements]) => {
        const modeler = document.getElementById('modeler');
        let xml = await (await fetch(modeler.getAttribute('data-src'))).text();
        for (const [a, b, first] of replacements) { xml = first ? xml.replace(a, b) : xml.split(a).join(b); }
        const base = modeler.getAttribute('data-base'), version = Number(modeler.getAttribute('data-version'));
        window.localStorage.setItem(`gridflow-draft:grid_matter:${filename}@${base}`,
                                    JSON.stringify({base, version, xml}));
    }""", [filename, replacements])
    page.reload()
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    return page


def test_dmn_problems_mark_their_cells_and_open_them_when_clicked(live_server, browser):  # noqa: F811
    """A broken rule cell and a broken input expression in a decision table: saving lists
    both, marks the cell and the column head in the table, and clicking a problem points
    at its cell. Nothing is deployed."""
    # the broken table as a draft in this browser: the editor opens a draft when there is one
    page = open_with_draft(browser, live_server, "dispatch_rules.dmn", [
        ('<text>"red"</text>', '<text>"red" ++ (</text>', "first"),
        ("<text>category</text>", "<text>category +</text>", "first")])
    page.click("#btn-save")
    page.locator("#modeler[data-checked=problems]").wait_for(timeout=20_000)
    buttons = page.locator("#problems button.problem")
    assert sorted(buttons.evaluate_all("bs => bs.map(b => b.dataset.element)")) == ["input_category_expr",
                                                                                  "rule_01_colour"]
    assert page.locator("#modeler td[data-element-id=rule_01_colour].has-problem-cell").count() == 1
    assert page.locator("#modeler th[data-col-id=input_category].has-problem-cell").count() == 1

    page.click("#problems button.problem[data-element=rule_01_colour]")
    page.locator("#modeler td[data-element-id=rule_01_colour].problem-focus").wait_for(timeout=5_000)
    page.click("#problems button.problem[data-element=input_category_expr]")
    page.locator("#modeler th[data-col-id=input_category].problem-focus").wait_for(timeout=5_000)
    assert page.locator("#modeler .problem-focus").count() == 1
    shot(page, "designer-06-dmn-problem-cell")

    page.click("#btn-deploy")
    page.locator("#modeler[data-deployed=refused]").wait_for(timeout=20_000)
    page.evaluate("() => window.localStorage.clear()")


def test_a_note_on_an_element_the_dashboard_reads_shows_and_saving_passes(live_server, browser):  # noqa: F811
    """grid_matter with the id of 网格微调处 changed (a draft in this browser): the check passes,
    and the note says which dashboard figure reads that element (listed, not counted as a
    problem)."""
    page = open_with_draft(browser, live_server, "grid_matter.bpmn", [
        (f'{before}"micro_mediation"', f'{before}"grid_mediation"') for before in ("id=", "Ref=", "bpmnElement=")]
        + [(">micro_mediation<", ">grid_mediation<")])
    page.click("#btn-save")
    page.locator("#modeler[data-checked=ok]").wait_for(timeout=20_000)
    assert page.locator("#modeler").get_attribute("data-problems") == "0"
    assert page.locator("#modeler").get_attribute("data-notes") == "1"
    note = page.locator("#problems button.problem.note")
    assert note.get_attribute("data-element") == "micro_mediation" and "升级到镇" in note.text_content()
    shot(page, "designer-07-dashboard-note")
    page.evaluate("() => window.localStorage.clear()")


def test_element_panel_edits_what_the_engine_reads_with_undo(live_server, browser):  # noqa: F811
    """The modeler's element panel shows and changes a task's form and English name, a flow's
    condition, a script, a timer, a decision, a called process and the process's own
    properties; each change is a bpmn-js command (undo takes it back), and the edited XML
    passes the server's check. Nothing is deployed."""
    page = log_in(browser, live_server, "cf_sj")
    page.goto(f"{live_server}/designer/processes/grid_matter/edit")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    panel = page.locator("#element-panel")
    assert panel.locator("[data-show=nothing]").is_visible()                 # nothing selected: what the panel is for
    assert page.locator("#el-name").is_hidden()

    def select(element_id):
        page.evaluate("""id => { const m = window.gridflowModeler;
                                 m.get('selection').select(m.get('elementRegistry').get(id)); }""", element_id)
        page.locator(f"#element-panel[data-element={element_id}]").wait_for(timeout=5_000)

    def edit(selector, value):
        page.fill(selector, value)
        page.locator(selector).dispatch_event("change")

    def xml():
        return page.evaluate("() => window.gridflowModeler.saveXML({format: true}).then(r => r.xml)")

    page.evaluate("""() => { const m = window.gridflowModeler, e = m.get('elementRegistry').get('micro_mediation');
                             m.get('canvas').viewbox({x: e.x - 300, y: e.y - 200, width: 700, height: 640}); }""")
    page.click("#modeler g.djs-element[data-element-id=micro_mediation]")   # a click on the canvas
    panel.locator("[data-show=userTask]").first.wait_for(timeout=5_000)
    assert page.input_value("#el-name") == "网格微调处"
    assert page.input_value("#el-name-en") == "Micro-mediation in the grid"
    assert panel.locator("#element-kind").inner_text() == "用户任务"
    assert page.input_value("#el-form") == "micro_mediation"
    assert page.locator("#el-condition").is_hidden() and page.locator("#el-script").is_hidden()
    # typed keys stay in the field: Backspace and Delete do not delete the selected task
    page.click("#el-name-en")
    page.keyboard.press("End")
    for key in ("Backspace", "Delete", "Backspace"):
        page.keyboard.press(key)
    assert page.evaluate("() => !!window.gridflowModeler.get('elementRegistry').get('micro_mediation')")
    assert page.input_value("#el-name-en") == "Micro-mediation in the gr"
    edit("#el-name-en", "Mediation in the grid")
    page.select_option("#el-form", "record_result")
    edit("#el-due", "P5D")

    select("flow_to_grid")
    assert page.input_value("#el-condition") == 'handling_level == "grid"'
    assert page.locator("#el-form").is_hidden()
    edit("#el-condition", 'handling_level == "grid" and colour == "blue"')
    select("remind_grid")
    assert page.input_value("#el-script") == "grid_reminded = True"
    edit("#el-script", "grid_reminded = True\nreminders = 1")
    select("grid_reminder")
    assert page.input_value("#el-timer-type") == "timeDuration"
    assert page.input_value("#el-timer") == 'f"PT{int(grid_days*24*0.8)}H"'
    edit("#el-timer", 'f"PT{int(grid_days*24*0.5)}H"')
    select("decide_dispatch")
    assert page.input_value("#el-decision") == "dispatch_rules"
    select("mediation")
    assert page.input_value("#el-called") == "mediation"
    select("lane_center_dispatcher")
    assert page.input_value("#el-name") == "镇中心派单员 (town.center_dispatcher)"
    assert page.get_attribute("#el-name", "list") == "lane-codes"            # the role codes as suggestions
    assert page.locator("#element-panel [data-show=lane]").is_visible() and page.locator("#el-name-en").is_hidden()
    assert page.locator("#lane-codes option[value='county.petition_officer']").count() == 1
    select("participant_grid_matter")
    assert page.get_attribute("#el-name", "list") is None
    assert page.input_value("#el-start-form") == "grid_matter_report"
    assert page.input_value("#el-start-roles") == "grid_worker"
    edit("#el-key-prefix", "WG")
    shot(page, "designer-08-element-panel")

    text = xml()
    assert '<spiffworkflow:property name="nameEn" value="Mediation in the grid" />' in text
    assert '<spiffworkflow:property name="formKey" value="record_result" />' in text
    assert '<spiffworkflow:property name="dueDate" value="P5D" />' in text
    assert 'handling_level == "grid" and colour == "blue"' in text.replace("&#34;", '"').replace("&quot;", '"')
    assert "reminders = 1" in text and "grid_days*24*0.5" in text
    assert '<spiffworkflow:property name="businessKeyPrefix" value="WG" />' in text
    assert text.count("<spiffworkflow:calledDecisionId>") == 1             # kept as it was

    page.click("#btn-save")
    page.locator("#modeler[data-checked]").wait_for(timeout=20_000)
    assert page.get_attribute("#modeler", "data-checked") == "ok", page.inner_text("#problems")

    page.keyboard.press("Escape")
    page.evaluate("() => window.gridflowModeler.get('commandStack').undo()")   # the key prefix
    assert '"businessKeyPrefix"' not in xml()
    select("micro_mediation")
    page.evaluate("() => window.gridflowModeler.get('commandStack').undo()")   # … and so on, to the form key
    for _ in range(4):
        page.evaluate("() => window.gridflowModeler.get('commandStack').undo()")
    assert page.input_value("#el-form") == "micro_mediation"                   # the panel follows the undo
    assert page.input_value("#el-due") == "grid_days"
    task = re.search(r'<bpmn:userTask id="micro_mediation".*?</bpmn:userTask>', xml(), re.S).group(0)
    assert '"formKey" value="micro_mediation"' in task and '"dueDate" value="grid_days"' in task
    assert '"nameEn" value="Mediation in the grid"' in task                    # the first change stays


@pytest.mark.parametrize("process_key", ["grid_matter", "petition", "mediation", "leader_case", "consultation",
                                         "household_visit", "reverse_evaluation"])
def test_every_shipped_process_survives_the_modelers_round_trip(live_server, browser, process_key):  # noqa: F811
    """Opened in the modeler and saved unchanged, each shipped process still passes the check
    with every property the engine reads: a designer who only looks loses nothing."""
    page = log_in(browser, live_server, "cf_sj")
    page.goto(f"{live_server}/designer/processes/{process_key}/edit")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    page.click("#btn-save")
    page.locator("#modeler[data-checked]").wait_for(timeout=20_000)
    assert page.get_attribute("#modeler", "data-checked") == "ok", page.inner_text("#problems")
    assert page.get_attribute("#modeler", "data-notes") == "0", page.inner_text("#problems")
    text = page.evaluate("() => window.gridflowModeler.saveXML({format: true}).then(r => r.xml)")
    original = (ROOT / "processes" / f"{process_key}.bpmn").read_text(encoding="utf-8")
    for pattern in (r'<spiffworkflow:property name="\w+" value="[^"]*"', r"<spiffworkflow:calledDecisionId>",
                    r"<bpmn:script>", r"<bpmn:conditionExpression", r"<bpmn:time(Duration|Date|Cycle)"):
        assert len(re.findall(pattern, text)) == len(re.findall(pattern, original)), pattern


def _deploy_camunda(service, text=CAMUNDA, key=None):
    """The Camunda Modeler fixture deployed under a fresh key (or `key`, as a new version)."""
    key = key or f"br_{uuid.uuid4().hex[:8]}"
    text = text.replace('id="camunda_report"', f'id="{key}"').replace('bpmnElement="camunda_report"',
                                                                     f'bpmnElement="{key}"')
    created = Designer(service).deploy("cf_sj", {f"{key}.bpmn": text}).created
    assert created
    return key, created[0]


def _watch_console(page):
    """The page's console errors and uncaught exceptions, collected as they come."""
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def _label(page, element_id):
    return page.locator(f"#modeler [data-element-id={element_id}] text").text_content()


def test_a_draft_is_restored_only_onto_the_version_it_was_made_from(service, live_server, browser):  # noqa: F811
    """A draft saved while editing v2 is not applied when v1 is opened (the page says a draft
    of v2 exists, linking to it); back on v2 it is restored, and "Discard draft" reloads v2 as
    deployed and forgets the draft. No console error on the way (no keyboard.bindTo)."""
    key, v1 = _deploy_camunda(service)
    _, v2 = _deploy_camunda(service, CAMUNDA.replace('name="记录处置结果"', 'name="记录结果（第二版）"'), key)
    assert (v1.version, v2.version) == (1, 2) and v1.content_hash != v2.content_hash
    page = log_in(browser, live_server, "cf_sj")
    errors = _watch_console(page)
    modeler = page.locator("#modeler")
    discard = page.locator("#btn-discard-draft")

    page.goto(f"{live_server}/designer/processes/{key}/edit")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    assert modeler.get_attribute("data-draft") == "none" and discard.is_hidden()
    assert modeler.get_attribute("data-import-warnings") == "0" and page.locator("#import-warnings").is_hidden()
    page.evaluate("""() => { const m = window.gridflowModeler;
                             m.get('modeling').updateLabel(m.get('elementRegistry').get('Task_Verify'), '草稿里的核查'); }""")
    page.click("#btn-save")
    page.locator("#modeler[data-checked]").wait_for(timeout=20_000)
    assert modeler.get_attribute("data-draft") == "saved" and discard.is_visible()
    stored = page.evaluate("() => Object.keys(window.localStorage).filter(k => k.startsWith('gridflow-draft:'))")
    assert stored == [f"gridflow-draft:{key}:{key}.bpmn@{v2.content_hash}"]

    # v1: its own diagram, not v2's draft; the draft of v2 is mentioned, with a link to v2
    page.goto(f"{live_server}/designer/processes/{key}/edit?v=1")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    assert "基于 v1" in page.locator(".page-head small").inner_text()
    assert modeler.get_attribute("data-draft") == "none" and discard.is_hidden()
    assert page.locator("#editor-status").inner_text() == ""
    assert _label(page, "Task_Verify") == "现场核查" and _label(page, "Task_Record") == "记录处置结果"
    other = page.locator("#other-drafts a")
    assert other.count() == 1 and other.get_attribute("data-version") == "2"
    assert other.inner_text() == "本机另有基于 v2 的草稿（未应用）"

    # v2 again (by the link): the draft is restored, and can be discarded
    other.click()
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    assert "基于 v2" in page.locator(".page-head small").inner_text()
    assert modeler.get_attribute("data-draft") == "restored"
    assert page.locator("#editor-status").inner_text() == "已恢复本机保存的草稿。"
    assert _label(page, "Task_Verify") == "草稿里的核查" and page.locator("#other-drafts").is_hidden()
    assert discard.is_visible() and discard.inner_text() == "放弃草稿"
    shot(page, "designer-09-draft-restored")
    discard.click()
    page.locator("#modeler[data-draft=discarded]").wait_for(timeout=20_000)
    assert _label(page, "Task_Verify") == "现场核查" and _label(page, "Task_Record") == "记录结果（第二版）"
    assert page.locator("#editor-status").inner_text() == "已放弃草稿，显示 v2 的内容。"
    assert discard.is_hidden()
    assert page.evaluate("() => Object.keys(window.localStorage).filter(k => k.startsWith('gridflow-draft:'))") == []
    page.reload()
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    assert modeler.get_attribute("data-draft") == "none" and _label(page, "Task_Verify") == "现场核查"
    assert not [e for e in errors if "keyboard" in e or "bindTo" in e], errors
    assert not errors, errors


def test_import_warnings_are_shown_not_swallowed(live_server, browser):  # noqa: F811
    """A file with ids bpmn-js cannot read (帮扶, 新流程_visit: not XML names) opens with those
    elements missing: the page says how many warnings bpmn-js gave and lists the first few."""
    page = log_in(browser, live_server, "cf_sj")
    original = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
    element = original.replace('"micro_mediation"', '"帮扶"').replace(">micro_mediation<", ">帮扶<")
    process = original.replace('id="grid_matter"', 'id="新流程_visit"').replace('processRef="grid_matter"',
                                                                              'processRef="新流程_visit"')
    assert element.count("帮扶") > 3 and process.count("新流程_visit") == 2
    source = "**/designer/processes/grid_matter/v*/files/grid_matter.bpmn"

    def open_served(xml):
        page.unroute(source)
        page.route(source, lambda route: route.fulfill(status=200, body=xml.encode("utf-8"),
                                                       headers={"Content-Type": "application/xml; charset=utf-8"}))
        page.goto(f"{live_server}/designer/processes/grid_matter/edit")
        page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
        count = int(page.get_attribute("#modeler", "data-import-warnings"))
        message = f"导入时有 {count} 条警告：有些内容建模器未能读取，图中缺少它们，保存或部署会丢失它们。"
        assert page.locator("#editor-status").inner_text() == message
        box = page.locator("#import-warnings")
        assert box.is_visible() and box.locator(".import-warnings-count").inner_text() == message
        items = box.locator("li.import-warning").all_inner_texts()
        assert len(items) == min(count, 5)
        assert box.locator("li.fix").all_inner_texts() == ([f"另有 {count - 5} 条警告。"] if count > 5 else [])
        return count, items

    count, items = open_served(element)        # a task: left out of the diagram
    assert count >= 1 and "illegal ID <帮扶>" in items[0], items
    assert page.locator("#modeler [data-element-id=帮扶]").count() == 0
    count, items = open_served(process)        # the process: nothing of it is drawn
    assert count > 5 and "illegal ID <新流程_visit>" in items[0], items
    shot(page, "designer-10-import-warnings")


def test_clearing_a_camunda_task_value_in_the_panel_clears_it(service, live_server, browser):  # noqa: F811
    """A Camunda Modeler task's camunda:assignee and camunda:dueDate, emptied in the element
    panel, are gone (not shown again from the Camunda attribute), with the Spiff property a
    panel change wrote; each clearing is one command: Ctrl+Z on the canvas brings it back."""
    text = CAMUNDA.replace('camunda:assignee="lx_wgz1"', 'camunda:assignee="lx_wgz1" camunda:dueDate="P4D"')
    key, _ = _deploy_camunda(service, text)
    page = log_in(browser, live_server, "cf_sj")
    errors = _watch_console(page)
    page.goto(f"{live_server}/designer/processes/{key}/edit")
    page.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)

    def task():
        xml = page.evaluate("() => window.gridflowModeler.saveXML({format: true}).then(r => r.xml)")
        return re.search(r'<bpmn:userTask id="Task_Record".*?</bpmn:userTask>', xml, re.S).group(0)

    def edit(selector, value):
        page.fill(selector, value)
        page.locator(selector).dispatch_event("change")

    def undo_on_canvas():
        box = page.locator("#modeler").bounding_box()
        page.mouse.click(box["x"] + 30, box["y"] + box["height"] - 30)   # the canvas, away from the tasks
        page.keyboard.press("Control+z")

    page.evaluate("""() => { const m = window.gridflowModeler;
                             m.get('selection').select(m.get('elementRegistry').get('Task_Record')); }""")
    page.locator("#element-panel[data-element=Task_Record]").wait_for(timeout=5_000)
    assert page.input_value("#el-assignee") == "lx_wgz1" and page.input_value("#el-due") == "P4D"

    edit("#el-assignee", "")
    assert page.input_value("#el-assignee") == ""
    assert "assignee" not in task() and 'camunda:dueDate="P4D"' in task()
    edit("#el-due", "P6D")                       # a change is written as the Spiff property …
    assert '<spiffworkflow:property name="dueDate" value="P6D" />' in task() and 'camunda:dueDate="P4D"' in task()
    edit("#el-due", "")                          # … and clearing clears both
    assert page.input_value("#el-due") == ""
    assert "dueDate" not in task() and "assignee" not in task(), task()
    assert 'camunda:formKey="record_result"' in task()                       # the rest stays

    undo_on_canvas()                             # Ctrl+Z: both values of the due date come back
    assert '"dueDate" value="P6D"' in task() and 'camunda:dueDate="P4D"' in task()
    page.keyboard.press("Control+z")
    assert "spiffworkflow" not in task() and 'camunda:dueDate="P4D"' in task()
    page.keyboard.press("Control+z")
    assert 'camunda:assignee="lx_wgz1"' in task()
    page.evaluate("""() => { const m = window.gridflowModeler;
                             m.get('selection').select(m.get('elementRegistry').get('Task_Record')); }""")
    page.locator("#element-panel[data-element=Task_Record]").wait_for(timeout=5_000)
    assert page.input_value("#el-assignee") == "lx_wgz1" and page.input_value("#el-due") == "P4D"
    assert not errors, errors
