"""The organisation's change log: what `gridflow load-org` changed, who loaded it and when,
read by auditors and administrators within their jurisdiction; and accounts deactivated
from the organisation file."""
import copy
import uuid

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from engine.cli import main as cli
from engine.errors import Conflict, InactiveAccount, InvalidInput, NotFound, PermissionDenied
from engine.models import AuditEvent, Notification, OrgChange, User, WorkItem
from engine.org import OrgFileError, load_org
from engine.org_log import OrgChangeLog
from tests.helpers import REPORT


def tree(tag: str) -> dict:
    """A city of its own (codes and usernames unique to the test), with an auditor."""
    return {
        "nodes": [{
            "code": f"{tag}-city", "name": "测试市", "level": "city", "children": [{
                "code": f"{tag}-county", "name": "测试县", "level": "county", "key_prefix": tag[:4].upper(),
                "children": [{
                    "code": f"{tag}-town", "name": "测试镇", "level": "town", "children": [{
                        "code": f"{tag}-village", "name": "测试村", "level": "community", "children": [
                            {"code": f"{tag}-g1", "name": "第一网格", "level": "grid"}]}]}]}]}],
        "users": [
            {"username": f"{tag}_gw", "name": "张三", "password": "pw1", "phone": "13800000001",
             "roles": [{"role": "grid_worker", "node": f"{tag}-g1"}]},
            {"username": f"{tag}_dc", "name": "督查甲", "password": "pw1",
             "roles": [{"role": "auditor", "node": f"{tag}-county"}]},
        ],
    }


def load(db, raw, actor="zhang.admin", source="org.yaml"):
    with db.unit_of_work() as session:
        return load_org(session, raw, source=source, actor=actor)


def changes(db, **where):
    with db.read_session() as s:
        query = select(OrgChange).order_by(OrgChange.id)
        for key, value in where.items():
            query = query.where(getattr(OrgChange, key) == value)
        return [(c.kind, c.subject, c.detail) for c in s.scalars(query)]


@pytest.fixture
def tag():
    return f"oc{uuid.uuid4().hex[:8]}"


def test_a_load_records_each_change_with_who_when_and_from_which_file(clean_db, clock, tag):
    load(clean_db, tree(tag))
    made = changes(clean_db, actor="zhang.admin", source="org.yaml")
    mine = [c for c in made if c[1].startswith(tag)]
    assert [k for k, *_ in mine] == ["node_created"] * 5 + ["user_created", "role_granted"] * 2
    assert (mine[0][1], mine[0][2]) == (f"{tag}-city", {"name": "测试市", "level": "city", "parent": None})
    assert mine[6] == ("role_granted", f"{tag}_gw", {"role": "grid_worker", "node": f"{tag}-g1"})
    with clean_db.read_session() as s:
        row = s.scalars(select(OrgChange).where(OrgChange.subject == f"{tag}-g1")).one()
        assert row.at == clock.now() and row.actor == "zhang.admin"
    # loading the same file again changes nothing and records nothing
    before = len(changes(clean_db))
    load(clean_db, tree(tag))
    assert len(changes(clean_db)) == before


def test_changed_moved_and_withdrawn_things_are_recorded_as_before_and_after(clean_db, clock, tag):
    raw = tree(tag)
    load(clean_db, raw)
    edited = copy.deepcopy(raw)
    county = edited["nodes"][0]["children"][0]
    county["name"] = "测试旗"
    village = county["children"][0]["children"][0]
    village["children"].append({"code": f"{tag}-g2", "name": "第二网格", "level": "grid"})
    gw = edited["users"][0]
    gw.update(name="张三丰", phone="13900000002", password="pw2")
    gw["roles"] = [{"role": "grid_worker", "node": f"{tag}-g2"}]
    clock.advance(minutes=5)
    report = load(clean_db, edited, actor="li.admin")
    assert (report.nodes_updated, report.nodes_created, report.users_updated) == (1, 1, 1)
    assert (report.roles_added, report.roles_removed) == (1, 1)
    later = changes(clean_db, actor="li.admin")
    assert ("node_changed", f"{tag}-county", {"name": ["测试县", "测试旗"]}) in later
    # a phone number and a password are personal: the log says they changed, never what to
    assert ("user_changed", f"{tag}_gw", {"name": ["张三", "张三丰"], "phone": "changed", "password": "changed"}) in later
    assert ("role_granted", f"{tag}_gw", {"role": "grid_worker", "node": f"{tag}-g2"}) in later
    assert ("role_withdrawn", f"{tag}_gw", {"role": "grid_worker", "node": f"{tag}-g1"}) in later
    with clean_db.read_session() as s:
        assert "13900000002" not in str(list(s.scalars(select(OrgChange.detail))))


