"""领导包案: the 责任人 answers for the 责任单位 chosen, so must work in that unit of the case's place."""
import pytest

from engine.errors import InvalidInput
from engine.scenarios import Scenario, run_scenario

START = {"as": "lxx_lxb", "grid": "linxi-xinguang-g1",
         "data": {"case_origin": "backlog", "title": "物业费纠纷积案", "description": "业主与物业公司纠纷，多次集体信访。",
                  "petitioner_name": "业主代表李某"}}
ASSIGN = {"owning_leader": "lxx_ld2", "responsible_unit": "zhujian", "responsible_person": "lxx_zj",
          "report_every_days": 10}


def assign(service, clock, **data):
    key = run_scenario(service, clock, Scenario(name="unit", process="leader_case", title="unit", start=START,
                                                steps=[], expect={})).business_key
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "assign")
    return service.complete_task(item.id, {**ASSIGN, **data}, "lxx_lxb")


@pytest.mark.parametrize("unit,person", [("zhujian", "lxx_cg"), ("chengguan", "lxx_zj"), ("zhujian", "lxx_xfcb")])
def test_a_responsible_person_of_another_unit_is_refused_naming_both(service, clock, unit, person):
    with pytest.raises(InvalidInput) as err:
        assign(service, clock, responsible_unit=unit, responsible_person=person)
    assert list(err.value.fields) == ["responsible_person"]
    en, zh = err.value.fields["responsible_person"][0], err.value.field_texts("zh")["responsible_person"][0]
    assert "Responsible unit" in en and "no role in the" in en
    assert zh.startswith("责任人") and "不在所选责任单位" in zh


def test_a_responsible_person_of_the_chosen_unit_is_taken(service, clock):
    assert assign(service, clock, responsible_unit="chengguan", responsible_person="lxx_cg").status == "open"


def test_a_person_of_the_same_unit_of_another_county_is_refused(service, clock):
    with pytest.raises(InvalidInput):   # 五原县城管局, not 林西县's
        assign(service, clock, responsible_unit="chengguan", responsible_person="wyx_cg")


@pytest.mark.parametrize("field,message", [
    ({"name": "p", "type": "text", "unit_from": "unit"}, "person fields only"),
    ({"name": "p", "type": "person", "unit_from": "nope"}, "'nope', which is not a choice input field"),
    ({"name": "p", "type": "person", "unit_from": "note"}, "'note', which is not a choice input field"),
])
def test_a_wrong_unit_from_names_the_problem(field, message):
    from forms import FormDefinitionError, parse_definition
    with pytest.raises(FormDefinitionError, match=message) as err:
        parse_definition({"key": "k", "fields": [
            {"name": "unit", "type": "choice", "choices": [{"value": "zhujian"}]}, {"name": "note", "type": "text"},
            field]}, "k.yaml")
    assert err.value.zh


def test_progress_reports_fired_late_are_due_when_their_cycles_say(service, clock):
    """The timer worker was down for 25 days of a 10-day reporting cycle. The reports of
    days 10 and 20 are due on days 20 and 30, as if fired on time, and the first one's
    period is already over (missed, 督办) — not both due on day 35, a full cycle from the
    late firing, with the missed-report timer counting from then too."""
    from datetime import timedelta

    from engine.timers import TimerWorker
    from tests.helpers import work
    key = assign(service, clock).case.business_key          # report_every_days: 10
    work(service, "lxx_ld2", "leader_study", {"study_notes": "查阅档案", "coordination_instructions": "住建局牵头"})
    start, worker = clock.now(), TimerWorker(service)

    def reports():
        return sorted((i.spec_id, i.due_at - start if i.due_at else None)
                      for i in service.get_case(key).open_items if i.spec_id != "work")
    clock.set(start + timedelta(days=25))
    assert worker.run_once().fired == 1
    assert reports() == [("progress_report", timedelta(days=20)), ("progress_report", timedelta(days=30)),
                         ("supervise_report", None)]
    assert all(i.created_at == start + timedelta(days=25) for i in service.get_case(key).open_items
               if i.spec_id != "work")                        # the rows and the trail keep the real time
    assert service.get_case(key).case.next_timer_at == start + timedelta(days=30)
    clock.set(start + timedelta(days=31))                     # a day late again: day 30's report due on day 40
    assert worker.run_once().fired == 1
    assert reports() == [("progress_report", timedelta(days=20)), ("progress_report", timedelta(days=30)),
                         ("progress_report", timedelta(days=40)), ("supervise_report", None),
                         ("supervise_report", None)]
