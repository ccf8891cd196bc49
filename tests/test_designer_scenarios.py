"""The designer runs one scenario of a process and sees pass/fail with the step that
broke; it runs in a child process on a scratch database, so real cases, audit rows
and the clock are untouched."""
from __future__ import annotations

import pytest
from sqlalchemy import func, select

from engine.designer import Designer, ScenarioRunner
from engine.errors import NotFound, PermissionDenied
from engine.models import AuditEvent, Case, Notification, WorkItem
from tests.conftest import ROOT
from tests.helpers import csrf_token, login

DESIGNER, WORKER, AUDITOR = "cf_sj", "lx_wgy1", "lxx_dc"
SHIPPED = (ROOT / "processes" / "scenarios" / "grid_matter" / "resolved_in_grid.yaml").read_text(encoding="utf-8")


def counts(db):
    with db.read_session() as s:
        return tuple(s.scalar(select(func.count()).select_from(t)) for t in (Case, WorkItem, AuditEvent, Notification))


@pytest.fixture
def runner(service):
    return ScenarioRunner(Designer(service))


def test_lists_the_shipped_scenarios_of_a_process(runner):
    names = [s.name for s in runner.scenarios(DESIGNER, "grid_matter")]
    assert "resolved_in_grid" in names and len(names) >= 10
    assert runner.scenarios(DESIGNER, "../etc") == []


def test_a_shipped_scenario_passes_and_touches_nothing_real(runner, clean_db, clock):
    before, now = counts(clean_db), clock.now()
    outcome = runner.run(DESIGNER, "grid_matter", name="resolved_in_grid")
    assert outcome.passed, (outcome.step, outcome.message)
    assert outcome.steps_done == 5 and outcome.business_key.startswith("LX-")
    assert counts(clean_db) == before and clock.now() == now


def test_an_edited_scenario_names_the_step_that_broke(runner, clean_db):
    before = counts(clean_db)
    wrong_person = SHIPPED.replace("    as: lx_wgz1 ", "    as: lx_wgz2 ")
    assert wrong_person != SHIPPED
    outcome = runner.run(DESIGNER, "grid_matter", text=wrong_person)
    assert not outcome.passed
    assert outcome.step == "step 4 (micro_mediation as lx_wgz2)" and "inbox" in outcome.message
    assert outcome.text("zh") == ("第 4 步（lx_wgz2 办理 micro_mediation）",
                                  "不在 lx_wgz2 的收件箱中；当前待办环节：['micro_mediation']")
    wrong_end = SHIPPED.replace("resolved_level: grid}", "resolved_level: town}")
    outcome = runner.run(DESIGNER, "grid_matter", text=wrong_end)
    assert (outcome.passed, outcome.step) == (False, "expect") and "resolved_level" in outcome.message
    assert counts(clean_db) == before


@pytest.mark.parametrize("text, step, zh", [
    ("process: grid_matter\nstart: [", "load", "edited.yaml：不是有效的 YAML（第 2 行第 9 列："),
    ("just text", "load", "edited.yaml：场景须写明 process（流程）和 start（发起）"),
    ("process: grid_matter\nstart: {as: lx_wgy1}\nsteps: [1, 2]", "load",
     "edited.yaml：start 须为键值结构，steps 须为由键值结构组成的列表"),
    ("process: grid_matter\nstart: {as: lx_wgy1}\nearlier: [1]", "load", "edited.yaml：earlier 须列出同一目录中的场景名称"),
])
def test_a_broken_scenario_is_a_report_not_a_crash(runner, text, step, zh):
    """...said in Chinese on the designer's page (it was the English line, 'a scenario needs …')."""
    outcome = runner.run(DESIGNER, "grid_matter", text=text)
    assert (outcome.passed, outcome.step) == (False, step) and outcome.message
    assert outcome.text("zh")[1].startswith("场景文件无法读取：" + zh), outcome.text("zh")


def test_a_scenario_of_another_process_is_told_where_to_run_not_that_it_is_undeployed(runner):
    """Only the page's version is deployed in the sandbox: a grid_matter scenario run on the
    petition page was told 流程“grid_matter”尚未部署, though it is deployed."""
    outcome = runner.run(DESIGNER, "petition", text=SHIPPED)
    assert (outcome.passed, outcome.step) == (False, "load")
    assert outcome.text("zh")[1] == "该场景属于流程“grid_matter”，不属于本页的流程“petition”；请到流程“grid_matter”的场景页运行它"
    assert outcome.text("en")[1] == ("the scenario is of process 'grid_matter', not of 'petition' whose page this is: "
                                     "run it on the scenario page of 'grid_matter'")
    assert "尚未部署" not in outcome.text("zh")[1]
    typo = runner.run(DESIGNER, "petition", text=SHIPPED.replace("process: grid_matter", "process: grid_mater"))
    assert (typo.passed, typo.step) == (False, "load")
    assert typo.text("zh")[1] == "场景所写的流程“grid_mater”没有部署；本页运行流程“petition”的场景，请改正 process（流程）"


def test_unknown_scenario_and_refusals(runner):
    with pytest.raises(NotFound):
        runner.run(DESIGNER, "grid_matter", name="no_such_scenario")
    for who in (WORKER, AUDITOR):
        with pytest.raises(PermissionDenied):
            runner.scenarios(who, "grid_matter")
        with pytest.raises(PermissionDenied):
            runner.run(who, "grid_matter", name="resolved_in_grid")
        with pytest.raises(PermissionDenied):
            runner.run(who, "grid_matter", text=SHIPPED)


def test_scenario_page_runs_one_and_shows_the_verdict(app, clean_db):
    client = app.test_client()
    login(client, DESIGNER)
    page = client.get("/designer/processes/grid_matter/scenarios")
    assert page.status_code == 200 and 'data-scenario="resolved_in_grid"' in page.get_data(as_text=True)
    token = csrf_token(client, "/designer/processes/grid_matter/scenarios")
    broken = SHIPPED.replace("status: completed", "status: open")
    response = client.post("/designer/processes/grid_matter/scenarios",
                           data={"csrf_token": token, "action": "edited", "name": "resolved_in_grid", "text": broken})
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and 'id="failed-step">最终检查<' in html
    assert "案件状态为 completed，应为 open" in html                       # a designer reads Chinese
    assert 'class="card scenario-result fail"' in html
    empty = client.post("/designer/processes/grid_matter/scenarios",
                        data={"csrf_token": token, "action": "edited", "text": "  "})
    assert empty.status_code == 400 and 'id="scenario-error"' in empty.get_data(as_text=True)

    for who in (WORKER, AUDITOR):
        other = app.test_client()
        login(other, who)
        assert other.get("/designer/processes/grid_matter/scenarios").status_code == 403
        token = csrf_token(other, "/inbox")
        assert other.post("/designer/processes/grid_matter/scenarios",
                          data={"csrf_token": token, "name": "resolved_in_grid"}).status_code == 403
