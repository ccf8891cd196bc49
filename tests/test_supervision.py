"""督办 and notifications: who sees the supervision board and who may urge, the
urge count and its audit trail, notifications for new tasks / 督办 / a `notify`
element / an incident, the unread count and marking read, channels called only
after the commit (a failing one changes nothing), and the admins' incident page."""
import logging
import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, event, func, select

from engine.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from engine.models import AuditEvent, Case, Incident, JurisdictionNode, Notification, User, WorkItem
from engine.notifications import LoggingChannel, Notice
from engine.service import WorkflowService
from engine.timers import TimerWorker
from tests.conftest import deploy_fixture
from tests.helpers import REPORT, csrf_token, login

GRID = "linxi-xinguang-g1"
SONGSHAN_GRID = "songshan-fushanzhuang-g1"
SUPERVISORS = ["lxx_pd", "cf_pd", "lxx_xf", "lxx_ld1"]          # county / city dispatcher, 信访局 officer, leader
NOT_SUPERVISORS = ["lxx_dc", "cf_dc", "lx_wgy1", "lx_wgz1", "lxz_cg", "admin", "cf_sj"]


class Recorder:
    """A channel that remembers what it was sent, and whether the row was committed by then."""

    def __init__(self, db):
        self.db, self.sent, self.committed = db, [], []

    def send(self, notification):
        self.sent.append(notification)
        with self.db.read_session() as s:   # another connection: sees only committed rows
            self.committed.append(s.scalar(select(func.count()).select_from(Notification).where(
                Notification.user_id == notification.user_id, Notification.kind == notification.kind,
                Notification.work_item_id.is_(None) if notification.work_item_id is None
                else Notification.work_item_id == notification.work_item_id)) > 0)


class Broken:
    def send(self, notification):
        raise RuntimeError("SMS gateway down")


@pytest.fixture
def sv(service):
    with service.db.unit_of_work() as s:
        s.execute(delete(Notification))
    service.channels = [Recorder(service.db)]
    return service


def uid(service, username):
    with service.db.read_session() as s:
        return s.scalar(select(User.id).where(User.username == username))


def notes(service, username, kind=None):
    rows = [r.notification for r in service.notifier.page(username, limit=500)]
    return [n for n in rows if kind is None or n.kind == kind]


def start(service, grid=GRID, worker="lx_wgy1", **overrides):
    return service.start_case("grid_matter", grid, {**REPORT, **overrides}, worker)


def urgent(service, grid=GRID, worker="lx_wgy1"):
    """A red matter: straight to the town's 镇级派单, due in 1 day (and, at the same time, the
    county centre's 县级知悉督办, also due in 1 day)."""
    case = start(service, grid, worker, category="public_order", colour="red")
    assert sorted(i.spec_id for i in case.open_items) == ["county_supervise", "town_dispatch"]
    (dispatch,) = [i for i in case.open_items if i.spec_id == "town_dispatch"]
    return case, dispatch


# ------------------------------------------------------------------ board

def test_board_shows_overdue_and_due_soon_tasks_of_the_jurisdiction_grouped_by_unit(sv, clock):
    blue = start(sv)                                           # 网格微调处, due in grid_days = 7 days, grid leader
    red, dispatch = urgent(sv)                                 # 镇级派单 and 县级知悉督办, due in 1 day
    elsewhere, _ = urgent(sv, SONGSHAN_GRID, "ss_wgy1")        # another county
    supervise = next(i for i in red.open_items if i.spec_id == "county_supervise")
    assert sorted(r.item.id for g in sv.supervision.board("lxx_pd").groups for r in g.rows) == sorted(
        [dispatch.id, supervise.id])

    clock.advance(days=6, hours=1)                             # both overdue; 网格微调处 due in 23 h
    board = sv.supervision.board("lxx_pd")
    # the two overdue groups are due at the same moment, so either may come first; the due-soon one is last
    assert sorted((g.name, g.claimed, g.overdue, g.due_soon) for g in board.groups[:2]) == [
        ("林西县", False, 1, 0), ("林西镇", False, 1, 0)]
    assert (board.groups[2].name, board.groups[2].claimed, board.groups[2].overdue, board.groups[2].due_soon) == (
        "新光社区第一网格", False, 0, 1)
    groups = {g.name: g for g in board.groups}
    assert groups["林西镇"].rows[0].business_key == red.business_key and groups["林西镇"].rows[0].overdue
    assert groups["林西县"].rows[0].item.spec_id == "county_supervise" and groups["林西县"].rows[0].overdue
    assert board.groups[2].rows[0].business_key == blue.business_key
    assert (board.total, board.overdue) == (3, 2)

    # the same jurisdiction for the 信访局 officer (the bureau's county) and the county leader
    for who in ("lxx_xf", "lxx_ld1"):
        assert sorted(r.business_key for g in sv.supervision.board(who).groups for r in g.rows) == sorted(
            [red.business_key, red.business_key, blue.business_key])
    # the city dispatcher sees both counties; the town's own dispatcher sees the task as theirs
    city = {r.business_key for g in sv.supervision.board("cf_pd").groups for r in g.rows}
    assert city == {red.business_key, blue.business_key, elsewhere.business_key}
    # the town's own dispatcher sees the task as theirs, and not the county centre's task on its case
    town = {(r.business_key, r.item.spec_id): r.mine for g in sv.supervision.board("lxz_pd").groups for r in g.rows}
    assert town == {(red.business_key, "town_dispatch"): True, (blue.business_key, "micro_mediation"): False}
    assert {r.business_key for g in sv.supervision.board("ctl_pd").groups for r in g.rows} == {
        elsewhere.business_key}

    sv.claim(dispatch.id, "lxz_pd")                            # claimed: grouped under the official
    assert ("杨晓东", True) in [(g.name, g.claimed) for g in sv.supervision.board("lxx_pd").groups]