def test_a_node_moved_to_another_parent_names_both(clean_db, tag):
    raw = tree(tag)
    raw["nodes"][0]["children"][0]["children"].append({"code": f"{tag}-town2", "name": "测试乡", "level": "town"})
    load(clean_db, raw)
    moved = copy.deepcopy(raw)
    towns = moved["nodes"][0]["children"][0]["children"]
    towns[1]["children"] = towns[0].pop("children")
    load(clean_db, moved, actor="mover")
    assert ("node_changed", f"{tag}-village", {"parent": [f"{tag}-town", f"{tag}-town2"]}) in changes(
        clean_db, actor="mover")


def test_active_false_deactivates_an_account_and_true_brings_it_back(service, clean_db, tag):
    raw = tree(tag)
    load(clean_db, raw)
    grid = f"{tag}-g1"
    service.start_case("grid_matter", grid, REPORT, f"{tag}_gw")   # a grid matter: a task for the grid leader
    off = copy.deepcopy(raw)
    off["users"][0]["active"] = False
    report = load(clean_db, off, actor="hr")
    assert report.users_deactivated == 1
    with clean_db.read_session() as s:
        assert s.scalars(select(User).where(User.username == f"{tag}_gw")).one().active is False
    with pytest.raises(InactiveAccount):
        service.start_case("grid_matter", grid, REPORT, f"{tag}_gw")
    assert changes(clean_db, actor="hr") == [("user_deactivated", f"{tag}_gw", {})]
    on = load(clean_db, raw, actor="hr")
    assert on.users_reactivated == 1
    assert changes(clean_db, actor="hr")[-1] == ("user_reactivated", f"{tag}_gw", {})
    assert service.start_case("grid_matter", grid, REPORT, f"{tag}_gw").business_key


def with_two_grid_leaders(tag: str) -> dict:
    raw = tree(tag)
    raw["users"] += [{"username": f"{tag}_gl{n}", "name": f"网格长{n}", "password": "pw1",
                      "roles": [{"role": "grid_leader", "node": f"{tag}-g1"}]} for n in (1, 2)]
    return raw


def test_a_deactivated_officials_claimed_group_tasks_go_back_to_the_group(service, clean_db, tag):
    raw = with_two_grid_leaders(tag)
    load(clean_db, raw)
    case = service.start_case("grid_matter", f"{tag}-g1", REPORT, f"{tag}_gw")
    task = case.open_items[0].id
    service.claim(task, f"{tag}_gl1")
    with pytest.raises(Conflict, match="is active"):
        service.release_claims_of(f"{tag}_gl1", "hr")        # an active official releases their own
    off = copy.deepcopy(raw)
    off["users"][2]["active"] = False
    report = load(clean_db, off, actor="hr")
    assert report.deactivated == [f"{tag}_gl1"] and report.notes == []   # nothing assigned by name
    assert service.release_claims_of(f"{tag}_gl1", "hr") == [task]
    assert service.release_claims_of(f"{tag}_gl1", "hr") == []           # nothing left to release
    with clean_db.read_session() as s:
        item = s.get(WorkItem, task)
        assert (item.assignee_id, item.claimed_at) == (None, None)
        event = s.scalars(select(AuditEvent).where(AuditEvent.work_item_id == task)
                          .order_by(AuditEvent.id.desc())).first()
        assert event.event_type == "task_unclaimed"
        assert event.data == {"reason": "account deactivated", "released_by": "hr"}
    with clean_db.read_session() as s:      # the group hears it is back, with why
        told = {u for (u,) in s.execute(select(User.username).join(Notification, Notification.user_id == User.id)
                                        .where(Notification.work_item_id == task,
                                               Notification.note == "原承办人账号已停用，任务退回组内"))}
    assert told == {f"{tag}_gl2"}
    assert service.claim(task, f"{tag}_gl2").assignee_id is not None     # the group can take it again
    with pytest.raises(NotFound):
        service.release_claims_of(f"{tag}_nobody", "hr")


def test_deactivating_an_official_with_tasks_assigned_by_name_says_so(service, clean_db, tag):
    raw = with_two_grid_leaders(tag)
    load(clean_db, raw)
    case = service.start_case("grid_matter", f"{tag}-g1", REPORT, f"{tag}_gw")
    service.claim(case.open_items[0].id, f"{tag}_gl1")
    with clean_db.unit_of_work() as s:      # as a task a form assigned to them by name looks
        s.get(WorkItem, case.open_items[0].id).role = None
    off = copy.deepcopy(raw)
    off["users"][2]["active"] = False
    report = load(clean_db, off)
    assert report.notes == [f"{tag}_gl1 was deactivated holding 1 open task(s) assigned to them by name; nobody "
                            "can work those until the account is active again"]
    assert service.release_claims_of(f"{tag}_gl1", "hr") == []           # a named task is not the group's


