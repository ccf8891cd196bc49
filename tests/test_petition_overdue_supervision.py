"""The petition's later time limits are supervised as the first ones are: a 复查 or 复核 not
answered within 30 days of the request, and a written reply not made within the handling
limit (60 days, or 60 + the approved extension). Each had a due date and nobody was told
when it passed. Answered in time, nothing is raised; a reply reached after the limit had
already passed is not supervised a second time for the same lateness."""
from datetime import datetime, timedelta, timezone

from engine.models import Case, JurisdictionNode
from engine.scenarios import Scenario, run_scenario
from tests.helpers import open_item, open_spec_ids, path_ids
from tests.test_petition_dates import REPLY, REVIEW, REVIEW_REQUEST, START, TO_REPLY

RECHECK_REQUEST = {"task": "recheck_request", "as": "cf_xf",
                   "data": {"recheck_requested_on": "2026-03-12", "recheck_reasons": "仍不服"}}
RECHECK = {"task": "recheck", "as": "cf_xf",
           "data": {"recheck_result": "uphold", "recheck_opinion": "维持", "recheck_date": "2026-03-12"}}
SUPERVISE = {"supervision_measure": "notice", "supervision_note": "超期，下发督办单"}
# requested on 3-12 (China): 30 days end 4-11 24:00 China time, 16:00 UTC
LAST_SECOND = datetime(2026, 4, 11, 15, 59, 59, tzinfo=timezone.utc)
PAST = datetime(2026, 4, 11, 16, 0, 1, tzinfo=timezone.utc)


def walk(service, clock, steps):
    scenario = Scenario(name="overdue", process="petition", title="overdue", start=START, steps=steps, expect={})
    return run_scenario(service, clock, scenario).business_key


def at(service, clock, key, moment):
    clock.set(moment)
    service.fire_timers(key)
    return open_spec_ids(service.get_case(key))


def node_code(service, node_id):
    with service.db.read_session() as s:
        return s.get(JurisdictionNode, node_id).code


def test_a_review_not_answered_in_30_days_goes_to_the_city_centre_for_supervision(service, clock):
    key = walk(service, clock, TO_REPLY + [REPLY, REVIEW_REQUEST])
    assert at(service, clock, key, LAST_SECOND) == ["review"]
    assert at(service, clock, key, PAST) == ["review", "supervise_review"]
    item = open_item(service.get_case(key), "supervise_review")
    assert not item.unresolved and item.role == "center_dispatcher"
    assert node_code(service, item.candidate_node_id) == "chifeng"
    assert [r.item.id for r in service.inbox("cf_pd")] == [item.id]
    assert [r.item.spec_id for r in service.inbox("cf_xf")] == ["review"]   # the supervised, not the supervisor
    data = service.case_data(key)
    assert data["review_overdue"] is True and data["overdue_stage"] == "review"
    assert at(service, clock, key, PAST.replace(day=20)) == ["review", "supervise_review"]   # once
    service.complete_task(item.id, SUPERVISE, "cf_pd")
    assert open_spec_ids(service.get_case(key)) == ["review"]   # the review itself is still to be done


def test_a_review_answered_in_time_is_not_supervised(service, clock):
    key = walk(service, clock, TO_REPLY + [REPLY, REVIEW_REQUEST, {"advance": "P29D"}, REVIEW])
    assert at(service, clock, key, PAST) == []     # the 复核 window (from the review's date, 3-12) closed it
    view = service.get_case(key)
    assert view.status == "completed" and "supervise_review" not in path_ids(service, view)
    assert "review_overdue" not in service.case_data(key)


def test_a_recheck_not_answered_in_30_days_goes_to_the_city_centre_for_supervision(service, clock):
    key = walk(service, clock, TO_REPLY + [REPLY, REVIEW_REQUEST, REVIEW, RECHECK_REQUEST])
    assert at(service, clock, key, LAST_SECOND) == ["recheck"]
    assert at(service, clock, key, PAST) == ["recheck", "supervise_recheck"]
    item = open_item(service.get_case(key), "supervise_recheck")
    assert not item.unresolved and node_code(service, item.candidate_node_id) == "chifeng"
    assert [r.item.id for r in service.inbox("cf_pd")] == [item.id]
    assert service.case_data(key)["overdue_stage"] == "recheck"


def waiting_timers(service, key) -> dict[str, datetime]:
    """{timer event's name: its due moment (UTC)} of every timer the case waits on."""
    with service.db.read_session() as session:
        case = session.query(Case).filter_by(business_key=key).one()
        workflow = service._load(session, case, service.specs.for_case(session, case))
        return {event.name: datetime.fromisoformat(event.value).astimezone(timezone.utc)
                for event in workflow.waiting_events() if event.event_type == "TimeDateEventDefinition"}


def test_a_recheck_answered_in_time_is_not_supervised(service, clock):
    """Answering closes the case, so the window is checked before: the 复核 timer waits for the
    end of the 30th day after the request (3-12), the moment the 复核 is due and the case's next
    timer; on day 29 it has not fired, and the 复核 answered then raises no 督办."""
    key = walk(service, clock, TO_REPLY + [REPLY, REVIEW_REQUEST, REVIEW, RECHECK_REQUEST])
    window_end = LAST_SECOND + timedelta(seconds=1)            # 4-12 00:00 China time
    assert waiting_timers(service, key) == {"30日未复核": window_end}
    view = service.get_case(key)
    assert view.case.next_timer_at == window_end and open_item(view, "recheck").due_at == window_end
    assert at(service, clock, key, datetime(2026, 4, 10, 8, 30, tzinfo=timezone.utc)) == ["recheck"]   # day 29
    service.complete_task(open_item(service.get_case(key), "recheck").id,
                          {**RECHECK["data"], "recheck_date": "2026-04-10"}, "cf_xf")
    view = service.get_case(key)
    assert view.status == "completed" and "supervise_recheck" not in path_ids(service, view)
    data = service.case_data(key)
    assert "recheck_overdue" not in data and "overdue_stage" not in data


