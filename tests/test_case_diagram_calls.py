"""The case diagram while a case is inside a call activity or an embedded subprocess.

The case page and the auditor's trace draw only the case's own process; a task
of a called process (grid_matter → mediation, petition → mediation / leader_case)
is shown on the call activity that runs it, with a "进行中：多元调解 → <task>"
hint, and every subprocess around an active task is marked active too."""
import re

import pytest

from engine.diagram import highlights, process_file
from engine.scenarios import Scenario, run_scenario
from tests.conftest import ROOT
from tests.helpers import login, open_spec_ids

SCENARIOS = ROOT / "processes" / "scenarios"
GRID_INTO_MEDIATION = SCENARIOS / "grid_matter" / "dispute_not_settled_mediation_agreement.yaml"


def run_until(service, clock, path, steps):
    scenario = Scenario.load(path)
    scenario.steps, scenario.expect = scenario.steps[:steps], {}
    return run_scenario(service, clock, scenario).business_key


def diagram_of(client, key):
    response = client.get(f"/cases/{key}/diagram.json")
    assert response.status_code == 200
    return response.get_json()["highlights"]


def hints(html):
    return [re.sub(r"\s+", " ", h).strip() for h in re.findall(r'<p class="hint diagram-in-called">(.*?)</p>', html, re.S)]


# ------------------------------------------------------- shipped processes

def test_a_grid_matter_in_mediation_marks_the_call_activity_on_the_case_page_and_the_trace(app, service, clock):
    key = run_until(service, clock, GRID_INTO_MEDIATION, 3)           # mediation: consent is being asked
    assert open_spec_ids(service.get_case(key)) == ["record_consent"]

    official = app.test_client()
    login(official, "lxz_pd")
    marked = diagram_of(official, key)
    assert marked["active"] == ["mediation"]                          # the grid_matter diagram's call activity
    assert marked["in_called"] == [{"via": [{"id": "mediation", "name": "多元调解"}],
                                    "task": {"id": "record_consent", "name": "征询当事人调解意愿"}}]
    assert {"micro_mediation", "prepare_grid_mediation"} <= set(marked["completed"])
    assert "mediation" not in marked["completed"]                     # not left yet
    page = official.get(f"/cases/{key}").get_data(as_text=True)
    assert hints(page) == ["进行中：多元调解 → 征询当事人调解意愿"]

    auditor = app.test_client()
    login(auditor, "lxx_dc")
    assert diagram_of(auditor, key)["active"] == ["mediation"]
    trace = auditor.get(f"/audit/cases/{key}/trace").get_data(as_text=True)
    assert hints(trace) == ["进行中：多元调解 → 征询当事人调解意愿"]
    english = official.get(f"/cases/{key}", headers={"Accept-Language": "en"}).get_data(as_text=True)
    assert hints(english) == ["In progress: Multi-party mediation → Ask every party for consent"]   # their nameEn


def test_where_a_case_waits_without_a_task_is_marked_too(app, service, clock):
    """A red matter's grid worker follows it up daily until it is resolved: the follow-up
    subprocess waits at a signal catch event ("等待办结"), which no work item stands for."""
    key = run_until(service, clock, SCENARIOS / "grid_matter" / "red_matter_town_and_county_daily_follow_up.yaml", 3)
    assert open_spec_ids(service.get_case(key)) == ["department_handle"]
    client = app.test_client()
    login(client, "lxz_pd")
    marked = diagram_of(client, key)
    assert marked["active"][0] == "department_handle"
    assert {"wait_resolved", "urgent_follow_up"} <= set(marked["active"])   # the event and its subprocess
    assert "follow_up_daily" not in marked["active"]   # an armed boundary timer is not where the case is


def test_after_the_mediation_hands_back_the_call_activity_is_completed_not_active(service, clock):
    key = run_until(service, clock, SCENARIOS / "grid_matter" / "dispute_mediation_refused_goes_to_town.yaml", 3)
    marked = service.view_case("lxz_pd", key).highlights
    assert open_spec_ids(service.get_case(key)) == ["town_dispatch"]
    assert marked["active"] == ["town_dispatch", "town_stage"]        # the task and the stage around it
    assert "mediation" in marked["completed"] and marked["in_called"] == []


def test_a_case_not_in_a_called_process_has_no_hint(app, service, clock):
    key = run_until(service, clock, GRID_INTO_MEDIATION, 0)           # still at the grid's micro-mediation
    client = app.test_client()
    login(client, "lx_wgz1")
    marked = diagram_of(client, key)
    assert marked["active"] == ["micro_mediation"] and marked["in_called"] == []
    assert hints(client.get(f"/cases/{key}").get_data(as_text=True)) == []


