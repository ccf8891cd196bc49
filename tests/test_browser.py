"""A real browser (Debian's Chromium driven by Playwright) against a live server:
a grid worker reports a matter with a photo, the grid leader and the worker
close it from their inboxes, and the case page draws the diagram with the path
highlighted. Screenshots are kept in test-artifacts/ for people to look at."""
import os
import shutil
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import ROOT

# the pages' scripts in Chromium: run once, in the PostgreSQL run (tests/conftest.py)
pytestmark = pytest.mark.sqlite_run_only   # once (tests/conftest.py)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


@pytest.fixture
def live_server(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture
def browser():
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), \
        "Chromium is missing: apt-get install chromium (bash .ci/run installs it)"
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield instance
        instance.close()


def shot(page, name):
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(browser, base, username, mobile=False):
    context = browser.new_context(viewport={"width": 390, "height": 844} if mobile else {"width": 1280, "height": 900},
                                  locale="zh-CN")
    page = context.new_page()
    page.goto(f"{base}/login")
    page.fill("#username", username)
    page.fill("#password", "demo123")
    page.click("main button[type=submit]")
    page.wait_for_url(f"{base}/inbox")
    return page


def complete_from_inbox(page, base, task_name, fill):
    page.goto(f"{base}/inbox")
    page.click(f"table a:has-text(\"{task_name}\")")
    page.wait_for_selector("form.task-form")
    fill(page)
    page.click("form.task-form button[type=submit]")
    page.wait_for_url(f"{base}/inbox")


def test_report_with_photo_then_close_it_from_the_inboxes(live_server, browser, tmp_path):
    base = live_server
    photo = tmp_path / "现场照片.png"
    photo.write_bytes(PNG)

    worker = log_in(browser, base, "lx_wgy1", mobile=True)        # grid workers use phones
    worker.goto(f"{base}/start/grid_matter")
    worker.select_option("#category", "dispute")
    worker.fill("#description", "两户村民因宅基地边界发生争执，需要调解")
    worker.fill("#location", "新光社区3号楼东侧")
    worker.select_option("#colour", "blue")
    worker.set_input_files("#photos", str(photo))
    shot(worker, "01-report-form-phone")
    worker.click("form.start-form button[type=submit]")
    worker.wait_for_url(f"{base}/cases/*")
    business_key = worker.url.rsplit("/", 1)[-1]
    assert business_key.startswith("LX-")
    assert worker.locator("img[src*='/attachments/']").count() == 1      # the photo is on the case page
    shot(worker, "02-case-after-report-phone")

    leader = log_in(browser, base, "lx_wgz1")
    assert leader.locator(f"text={business_key}").count() == 1
    shot(leader, "03-grid-leader-inbox")

    def mediate(page):
        page.check("#resolved-true")
        page.fill("#mediation_note", "网格员与网格长共同调解，双方达成一致")
    complete_from_inbox(leader, base, "网格微调处", mediate)
    assert leader.locator(".flash").count() >= 1

    complete_from_inbox(worker, base, "记录处置结果",
                        lambda page: page.fill("#result_note", "已化解，双方签字确认"))

    leader.goto(f"{base}/cases/{business_key}")
    diagram = leader.locator("#diagram[data-imported=true]")
    diagram.wait_for(timeout=20_000)
    assert diagram.get_attribute("data-warnings") == "0"
    done = leader.locator("#diagram .highlight-done")
    flows = leader.locator("#diagram .highlight-flow")
    assert done.count() >= 7 and flows.count() >= 6
    assert leader.locator("#diagram [data-element-id=end_grid].highlight-done").count() == 1
    assert leader.locator("#diagram [data-element-id=town_dispatch].highlight-done").count() == 0
    # a closed case opens on the path it took, readable, not the whole chain shrunk to fit
    assert diagram.get_attribute("data-focus") == "path"
    assert _shown(leader, "end_grid") and not _shown(leader, "town_dispatch")
    shot(leader, "04-case-page-diagram")
    leader.click("[data-diagram-zoom=all]")
    assert diagram.get_attribute("data-focus") == "all"
    assert _shown(leader, "end_grid") and _shown(leader, "town_dispatch")
    leader.click("[data-diagram-zoom=focus]")
    assert diagram.get_attribute("data-focus") == "path"


def _shown(page, element_id) -> bool:
    """Whether the element's box lies inside the diagram's visible area."""
    return page.evaluate("""id => {
        const outer = document.getElementById("diagram").getBoundingClientRect();
        const box = document.querySelector(`#diagram [data-element-id="${id}"]`).getBoundingClientRect();
        return box.width > 0 && box.left >= outer.left && box.right <= outer.right
            && box.top >= outer.top && box.bottom <= outer.bottom;
    }""", element_id)