def test_a_town_centre_supervises_its_own_level_and_below_not_the_countys_task(sv, clock):
    """A red matter gives the county centre 县级知悉督办 on a town case: the town's dispatcher may
    neither urge nor reassign it (nor see its buttons); the county's may."""
    red, _dispatch = urgent(sv)
    supervise = next(i for i in red.open_items if i.spec_id == "county_supervise")
    with pytest.raises(PermissionDenied) as exc:
        sv.supervision.urge(supervise.id, "lxz_pd", "请尽快")
    assert "承办单位" in exc.value.zh
    with pytest.raises(PermissionDenied):
        sv.supervision.reassign(supervise.id, "lxx_pd", "改由县中心办理", "lxz_pd")
    assert sv.supervision.reassignable("lxz_pd", red.case, red.open_items) == {_dispatch.id}
    assert sv.supervision.reassignable("lxx_pd", red.case, red.open_items) == {_dispatch.id, supervise.id}
    assert sv.supervision.urge(supervise.id, "lxx_ld1", "请县中心跟进").urge_count == 1


@pytest.mark.parametrize("who", NOT_SUPERVISORS)
def test_board_refused_without_a_supervising_role(sv, who):
    with pytest.raises(PermissionDenied) as exc:
        sv.supervision.board(who)
    assert "督办" in exc.value.zh


# ------------------------------------------------------------------- 督办

def test_urge_counts_records_and_notifies_the_holder(sv, clock):
    case, item = urgent(sv)
    sv.supervision.urge(item.id, "lxx_pd", "请今天内派单")
    urged = sv.supervision.urge(item.id, "lxx_ld1")
    assert urged.urge_count == 2

    events = [e for e in sv.history(case.business_key) if e.event_type == "urged"]
    assert [(e.actor_id, e.data["note"], e.data["count"], e.work_item_id) for e in events] == [
        (uid(sv, "lxx_pd"), "请今天内派单", 1, item.id), (uid(sv, "lxx_ld1"), "", 2, item.id)]
    assert events[0].data["holders"] == [uid(sv, "lxz_pd")]

    urges = notes(sv, "lxz_pd", "urge")
    assert [(n.actor_id, n.note, n.work_item_id, n.case_id) for n in urges] == [
        (uid(sv, "lxx_ld1"), None, item.id, case.id), (uid(sv, "lxx_pd"), "请今天内派单", item.id, case.id)]
    assert not notes(sv, "lxx_pd", "urge") and not notes(sv, "lx_wgy1", "urge")
    row = [r for r in sv.inbox("lxz_pd") if r.item.id == item.id][0]
    assert row.item.urge_count == 2                            # the badge in the holder's inbox

    sv.claim(item.id, "lxz_pd")                                # claimed: only the assignee hears
    sv.supervision.urge(item.id, "cf_pd")
    assert len(notes(sv, "lxz_pd", "urge")) == 3


