"""Petition time limits count from the dates the officials record, and those dates keep their
order: the 复查 window from the written reply's date (答复日期), the 复核 window from the 复查
opinion's date, and a date before the one it follows is refused naming both."""
import pytest

from engine.errors import InvalidInput
from engine.scenarios import Scenario, run_scenario

START = {"as": "lxx_xf", "grid": "linxi-xinguang-g1", "data": {
    "channel": "walk_in", "petitioner_name": "钱某", "subject": "land_acquisition", "title": "征地补偿标准争议",
    "description": "信访人认为其承包地征收补偿低于同村其他户。", "repeat_of_rechecked": False}}
TO_REPLY = [
    {"task": "decide", "as": "lxx_xf", "data": {"acceptance": "accept", "department": "zhujian", "hard_case": False,
                                                "decision_reason": "受理", "notice_method": "in_person"}},
    {"advance": "P10D"},
    {"task": "handle", "as": "lxx_zj", "data": {"handling_result": "核查完毕", "hard_case": False, "extension_days": 0}},
]
REPLY = {"task": "written_reply", "as": "lxx_zj",
         "data": {"reply_content": "不予补足。", "reply_date": "2026-03-05", "reply_method": "mail"}}
REVIEW_REQUEST = {"task": "review_request", "as": "cf_xf",
                  "data": {"review_requested_on": "2026-03-12", "review_reasons": "同村他户补偿更高"}}
REVIEW = {"task": "review", "as": "cf_xf",
          "data": {"review_result": "uphold", "review_opinion": "维持", "review_date": "2026-03-12"}}


def walk(service, clock, steps):
    scenario = Scenario(name="dates", process="petition", title="dates", start=START, steps=steps, expect={})
    return run_scenario(service, clock, scenario).business_key


def refusal(service, key, task, data, actor="cf_xf"):
    item = next(i for i in service.get_case(key).open_items if i.spec_id == task)
    with pytest.raises(InvalidInput) as err:
        service.complete_task(item.id, data, actor)
    return err.value


def test_a_reply_dated_before_the_acceptance_is_refused_naming_both_dates(service, clock):
    key = walk(service, clock, TO_REPLY)
    err = refusal(service, key, "written_reply", {**REPLY["data"], "reply_date": "2026-03-01"}, "lxx_zj")
    assert err.fields == {"reply_date": [
        "Replied on (2026-03-01) must not be before Accepted on (accepted_on, 2026-03-02)"]}
    assert err.field_texts("zh") == {"reply_date": ["答复日期（2026-03-01）不能早于受理日期（2026-03-02），请核对这两个日期"]}
    assert [i.spec_id for i in service.get_case(key).open_items] == ["written_reply"]   # nothing moved


def test_the_review_window_counts_from_the_reply_date_not_from_when_it_was_recorded(service, clock):
    """Recorded on 3-12 for a reply received on 3-05: the 30 days end on 4-04 at 24:00 China
    time (16:00 UTC), not 30 days after the recording."""
    key = walk(service, clock, TO_REPLY + [REPLY])
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "review_request")
    assert item.due_at.isoformat().startswith("2026-04-04T16:00:00")
    clock.set(clock.now().replace(month=4, day=4, hour=15, minute=59))
    service.fire_timers(key)
    assert service.get_case(key).status == "open"
    clock.set(clock.now().replace(hour=16, minute=1))
    service.fire_timers(key)
    assert service.get_case(key).status == "completed"
    assert service.case_data(key)["outcome"] == "closed_after_reply"


def test_a_review_asked_before_the_reply_is_refused_naming_both_dates(service, clock):
    key = walk(service, clock, TO_REPLY + [REPLY])
    err = refusal(service, key, "review_request", {**REVIEW_REQUEST["data"], "review_requested_on": "2026-03-04"})
    assert err.fields == {"review_requested_on": [
        "Review requested on (2026-03-04) must not be before Replied on (reply_date, 2026-03-05)"]}
    assert "请求复查日期（2026-03-04）不能早于答复日期（2026-03-05）" in err.field_texts("zh")["review_requested_on"][0]


def test_the_recheck_window_counts_from_the_review_date(service, clock):
    key = walk(service, clock, TO_REPLY + [REPLY, REVIEW_REQUEST, {"advance": "P10D"}, REVIEW])
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "recheck_request")
    assert item.due_at.isoformat().startswith("2026-04-11T16:00:00")     # 3-12 + 30 days, 24:00 in China
    err = refusal(service, key, "recheck_request", {"recheck_requested_on": "2026-03-11", "recheck_reasons": "不服"})
    assert err.fields["recheck_requested_on"] == [
        "Re-review requested on (2026-03-11) must not be before Review answered on (review_date, 2026-03-12)"]


def test_the_review_itself_is_due_30_days_from_the_request(service, clock):
    key = walk(service, clock, TO_REPLY + [REPLY, {"advance": "P5D"}, REVIEW_REQUEST])
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "review")
    assert item.due_at.isoformat().startswith("2026-04-11T16:00:00")     # requested 3-12
    err = refusal(service, key, "review", {**REVIEW["data"], "review_date": "2026-03-11"})
    assert list(err.fields) == ["review_date"] and "Review requested on" in err.fields["review_date"][0]