def test_a_grid_matter_in_the_called_mediation_highlights_the_call_activity(live_server, browser, service, clock):
    """While the called mediation runs, the grid matter's diagram marks its call
    activity like an active task, and the card says which mediation task is open."""
    from engine.scenarios import Scenario, run_scenario
    scenario = Scenario.load(ROOT / "processes" / "scenarios" / "grid_matter" / "dispute_not_settled_mediation_agreement.yaml")
    scenario.steps, scenario.expect = scenario.steps[:1], {}             # the grid leader hands over to mediation
    key = run_scenario(service, clock, scenario).business_key

    for username, url in (("lxz_pd", f"/cases/{key}"), ("lxx_dc", f"/audit/cases/{key}/trace")):
        page = log_in(browser, live_server, username)
        page.goto(live_server + url)
        page.locator("#diagram[data-imported=true]").wait_for(timeout=20_000)
        assert page.locator("#diagram [data-element-id=mediation].highlight-active").count() == 1
        assert page.locator("#diagram [data-element-id=mediation].highlight-done").count() == 0
        assert page.locator("#diagram [data-element-id=micro_mediation].highlight-done").count() == 1
        assert page.locator(".diagram-in-called").inner_text() == "进行中：多元调解 → 确定调解渠道"
        assert page.locator("#diagram").get_attribute("data-focus") == "active"   # opens on the open step
        assert _shown(page, "mediation")
        shot(page, f"05-in-called-mediation-{username}")


def _process_id(path):
    from lxml import etree
    root = etree.parse(str(path)).getroot()
    executable = [p for p in root.iter("{http://www.omg.org/spec/BPMN/20100524/MODEL}process")
                  if p.get("isExecutable") == "true"]
    assert executable, f"{path.name} has no executable process"
    return executable[0].get("id")


def _drawn_ids(path):
    """Every BPMN element the file's diagram interchange draws (shapes and edges)."""
    from lxml import etree
    root = etree.parse(str(path)).getroot()
    di = "{http://www.omg.org/spec/BPMN/20100524/DI}"
    return {node.get("bpmnElement") for tag in ("BPMNShape", "BPMNEdge") for node in root.iter(di + tag)}


@pytest.mark.parametrize("path", sorted((ROOT / "processes").glob("*.bpmn")), ids=lambda p: p.stem)
def test_every_shipped_process_imports_into_bpmn_js_without_warnings(live_server, browser, service, path):
    """The case page of a case of each process: bpmn-js imports its diagram with no
    warning and draws every shape and edge of the file's diagram interchange."""
    from engine.scenarios import Scenario
    process_id = _process_id(path)
    scenarios = sorted((ROOT / "processes" / "scenarios" / process_id).glob("*.yaml"))
    assert scenarios, f"no scenario to start a {process_id} case from"
    start = Scenario.load(scenarios[0]).start                  # a designer's own start data
    case = service.start_case(process_id, start["grid"], start.get("data") or {}, start["as"])

    page = log_in(browser, live_server, start["as"])
    warnings = []
    page.on("console", lambda msg: warnings.append(msg.text) if msg.type in ("warning", "error") else None)
    page.goto(f"{live_server}/cases/{case.business_key}")
    diagram = page.locator("#diagram[data-imported=true]")
    diagram.wait_for(timeout=30_000)
    assert diagram.get_attribute("data-warnings") == "0", warnings
    drawn = set(page.eval_on_selector_all("#diagram [data-element-id]",
                                          "nodes => nodes.map(n => n.getAttribute('data-element-id'))"))
    expected = _drawn_ids(path)
    assert len(expected) > 10 and expected <= drawn, f"not drawn: {sorted(expected - drawn)}"
    assert page.locator("#diagram .highlight-active").count() >= 1    # the open task is marked
    shot(page, f"process-{process_id}")


def test_the_pages_run_under_their_content_security_policy(live_server, browser, service, clock):
    """No page breaks its own policy: the case page's bpmn-js diagram, the dashboard's charts,
    the designer's BPMN and DMN modelers and form preview, the API docs. A refused script,
    style or request shows in the console as a Content Security Policy violation."""
    from engine.demo_history import DemoHistory
    from tests.helpers import REPORT
    DemoHistory(service, seed=4).run(12, months=2, end=clock.now())
    case = service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lx_wgy1")
    violations = []

    def watch(page):
        page.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
        page.on("pageerror", lambda error: violations.append(str(error)))
        return page
    worker = watch(log_in(browser, live_server, "lx_wgy1"))
    response = worker.goto(f"{live_server}/cases/{case.business_key}")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    worker.locator("#diagram[data-imported=true]").wait_for(timeout=30_000)
    leader = watch(log_in(browser, live_server, "lxx_ld1"))
    leader.goto(f"{live_server}/dashboard")
    assert leader.locator("svg.chart rect").count() > 0
    designer = watch(log_in(browser, live_server, "cf_sj"))
    designer.goto(f"{live_server}/designer/processes/grid_matter/edit")
    designer.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    designer.goto(f"{live_server}/designer/processes/grid_matter/edit?file=dispatch_rules.dmn")
    designer.locator("#modeler[data-imported=true]").wait_for(timeout=20_000)
    designer.click("#modeler .tjs-table tbody tr td.input-cell >> nth=0")   # dmn-js at work: a cell in editing
    designer.goto(f"{live_server}/designer/forms/satisfaction")
    designer.locator("#form-preview select#satisfaction, #form-preview input[name=satisfaction]").first.wait_for()
    designer.goto(f"{live_server}/api/docs")
    designer.locator(".swagger-ui .opblock").first.wait_for(timeout=20_000)
    assert violations == []