def test_urge_notifies_every_holder_of_the_role_or_the_named_candidates(sv, clock, fixture_forms):
    deploy_fixture(sv.db, "assign.bpmn", forms=fixture_forms)
    svc = WorkflowService(sv.db, forms=fixture_forms, channels=[])
    case = svc.start_case("assign", GRID, {}, "lx_wgy1")
    view = svc.complete_task(case.open_items[0].id, {"owning_leader": "lxx_ld1", "reviewers": "lx_wgz1, lxx_ld2"},
                             "lx_wgy1")
    lead = view.open_items[0]                                  # assigned by name to lxx_ld1
    svc.supervision.urge(lead.id, "lxx_pd")
    assert len(notes(svc, "lxx_ld1", "urge")) == 1 and not notes(svc, "lxx_ld2", "urge")
    with pytest.raises(PermissionDenied):                      # a leader cannot urge their own task
        svc.supervision.urge(lead.id, "lxx_ld1")
    review = svc.complete_task(lead.id, {"again": False}, "lxx_ld1").open_items[0]
    svc.supervision.urge(review.id, "lxx_ld1")                 # explicit candidates: both named people
    assert len(notes(svc, "lx_wgz1", "urge")) == 1 and len(notes(svc, "lxx_ld2", "urge")) == 1
    # the holders of a (role, node): every one of them
    leaders = sorted([uid(svc, "lxx_ld1"), uid(svc, "lxx_ld2")])
    with svc.db.read_session() as s:
        linxi = s.scalar(select(JurisdictionNode.id).where(JurisdictionNode.code == "linxi"))
        item = WorkItem(id="x", role="leader", candidate_node_id=linxi, assignee_id=None)
        assert sorted(svc.notifier.holders(s, [item], explicit={"x": []})["x"]) == leaders


@pytest.mark.parametrize("who", NOT_SUPERVISORS + ["ctl_pd", "wyx_pd", "wyx_xf"])   # + other jurisdictions
def test_urge_refused_without_a_supervising_role_over_the_case(sv, who):
    case, item = urgent(sv)
    with pytest.raises(PermissionDenied) as exc:
        sv.supervision.urge(item.id, who, "催一下")
    assert re.search(r"[\u4e00-\u9fff]", exc.value.zh) and exc.value.zh != exc.value.message
    assert sv.get_case(case.business_key).open_items[0].urge_count == 0
    assert not [e for e in sv.history(case.business_key) if e.event_type == "urged"]
    assert not notes(sv, "lxz_pd", "urge")


def test_the_holder_cannot_urge_themselves(sv):
    _case, item = urgent(sv)
    with pytest.raises(PermissionDenied) as exc:               # lxz_pd supervises the town, but holds the task
        sv.supervision.urge(item.id, "lxz_pd")
    assert "不能督办自己" in exc.value.zh
    sv.claim(item.id, "lxz_pd")
    with pytest.raises(PermissionDenied):
        sv.supervision.urge(item.id, "lxz_pd")


def test_urge_of_a_finished_task_and_bad_notes(sv):
    _case, item = urgent(sv)
    with pytest.raises(InvalidInput):
        sv.supervision.urge(item.id, "lxx_pd", "很" * 501)
    with pytest.raises(InvalidInput):
        sv.supervision.urge(item.id, "lxx_pd", "bad\x00note")
    with pytest.raises(NotFound):
        sv.supervision.urge("no-such-task", "lxx_pd")
    sv.supervision.urge(item.id, "lxx_pd", "请\x01尽快\x1b派单")   # control characters dropped, as in the notice
    with sv.db.read_session() as s:
        urged = s.scalars(select(AuditEvent).where(AuditEvent.event_type == "urged")
                          .order_by(AuditEvent.id.desc())).first()
    assert urged.data["note"] == "请尽快派单"
    sv.complete_task(item.id, {"department": "paichusuo"}, "lxz_pd")
    with pytest.raises(Conflict):
        sv.supervision.urge(item.id, "lxx_pd")


# ---------------------------------------------------------- notifications

def test_a_new_task_notifies_its_holders(sv):
    case = start(sv)
    item = case.open_items[0]
    [n] = notes(sv, "lx_wgz1")                                 # the grid leader of the grid
    assert (n.kind, n.subject, n.work_item_id, n.case_id, n.read_at) == ("new_task", "网格微调处", item.id,
                                                                       case.id, None)
    assert sv.notifier.unread_count("lx_wgz1") == 1
    assert not notes(sv, "lx_wgy1") and not notes(sv, "lxz_pd")
    recorder = sv.channels[0]
    assert [(n.user_id, n.kind, n.business_key) for n in recorder.sent] == [
        (uid(sv, "lx_wgz1"), "new_task", case.business_key)]
    assert "网格微调处" in recorder.sent[0].text and case.business_key in recorder.sent[0].text


