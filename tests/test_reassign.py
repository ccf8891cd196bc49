"""改派 (reassignment): centre dispatchers and leaders over a case give an open task to
another official, or a claimed group task back to its group; everyone else is refused,
and a task goes only to someone who may work it."""
import uuid

import pytest
from sqlalchemy import select

from engine.errors import Conflict, InvalidInput, PermissionDenied
from engine.models import AuditEvent, Notification, User, WorkItem
from engine.org import load_org
from tests.helpers import REPORT, csrf_token, login


def org(tag: str) -> dict:
    """A county of its own: two towns, one grid with two grid leaders, and the people around it."""
    def grid_town(code):
        return {"code": f"{tag}-{code}", "name": f"测试{code}", "level": "town", "children": [{
            "code": f"{tag}-{code}-v", "name": "测试村", "level": "community", "children": [
                {"code": f"{tag}-{code}-g1", "name": "第一网格", "level": "grid"}]}]}
    users = [("gw", "grid_worker", "t1-g1"), ("gl1", "grid_leader", "t1-g1"), ("gl2", "grid_leader", "t1-g1"),
             ("pd", "center_dispatcher", "t1"), ("pd2", "center_dispatcher", "t2"), ("ld", "leader", "county"),
             ("med", "mediator", "t1-v"), ("dc", "auditor", "county"), ("off", "grid_leader", "t1-g1")]
    return {
        "nodes": [{"code": f"{tag}-city", "name": "测试市", "level": "city", "children": [{
            "code": f"{tag}-county", "name": "测试县", "level": "county", "key_prefix": tag[:4].upper(),
            "children": [grid_town("t1"), grid_town("t2")]}]}],
        "users": [{"username": f"{tag}_{name}", "name": f"测试{name}", "password": "demo123",
                   "active": name != "off", "roles": [{"role": role, "node": f"{tag}-{node}"}]}
                  for name, role, node in users],
    }


@pytest.fixture
def world(service, clean_db):
    tag = f"ra{uuid.uuid4().hex[:8]}"
    with clean_db.unit_of_work() as session:
        load_org(session, org(tag), actor="tests")
    case = service.start_case("grid_matter", f"{tag}-t1-g1", REPORT, f"{tag}_gw")
    (task,) = [i.id for i in case.open_items if i.spec_id == "micro_mediation"]

    class World:
        pass
    w = World()
    w.tag, w.case, w.task = tag, case, task
    w.u = lambda name: f"{tag}_{name}"
    return w


def item(db, task_id) -> WorkItem:
    with db.read_session() as s:
        return s.get(WorkItem, task_id)


def last_event(db, task_id) -> AuditEvent:
    with db.read_session() as s:
        return s.scalars(select(AuditEvent).where(AuditEvent.work_item_id == task_id)
                         .order_by(AuditEvent.id.desc())).first()


def test_a_dispatcher_gives_a_group_task_to_one_of_its_group_and_a_leader_gives_it_back(service, clean_db, world):
    sup = service.supervision
    sup.reassign(world.task, world.u("gl2"), "孙某出差，由李某接手", world.u("pd"))
    with clean_db.read_session() as s:
        gl2 = s.scalar(select(User).where(User.username == world.u("gl2")))
        notice = s.scalars(select(Notification).where(Notification.work_item_id == world.task,
                                                      Notification.user_id == gl2.id)
                           .order_by(Notification.id.desc())).first()
    assert item(clean_db, world.task).assignee_id == gl2.id and item(clean_db, world.task).claimed_at is not None
    event = last_event(clean_db, world.task)
    assert event.event_type == "task_reassigned"
    assert event.data == {"from": None, "from_name": None, "to": world.u("gl2"), "to_name": "测试gl2",
                          "reason": "孙某出差，由李某接手"}
    assert (notice.kind, notice.note) == ("new_task", "孙某出差，由李某接手")
    assert service.may_work(world.u("gl2"), world.task) and not service.may_work(world.u("gl1"), world.task)

    sup.reassign(world.task, "", "李某已返岗", world.u("ld"))
    assert item(clean_db, world.task).assignee_id is None
    # back in the group: its members hear of it with the reason, the one it left does not
    with clean_db.read_session() as s:
        told = {u for (u,) in s.execute(select(User.username).join(Notification, Notification.user_id == User.id)
                                        .where(Notification.work_item_id == world.task,
                                               Notification.note == "李某已返岗"))}
    assert told == {world.u("gl1")}
    assert last_event(clean_db, world.task).data == {"from": world.u("gl2"), "from_name": "测试gl2", "to": None,
                                                     "to_name": None, "reason": "李某已返岗"}
    assert service.may_work(world.u("gl1"), world.task)
    # the auditor's trace marks both as 改派, as it marks 督办
    from engine.trace import CaseTrace
    steps = CaseTrace(service).trace(world.u("dc"), world.case.business_key).steps
    assert [s.kind for s in steps if s.event_type == "task_reassigned"] == ["reassign", "reassign"]


