"""The engine service's rules: jurisdiction, candidates, claims, conflicts,
invalid input, unresolved lanes, resuming, audit."""
import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from engine.db import Database
from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.models import AuditEvent, Case, CaseState, User, WorkItem
from engine.service import InboxFilters, WorkflowService
from tests.helpers import REPORT, open_item, open_spec_ids, work

GRID_A, GRID_B = "linxi-xinguang-g1", "linxi-dongsheng-g1"


def start(service, grid=GRID_A, actor="lx_wgy1", **overrides):
    return service.start_case("grid_matter", grid, {**REPORT, **overrides}, actor)


def counts(db):
    with db.read_session() as s:
        return (s.scalar(select(func.count()).select_from(Case)),
                s.scalar(select(func.count()).select_from(WorkItem)),
                s.scalar(select(func.count()).select_from(AuditEvent)))


# ------------------------------------------------------------ jurisdiction

def test_grid_worker_never_sees_another_grids_task(service):
    a = start(service, colour="red", category="public_order")            # town_dispatch, grid A
    b = start(service, grid=GRID_B, actor="lx_wgy3")                      # micro_mediation, grid B
    a2 = start(service)                                                    # micro_mediation, grid A
    leader_a = [r.item.case_id for r in service.inbox("lx_wgz1")]
    leader_b = [r.item.case_id for r in service.inbox("lx_wgz2")]
    assert leader_a == [a2.id] and leader_b == [b.id]
    # the dispatcher of the town sees grid A's town task; grid leaders never do
    assert [r.item.case_id for r in service.inbox("lxz_pd")] == [a.id]
    # a grid worker of grid B cannot work grid A's task even knowing its id
    task_b = b.open_items[0].id
    with pytest.raises(PermissionDenied):
        service.complete_task(task_b, {"resolved": True, "mediation_note": "x"}, "lx_wgz1")
    with pytest.raises(PermissionDenied):
        service.claim(task_b, "lx_wgy1")


def test_cannot_start_in_a_grid_outside_your_jurisdiction(service):
    with pytest.raises(PermissionDenied, match="grid_worker"):
        start(service, grid=GRID_B, actor="lx_wgy1")
    with pytest.raises(PermissionDenied):
        start(service, actor="lxz_cg")  # a department handler is no grid worker
    assert counts(service.db)[0] == 0


def test_start_requires_a_grid_node(service):
    with pytest.raises(InvalidInput, match="not a grid"):
        service.start_case("grid_matter", "linxizhen", REPORT, "lx_wgy1")
    with pytest.raises(NotFound):
        service.start_case("grid_matter", "no-such-grid", REPORT, "lx_wgy1")
    with pytest.raises(NotFound, match="not deployed"):
        service.start_case("no_such_process", GRID_A, REPORT, "lx_wgy1")


def test_business_keys_count_per_county_and_year(service):
    keys = [start(service).business_key for _ in range(3)]
    assert keys == ["LX-2026-000001", "LX-2026-000002", "LX-2026-000003"]
    wy = service.start_case("grid_matter", "wuyuan-maojiaqiao-g1", REPORT, "wy_wgy1")
    assert wy.business_key == "WY-2026-000001"


def test_a_start_that_fails_gives_its_number_back_and_leaves_no_case(service, monkeypatch):
    """A start that fails rolls back: the next start gets the next number, and no row of
    the failed one remains."""
    from engine.errors import ProcessError
    first = start(service)

    def failing(workflow, case, **_options):
        raise ProcessError("the process failed")

    monkeypatch.setattr(service, "_run", failing)
    with pytest.raises(ProcessError):
        start(service)
    monkeypatch.undo()
    second = start(service)
    assert [first.business_key, second.business_key] == ["LX-2026-000001", "LX-2026-000002"]
    assert second.case.id != first.case.id
    with service.db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 2
        assert s.scalar(select(func.count()).select_from(CaseState)) == 2
        assert s.get(CaseState, second.case.id).state