@pytest.mark.parametrize("scenario,steps,task,call,call_name", [
    ("petition/civil_dispute_mediated_agreement.yaml", 1, "assign_channel", "mediation", "多元调解（访调对接）"),
    ("petition/hard_case_at_acceptance_leader_case.yaml", 1, "assign", "leader_case", "领导包案"),
])
def test_a_petition_in_a_called_process_marks_its_call_activity(service, clock, scenario, steps, task, call, call_name):
    key = run_until(service, clock, SCENARIOS / scenario, steps)
    assert open_spec_ids(service.get_case(key)) == [task]
    marked = service.view_case("lxx_dc", key).highlights
    assert marked["active"] == [call]
    assert [(h["via"][0]["id"], h["via"][0]["name"], h["task"]["id"]) for h in marked["in_called"]] == \
        [(call, call_name, task)]


def test_tasks_inside_nested_subprocesses_mark_every_subprocess_around_them(service, clock):
    key = run_until(service, clock, SCENARIOS / "grid_matter" / "whistle_departments_report_in.yaml", 1)
    assert open_spec_ids(service.get_case(key)) == ["report_in", "report_in"]
    marked = service.view_case("lxz_pd", key).highlights
    assert marked["active"] == ["report_in", "whistle", "town_stage"] and marked["in_called"] == []


# ------------------------------------------------ the rules, on small files

def _process(pid, body):
    return (f'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d_{pid}">'
            f'<bpmn:process id="{pid}" isExecutable="true">{body}</bpmn:process></bpmn:definitions>')


NESTED = {
    "top.bpmn": _process("top", '<bpmn:startEvent id="start"/><bpmn:subProcess id="stage" name="阶段">'
                                '<bpmn:callActivity id="call_middle" name="中间流程" calledElement="middle"/>'
                                '</bpmn:subProcess><bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="stage"/>'),
    "middle.bpmn": _process("middle", '<bpmn:callActivity id="call_leaf" name="末级流程" calledElement="leaf"/>'),
    "leaf.bpmn": _process("leaf", '<bpmn:userTask id="leaf_task" name="末级任务"/>'),
}

TWO_CALLS = {
    "top.bpmn": _process("top", '<bpmn:startEvent id="start"/><bpmn:exclusiveGateway id="gw"/>'
                                '<bpmn:callActivity id="first_call" name="第一次调解" calledElement="mediation"/>'
                                '<bpmn:callActivity id="second_call" name="第二次调解" calledElement="mediation"/>'
                                '<bpmn:task id="between"/>'
                                '<bpmn:sequenceFlow id="f1" sourceRef="gw" targetRef="first_call"/>'
                                '<bpmn:sequenceFlow id="f2" sourceRef="between" targetRef="second_call"/>'),
    "mediation.bpmn": _process("mediation", '<bpmn:userTask id="consent" name="征询意愿"/>'),
}


def test_a_task_two_calls_deep_marks_the_outer_call_and_its_subprocess():
    marked = highlights(NESTED, [("", "start")], ["leaf_task"])
    assert marked["active"] == ["call_middle", "stage"]
    assert marked["in_called"] == [{"via": [{"id": "call_middle", "name": "中间流程"}, {"id": "call_leaf", "name": "末级流程"}],
                                    "task": {"id": "leaf_task", "name": "末级任务"}}]
    # the case's own process named: the same answer; a case of `middle` itself sees its own call
    assert highlights(NESTED, [], ["leaf_task"], process_key="top")["active"] == ["call_middle", "stage"]
    assert highlights(NESTED, [], ["leaf_task"], process_key="middle")["active"] == ["call_leaf"]


def test_a_process_called_from_two_places_is_shown_at_the_one_the_history_is_in():
    first = [(None, "start"), ("start", "gw")]
    assert highlights(TWO_CALLS, first, ["consent"])["active"] == ["first_call"]
    second = first + [("gw", "first_call"), ("first_call", "between")]
    assert highlights(TWO_CALLS, second, ["consent"])["active"] == ["second_call"]
    assert highlights(TWO_CALLS, [], ["consent"])["active"] == ["first_call", "second_call"]   # cannot tell: both


def test_an_unknown_active_id_is_passed_through():
    assert highlights(TWO_CALLS, [], ["not_in_the_files"])["active"] == ["not_in_the_files"]


def test_process_file_is_the_file_defining_the_process_not_one_calling_it():
    files = {"a_caller.bpmn": _process("caller", '<bpmn:callActivity id="mediation" calledElement="mediation"/>'),
             "z_mediation.bpmn": _process("mediation", '<bpmn:userTask id="consent"/>')}
    assert process_file(files, "mediation") == "z_mediation.bpmn"
    assert process_file(files, "caller") == "a_caller.bpmn"
    assert process_file(files, "nowhere") is None