def test_a_bad_active_value_loads_nothing(clean_db, tag):
    raw = tree(tag)
    raw["users"][0]["active"] = "no"
    before = len(changes(clean_db))
    with pytest.raises(OrgFileError, match="active: 'no'; write true or false"):
        load(clean_db, raw)
    assert len(changes(clean_db)) == before


# ------------------------------------------------------------------ who reads it

def test_auditors_read_the_changes_within_their_jurisdiction_only(service, clean_db, tag):
    load(clean_db, tree(tag))
    other = f"{tag}x"
    load(clean_db, tree(other))
    log = OrgChangeLog(service)
    subjects = {row.subject for row in log.changes(f"{tag}_dc", limit=200).rows}
    # the auditor's county and what lies in it; not the city above it, not the other city
    assert {f"{tag}-county", f"{tag}-g1", f"{tag}_gw"} <= subjects
    assert f"{tag}-city" not in subjects and not any(s.startswith(other) for s in subjects)
    assert [r.kind for r in log.changes(f"{tag}_dc", subject=f"{tag}_gw").rows] == ["role_granted", "user_created"]
    assert log.changes(f"{tag}_dc", kind="role_withdrawn", subject=f"{tag}_gw").rows == []
    # an administrator of 赤峰市 and 巴彦淖尔市 reads those, not this city
    assert not any(r.subject.startswith(tag) for r in log.changes("admin", limit=200).rows)


def with_town_staff(tag: str) -> dict:
    """The tree with a 派出所 at the town, a dispatcher at the town and a handler at the 派出所."""
    raw = tree(tag)
    town = raw["nodes"][0]["children"][0]["children"][0]
    town["departments"] = [{"code": f"{tag}-pcs", "name": "测试派出所", "dept_type": "paichusuo"}]
    raw["users"] += [
        {"username": f"{tag}_pd", "name": "派单员甲", "password": "pw1",
         "roles": [{"role": "center_dispatcher", "node": f"{tag}-town"}]},
        {"username": f"{tag}_pcs", "name": "民警乙", "password": "pw1",
         "roles": [{"role": "department_handler", "node": f"{tag}-pcs"}]},
    ]
    return raw


def test_a_node_filter_shows_every_change_touching_the_node(service, clean_db, tag):
    """Filtered by a node: its own changes, its departments', and the roles granted and
    withdrawn there (whose rows name the user as subject, the node in their detail)."""
    raw = with_town_staff(tag)
    load(clean_db, raw)
    later = copy.deepcopy(raw)
    later["users"][2]["roles"] = [{"role": "center_dispatcher", "node": f"{tag}-county"}]   # moved up
    later["nodes"][0]["children"][0]["children"][0]["departments"][0]["name"] = "测试镇派出所"
    load(clean_db, later, actor="li.admin")
    log = OrgChangeLog(service)
    town = [(r.kind, r.subject, r.detail) for r in log.changes(f"{tag}_dc", subject=f"{tag}-town").rows]
    assert sorted(town, key=str) == sorted([
        ("node_created", f"{tag}-town", {"name": "测试镇", "level": "town", "parent": f"{tag}-county"}),
        ("node_created", f"{tag}-pcs", {"name": "测试派出所", "level": "department", "parent": f"{tag}-town"}),
        ("node_changed", f"{tag}-pcs", {"name": ["测试派出所", "测试镇派出所"]}),
        ("role_granted", f"{tag}_pd", {"role": "center_dispatcher", "node": f"{tag}-town"}),
        ("role_withdrawn", f"{tag}_pd", {"role": "center_dispatcher", "node": f"{tag}-town"}),
        ("role_granted", f"{tag}_pcs", {"role": "department_handler", "node": f"{tag}-pcs"}),
    ], key=str)
    # the kind filter still applies; a department's filter is the department and its roles
    assert [r.subject for r in log.changes(f"{tag}_dc", subject=f"{tag}-town", kind="role_withdrawn").rows] == \
        [f"{tag}_pd"]
    assert {(r.kind, r.subject) for r in log.changes(f"{tag}_dc", subject=f"{tag}-pcs").rows} == {
        ("node_created", f"{tag}-pcs"), ("node_changed", f"{tag}-pcs"), ("role_granted", f"{tag}_pcs")}
    # the county's filter: its own rows and the role moved to it, not the town's
    county = {(r.kind, r.subject) for r in log.changes(f"{tag}_dc", subject=f"{tag}-county").rows}
    assert county == {("node_created", f"{tag}-county"), ("role_granted", f"{tag}_pd"), ("role_granted", f"{tag}_dc")}
    # a username is that account's rows, as before
    assert {r.kind for r in log.changes(f"{tag}_dc", subject=f"{tag}_pd").rows} == {
        "user_created", "role_granted", "role_withdrawn"}