def test_the_60_handling_days_end_at_24_00_china_time_where_the_due_date_says(service, clock):
    """信访工作条例: handled "自受理之日起60日内": the day of acceptance is not counted and the
    60th day ends at 24:00 China time. Accepted at 09:00 in China on 3-02, the limit is 5-01
    24:00 China (16:00 UTC); the 督办 timer used to fire 60×24 hours after the acceptance,
    5-01 09:00 China, 15 hours before the day was over, while the due date showed the same."""
    from datetime import datetime, timezone
    from engine.timers import TimerWorker
    clock.set(datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc))        # 09:00 in China
    key = walk(service, clock, TO_REPLY[:1])
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "handle")
    assert item.due_at == datetime(2026, 5, 1, 16, 0, tzinfo=timezone.utc)
    worker = TimerWorker(service)
    clock.set(datetime(2026, 5, 1, 15, 59, 59, tzinfo=timezone.utc))  # 23:59:59 of the 60th day
    worker.run_once()
    assert sorted(i.spec_id for i in service.get_case(key).open_items) == ["handle"]
    clock.set(datetime(2026, 5, 1, 16, 0, 1, tzinfo=timezone.utc))
    assert worker.run_once().fired == 1
    assert sorted(i.spec_id for i in service.get_case(key).open_items) == ["handle", "supervise_handling"]
    assert service.case_data(key)["handling_overdue"] is True
    assert worker.run_once().fired == 0                                  # once


def test_the_timer_worker_closes_the_review_window_a_time_date_timer(service, clock):
    """The 复查 window is a timeDate timer, the only timer of the case while it waits: the
    worker takes cases by `next_timer_at`, which used to stay empty for a timeDate (only
    Duration/Cycle events were read), so in production the window never closed, and no
    60-day 督办 either, while the inbox showed the task overdue."""
    from datetime import datetime, timezone
    from engine.models import Case
    from engine.timers import TimerWorker
    key = walk(service, clock, TO_REPLY + [REPLY])
    with service.db.read_session() as session:
        case = session.query(Case).filter_by(business_key=key).one()
        assert case.next_timer_at.astimezone(timezone.utc) == datetime(2026, 4, 4, 16, 0, tzinfo=timezone.utc)
    worker = TimerWorker(service)
    clock.set(datetime(2026, 4, 4, 15, 59, 59, tzinfo=timezone.utc))
    assert worker.run_once().fired == 0
    clock.set(datetime(2026, 4, 4, 16, 0, 1, tzinfo=timezone.utc))
    assert worker.run_once().fired == 1
    assert service.get_case(key).status == "completed"
    assert service.case_data(key)["outcome"] == "closed_after_reply"


def test_upgrading_re_arms_the_cases_left_waiting_on_a_time_date_timer(service, clock):
    """A case that reached the 复查 window before the fix has no next_timer_at: migration 0022
    gives it one, so the worker takes it, fires the overdue window once and closes the case."""
    from datetime import datetime, timedelta, timezone
    from alembic import command
    from sqlalchemy import update
    from engine import schema
    from engine.models import Case
    from engine.timers import TimerWorker
    key = walk(service, clock, TO_REPLY + [REPLY])
    with service.db.unit_of_work() as session:   # what the engine stored before the fix
        session.execute(update(Case).where(Case.business_key == key).values(next_timer_at=None))
    with service.db.engine.begin() as conn:
        command.downgrade(schema.alembic_config(conn), "0021")
    schema.upgrade(service.db)
    with service.db.read_session() as session:
        assert session.query(Case).filter_by(business_key=key).one().next_timer_at is not None
    clock.set(datetime.now(timezone.utc) + timedelta(minutes=1))   # the migration armed it for its now
    worker = TimerWorker(service)
    assert worker.run_once().fired == 1
    assert service.get_case(key).status == "completed"
    assert service.case_data(key)["outcome"] == "closed_after_reply"
    assert worker.run_once().fired == 0


def test_the_15_acceptance_days_end_at_24_00_china_time_where_the_due_date_says(service, clock):
    """信访工作条例: "自收到信访事项之日起15日内" decide on acceptance: registered at 09:00 in
    China on 3-02, the limit is 3-17 24:00 China (16:00 UTC). The 督办 timer and the due date
    used to be 15×24 hours after the registration, 3-17 09:00 China, 15 hours early."""
    from datetime import datetime, timezone
    from engine.timers import TimerWorker
    clock.set(datetime(2026, 3, 2, 1, 0, tzinfo=timezone.utc))        # 09:00 in China
    key = walk(service, clock, [])
    item = next(i for i in service.get_case(key).open_items if i.spec_id == "decide")
    assert item.due_at == datetime(2026, 3, 17, 16, 0, tzinfo=timezone.utc)
    worker = TimerWorker(service)
    clock.set(datetime(2026, 3, 17, 15, 59, 59, tzinfo=timezone.utc))  # 23:59:59 of the 15th day
    assert worker.run_once().fired == 0
    assert [i.spec_id for i in service.get_case(key).open_items] == ["decide"]
    clock.set(datetime(2026, 3, 17, 16, 0, 1, tzinfo=timezone.utc))
    assert worker.run_once().fired == 1
    assert sorted(i.spec_id for i in service.get_case(key).open_items) == ["decide", "supervise_acceptance"]
    assert service.case_data(key)["acceptance_overdue"] is True
