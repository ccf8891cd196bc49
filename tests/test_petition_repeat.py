"""A repeat petition (重复信访) is refused on the strength of the earlier case it names: that
case must exist, be a petition the officer may see, be of the same petitioner and have ended
with a final re-review; otherwise the registration is refused, naming the fields."""
import pytest

from engine.errors import InvalidInput
from engine.scenarios import Scenario, run_scenario
from tests.conftest import ROOT

SCENARIOS = ROOT / "processes" / "scenarios"
REPEAT = {"channel": "walk_in", "petitioner_name": "钱某", "subject": "land_acquisition", "title": "再次反映征地补偿",
          "description": "就已复核终结的征地补偿问题再次来访。", "repeat_of_rechecked": True}


def earlier(service, clock, name="petition/recheck_closed_and_archived"):
    return run_scenario(service, clock, Scenario.load(SCENARIOS / f"{name}.yaml")).business_key


def register(service, as_="lxx_xf", grid="linxi-xinguang-g1", **data):
    return service.start_case("petition", grid, {**REPEAT, **data}, as_)


def refused(service, **data):
    with pytest.raises(InvalidInput) as err:
        register(service, **data)
    return err.value


def test_a_repeat_of_a_petition_closed_by_re_review_is_recorded(service, clock):
    key = earlier(service, clock)
    view = register(service, prior_case_no=f" {key} ")
    assert [i.spec_id for i in view.open_items] == ["record_repeat"]


def test_a_repeat_needs_the_earlier_case_number(service, clock):
    err = refused(service)
    assert err.fields == {"prior_case_no": ["required by the choice of repeat_of_rechecked"]}


def test_an_earlier_case_that_does_not_exist_is_refused(service, clock):
    err = refused(service, prior_case_no="LX-2025-000321")
    assert err.fields["prior_case_no"] == ["no case LX-2025-000321 that you may see; check the Earlier case number"]
    assert err.field_texts("zh")["prior_case_no"] == ["找不到您可查看的案件“LX-2025-000321”，请核对原信访事项编号"]


def test_an_earlier_case_of_another_petitioner_is_refused_naming_both_fields(service, clock):
    key = earlier(service, clock)
    zh = refused(service, prior_case_no=key, petitioner_name="孙某").field_texts("zh")["prior_case_no"][0]
    assert zh == f"“{key}”的信访人是钱某，不是孙某；请核对原信访事项编号和信访人"


def test_an_earlier_case_not_closed_by_re_review_is_refused(service, clock):
    key = earlier(service, clock, "petition/review_requested_then_answered")    # closed after the review
    err = refused(service, prior_case_no=key, petitioner_name="郑某")
    assert "was not concluded as this requires (recheck_final=True)" in err.fields["prior_case_no"][0]


def test_an_earlier_case_of_another_process_is_refused(service, clock):
    key = earlier(service, clock, "grid_matter/resolved_in_grid")
    with pytest.raises(InvalidInput) as caught:   # the county leader sees the county's grid matters
        register(service, as_="lxx_ld1", prior_case_no=key)
    err = caught.value
    assert err.fields["prior_case_no"][0].startswith(f"{key} is a grid_matter case, not a petition case")
    assert err.field_texts("zh")["prior_case_no"][0].startswith(f"“{key}”不是信访事项办理案件")


def test_an_earlier_case_outside_the_officers_jurisdiction_is_as_unknown(service, clock):
    key = earlier(service, clock)   # 林西县's petition; 五原县's petition officer cannot see it
    with pytest.raises(InvalidInput) as err:
        register(service, as_="wyx_xf", grid="wuyuan-maojiaqiao-g1", prior_case_no=key)
    assert err.value.fields["prior_case_no"][0].startswith(f"no case {key} that you may see")


def test_a_non_repeat_may_name_an_open_earlier_petition_of_the_same_petitioner(service, clock):
    key = earlier(service, clock, "petition/review_requested_then_answered")
    view = register(service, prior_case_no=key, petitioner_name="郑某", repeat_of_rechecked=False)
    assert [i.spec_id for i in view.open_items] == ["decide"]