def test_the_org_changes_page_and_export_filtered_by_a_node(app, clean_db, tag):
    import csv
    import io
    import json
    from tests.helpers import login
    load(clean_db, with_town_staff(tag))
    auditor = app.test_client()
    login(auditor, f"{tag}_dc", "pw1")
    html = auditor.get(f"/audit/org-changes?subject={tag}-town").get_data(as_text=True)
    assert html.count('data-kind="role_granted"') == 2 and f'data-subject="{tag}_pcs"' in html
    answer = auditor.get(f"/audit/org-changes/export.csv?subject={tag}-town").get_data(as_text=True)
    rows = list(csv.reader(io.StringIO(answer.lstrip("\ufeff"))))
    assert sorted((r[2], r[3]) for r in rows[1:]) == sorted([
        ("node_created", f"{tag}-town"), ("node_created", f"{tag}-pcs"),
        ("role_granted", f"{tag}_pd"), ("role_granted", f"{tag}_pcs")])
    document = json.loads(auditor.get(f"/audit/org-changes/export.json?subject={tag}-town").get_data(as_text=True))
    assert {c["subject"] for c in document["changes"]} == {f"{tag}-town", f"{tag}-pcs", f"{tag}_pd", f"{tag}_pcs"}


@pytest.mark.parametrize("who", ["lx_wgy1", "lxz_pd", "lxx_ld1", "cf_sj"])
def test_officials_who_are_not_auditors_or_administrators_are_refused(service, who):
    with pytest.raises(PermissionDenied, match="only auditors and administrators"):
        OrgChangeLog(service).changes(who)
    assert OrgChangeLog(service).may_read(who) is False


@pytest.mark.parametrize("filters", [{"kind": "role_stolen"}, {"subject": "x" * 101}, {"limit": 0},
                                     {"limit": 201}, {"offset": -1}])
def test_bad_filters_are_refused_with_the_field_named(service, filters):
    with pytest.raises(InvalidInput) as err:
        OrgChangeLog(service).changes("lxx_dc", **filters)
    assert set(err.value.fields) <= {"kind", "subject", "limit"} and err.value.fields


def test_the_org_changes_page(as_user, clean_db, tag):
    raw = tree(tag)
    raw["users"][1]["roles"] = [{"role": "auditor", "node": "linxi"}]   # 林西县's auditor, lxx_dc's peer
    raw["users"].append({"username": f"{tag}_lx", "name": "<b>王五</b>", "password": "pw1",
                         "roles": [{"role": "grid_worker", "node": "linxi-xinguang-g1"}]})
    load(clean_db, raw, actor="zhang.admin", source="/etc/gridflow/org.yaml")
    page = as_user("lxx_dc").get(f"/audit/org-changes?subject={tag}_lx")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'data-kind="role_granted"' in html and 'data-kind="user_created"' in html
    assert "zhang.admin" in html and "/etc/gridflow/org.yaml" in html and "linxi-xinguang-g1" in html
    assert "<b>王五</b>" not in html and "&lt;b&gt;王五&lt;/b&gt;" in html     # escaped
    assert "组织变更记录" in as_user("lxx_dc").get("/audit/cases").get_data(as_text=True)
    assert "组织变更记录" not in as_user("lx_wgy1").get("/audit/cases").get_data(as_text=True)
    assert as_user("lx_wgy1").get("/audit/org-changes").status_code == 403
    bad = as_user("lxx_dc").get("/audit/org-changes?kind=role_stolen")
    assert bad.status_code == 400 and "请选择有效的变更类型。" in bad.get_data(as_text=True)
    assert f"/audit/org-changes/export.csv?subject={tag}_lx" in html



def _load_with_a_linxi_grid_worker(db, tag, name):
    """The test tree, its second user an auditor of 林西县, and `{tag}_lx` (named `name`) a grid
    worker of 新光社区第一网格: changes a 林西县 auditor may read."""
    raw = tree(tag)
    raw["users"][1]["roles"] = [{"role": "auditor", "node": "linxi"}]
    raw["users"].append({"username": f"{tag}_lx", "name": name, "password": "pw1",
                         "roles": [{"role": "grid_worker", "node": "linxi-xinguang-g1"}]})
    load(db, raw, actor="zhang.admin")