def test_new_tasks_by_name_and_explicit_candidates(sv, fixture_forms):
    deploy_fixture(sv.db, "assign.bpmn", forms=fixture_forms)
    svc = WorkflowService(sv.db, forms=fixture_forms, channels=[])
    case = svc.start_case("assign", GRID, {}, "lx_wgy1")
    assert [n.kind for n in notes(svc, "lx_wgy1")] == ["new_task"]       # the grid worker's own lane
    view = svc.complete_task(case.open_items[0].id, {"owning_leader": "lxx_ld1", "reviewers": "lx_wgz1, lxx_ld2"},
                             "lx_wgy1")
    assert [n.work_item_id for n in notes(svc, "lxx_ld1")] == [view.open_items[0].id]
    assert not notes(svc, "lxx_ld2")                           # the assignee only, not the lane's other leader
    view = svc.complete_task(view.open_items[0].id, {"again": False}, "lxx_ld1")
    review = view.open_items[0].id
    assert [n.work_item_id for n in notes(svc, "lx_wgz1")] == [review]
    assert [n.work_item_id for n in notes(svc, "lxx_ld2")] == [review]


def test_a_transition_costs_one_holder_select_shared_with_lane_resolution_and_one_insert(sv):
    case = start(sv)
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()).lower())

    event.listen(sv.db.engine, "before_cursor_execute", record)
    try:
        sv.complete_task(case.open_items[0].id, {"resolved": False, "mediation_note": "未化解"}, "lx_wgz1")
    finally:
        event.remove(sv.db.engine, "before_cursor_execute", record)
    inserts = [s for s in statements if s.startswith("insert into notification")]
    assert len(inserts) == 1
    # lane resolution asks who holds the lane's (role, node); the notifications reuse the answer
    holders = [s for s in statements if s.startswith("select role_assignment.")]
    assert len(holders) == 1 and holders[0].startswith("select role_assignment.user_id")
    assert not [s for s in statements if "from work_item_candidate" in s and s.startswith("select")]
    assert [n.subject for n in notes(sv, "lxz_pd", "new_task")] == ["镇级派单"]


def test_a_notify_element_reminds_and_escalates_the_holders_of_the_open_tasks(sv, clock, fixture_forms):
    deploy_fixture(sv.db, "notify.bpmn", forms=fixture_forms)
    svc = WorkflowService(sv.db, forms=fixture_forms)
    svc.channels = sv.channels
    case = svc.start_case("notify_demo", GRID, {}, "lx_wgy1")
    handle = case.open_items[0]
    worker = TimerWorker(svc)
    clock.advance(days=1, minutes=1)
    assert worker.run_once().fired == 1
    [reminder] = notes(svc, "lx_wgy1", "reminder")
    assert (reminder.subject, reminder.work_item_id, reminder.case_id) == ("处置时限将到", handle.id, case.id)
    assert not notes(svc, "lxz_pd")

    clock.advance(days=2)
    assert worker.run_once().fired == 1
    view = svc.get_case(case.business_key)
    [take_over] = view.open_items
    [escalation] = notes(svc, "lxz_pd", "escalation")
    assert (escalation.subject, escalation.work_item_id) == ("升级到镇", take_over.id)
    assert [n.subject for n in notes(svc, "lxz_pd", "new_task")] == ["镇级接办"]
    assert not notes(svc, "lx_wgy1", "escalation")            # their task was cancelled by the deadline
    kinds = [(n.kind, n.user_id) for n in sv.channels[0].sent]
    assert ("escalation", uid(svc, "lxz_pd")) in kinds and ("reminder", uid(svc, "lx_wgy1")) in kinds
    assert all(sv.channels[0].committed)


def test_an_incident_notifies_every_admin(sv, clock, fixture_forms):
    case, _incident = _incident_case(sv, clock, fixture_forms)
    [n] = notes(sv, "admin", "incident")
    assert n.case_id == case.id and "division by zero" in n.note
    assert not notes(sv, "lxz_pd", "incident") and not notes(sv, "lx_wgy1", "incident")
    sent = [x for x in sv.channels[0].sent if x.kind == "incident"]
    assert [x.user_id for x in sent] == [uid(sv, "admin")] and all(sv.channels[0].committed)


