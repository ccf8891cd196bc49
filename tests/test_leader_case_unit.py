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


def _waiting_timers(service, key, start):
    """(due, kind) of every timer the case's stored state waits on, from `start`."""
    from engine.models import Case
    from engine.service import _timers
    with service.db.read_session() as session:
        case = service._case(session, key)
        workflow = service._load(session, session.get(Case, case.id), service.specs.for_case(session, case))
        return sorted((moment - start, kind) for moment, kind in _timers(workflow))


def _step(service, key, spec_id, username, data):
    """Complete the case's open task `spec_id` as `username`."""
    item = next(i for i in service.get_case(key).open_items if i.spec_id == spec_id)
    return service.complete_task(item.id, data, username)


def _trail(service, key, start):
    """The case's audit trail as an auditor reads it, in order: (event, element, actor, when,
    the work item the event is about as its row reads: (its place among the trail's work
    items, element, state, created, due, ended)). Times from `start`; a work item's id (a
    SpiffWorkflow task id, unlike a twin's) by its place, so two cases' trails compare."""
    from sqlalchemy import select

    from engine.models import WorkItem
    with service.db.read_session() as session:
        case_id = service._case(session, key).id
        items = {i.id: i for i in session.scalars(select(WorkItem).where(WorkItem.case_id == case_id))}

    def since(moment):
        return moment - start if moment is not None else None
    places, trail = {}, []
    for event in service.history(key):
        item = None
        if event.work_item_id is not None:
            row = items[event.work_item_id]       # every work item an event names is a row
            item = (places.setdefault(row.id, len(places)), row.spec_id, row.status, since(row.created_at),
                    since(row.due_at), since(row.completed_at))
        trail.append((event.event_type, event.bpmn_id, event.actor_id, since(event.at), item))
    return trail


def _missed_report_deadline(trail, late):
    """The events of the missed-report timers that fell due before `late` (a deadline: fired
    at the real time, not stepped) and the 督办 task they created then: the worker fires them
    before the official's step, an official's step after its own task (or never, when its step
    ended the report)."""
    return [e for e in trail if e[1] in ("report_overdue", "flag_missed_report")
            or e[4] is not None and e[4][1] == "supervise_report" and e[4][3] == late]


def _renumbered(trail):
    """`trail` with the work items numbered again by their first mention in it."""
    places = {}
    return [(*e[:4], None if e[4] is None else (places.setdefault(e[4][0], len(places)), *e[4][1:]))
            for e in trail]


def _apart_from(trail, left_out):
    return _renumbered([e for e in trail if e not in left_out])


