"""访调对接: the mediation a petition is handed to has both parties, the petitioner and the
other party the petition names (被反映人), not the petitioner alone."""
from engine.scenarios import Scenario, run_scenario

START = {"as": "lxx_xf", "grid": "linxi-xinguang-g1", "data": {
    "channel": "walk_in", "petitioner_name": "李某", "petitioner_phone": "13800000101", "subject": "civil_dispute",
    "title": "楼上漏水损坏吊顶", "description": "楼上住户漏水损坏其家吊顶，协商赔偿未果。", "repeat_of_rechecked": False}}
STEPS = [
    {"task": "decide", "as": "lxx_xf", "data": {
        "acceptance": "accept", "department": "xinfangju", "hard_case": False, "refer_to_mediation": True,
        "dispute_type": "neighbour", "decision_reason": "转人民调解", "notice_method": "in_person"}},
    {"task": "assign_channel", "as": "lxz_pd", "data": {"channel": "village_committee"}},
]


def consent_parties(service, clock, **start):
    scenario = Scenario(name="parties", process="petition", title="parties",
                        start={**START, "data": {**START["data"], **start}}, steps=STEPS, expect={})
    key = run_scenario(service, clock, scenario).business_key
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "record_consent")
    return service.task_detail("lx_wgy1", item.id).case_data["parties"]


def test_the_other_party_named_in_the_petition_is_a_party_to_the_mediation(service, clock):
    assert consent_parties(service, clock, respondent=" 王某（楼上住户） 13900000202 ") == \
        "李某 13800000101\n王某（楼上住户） 13900000202"


def test_without_another_party_the_petitioner_alone_is_handed_over(service, clock):
    assert consent_parties(service, clock) == "李某 13800000101"
    assert consent_parties(service, clock, respondent="") == "李某 13800000101"