def test_unread_count_and_marking_read(sv):
    for _ in range(3):
        start(sv)
    assert sv.notifier.unread_count("lx_wgz1") == 3
    assert sv.notifier.unread_count(uid(sv, "lx_wgz1")) == 3
    newest, middle, oldest = notes(sv, "lx_wgz1")
    assert newest.id > middle.id > oldest.id                   # newest first
    row = sv.notifier.mark_read("lx_wgz1", middle.id)
    assert row.notification.read_at is not None and row.business_key
    assert sv.notifier.unread_count("lx_wgz1") == 2
    with pytest.raises(NotFound):                              # someone else's notification
        sv.notifier.mark_read("lx_wgy1", newest.id)
    assert sv.notifier.mark_all_read("lx_wgz1") == 2
    assert sv.notifier.unread_count("lx_wgz1") == 0
    assert sv.notifier.count("lx_wgz1") == 3


def test_a_notice_whose_task_is_no_longer_open_asks_nothing_more(sv, app, client, clock):
    """A 新任务 notice of a task done meanwhile (from the inbox, without opening the notice),
    or withdrawn by the process (the grid's deadline passed and the matter went up to the
    town), is not counted unread and says what became of the task; one still open is."""
    done, escalated = start(sv), start(sv)
    assert sv.notifier.unread_count("lx_wgz1") == 2
    sv.complete_task(done.open_items[0].id, {"resolved": True, "mediation_note": "已调解"}, "lx_wgz1")
    assert sv.notifier.unread_count("lx_wgz1") == 1
    clock.advance(days=7, minutes=1)                           # 网格微调处 is due in 7 days (blue dispute)
    TimerWorker(sv).run_once()
    assert "micro_mediation" not in [i.spec_id for i in sv.get_case(escalated.business_key).open_items]
    assert sv.notifier.unread_count("lx_wgz1") == 0
    waiting = start(sv)
    assert sv.notifier.unread_count("lx_wgz1") == 1
    rows = sv.notifier.page("lx_wgz1")
    statuses = {r.business_key: (r.task_status, r.unread) for r in rows if r.notification.kind == "new_task"}
    assert statuses == {done.business_key: ("completed", False), escalated.business_key: ("cancelled", False),
                        waiting.business_key: ("open", True)}
    assert all(r.notification.read_at is None for r in rows)   # nothing was written: it is how they are read

    login(client, "lx_wgz1")
    page = html(client.get("/notifications"))
    assert page.count('<small data-task-status="completed">任务已办结</small>') == 1
    assert '<small data-task-status="cancelled">任务已撤销</small>' in page
    assert "未读 1 条" in page and page.count('class="unread"') == 1 and page.count(">标为已读</button>") == 1
    assert re.search(r'通知 <span class="badge">1<', page)
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/notifications"), "next": "/notifications"})
    page = html(client.get("/notifications"))
    assert "task done" in page and "task withdrawn" in page


