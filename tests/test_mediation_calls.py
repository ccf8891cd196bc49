"""Multi-party mediation called from a grid matter and from a petition: what the
called process gets (only the dispute, by the names in mediation.bpmn's
ioSpecification), what comes back (only mediation_outcome, mediation_channel,
mediation_summary), and that the caller's own data is left alone."""
import pytest

from engine.errors import EngineError
from engine.scenarios import Scenario, run_scenario
from tests.conftest import ROOT
from tests.helpers import open_spec_ids, work

SCENARIOS = ROOT / "processes" / "scenarios"
INPUTS = {"dispute_type", "parties", "description", "amount_in_dispute", "complex_case"}
OUTPUTS = {"mediation_outcome", "mediation_channel", "mediation_summary"}
# data the mediation chain writes for itself, which must stay inside it
MEDIATION_INTERNALS = {"suggested_channel", "channel_reason", "consent_record", "all_consent", "mediation_result",
                       "session_record", "agreement_no", "agreement_terms", "fulfilment_deadline", "signed_on",
                       "apply_for_confirmation", "confirmation_status", "performance", "follow_up_note", "guidance"}


def run_until(service, clock, path, steps):
    scenario = Scenario.load(path)
    scenario.steps, scenario.expect = scenario.steps[:steps], {}
    return run_scenario(service, clock, scenario).business_key


@pytest.mark.parametrize("scenario,caller_only", [
    ("petition/civil_dispute_mediated_agreement.yaml",
     {"petitioner_name", "petitioner_phone", "subject", "title", "channel", "acceptance", "outcome", "accepted",
      "decision_reason", "hard_case", "refer_to_mediation", "department"}),
    ("grid_matter/dispute_not_settled_mediation_agreement.yaml",
     {"category", "colour", "location", "handling_level", "grid_days", "town_days", "resolved", "mediation_note",
      "if_unresolved", "department"}),
])
def test_the_called_mediation_sees_only_the_dispute(service, clock, scenario, caller_only):
    key = run_until(service, clock, SCENARIOS / scenario, 1)          # the caller has just handed over
    [task] = service.get_case(key).open_items
    assert task.spec_id == "assign_channel"
    seen = service.task_detail("lxx_dc", task.id).case_data           # the called process's data at its first task
    assert set(seen) == INPUTS | {"suggested_channel", "channel_reason"}, sorted(seen)
    assert not caller_only & set(seen)
    # the case itself still shows its own data, as it was when the call began
    assert caller_only - {"hard_case", "department", "resolved", "mediation_note", "if_unresolved"} <= \
        set(service.case_data(key)), sorted(service.case_data(key))


@pytest.mark.parametrize("scenario,kept", [
    ("petition/civil_dispute_mediated_agreement.yaml",
     {"channel": "walk_in", "subject": "civil_dispute", "outcome": "mediated", "petitioner_name": "李某"}),
    ("petition/civil_dispute_mediation_referred_to_court.yaml",
     {"channel": "online", "outcome": "referred_to_court", "department": "xinfangju"}),
    ("grid_matter/dispute_not_settled_mediation_agreement.yaml",
     {"category": "dispute", "department": "sifasuo", "resolved": False, "resolved_level": "grid"}),
    ("grid_matter/dispute_mediation_referred_to_court.yaml",
     {"category": "dispute", "closed_as": "referred_to_court"}),
])
def test_only_the_declared_outputs_come_back(service, clock, scenario, kept):
    key = run_scenario(service, clock, Scenario.load(SCENARIOS / scenario)).business_key
    assert service.get_case(key).status == "completed"
    data = service.case_data(key)
    assert OUTPUTS <= set(data)
    assert data["mediation_outcome"] in ("agreement", "referred")
    assert not MEDIATION_INTERNALS & set(data), sorted(MEDIATION_INTERNALS & set(data))
    assert {k: data.get(k) for k in kept} == kept
    if scenario.startswith("grid_matter"):
        assert "outcome" not in data        # the mediation's own `outcome` does not leak into the grid matter


def test_failed_mediation_hands_back_and_the_grid_matter_goes_on_at_the_town(service, clock):
    key = run_until(service, clock, SCENARIOS / "grid_matter" / "dispute_mediation_refused_goes_to_town.yaml", 3)
    case = service.get_case(key)
    assert open_spec_ids(case) == ["town_dispatch"] and case.status == "open"
    data = service.case_data(key)
    assert data["mediation_outcome"] == "failed" and data["mediation_channel"] == "village_committee"
    assert "依法不得调解" in data["mediation_summary"]
    assert not MEDIATION_INTERNALS & set(data)