@pytest.mark.parametrize("kept_in_memory", [True, False], ids=["run-ahead", "restored"])
def test_progress_reports_an_officials_step_meets_late_are_due_as_the_worker_gives(service, clock, kept_in_memory):
    """The worker was down over two turns of the reporting cycle (days 30 and 40) and the first
    to meet them is the 联席办's 督办 of an earlier missed report, on day 45: the turns fire as
    the worker fires them (`test_progress_reports_fired_late_are_due_when_their_cycles_say`),
    each as at its moment, before the official's step. Day 30's report is due on day 40 (and
    missed there: 督办), day 40's on day 50, the cycle's next turn is day 50 — not both reports
    due on day 55 with the cycle counting from day 45. A twin case the worker fires first and the
    same official then steps on ends the same: tasks, due dates and the timers it waits on, and
    its trail (the reports the turns created recorded before the official's step, as the worker's
    firing records them), but for where day 30's missed report falls: a deadline, fired at the
    real time, before the official's step by the worker, after it by the official's own."""
    from datetime import timedelta
    if not kept_in_memory:
        service.live.size = 0                     # every step restores the stored state
    twins = [assign(service, clock).case.business_key for _ in range(2)]   # report_every_days: 10
    start = clock.now()

    def tasks(key):
        return sorted((i.spec_id, i.due_at - start if i.due_at else None) for i in service.get_case(key).open_items)

    for key in twins:
        _step(service, key, "leader_study", "lxx_ld2", {"study_notes": "查阅档案", "coordination_instructions": "住建局牵头"})
    for day in (10, 20):                          # the worker fired on time: day 10's report missed on day 20
        clock.set(start + timedelta(days=day, hours=1))
        for key in twins:
            service.fire_timers(key)
    clock.set(start + timedelta(days=21))
    for key in twins:
        for _ in range(2):
            _step(service, key, "progress_report", "lxx_zj", {"progress_note": "已调取档案", "situation_stable": True})
        assert tasks(key) == [("supervise_report", None), ("work", None)]
        assert _waiting_timers(service, key, start) == [(timedelta(days=30), "CycleTimerEventDefinition")]

    clock.set(start + timedelta(days=45))         # the worker was down over days 30 and 40
    by_worker, by_official = twins
    service.fire_timers(by_worker)
    hits = service.live.hits
    supervise = {"supervision_measure": "notice", "supervision_note": "逾期未报，下发督办单"}
    for key in twins:
        _step(service, key, "supervise_report", "lxx_lxb", supervise)
    if kept_in_memory:
        assert service.live.hits == hits + 2      # both completions ran ahead on the kept workflow
    expected = [("progress_report", timedelta(days=40)), ("progress_report", timedelta(days=50)),
                ("supervise_report", None), ("work", None)]
    assert tasks(by_official) == tasks(by_worker) == expected
    assert (service.get_case(by_official).case.next_timer_at == service.get_case(by_worker).case.next_timer_at
            == start + timedelta(days=50))
    assert (_waiting_timers(service, by_official, start) == _waiting_timers(service, by_worker, start)
            == [(timedelta(days=50), "CycleTimerEventDefinition"),
                (timedelta(days=50, microseconds=1), "DurationTimerEventDefinition")])
    # and the same trail: the reports the turns created, as the worker records them (made by the
    # timer, at the real time, due from their turns), then the official's step. Only day 30's
    # missed report (a deadline, at the real time) comes after the official's step on its path.
    late = timedelta(days=45)
    trails = {key: _trail(service, key, start) for key in twins}
    deadline = {key: _missed_report_deadline(trails[key], late) for key in twins}
    assert (_apart_from(trails[by_official], deadline[by_official])
            == _apart_from(trails[by_worker], deadline[by_worker]))
    assert _renumbered(deadline[by_official]) == _renumbered(deadline[by_worker]) != []
    met = [(*e[:4], e[4] and e[4][1:]) for e in trails[by_official] if e[3] == late]
    assert met[:2] == [
        ("task_created", "progress_report", None, late, ("progress_report", "open", late, timedelta(days=40), None)),
        ("task_created", "progress_report", None, late, ("progress_report", "open", late, timedelta(days=50), None))]
    assert met[2][:2] == ("task_completed", "supervise_report")


@pytest.mark.parametrize("kept_in_memory", [True, False], ids=["run-ahead", "restored"])
@pytest.mark.parametrize("days", [15, 25])
def test_the_unit_submitting_its_work_late_meets_the_turns_that_fell_due_first(service, clock, days, kept_in_memory):
    """The responsible person submits the four responsibilities on day 15 or 25, the worker down
    since day 0: the cycle's turns (day 10; days 10 and 20) fire first, as the worker would have
    fired them, and the submission then ends the reporting cycle (their reports with it). The
    case ends as its twin the worker fired first does: the sign-off, and the same timers. (Before,
    the submission ran first and the turns never fired.) And its trail is the twin's: each report
    a turn created is a work item made by the timer at the real time, due from its turn, then
    cancelled by the submission, as the worker's firing and the submission record them. (Before,
    the reports were created and cancelled within the submission and the trail showed neither.)
    Only day 10's missed-report timer, a deadline that fell due on day 20, is not the twin's: the
    worker fires it (its 督办 task made, then cancelled by the submission); the submission, which
    runs before a deadline, ends the report and its timer with it."""
    from datetime import timedelta

    from engine import audit
    if not kept_in_memory:
        service.live.size = 0                     # every step restores the stored state
    twins = [assign(service, clock).case.business_key for _ in range(2)]
    start = clock.now()
    work = {"plan": "依档案重新勘定边界", "mediation": "司法所主持调解", "stabilisation": "镇村干部分包稳控",
            "ending_petition": "双方签订息诉罢访承诺书"}

    for key in twins:
        _step(service, key, "leader_study", "lxx_ld2", {"study_notes": "查阅档案", "coordination_instructions": "住建局牵头"})
    late = timedelta(days=days)
    clock.set(start + late)
    by_worker, by_official = twins
    service.fire_timers(by_worker)
    fired, hits = [], service.live.hits
    as_due = service._fire_as_due
    service._fire_as_due = lambda workflow, case: fired.append(as_due(workflow, case)) or fired[-1]
    for key in twins:
        _step(service, key, "work", "lxx_zj", work)
    if kept_in_memory:
        assert service.live.hits == hits + 2      # both completions ran ahead on the kept workflow
    views = [service.get_case(key) for key in twins]
    assert [i.spec_id for i in views[0].open_items] == [i.spec_id for i in views[1].open_items] == ["signoff"]
    assert views[0].case.next_timer_at is None and views[1].case.next_timer_at is None
    assert _waiting_timers(service, by_official, start) == _waiting_timers(service, by_worker, start) == []
    # the official's step fired the turns (each created a report, due a cycle after its turn)
    turns = [timedelta(days=d) for d in range(10, days, 10)]
    assert fired and sorted(m - start for m in fired[-1].values()) == turns

    trails = {key: _trail(service, key, start) for key in twins}
    deadline = {key: _missed_report_deadline(trails[key], late) for key in twins}
    assert (_apart_from(trails[by_official], deadline[by_official])
            == _apart_from(trails[by_worker], deadline[by_worker]))
    assert deadline[by_official] == []
    assert [e[:2] for e in deadline[by_worker]] == ([] if days < 20 else [
        ("step", "report_overdue"), ("step", "flag_missed_report"), ("task_created", "supervise_report"),
        ("task_cancelled", "supervise_report")])
    reports = [turn + timedelta(days=10) for turn in turns]   # each due a cycle after its turn
    submitter = next(e[2] for e in trails[by_official] if e[:2] == ("task_completed", "work"))
    assert [(*e[:4], e[4] and e[4][1:]) for e in _apart_from(trails[by_official], []) if e[3] == late] == [
        *(("task_created", "progress_report", None, late, ("progress_report", "cancelled", late, due, late))
          for due in reports),
        ("task_completed", "work", submitter, late, ("work", "completed", timedelta(0), None, late)),
        *(("task_cancelled", "progress_report", None, late, ("progress_report", "cancelled", late, due, late))
          for due in reports),
        ("task_created", "signoff", None, late, ("signoff", "open", late, None, None))]
    with service.db.read_session() as session:
        assert audit.verify(session)[1] == []      # the hash chains hold