def test_a_process_that_fails_on_an_officials_step_tells_the_admins_and_designers(sv, app, monkeypatch, caplog):
    """The official gets the process error and nothing is stored; those who can mend the
    process hear of it (an incident notice, a log line), once while it stays unread."""
    import engine.service as service_module
    from SpiffWorkflow.exceptions import SpiffWorkflowException

    from engine.errors import ProcessError
    case = start(sv)

    def failing(workflow, **_options):
        raise SpiffWorkflowException("division by zero")

    monkeypatch.setattr(service_module, "run_engine", failing)
    with caplog.at_level(logging.ERROR, logger="gridflow.engine"):
        for _ in range(2):   # the worker tries again: still one notice each
            with pytest.raises(ProcessError):
                start(sv)
    for mender in ("admin", "cf_sj"):
        [n] = notes(sv, mender, "incident")
        assert (n.subject, n.case_id) == ("流程运行出错：发起 grid_matter", None) and "division by zero" in n.note
    for official in ("lx_wgy1", "lx_wgz1", "lxz_pd", "lxx_dc"):
        assert not notes(sv, official, "incident")
    assert "process failed on lx_wgy1's step grid_matter (start)" in caplog.text
    sent = [x for x in sv.channels[0].sent if x.kind == "incident"]
    assert sorted(x.user_id for x in sent) == sorted([uid(sv, "admin"), uid(sv, "cf_sj")]) and all(sv.channels[0].committed)

    with pytest.raises(ProcessError):
        sv.complete_task(case.open_items[0].id, {"resolved": True, "mediation_note": "已调解"}, "lx_wgz1")
    [n] = [n for n in notes(sv, "admin", "incident") if n.case_id == case.id]
    assert n.subject == "流程运行出错：网格微调处" and case.business_key in caplog.text
    assert [i.spec_id for i in sv.get_case(case.business_key).open_items] == ["micro_mediation"]   # nothing stored

    # opened, a start's incident leads the designer to the process library (there is no case)
    [start_notice] = [n for n in notes(sv, "cf_sj", "incident") if n.case_id is None]
    client = app.test_client()
    login(client, "cf_sj")
    page = html(client.get("/notifications"))
    assert "流程运行出错：发起 网格事项办理" not in page and "流程运行出错：发起 grid_matter" in page
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/notifications"), "next": "/notifications"})
    page = html(client.get("/notifications"))                  # in English, the step and process named in English
    assert "The process failed: starting Grid matter" in page and "流程运行出错" not in page
    admin = app.test_client()
    login(admin, "admin")
    admin.post("/lang/en", data={"csrf_token": csrf_token(admin, "/notifications"), "next": "/notifications"})
    assert "The process failed: Micro-mediation in the grid" in html(admin.get("/notifications"))
    response = client.get(f"/notifications/{start_notice.id}/open")
    assert response.status_code == 302 and response.headers["Location"].endswith("/designer/")

    sv.notifier.mark_all_read("admin")                         # read: the next failure is news again
    with pytest.raises(ProcessError):
        start(sv)
    assert len(notes(sv, "admin", "incident")) == 3
    assert len(notes(sv, "cf_sj", "incident")) == 3            # (opening it read it too)


# ---------------------------------------------------------------- channels

def test_channels_are_called_after_the_commit_and_a_failing_one_changes_nothing(sv, caplog):
    recorder = sv.channels[0]
    sv.channels = [Broken(), recorder]
    with caplog.at_level(logging.ERROR, logger="gridflow.notifications"):
        case = start(sv)
    assert recorder.sent and all(recorder.committed)          # the row was committed before any channel ran
    assert [i.spec_id for i in sv.get_case(case.business_key).open_items] == ["micro_mediation"]
    assert "SMS gateway down" in caplog.text and "Broken" in caplog.text
    assert sv.notifier.unread_count("lx_wgz1") == 1


def test_a_rolled_back_transaction_sends_nothing(sv):
    recorder = sv.channels[0]
    with pytest.raises(RuntimeError):
        with sv.db.unit_of_work() as session:
            sv.notifier.add(session, [Notice(user_id=uid(sv, "lx_wgz1"), kind="urge", subject="x",
                                             created_at=sv_now())])
            raise RuntimeError("the transition failed")
    assert recorder.sent == [] and sv.notifier.unread_count("lx_wgz1") == 0
    with pytest.raises(InvalidInput):                          # a refused submission notifies nobody either
        sv.start_case("grid_matter", GRID, {"colour": "purple"}, "lx_wgy1")
    assert recorder.sent == []


def test_logging_channel_logs_one_line_per_notification(sv, caplog):
    sv.channels = [LoggingChannel()]
    with caplog.at_level(logging.INFO, logger="gridflow.notify"):
        case = start(sv)
    lines = [r.getMessage() for r in caplog.records if r.name == "gridflow.notify"]
    assert len(lines) == 1 and case.business_key in lines[0] and "new_task" in lines[0]


def sv_now():
    from engine import clock
    return clock.now()


# --------------------------------------------------------------- incidents

def _incident_case(sv, clock, fixture_forms):
    deploy_fixture(sv.db, "timer_fail.bpmn", forms=fixture_forms)
    svc = WorkflowService(sv.db, forms=fixture_forms)
    svc.channels = sv.channels
    case = svc.start_case("timer_fail", GRID, {}, "lx_wgy1")
    worker = TimerWorker(svc, max_failures=2, backoff=timedelta(minutes=1))
    clock.advance(days=2, minutes=1)
    worker.run_once()
    clock.advance(minutes=5)
    worker.run_once()
    with svc.db.read_session() as s:
        incident = s.scalar(select(Incident).where(Incident.case_id == case.id))
    assert incident is not None
    return case, incident