def test_a_start_whose_process_fails_names_the_new_case_not_a_number(service, monkeypatch):
    """The business key is taken after the process ran, so a start that fails there has
    none to show (and takes none: the next start gets LX-…-000001)."""
    import engine.service as service_module
    from SpiffWorkflow.exceptions import SpiffWorkflowException

    from engine.errors import ProcessError

    def failing(workflow, **_options):
        raise SpiffWorkflowException("a script failed")

    monkeypatch.setattr(service_module, "run_engine", failing)
    with pytest.raises(ProcessError) as caught:
        start(service)
    assert caught.value.text("en").startswith("the new case: the process failed")
    assert caught.value.text().startswith("新案件 流程运行出错")
    monkeypatch.undo()
    assert start(service).business_key == "LX-2026-000001"


# ----------------------------------------------------------- candidates

def test_non_candidate_is_refused_and_nothing_changes(service):
    case = start(service)
    task_id = case.open_items[0].id
    before = counts(service.db)
    for outsider in ("lxz_pd", "lxz_cg", "lx_wgy2", "lxx_dc"):
        with pytest.raises(PermissionDenied):
            service.complete_task(task_id, {"resolved": True, "mediation_note": "x"}, outsider)
        with pytest.raises(PermissionDenied):
            service.claim(task_id, outsider)
    assert counts(service.db) == before
    with pytest.raises(PermissionDenied):
        service.complete_task(task_id, {}, "nobody-at-all")


def test_claim_makes_a_group_task_personal_and_unclaim_releases_it(service):
    # 林西镇 has one dispatcher; give the case a second candidate by role: 新光社区's
    # two grids share the grid leader lx_wgz1, so use the town task for claim rules
    case = start(service, colour="red", category="public_order")
    task_id = open_item(case, "town_dispatch").id
    item = service.claim(task_id, "lxz_pd")
    assert item.assignee_id is not None
    row = service.inbox("lxz_pd")[0]
    assert row.claimed_by == "杨晓东"
    service.claim(task_id, "lxz_pd")  # claiming your own task again is harmless
    with pytest.raises(PermissionDenied):
        service.unclaim(task_id, "lx_wgy1")
    service.unclaim(task_id, "lxz_pd")
    assert service.inbox("lxz_pd")[0].claimed_by is None
    kinds = [e.event_type for e in service.history(case.business_key)]
    assert kinds.count("task_claimed") == 1 and kinds.count("task_unclaimed") == 1


def test_claimed_task_is_refused_to_other_candidates(service, clean_db):
    # two dispatchers at the same town: add a second holder for this test
    from engine.models import JurisdictionNode, RoleAssignment, User
    with clean_db.unit_of_work() as s:
        town = s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "linxizhen"))
        other = s.scalar(select(User).where(User.username == "lxx_pd"))
        existing = s.scalar(select(RoleAssignment).where(RoleAssignment.user_id == other.id,
                                                         RoleAssignment.node_id == town.id))
        if existing is None:
            s.add(RoleAssignment(user_id=other.id, role="center_dispatcher", node_id=town.id))
    try:
        case = start(service, colour="red", category="public_order")
        task_id = open_item(case, "town_dispatch").id
        assert service.inbox("lxx_pd", InboxFilters(spec_id="town_dispatch"))
        service.claim(task_id, "lxz_pd")
        assert not service.inbox("lxx_pd", InboxFilters(spec_id="town_dispatch"))
        with pytest.raises(Conflict, match="claimed by"):
            service.claim(task_id, "lxx_pd")
        with pytest.raises(Conflict, match="claimed by"):
            service.complete_task(task_id, {"department": "paichusuo"}, "lxx_pd")
        service.complete_task(task_id, {"department": "paichusuo"}, "lxz_pd")
    finally:
        with clean_db.unit_of_work() as s:
            for ra in s.scalars(select(RoleAssignment).join(User).where(
                    User.username == "lxx_pd", RoleAssignment.node_id == town.id)):
                s.delete(ra)


# ------------------------------------------------------------- conflicts

