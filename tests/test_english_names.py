"""The English UI names processes and their elements by their `nameEn` property
(engine/english_names.py); the Chinese UI, and elements without one, keep the BPMN name."""
from __future__ import annotations

import re
import uuid
from pathlib import Path

from lxml import etree

from engine.bpmn import BPMN_NS, ENGLISH_NAME, english_names
from engine.deploy import deploy_files
from engine.english_names import EnglishNames
from tests.helpers import REPORT, csrf_token, work

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
GRID, WORKER, LEADER, AUDITOR = "linxi-xinguang-g1", "lx_wgy1", "lx_wgz1", "lxx_dc"
# what an official or auditor never sees by name: flows, lanes, data, definitions
UNSEEN = {"sequenceFlow", "lane", "laneSet", "dataInput", "dataOutput", "inputDataItem", "outputDataItem",
          "dataObject", "dataObjectReference", "property", "signal", "message", "participant", "collaboration"}


def html(response):
    return response.get_data(as_text=True)


def task_rows(response):
    """The inbox's task rows (its filters list every deployed process's tasks)."""
    return "".join(re.findall(r"<tr data-task=.*?</tr>", html(response), re.S))


def in_english(client, path="/inbox"):
    client.post("/lang/en", data={"csrf_token": csrf_token(client, path), "next": path})
    return client


def test_every_shipped_process_and_element_an_official_sees_has_an_english_name():
    missing = []
    for path in sorted((ROOT / "processes").glob("*.bpmn")):
        root = etree.parse(str(path)).getroot()
        english = {element_id for element_id, _name, _english in english_names({path.name: path.read_text("utf-8")})}
        for process in root.iter(f"{{{BPMN_NS}}}process"):
            for element in [process, *process.iter()]:
                if not isinstance(element.tag, str) or etree.QName(element).namespace != BPMN_NS:
                    continue
                if etree.QName(element).localname in UNSEEN or not element.get("name"):
                    continue
                if element.get("id") not in english:
                    missing.append(f"{path.name}: {element.get('id')} ({element.get('name')})")
    assert not missing, "add a nameEn property to:\n" + "\n".join(missing)


def test_a_called_process_element_keeps_its_own_english_name(service):
    """grid_matter's version holds mediation.bpmn too: both have an element `start`."""
    names = EnglishNames(service.db).catalogue()
    assert names.element("grid_matter", "start", "上报网格事项") == "Report a grid matter"
    assert names.element("grid_matter", "start", "纠纷受理登记") == "Register the dispute"
    assert names.element("grid_matter", "record_consent", "改过的名称") == "Ask every party for consent"
    assert names.element("grid_matter", "no_such_element", "某环节") == "某环节"
    assert names.process("grid_matter", "网格事项办理") == "Grid matter"
    assert names.named("grid_matter", "网格时限提醒") == "Grid time-limit reminder"
    assert names.named("petition", "督办完毕") == "Supervision done"   # two elements, one English name
    # one Chinese name, two English ones in one version (a script task and the end event after it): not guessed
    assert names.element("mediation", "set_enforcement", "引导申请强制执行") == "Advise applying for enforcement"
    assert names.element("mediation", "end_enforcement", "引导申请强制执行") == "Enforcement advised"
    assert names.named("mediation", "引导申请强制执行") == "引导申请强制执行"