@pytest.mark.parametrize("who", ["gw", "gl1", "pd2", "dc", "med"])
def test_who_may_not_reassign_is_refused_and_nothing_changes(service, clean_db, world, who):
    before = last_event(clean_db, world.task).id
    with pytest.raises(PermissionDenied):
        service.supervision.reassign(world.task, world.u("gl2"), "理由", world.u(who))
    assert item(clean_db, world.task).assignee_id is None and last_event(clean_db, world.task).id == before


def test_an_official_outside_the_case_is_refused(service, world):
    with pytest.raises(PermissionDenied, match="centre dispatchers and leaders"):
        service.supervision.reassign(world.task, world.u("gl2"), "理由", "tjt_pd")   # 天吉泰镇's dispatcher


@pytest.mark.parametrize("to, reason, field", [
    ("med", "理由", "to"),            # holds a role over the grid, not the task's role at its unit
    ("dc", "理由", "to"),             # an auditor
    ("off", "理由", "to"),            # deactivated
    ("nobody", "理由", "to"),         # no such account
    ("", "理由", "to"),               # back to the group: it is there already
    ("gl2", "", "reason"),            # a reason is required
    ("gl2", "理" * 501, "reason"),
    ("gl2", "bad\x00text", "reason"),
])
def test_a_bad_target_or_reason_is_refused_with_the_field_named(service, clean_db, world, to, reason, field):
    to = world.u(to) if to and to != "nobody" else to
    with pytest.raises(InvalidInput) as err:
        service.supervision.reassign(world.task, to, reason, world.u("pd"))
    assert field in err.value.fields
    assert item(clean_db, world.task).assignee_id is None


def test_the_same_holder_and_a_finished_task_are_refused(service, world):
    sup = service.supervision
    sup.reassign(world.task, world.u("gl1"), "指定孙某", world.u("pd"))
    with pytest.raises(InvalidInput, match="already with"):
        sup.reassign(world.task, world.u("gl1"), "再次指定", world.u("pd"))
    service.complete_task(world.task, {"resolved": True, "mediation_note": "已化解"}, world.u("gl1"))
    with pytest.raises(Conflict):
        sup.reassign(world.task, world.u("gl2"), "理由", world.u("pd"))


def test_a_task_assigned_by_name_goes_to_someone_over_the_grid_never_back_to_a_group(service, clean_db, world):
    with clean_db.unit_of_work() as s:      # as a task a form assigned to gl1 by name looks
        row = s.get(WorkItem, world.task)
        row.role, row.assignee_id = None, s.scalar(select(User.id).where(User.username == world.u("gl1")))
    sup = service.supervision
    with pytest.raises(InvalidInput, match="assigned by name"):
        sup.reassign(world.task, "", "退回", world.u("pd"))
    with pytest.raises(InvalidInput, match="holds no role over case"):
        sup.reassign(world.task, "lx_wgy1", "理由", world.u("pd"))          # a grid worker of another county
    sup.reassign(world.task, world.u("med"), "调解员接手", world.u("pd"))     # the community's mediator
    assert service.may_work(world.u("med"), world.task)


def test_a_task_nobody_held_goes_to_someone_over_the_grid(service, clean_db, world):
    """A grid without a grid leader: its 网格微调处 went up to the town's dispatchers, flagged;
    a dispatcher may give it to any official over the grid, not only to a dispatcher."""
    raw = org(world.tag)
    village = raw["nodes"][0]["children"][0]["children"][0]["children"][0]
    village["children"].append({"code": f"{world.tag}-t1-g2", "name": "第二网格", "level": "grid"})
    raw["users"].append({"username": world.u("gw2"), "name": "测试gw2", "password": "demo123",
                         "roles": [{"role": "grid_worker", "node": f"{world.tag}-t1-g2"}]})
    with clean_db.unit_of_work() as session:
        load_org(session, raw, actor="tests")
    case = service.start_case("grid_matter", f"{world.tag}-t1-g2", REPORT, world.u("gw2"))
    (task,) = [i for i in case.open_items if i.spec_id == "micro_mediation"]
    assert task.unresolved and task.role == "center_dispatcher"
    sup = service.supervision
    with pytest.raises(InvalidInput, match="holds no role over case"):
        sup.reassign(task.id, world.u("gl1"), "第一网格的网格长代办", world.u("pd"))   # another grid's
    sup.reassign(task.id, world.u("med"), "村调解员代为微调处", world.u("pd"))
    assert service.may_work(world.u("med"), task.id)