def test_double_completion_is_a_conflict_and_nothing_doubles(service):
    case = start(service)
    task_id = case.open_items[0].id
    service.complete_task(task_id, {"resolved": True, "mediation_note": "done"}, "lx_wgz1")
    before = counts(service.db)
    with pytest.raises(Conflict, match="already completed"):
        service.complete_task(task_id, {"resolved": False, "mediation_note": "again"}, "lx_wgz1")
    assert counts(service.db) == before
    assert open_spec_ids(service.get_case(case.business_key)) == ["record_result"]


def test_concurrent_completion_one_wins_the_other_conflicts(service):
    case = start(service)
    task_id = case.open_items[0].id
    barrier = threading.Barrier(2)
    results = []

    def attempt(note):
        barrier.wait()
        try:
            service.complete_task(task_id, {"resolved": True, "mediation_note": note}, "lx_wgz1")
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(results) == ["conflict", "ok"]
    history = service.history(case.business_key)
    assert [e.event_type for e in history].count("task_completed") == 1
    assert open_spec_ids(service.get_case(case.business_key)) == ["record_result"]


def test_concurrent_claims_one_wins_the_other_conflicts(service, clean_db):
    """Two dispatchers of the same town press 认领 at the same moment: one holds the task,
    the other is told who did; never both, never an overwrite."""
    from engine.models import JurisdictionNode, RoleAssignment, User
    with clean_db.unit_of_work() as s:
        town = s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "linxizhen"))
        other = s.scalar(select(User).where(User.username == "lxx_pd"))
        s.add(RoleAssignment(user_id=other.id, role="center_dispatcher", node_id=town.id))
    try:
        case = start(service, colour="red", category="public_order")
        task_id = open_item(case, "town_dispatch").id
        for _ in range(5):
            barrier, results = threading.Barrier(2), {}

            def attempt(user):
                barrier.wait()
                try:
                    service.claim(task_id, user)
                    results[user] = "ok"
                except Conflict:
                    results[user] = "conflict"

            threads = [threading.Thread(target=attempt, args=(u,)) for u in ("lxz_pd", "lxx_pd")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
            assert sorted(results.values()) == ["conflict", "ok"]
            winner = next(u for u, r in results.items() if r == "ok")
            with clean_db.read_session() as s:
                assert s.get(WorkItem, task_id).assignee_id == s.scalar(
                    select(User.id).where(User.username == winner))
            service.unclaim(task_id, winner)
        claims = [e.event_type for e in service.history(case.business_key)].count("task_claimed")
        assert claims == 5
    finally:
        with clean_db.unit_of_work() as s:
            for ra in s.scalars(select(RoleAssignment).join(User).where(
                    User.username == "lxx_pd", RoleAssignment.node_id == town.id)):
                s.delete(ra)


# ------------------------------------------------------------ bad input

def test_invalid_form_is_refused_with_field_messages_and_nothing_stored(service):
    case = start(service)
    task_id = case.open_items[0].id
    before = counts(service.db)
    with pytest.raises(InvalidInput) as err:
        service.complete_task(task_id, {"resolved": "perhaps", "unexpected": 1}, "lx_wgz1")
    assert set(err.value.fields) >= {"resolved", "mediation_note", "unexpected"}
    assert counts(service.db) == before
    with service.db.read_session() as s:
        assert s.get(WorkItem, task_id).status == "open"


def test_invalid_start_form_creates_no_case(service):
    with pytest.raises(InvalidInput) as err:
        service.start_case("grid_matter", GRID_A, {**REPORT, "colour": "purple", "description": ""}, "lx_wgy1")
    assert {"colour", "description"} <= set(err.value.fields)
    assert counts(service.db) == (0, 0, 0)


# --------------------------------------------------------- unresolved lanes

def test_lane_nobody_holds_goes_to_next_level_dispatchers_flagged(service):
    # 五原: the DMN sends a safety hazard to 住建; nobody handles 住建 in 天吉泰镇 or 五原县
    case = service.start_case("grid_matter", "wuyuan-maojiaqiao-g1",
                              {**REPORT, "category": "safety_hazard", "colour": "yellow"}, "wy_wgy1")
    work(service, "tjt_pd", "town_dispatch", {"department": "zhujian"})
    item = service.get_case(case.business_key).open_items[0]
    assert item.spec_id == "department_handle" and item.unresolved
    assert [r.item.id for r in service.inbox("wyx_pd")] == [item.id]      # 五原县 dispatcher
    assert not service.inbox("tjt_cg") and not service.inbox("tjt_pd")
    events = [e for e in service.history(case.business_key) if e.event_type == "lane_unresolved"]
    assert len(events) == 1 and "zhujian" in events[0].data["reason"]
    # the county dispatcher can work it: nothing is lost
    work(service, "wyx_pd", "department_handle", {"handling_result": "县里协调住建局处理",
                                                   "handled_at": "2026-03-02T15:00:00+08:00"})
    assert open_spec_ids(service.get_case(case.business_key)) == ["verify_on_site"]


# ------------------------------------------------------------ persistence

def test_case_resumes_with_a_fresh_engine_over_the_same_database(service, clean_db):
    start(service)
    work(service, "lx_wgz1", "micro_mediation", {"resolved": False, "mediation_note": "未化解"})
    fresh = WorkflowService(Database(clean_db.url))
    try:
        work(fresh, "lxz_pd", "town_dispatch", {"department": "chengguan"})
        work(fresh, "lxz_cg", "department_handle", {"handling_result": "处理完毕",
                                                     "handled_at": "2026-03-02T16:00:00+08:00"})
        work(fresh, "lx_wgy1", "verify_on_site", {"verified": True, "verification_note": "ok"})
        view = work(fresh, "lx_wgy1", "satisfaction", {"satisfaction": "satisfied"})
        assert view.status == "completed"
    finally:
        fresh.db.dispose()


def test_state_is_small_and_serializer_version_is_stored(service):
    case = start(service)
    with service.db.read_session() as s:
        state = s.get(CaseState, case.id)
        assert state.serializer_version == service.serializer.version
        assert '"spec":"grid_matter"' in state.state      # the spec itself is not in the blob
        assert len(state.state) < 20_000


def test_every_transition_is_audited_with_actor_and_data(service):
    case = start(service)
    task_id = case.open_items[0].id
    service.claim(task_id, "lx_wgz1")
    service.complete_task(task_id, {"resolved": True, "mediation_note": "化解"}, "lx_wgz1")
    events = service.history(case.business_key)
    kinds = [e.event_type for e in events]
    assert kinds[0] == "case_started" and events[0].data["category"] == "dispute"
    assert {"step", "task_created", "task_claimed", "task_completed"} <= set(kinds)
    done = next(e for e in events if e.event_type == "task_completed")
    assert done.data == {"resolved": True, "mediation_note": "化解"} and done.actor_id is not None
    assert all(e.at is not None for e in events)
    steps = [e.bpmn_id for e in events if e.event_type == "step"]
    assert steps[:3] == ["start", "decide_dispatch", "gw_level"]


def test_inbox_filters_and_due_dates(service, clock):
    red = start(service, colour="red", category="public_order")
    blue = start(service, colour="blue", category="safety_hazard")
    rows = service.inbox("lxz_pd")
    assert [r.item.case_id for r in rows] == [red.id, blue.id]      # both due in 1 day, older first
    assert rows[0].item.due_at == clock.now() + timedelta(days=1)      # town_dispatch dueDate P1D
    assert [r.item.case_id for r in service.inbox("lxz_pd", InboxFilters(colour="red"))] == [red.id]
    assert service.inbox("lxz_pd", InboxFilters(business_key=red.business_key.lower()))[0].item.case_id == red.id
    assert service.inbox("lxz_pd", InboxFilters(overdue=True)) == []
    clock.advance(days=2)
    assert len(service.inbox("lxz_pd", InboxFilters(overdue=True))) == 2
    assert service.inbox_count("lxz_pd") == 2


def test_inbox_page_is_a_page_and_the_count_of_all(service):
    first, second = start(service, colour="red", category="public_order"), start(service, colour="red")
    rows, total = service.inbox_page("lxz_pd", InboxFilters(limit=1))
    assert total == 2 and [r.item.case_id for r in rows] == [first.id]
    rows, total = service.inbox_page("lxz_pd", InboxFilters(limit=1, offset=1))
    assert total == 2 and [r.item.case_id for r in rows] == [second.id]
    assert service.inbox_page("lxz_pd", InboxFilters(limit=1, offset=2)) == ([], 2)   # past the end
    assert service.inbox_page("lx_wgy1") == ([], 0)


# ------------------------------------------------- assignment from task data

@pytest.mark.parametrize("named, refusal", [
    ("nobody", "找不到在用的账号“nobody”"),               # no such account
    ("lxz_pd", "没有包案领导职务"),                        # in the case's chain, but no leader
    ("wy_wgy1", "没有包案领导职务"),                       # another county's official
])
def test_a_person_a_form_names_must_be_an_official_of_the_case_with_the_fields_role(
        clean_db, clock, fixture_forms, named, refusal):
    """The case-owning leader chosen in a form gets the next task by name: a typo, an official
    of another place or one without the field's role is refused on the field, nothing changes."""
    from tests.conftest import deploy_fixture
    deploy_fixture(clean_db, "assign.bpmn", forms=fixture_forms)
    service = WorkflowService(clean_db, forms=fixture_forms)
    case = service.start_case("assign", GRID_A, {}, "lx_wgy1")
    pick = service.get_case(case.business_key).open_items[0]
    with pytest.raises(InvalidInput) as exc:
        service.complete_task(pick.id, {"owning_leader": named, "reviewers": "lx_wgz1"}, "lx_wgy1")
    assert list(exc.value.fields) == ["owning_leader"] and refusal in exc.value.field_texts("zh")["owning_leader"][0]
    assert "职务职务" not in exc.value.field_texts("zh")["owning_leader"][0]
    if named != "nobody":
        assert "holds no role leader at this case's grid or above" in exc.value.field_texts("en")["owning_leader"][0]
    assert [i.id for i in service.get_case(case.business_key).open_items] == [pick.id]


def test_a_deactivated_official_cannot_be_named_in_a_form(clean_db, clock, fixture_forms):
    from tests.conftest import deploy_fixture
    deploy_fixture(clean_db, "assign.bpmn", forms=fixture_forms)
    service = WorkflowService(clean_db, forms=fixture_forms)
    case = service.start_case("assign", GRID_A, {}, "lx_wgy1")
    pick = service.get_case(case.business_key).open_items[0]
    def set_active(active):
        with clean_db.unit_of_work() as s:
            s.scalar(select(User).where(User.username == "lxx_ld2")).active = active
    set_active(False)
    try:
        with pytest.raises(InvalidInput, match="cannot take this case"):
            service.complete_task(pick.id, {"owning_leader": "lxx_ld2", "reviewers": "lx_wgz1"}, "lx_wgy1")
    finally:
        set_active(True)   # the organisation outlives the test
    assert work(service, "lx_wgy1", "pick", {"owning_leader": "lxx_ld1", "reviewers": "lx_wgz1"}).status == "open"


def test_assignee_and_candidates_chosen_in_an_earlier_form(clean_db, clock, fixture_forms):
    from tests.conftest import deploy_fixture
    deploy_fixture(clean_db, "assign.bpmn", forms=fixture_forms)
    service = WorkflowService(clean_db, forms=fixture_forms)
    case = service.start_case("assign", GRID_A, {}, "lx_wgy1")   # lane name carries the code in brackets
    work(service, "lx_wgy1", "pick", {"owning_leader": "lxx_ld2", "reviewers": "lx_wgz1, lxx_dc"})
    item = service.get_case(case.business_key).open_items[0]
    assert item.spec_id == "lead" and item.assignee_id is not None and item.role is None
    assert not [r for r in service.inbox("lxx_ld1") if r.item.case_id == case.id]   # the other leader
    with pytest.raises(PermissionDenied):
        service.complete_task(item.id, {"again": False}, "lxx_ld1")
    with pytest.raises(PermissionDenied, match="assigned to you by name"):
        service.unclaim(item.id, "lxx_ld2")
    work(service, "lxx_ld2", "lead", {"again": False})
    # both named reviewers see the sign-off; the grid leader lane is overridden, not added
    assert [r.item.spec_id for r in service.inbox("lxx_dc")] == ["review"]
    assert [r.item.spec_id for r in service.inbox("lx_wgz1")] == ["review"]
    assert not service.inbox("lx_wgz2")
    # named by the data or not, an auditor only reads: the other reviewer signs off
    review = [r.item for r in service.inbox("lxx_dc")][0]
    with pytest.raises(PermissionDenied, match="auditors"):
        service.complete_task(review.id, {"again": False}, "lxx_dc")
    view = work(service, "lx_wgz1", "review", {"again": False})
    assert view.status == "completed"


def test_engine_errors_speak_chinese_by_default_and_english_on_request(service):
    case = start(service)
    with pytest.raises(PermissionDenied) as err:
        service.complete_task(case.open_items[0].id, {}, "lxz_pd")  # sees the case, not a candidate
    assert err.value.text() == "任务“网格微调处”不在您的收件箱中"
    assert err.value.text("en") == "task '网格微调处' is not in your inbox"
    with pytest.raises(PermissionDenied) as err:   # may not see the case: the task is not named
        service.complete_task(case.open_items[0].id, {}, "lxz_cg")
    assert (err.value.text(), err.value.text("en")) == ("该任务不在您的辖区内", "this task is outside your jurisdiction")


def test_inbox_merges_claimed_and_group_tasks_in_due_order_across_pages(service, clock):
    ids = []
    for _ in range(5):                        # five town tasks, each created a day later
        ids.append(open_item(start(service, colour="red", category="public_order"), "town_dispatch").id)
        clock.advance(days=1)
    service.claim(ids[2], "lxz_pd")           # one of them is now "assigned to me", another branch
    first = [r.item.id for r in service.inbox("lxz_pd", InboxFilters(limit=2))]
    second = [r.item.id for r in service.inbox("lxz_pd", InboxFilters(limit=2, offset=2))]
    third = [r.item.id for r in service.inbox("lxz_pd", InboxFilters(limit=2, offset=4))]
    assert first + second + third == ids
    assert service.inbox_count("lxz_pd") == 5
    assert service.inbox_count("lxz_pd", InboxFilters(overdue=True)) == 4   # due 1 day after creation


def test_inbox_count_counts_a_task_of_my_role_that_also_names_me_once(service, clock):
    """The count adds up its branches (no UNION at 10^6 tasks): a town task of my role and
    node that names me as well (several candidate groups do) must not count twice."""
    from engine.models import User, WorkItemCandidate

    ids = [open_item(start(service, colour="red", category="public_order"), "town_dispatch").id for _ in range(3)]
    with service.db.unit_of_work() as session:
        me = session.scalar(select(User.id).where(User.username == "lxz_pd"))
        session.add(WorkItemCandidate(work_item_id=ids[0], user_id=me))
    assert len(service.inbox("lxz_pd")) == 3
    assert service.inbox_count("lxz_pd") == 3
    service.claim(ids[1], "lxz_pd")                    # assigned to me: another branch, still once
    assert service.inbox_count("lxz_pd") == 3
    assert service.inbox_count("lxz_pd", InboxFilters(colour="blue")) == 0


def test_lane_can_name_a_department_type():
    from engine.bpmn import parse_lane
    ref = parse_lane("信访局 (county.petition_officer:xinfangju)")
    assert (ref.level, ref.role, ref.dept_type) == ("county", "petition_officer", "xinfangju")
    from engine.deploy import validate_files
    from tests.test_deploy import LOOP
    bad = LOOP.replace('name="grid.grid_worker"', 'name="county.petition_officer:tax_office"')
    problems = validate_files({"loop.bpmn": bad}, {"progress_report"})
    assert len(problems) == 1 and "unknown department type 'tax_office'" in problems[0].message