def test_the_dispatch_rules_suggest_mediation_for_disputes_only(service):
    for category, expected in (("dispute", "mediation"), ("environment", "town"), ("livelihood", "town")):
        case = service.start_case("grid_matter", "linxi-xinguang-g1", {
            "category": category, "colour": "blue", "description": "测试事项描述", "location": "新光社区"}, "lx_wgy1")
        assert service.case_data(case.business_key)["suggested_if_unresolved"] == expected


def test_without_a_choice_an_unresolved_dispute_is_escalated_to_the_town(service):
    """`if_unresolved` is the grid leader's choice (the form pre-sets the rules' suggestion);
    a submission without it keeps the escalation chain as before."""
    case = service.start_case("grid_matter", "linxi-xinguang-g1", {
        "category": "dispute", "colour": "blue", "description": "邻里因楼道堆物口角", "location": "新光社区"}, "lx_wgy1")
    view = work(service, "lx_wgz1", "micro_mediation", {"resolved": False, "mediation_note": "未化解"})
    assert open_spec_ids(view) == ["town_dispatch"]
    assert "mediation_outcome" not in service.case_data(case.business_key)


def test_an_invalid_choice_is_refused_and_changes_nothing(service):
    case = service.start_case("grid_matter", "linxi-xinguang-g1", {
        "category": "dispute", "colour": "blue", "description": "邻里纠纷描述", "location": "新光社区"}, "lx_wgy1")
    with pytest.raises(EngineError) as err:
        work(service, "lx_wgz1", "micro_mediation", {"resolved": False, "mediation_note": "未化解",
                                                      "if_unresolved": "court", "amount_in_dispute": -5})
    assert err.value.code == "invalid" and {"if_unresolved", "amount_in_dispute"} <= set(err.value.fields)
    assert open_spec_ids(service.get_case(case.business_key)) == ["micro_mediation"]


CALLER_WITHOUT_INPUTS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="defs_bad_caller"
    targetNamespace="http://bpmn.io/schema/bpmn">
  <bpmn:process id="bad_caller" name="调用方未准备调解输入" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:callActivity id="call" calledElement="mediation"><bpmn:incoming>f1</bpmn:incoming>
      <bpmn:outgoing>f2</bpmn:outgoing></bpmn:callActivity>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="call"/>
    <bpmn:sequenceFlow id="f2" sourceRef="call" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>"""


def test_a_caller_missing_an_input_is_refused_and_nothing_is_created(service):
    from engine.deploy import deploy_files
    from engine.models import Case
    from forms import FormRegistry
    files = {"bad_caller.bpmn": CALLER_WITHOUT_INPUTS}
    for name in ("mediation.bpmn", "mediation_channel.dmn"):
        files[name] = (ROOT / "processes" / name).read_text(encoding="utf-8")
    with service.db.unit_of_work() as session:
        deploy_files(session, files, FormRegistry().keys(), actor="tests")
    with service.db.read_session() as session:
        before = session.query(Case).count()
    with pytest.raises(EngineError) as err:
        service.start_case("bad_caller", "linxi-xinguang-g1", {"description": "只有描述"}, "lx_wgy1")
    assert err.value.code == "process_error" and "missing a required Data Input" in str(err.value.message)
    assert "(data input 'dispute_type')" in str(err.value.message)     # the designer learns which one
    with service.db.read_session() as session:
        assert session.query(Case).count() == before


def test_a_petition_with_an_invalid_mediation_field_is_refused_and_changes_nothing(service):
    case = service.start_case("petition", "linxi-xinguang-g1", {
        "channel": "walk_in", "petitioner_name": "李某", "subject": "civil_dispute", "title": "邻里纠纷",
        "description": "邻里因漏水赔偿发生纠纷。", "repeat_of_rechecked": False}, "lxx_xf")
    assert service.case_data(case.business_key)["suggest_mediation"] is True       # petition_routing.dmn
    with pytest.raises(EngineError) as err:
        work(service, "lxx_xf", "decide", {"acceptance": "accept", "department": "xinfangju", "hard_case": False,
                                           "refer_to_mediation": "maybe", "dispute_type": "feud",
                                           "amount_in_dispute": -1, "decision_reason": "受理",
                                           "notice_method": "in_person"})
    assert err.value.code == "invalid"
    assert {"refer_to_mediation", "dispute_type", "amount_in_dispute"} <= set(err.value.fields)
    assert open_spec_ids(service.get_case(case.business_key)) == ["decide"]
    assert "refer_to_mediation" not in service.case_data(case.business_key)