def test_reassigning_from_the_case_page(app, clean_db, world):
    client = app.test_client()
    login(client, world.u("pd"))
    page = client.get(f"/cases/{world.case.business_key}").get_data(as_text=True)
    assert f"/supervision/tasks/{world.task}/reassign" in page
    # the task's group, offered by name (the deactivated member is not)
    assert f'<option value="{world.u("gl1")}">测试gl1</option>' in page and world.u("off") not in page
    token = csrf_token(client, f"/cases/{world.case.business_key}")
    bad = client.post(f"/supervision/tasks/{world.task}/reassign",
                      data={"to": world.u("med"), "reason": "原承办人出差一周", "next": f"/cases/{world.case.business_key}",
                            "csrf_token": token})
    # refused: the case page again, told why beside the form, which is open with what was typed
    # (a redirect to the page lost the reason the official had written)
    assert bad.status_code == 400
    back = bad.get_data(as_text=True)
    assert "未改派：" in back and "不在该任务的承办岗位上" in back and '<details class="reassign" open>' in back
    assert f'value="{world.u("med")}"' in back and 'value="原承办人出差一周"' in back
    assert not client.get(f"/cases/{world.case.business_key}").get_data(as_text=True).count('class="reassign" open')
    # the name the list shows is taken for its username
    ok = client.post(f"/supervision/tasks/{world.task}/reassign",
                     data={"to": "测试gl2", "reason": "出差", "next": f"/cases/{world.case.business_key}",
                           "csrf_token": token})
    assert ok.status_code == 302 and ok.headers["Location"].endswith(f"/cases/{world.case.business_key}")
    page = client.get(ok.headers["Location"]).get_data(as_text=True)
    assert "已改派" in page and "→ 测试gl2 · 出差" in page
    holder = app.test_client()      # the new holder's notice says who gave it to them, and why
    login(holder, world.u("gl2"))
    notices = holder.get("/notifications").get_data(as_text=True)
    assert "改派人：测试pd" in notices and "出差" in notices and "督办人" not in notices
    worker = app.test_client()
    login(worker, world.u("gw"))
    assert f"/supervision/tasks/{world.task}/reassign" not in worker.get(
        f"/cases/{world.case.business_key}").get_data(as_text=True)


def test_a_hostile_reason_is_stored_as_typed_and_shown_escaped(app, service, clean_db, world):
    reason = "<script>alert(1)</script>'; DROP TABLE work_item; --"
    service.supervision.reassign(world.task, world.u("gl2"), reason, world.u("pd"))
    assert last_event(clean_db, world.task).data["reason"] == reason
    client = app.test_client()
    login(client, world.u("pd"))
    page = client.get(f"/cases/{world.case.business_key}").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    holder = app.test_client()
    login(holder, world.u("gl2"))
    notices = holder.get("/notifications").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in notices and "&lt;script&gt;" in notices


def test_reassigning_through_the_api(app, clean_db, world):
    client = app.test_client()

    def token(who):
        return {"Authorization": "Bearer " + client.post("/api/v1/auth/token", json={
            "username": world.u(who), "password": "demo123"}).get_json()["token"]}
    path = f"/api/v1/tasks/{world.task}/reassign"
    ok = client.post(path, json={"to": world.u("gl2"), "reason": "出差"}, headers=token("pd"))
    assert ok.status_code == 200, ok.get_json()
    assert ok.get_json()["id"] == world.task
    assert last_event(clean_db, world.task).data["to"] == world.u("gl2")
    back = client.post(path, json={"to": None, "reason": "已返岗"}, headers=token("ld"))
    assert back.status_code == 200 and item(clean_db, world.task).assignee_id is None
    refused = client.post(path, json={"to": world.u("gl2"), "reason": "理由"}, headers=token("gw"))
    assert refused.status_code == 403
    bad = client.post(path, json={"to": world.u("med"), "reason": "理由"}, headers=token("pd"))
    assert bad.status_code == 400 and "to" in bad.get_json()["fields"]
    assert client.post(path, json={"to": world.u("gl2")}, headers=token("pd")).status_code == 400   # no reason
    assert client.post(path, json={"to": world.u("gl2"), "reason": "x", "extra": 1},
                       headers=token("pd")).status_code == 400