@pytest.mark.parametrize("kept_in_memory", [True, False], ids=["run-ahead", "restored"])
@pytest.mark.parametrize("turns", ["fired-on-time", "worker-first", "official-first"])
def test_submitting_the_work_leaves_no_timer_of_the_reports_it_ended(service, clock, turns, kept_in_memory):
    """The unit's submission ends the reporting cycle and the open progress reports with it,
    their missed-report timers too. The case's next timer is then what its saved state waits
    on (nothing: the sign-off has no timer), whoever met the cycle's turns first — the worker
    on time, the worker late, or the submission itself. Before, it kept the cancelled report's
    missed-report timer (day 30 + 1 µs), and the worker fired the case then, for nothing."""
    from datetime import timedelta

    from engine.timers import TimerWorker
    from tests.helpers import assert_next_timers_true, stored_timers
    from tests.test_timers import fired_events
    if not kept_in_memory:
        service.live.size = 0                     # every step restores the stored state
    key = assign(service, clock).case.business_key   # report_every_days: 10
    start = clock.now()
    _step(service, key, "leader_study", "lxx_ld2", {"study_notes": "查阅档案", "coordination_instructions": "住建局牵头"})
    if turns == "fired-on-time":
        for day in (10, 20):                      # day 10's report missed on day 20; day 20's open
            clock.set(start + timedelta(days=day, hours=1))
            service.fire_timers(key)
        clock.set(start + timedelta(days=22))
    else:
        clock.set(start + timedelta(days=25))     # the worker was down over days 10 and 20
        if turns == "worker-first":
            service.fire_timers(key)
    assert stored_timers(service, service.get_case(key).id)   # a report's missed-report timer, the cycle
    view = _step(service, key, "work", "lxx_zj", {
        "plan": "依档案重新勘定边界", "mediation": "司法所主持调解", "stabilisation": "镇村干部分包稳控",
        "ending_petition": "双方签订息诉罢访承诺书"})
    assert [i.spec_id for i in view.open_items] == ["signoff"]
    assert stored_timers(service, view.id) == []
    assert view.case.next_timer_at is None
    assert_next_timers_true(service)
    fired = len(fired_events(service.db, view.id))
    clock.set(start + timedelta(days=60))         # past every timer the cancelled reports had
    assert TimerWorker(service).run_once().fired == 0
    assert len(fired_events(service.db, view.id)) == fired