# accepted 3-02 16:30 China time: the handling limit is 5-01 24:00 China time, 16:00 UTC
HANDLING_LAST_SECOND = datetime(2026, 5, 1, 15, 59, 59, tzinfo=timezone.utc)
HANDLING_PAST = datetime(2026, 5, 1, 16, 0, 1, tzinfo=timezone.utc)


def test_a_reply_not_made_within_the_handling_limit_is_supervised_by_the_lianxi_office(service, clock):
    key = walk(service, clock, TO_REPLY)           # handled on day 10
    assert at(service, clock, key, HANDLING_LAST_SECOND) == ["written_reply"]
    assert at(service, clock, key, HANDLING_PAST) == ["supervise_handling", "written_reply"]
    item = open_item(service.get_case(key), "supervise_handling")
    assert node_code(service, item.candidate_node_id) == "linxi-lxb"
    assert [r.item.id for r in service.inbox("lxx_lxb")] == [item.id]
    data = service.case_data(key)
    assert data["handling_overdue"] is True and data["overdue_stage"] == "handling"
    assert at(service, clock, key, HANDLING_PAST.replace(day=9)) == ["supervise_handling", "written_reply"]   # once


def test_a_reply_made_in_time_is_not_supervised(service, clock):
    key = walk(service, clock, TO_REPLY + [REPLY])
    at(service, clock, key, HANDLING_PAST)
    assert "supervise_handling" not in path_ids(service, service.get_case(key))


def test_a_reply_reached_after_the_handling_was_supervised_is_not_supervised_again(service, clock):
    key = walk(service, clock, TO_REPLY[:1])       # 办理 still open at the limit
    assert at(service, clock, key, HANDLING_PAST) == ["handle", "supervise_handling"]
    item = open_item(service.get_case(key), "handle")
    service.complete_task(item.id, TO_REPLY[2]["data"], "lxx_zj")
    assert at(service, clock, key, HANDLING_PAST.replace(day=3)) == ["supervise_handling", "written_reply"]
    path = path_ids(service, service.get_case(key))
    assert path.count("flag_handling_overdue") == 1 and "end_reply_supervised_once" in path


def test_the_reply_limit_moves_with_an_approved_extension(service, clock):
    """Approved for 20 days: the reply is due 5-21 24:00 China time, and supervised only then."""
    key = walk(service, clock, TO_REPLY[:2] + [
        {"task": "handle", "as": "lxx_zj", "data": {"handling_result": "需协调", "hard_case": False,
                                                     "extension_days": 20, "extension_reason": "需协调"}},
        {"task": "approve_extension", "as": "lxx_ld1", "data": {"extension_approved": True, "approval_opinion": "同意"}},
        {"task": "notify_extension", "as": "lxx_zj", "data": {"extension_notice_method": "mail",
                                                              "extension_notified_on": "2026-03-12"}},
        {"task": "handle_extended", "as": "lxx_zj", "data": {"extended_result": "已办结"}}])
    assert open_item(service.get_case(key), "written_reply").due_at == datetime(2026, 5, 21, 16, 0, tzinfo=timezone.utc)
    assert at(service, clock, key, HANDLING_PAST) == ["written_reply"]
    assert at(service, clock, key, datetime(2026, 5, 21, 16, 0, 1, tzinfo=timezone.utc)) == [
        "supervise_handling", "written_reply"]


EXTENSION = {"handling_result": "需协调", "hard_case": False, "extension_days": 20, "extension_reason": "需协调"}


def test_an_extension_asked_after_the_handling_was_supervised_is_not_supervised_again(service, clock):
    """办理 supervised at the 60 days, then an extension asked: the 审批延期 timer, armed at a moment
    already past, fires at once; the lateness was supervised already, so no second 督办."""
    key = walk(service, clock, TO_REPLY[:2])       # 办理 still open at the limit
    assert at(service, clock, key, HANDLING_PAST) == ["handle", "supervise_handling"]
    service.complete_task(open_item(service.get_case(key), "handle").id, EXTENSION, "lxx_zj")
    assert at(service, clock, key, HANDLING_PAST.replace(day=3)) == ["approve_extension", "supervise_handling"]
    view = service.get_case(key)
    path = path_ids(service, view)
    assert path.count("flag_handling_overdue") == 1 and "end_approval_supervised_once" in path
    assert service.case_data(key)["extension_requested_after_limit"] is True   # the approver sees it
    service.complete_task(open_item(view, "approve_extension").id,
                          {"extension_approved": False, "approval_opinion": "期限已过，不予延期"}, "lxx_ld1")
    assert at(service, clock, key, HANDLING_PAST.replace(day=4)) == ["supervise_handling", "written_reply"]
    assert path_ids(service, service.get_case(key)).count("flag_handling_overdue") == 1   # nor at the reply


def test_an_extension_asked_in_time_but_undecided_at_the_limit_is_supervised(service, clock):
    key = walk(service, clock, TO_REPLY[:2])
    service.complete_task(open_item(service.get_case(key), "handle").id, EXTENSION, "lxx_zj")
    assert service.case_data(key)["extension_requested_after_limit"] is False
    assert at(service, clock, key, HANDLING_LAST_SECOND) == ["approve_extension"]
    assert at(service, clock, key, HANDLING_PAST) == ["approve_extension", "supervise_handling"]
    path = path_ids(service, service.get_case(key))
    assert "approval_timer" in path and "end_approval_supervised_once" not in path