def test_resolving_an_incident_rearms_the_case_timers(sv, clock, fixture_forms):
    case, incident = _incident_case(sv, clock, fixture_forms)
    with pytest.raises(PermissionDenied):
        sv.supervision.open_incidents("lxx_pd")
    with pytest.raises(PermissionDenied):
        sv.supervision.resolve_incident(incident.id, "lxx_dc")
    assert [r.business_key for r in sv.supervision.open_incidents("admin")] == [case.business_key]
    sv.supervision.resolve_incident(incident.id, "admin")
    admin = uid(sv, "admin")
    with sv.db.read_session() as s:
        row = s.get(Case, case.id)
        assert (row.next_timer_at, row.timer_failures) == (clock.now(), 0)
        assert s.get(Incident, incident.id).resolved_at == clock.now()
        [audit] = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id,
                                                     AuditEvent.event_type == "incident_resolved")).all()
        assert audit.actor_id == admin and audit.data["incident"] == incident.id
    assert sv.supervision.open_incidents("admin") == []
    with pytest.raises(Conflict):
        sv.supervision.resolve_incident(incident.id, "admin")
    with pytest.raises(NotFound):
        sv.supervision.resolve_incident(10 ** 12, "admin")


# ------------------------------------------------------------------- pages

def html(response):
    return response.get_data(as_text=True)


def test_board_page_and_urge_through_the_web(sv, app, client, clock):
    case, item = urgent(sv)
    login(client, "lxx_pd")
    page = html(client.get("/supervision"))
    assert case.business_key in page and "林西镇" in page and 'href="/supervision"' in page
    token = csrf_token(client, "/supervision")
    response = client.post(f"/supervision/tasks/{item.id}/urge", data={"note": "请尽快派单", "csrf_token": token})
    assert response.status_code == 302 and response.headers["Location"].endswith("/supervision")
    # the case has two open tasks created at the same moment: find the urged one by id
    urged = {i.id: i for i in sv.get_case(case.business_key).open_items}[item.id]
    assert urged.urge_count == 1
    assert "1 次" in html(client.get("/supervision"))
    # the note shows in the case's history
    page = html(client.get(f"/cases/{case.business_key}"))
    assert "督办" in page and "请尽快派单" in page

    client.post("/logout", data={"csrf_token": token})
    login(client, "lxz_pd")
    page = html(client.get("/inbox"))
    assert "督办 ×1" in page                                   # the badge on the task in the holder's inbox
    assert re.search(r'class="nav-notifications">通知 <span class="badge">2', page)   # new task + 督办


@pytest.mark.parametrize("who", ["lxx_dc", "lx_wgy1", "admin"])
def test_board_page_refused_to_non_supervisors(sv, app, client, who):
    _case, item = urgent(sv)
    login(client, who)
    assert 'href="/supervision"' not in html(client.get("/inbox"))
    assert client.get("/supervision").status_code == 403
    token = csrf_token(client, "/inbox")
    assert client.post(f"/supervision/tasks/{item.id}/urge", data={"csrf_token": token}).status_code == 403
    assert sv.get_case(_case.business_key).open_items[0].urge_count == 0


def test_the_holder_is_refused_through_the_web(sv, app, client):
    _case, item = urgent(sv)
    login(client, "lxz_pd")
    token = csrf_token(client, "/supervision")
    response = client.post(f"/supervision/tasks/{item.id}/urge", data={"csrf_token": token})
    assert response.status_code == 403 and "不能督办自己" in html(response)


def urged_events(service, case):
    return [e for e in service.history(case.business_key) if e.event_type == "urged"]


def test_a_refused_urge_shows_why_and_keeps_the_typed_note(sv, app, client):
    """A refused 督办 re-renders the board with the reason beside the note as it was typed (a
    redirect lost it), and records nothing."""
    case, item = urgent(sv)
    login(client, "lxx_pd")
    token = csrf_token(client, "/supervision")
    typed = "请今天内派单并回报进展" + "很" * 500                       # too long: refused
    response = client.post(f"/supervision/tasks/{item.id}/urge", data={"note": typed, "csrf_token": token})
    page = html(response)
    assert response.status_code == 400
    assert f'id="urge-error-{item.id}"' in page and "未督办：督办意见" in page
    assert re.search(rf'<input id="note-{item.id}" name="note"[^>]*value="{typed}"', page)
    assert {i.id: i for i in sv.get_case(case.business_key).open_items}[item.id].urge_count == 0
    assert not urged_events(sv, case) and not notes(sv, "lxz_pd", "urge")

    # the task finished meanwhile: no longer on the board, the note is shown to copy
    sv.complete_task(item.id, {"department": "paichusuo"}, "lxz_pd")
    response = client.post(f"/supervision/tasks/{item.id}/urge", data={"note": "请尽快", "csrf_token": token})
    page = html(response)
    assert response.status_code == 409 and "未督办：" in page
    assert re.search(r'<textarea id="refused-note" readonly[^>]*>请尽快</textarea>', page)
    assert not urged_events(sv, case)