def test_the_org_changes_export(as_user, clean_db, tag):
    import csv
    import io
    import json
    _load_with_a_linxi_grid_worker(clean_db, tag, "=HYPERLINK(1)")
    auditor = as_user("lxx_dc")
    answer = auditor.get(f"/audit/org-changes/export.csv?subject={tag}_lx")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == ["时间", "变更类型", "类型代码", "对象", "变更内容", "操作人", "来源文件"]
    assert sorted((r[1], r[2]) for r in rows[1:]) == [("授予角色", "role_granted"), ("新建账号", "user_created")]
    assert all(r[3] == f"{tag}_lx" and r[5] == "zhang.admin" for r in rows[1:])
    created = next(r for r in rows[1:] if r[2] == "user_created")
    assert "=HYPERLINK" in created[4] and not created[4].startswith("=")     # inert in a spreadsheet
    document = json.loads(auditor.get(f"/audit/org-changes/export.json?subject={tag}_lx").get_data(as_text=True))
    assert {(c["kind"], c["kind_label"]) for c in document["changes"]} == {("role_granted", "授予角色"),
                                                                            ("user_created", "新建账号")}
    assert auditor.get("/audit/org-changes/export.xlsx").status_code == 200
    assert auditor.get("/audit/org-changes/export.pdf").status_code == 404
    refused = auditor.get("/audit/org-changes/export.csv?kind=role_stolen")
    assert refused.status_code == 400 and "请选择有效的变更类型。" in refused.get_data(as_text=True)   # which filter
    assert as_user("lx_wgy1").get("/audit/org-changes/export.csv").status_code == 403


def test_cli_load_org_records_the_actor_and_prints_notes(clean_db, tag, tmp_path, monkeypatch):
    import yaml
    monkeypatch.setenv("DATABASE_URL", str(clean_db.engine.url.render_as_string(hide_password=False)))
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(tree(tag), allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cli, ["load-org", str(path), "--actor", "wang.hr"])
    assert result.exit_code == 0, result.output
    with clean_db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(OrgChange).where(
            OrgChange.actor == "wang.hr", OrgChange.source == str(path))) == 9


def test_cli_deactivation_gives_claimed_tasks_back(service, clean_db, tag, tmp_path, monkeypatch):
    import yaml
    monkeypatch.setenv("DATABASE_URL", str(clean_db.engine.url.render_as_string(hide_password=False)))
    raw = with_two_grid_leaders(tag)
    load(clean_db, raw)
    case = service.start_case("grid_matter", f"{tag}-g1", REPORT, f"{tag}_gw")
    service.claim(case.open_items[0].id, f"{tag}_gl1")
    raw["users"][2]["active"] = False
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    result = CliRunner().invoke(cli, ["load-org", str(path), "--actor", "wang.hr"])
    assert result.exit_code == 0, result.output
    assert f"{tag}_gl1: 1 claimed task(s) given back to their groups" in result.output
    with clean_db.read_session() as s:
        assert s.get(WorkItem, case.open_items[0].id).assignee_id is None


@pytest.mark.parametrize("fmt", ["page", "csv", "xlsx"])
def test_a_changes_detail_reads_by_names_not_codes(as_user, clean_db, tag, fmt):
    """What a change did reads on the page and in CSV/XLSX as an auditor reads it: 角色: 网格员 and
    the unit by its name (with its code), 启用: 是, not `role: grid_worker`, `node: linxi-…`,
    `active: True` (or a JSON cell of them); the JSON export keeps the stored detail."""
    import json
    from tests.helpers import export_rows
    _load_with_a_linxi_grid_worker(clean_db, tag, "王五")
    auditor = as_user("lxx_dc")
    if fmt == "page":
        text = auditor.get(f"/audit/org-changes?subject={tag}_lx").get_data(as_text=True)
        import re
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))
    else:
        rows = export_rows(fmt, auditor.get(f"/audit/org-changes/export.{fmt}?subject={tag}_lx").data)
        text = "\n".join(r[4] for r in rows[1:])
    assert "角色: 网格员" in text and "新光社区第一网格（linxi-xinguang-g1）" in text
    assert "启用: 是" in text and "名称: 王五" in text
    assert "grid_worker" not in text and "True" not in text and "{" not in text
    document = json.loads(auditor.get(f"/audit/org-changes/export.json?subject={tag}_lx").get_data(as_text=True))
    assert {"node": "linxi-xinguang-g1", "role": "grid_worker"} in [c["detail"] for c in document["changes"]]