def test_english_pages_show_english_names_chinese_pages_the_bpmn_names(service, as_user, app):
    case = service.start_case("grid_matter", GRID, dict(REPORT), WORKER)
    leader = as_user(LEADER)
    rows = task_rows(leader.get("/inbox"))
    assert "网格微调处" in rows and "Micro-mediation in the grid" not in rows

    in_english(leader)
    rows = task_rows(leader.get("/inbox"))
    assert "Micro-mediation in the grid" in rows and "网格微调处" not in rows
    page = html(leader.get("/inbox"))
    assert '<option value="grid_matter">Grid matter</option>' in page        # the filters
    assert '<option value="micro_mediation">Micro-mediation in the grid</option>' in page
    case_page = html(leader.get(f"/cases/{case.business_key}"))
    for english in ("Grid matter", "Report a grid matter", "Assess and dispatch", "Micro-mediation in the grid"):
        assert english in case_page
    for chinese in ("网格事项办理", "上报网格事项", "研判分派", "网格微调处"):
        assert chinese not in case_page
    task_id = case.open_items[0].id
    task_page = html(leader.get(f"/tasks/{task_id}"))
    assert "<h1>Micro-mediation in the grid</h1>" in task_page
    notices = html(leader.get("/notifications"))
    assert "Micro-mediation in the grid" in notices and "网格微调处" not in notices

    assert ">Grid matter</td>" in html(leader.get("/inbox"))                  # the process column

    auditor = in_english(as_user(AUDITOR))
    trace = html(auditor.get(f"/audit/cases/{case.business_key}/trace"))
    assert "Assess and dispatch" in trace and "研判分派" not in trace
    found = html(auditor.get("/audit/cases?go=1"))
    assert ">Grid matter</td>" in found and "网格事项办理" not in found
    assert "网格事项办理" not in html(auditor.get("/dashboard"))

    worker = in_english(as_user(WORKER))
    starts = html(worker.get("/start"))
    assert "Grid matter" in starts and "Household visit" in starts and "网格事项办理" not in starts

    work(service, LEADER, "micro_mediation", {"resolved": True, "mediation_note": "已调解"})
    rows = task_rows(worker.get("/inbox"))
    assert "Record the result" in rows and "记录处置结果" not in rows


def test_without_an_english_name_the_bpmn_name_shows_and_a_new_version_is_seen_at_once(service, as_user, fixture_forms):
    """An element or process without `nameEn` keeps its name; a version deployed meanwhile
    (here by another connection, as `gridflow deploy` would) names its cases' tasks at once."""
    key = f"en_{uuid.uuid4().hex[:8]}"
    loop = (FIXTURES / "loop.bpmn").read_text("utf-8").replace('id="loop"', f'id="{key}"')
    with service.db.unit_of_work() as session:
        deploy_files(session, {f"{key}.bpmn": loop.replace('name="Progress report"', 'name="进展报告"')},
                     fixture_forms.keys(), actor="tests")
    service.start_case(key, GRID, {}, WORKER)
    worker = in_english(as_user(WORKER))
    assert "进展报告" in task_rows(worker.get("/inbox"))

    named = loop.replace('name="Progress report"', 'name="进展报告"').replace(
        '<spiffworkflow:property name="formKey"',
        f'<spiffworkflow:property name="{ENGLISH_NAME}" value="Weekly progress" /><spiffworkflow:property name="formKey"')
    with service.db.unit_of_work() as session:
        assert deploy_files(session, {f"{key}.bpmn": named}, fixture_forms.keys(), actor="tests").created
    rows = task_rows(worker.get("/inbox"))
    assert "Weekly progress" in rows and "进展报告" not in rows   # the case of version 1 too: same element, same name


def test_the_supervision_board_in_english(service, as_user, clock):
    """A red matter's 镇级派单 is due within a day: on the town dispatcher's board."""
    service.start_case("grid_matter", GRID, {**REPORT, "category": "public_order", "colour": "red"}, WORKER)
    dispatcher = as_user("lxz_pd")
    assert "镇级派单" in html(dispatcher.get("/supervision"))
    page = html(in_english(dispatcher, "/supervision").get("/supervision"))
    assert "Town dispatch" in page and "镇级派单" not in page


def test_a_version_whose_names_cannot_be_read_still_shows_its_pages(service, monkeypatch, caplog):
    import engine.english_names as module

    def broken(files):
        raise ValueError("unreadable")
    monkeypatch.setattr(module, "english_names", broken)
    monkeypatch.setattr(module, "_NAMES_BY_CONTENT", {})   # a fresh process: nothing read before
    names = EnglishNames(service.db).catalogue()     # every version's names unreadable: none, no error
    assert names.element("grid_matter", "micro_mediation", "网格微调处") == "网格微调处"
    assert names.process("grid_matter", "网格事项办理") == "Grid matter"   # the process's own, from its properties
    assert "could not read the English names of grid_matter" in caplog.text