def test_the_holders_refused_urge_keeps_the_note_too(sv, app, client):
    case, item = urgent(sv)
    login(client, "lxz_pd")
    token = csrf_token(client, "/supervision")
    response = client.post(f"/supervision/tasks/{item.id}/urge", data={"note": "自己催自己", "csrf_token": token})
    page = html(response)
    assert response.status_code == 403 and "不能督办自己" in page and ">自己催自己</textarea>" in page
    assert not urged_events(sv, case)


def test_notifications_page_open_and_mark_read(sv, app, client):
    first = start(sv)
    second = start(sv)
    login(client, "lx_wgz1")
    page = html(client.get("/notifications"))
    assert page.index(second.business_key) < page.index(first.business_key)   # newest first
    assert page.count("data-notification=") == 2 and "未读" in page
    assert re.search(r'通知 <span class="badge">2', page)
    [newest, oldest] = notes(sv, "lx_wgz1")
    response = client.get(f"/notifications/{newest.id}/open")
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/tasks/{newest.work_item_id}")
    assert sv.notifier.unread_count("lx_wgz1") == 1
    token = csrf_token(client, "/notifications")
    assert client.post(f"/notifications/{oldest.id}/read", data={"csrf_token": token}).status_code == 302
    assert sv.notifier.unread_count("lx_wgz1") == 0
    assert not re.search(r'通知 <span class="badge">', html(client.get("/notifications")))
    start(sv)
    assert client.post("/notifications/read-all", data={"csrf_token": token}).status_code == 302
    assert sv.notifier.unread_count("lx_wgz1") == 0
    # someone else's notification is not found
    client.post("/logout", data={"csrf_token": token})
    login(client, "lx_wgy1")
    assert client.get(f"/notifications/{newest.id}/open").status_code == 404
    token = csrf_token(client, "/notifications")
    assert client.post(f"/notifications/{oldest.id}/read", data={"csrf_token": token}).status_code == 404


def test_notifications_page_has_previous_and_next_links(sv, app, client, monkeypatch):
    monkeypatch.setattr("web.supervision.PAGE_SIZE", 1)
    first, second = start(sv), start(sv)
    login(client, "lx_wgz1")
    page = html(client.get("/notifications"))
    assert "第 1 / 2 页" in page and second.business_key in page and first.business_key not in page
    assert 'rel="next" href="/notifications?page=2"' in page and 'rel="prev"' not in page
    page = html(client.get("/notifications?page=2"))
    assert "第 2 / 2 页" in page and first.business_key in page
    assert 'rel="prev" href="/notifications?page=1"' in page and 'rel="next"' not in page


def test_admin_incidents_page(sv, app, client, clock, fixture_forms):
    case, incident = _incident_case(sv, clock, fixture_forms)
    for who in ("lxx_pd", "lxx_dc", "lx_wgy1"):
        login(client, who)
        assert client.get("/admin/incidents").status_code == 403
        token = csrf_token(client, "/inbox")
        assert client.post(f"/admin/incidents/{incident.id}/resolve", data={"csrf_token": token}).status_code == 403
        client.post("/logout", data={"csrf_token": token})
    login(client, "admin")
    page = html(client.get("/admin/incidents"))
    assert case.business_key in page and "division by zero" in page and 'href="/admin/incidents"' in page
    token = csrf_token(client, "/admin/incidents")
    assert client.post(f"/admin/incidents/{incident.id}/resolve", data={"csrf_token": token}).status_code == 302
    assert case.business_key not in html(client.get("/admin/incidents"))
    with sv.db.read_session() as s:
        assert s.get(Case, case.id).next_timer_at == clock.now()
    assert client.post(f"/admin/incidents/{incident.id}/resolve", data={"csrf_token": token}).status_code == 409


def test_the_language_switch_covers_the_new_pages(sv, app, client):
    start(sv)
    login(client, "lxx_pd")
    token = csrf_token(client, "/supervision")
    client.post("/lang/en", data={"csrf_token": token, "next": "/supervision"})
    assert "Supervision" in html(client.get("/supervision"))
    assert "Notifications" in html(client.get("/notifications"))

