"""Loading the jurisdiction tree and users from YAML."""
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from engine.db import Database
from engine.models import JurisdictionNode, RoleAssignment, User
from engine.org import OrgFileError, load_org
from engine.passwords import check_password
from engine import schema

TREE = {
    "nodes": [{
        "code": "c1", "name": "测试市", "level": "city", "children": [{
            "code": "k1", "name": "测试县", "level": "county", "key_prefix": "CS",
            "departments": [{"code": "k1-xfj", "name": "测试县信访局", "dept_type": "xinfangju"}],
            "children": [{
                "code": "t1", "name": "测试镇", "level": "town", "children": [{
                    "code": "v1", "name": "测试村", "level": "community", "children": [
                        {"code": "g1", "name": "第一网格", "level": "grid"}]}]}]}]}],
    "users": [
        {"username": "u1", "name": "张三", "password": "pw1", "roles": [{"role": "grid_worker", "node": "g1"}]},
        {"username": "u2", "name": "李四", "roles": [{"role": "petition_officer", "node": "k1-xfj"},
                                                    {"role": "leader", "node": "k1"}]},
    ],
}


@pytest.fixture
def org_db(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'org.sqlite'}")
    schema.upgrade(db)
    yield db
    db.dispose()


def snapshot(db):
    with db.read_session() as s:
        nodes = sorted((n.code, n.name, n.level, n.path.count("/")) for n in s.scalars(select(JurisdictionNode)))
        roles = sorted((ra.user.username, ra.role, ra.node.code) for ra in s.scalars(select(RoleAssignment)))
        return nodes, roles


def test_load_is_idempotent_and_builds_paths(org_db):
    with org_db.unit_of_work() as s:
        first = load_org(s, TREE)
    assert (first.nodes_created, first.users_created, first.roles_added) == (6, 2, 3)
    snap = snapshot(org_db)
    with org_db.unit_of_work() as s:
        second = load_org(s, TREE)
    assert (second.nodes_created, second.nodes_updated, second.users_created, second.roles_added,
            second.roles_removed) == (0, 0, 0, 0, 0)
    assert snapshot(org_db) == snap
    with org_db.read_session() as s:
        grid = s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "g1"))
        dept = s.scalar(select(JurisdictionNode).where(JurisdictionNode.code == "k1-xfj"))
        assert len(grid.ancestor_ids()) == 5 and dept.level == "department" and dept.dept_type == "xinfangju"
        u1 = s.scalar(select(User).where(User.username == "u1"))
        assert check_password(u1.password_hash, "pw1") and not check_password(u1.password_hash, "pw2")


def test_changed_roles_and_names_are_updated_in_place(org_db):
    with org_db.unit_of_work() as s:
        load_org(s, TREE)
    changed = {**TREE, "users": [{**TREE["users"][0], "name": "张三丰", "roles": [{"role": "grid_leader", "node": "g1"}]},
                                 TREE["users"][1]]}
    with org_db.unit_of_work() as s:
        report = load_org(s, changed)
    assert (report.users_updated, report.roles_added, report.roles_removed) == (1, 1, 1)
    assert ("u1", "grid_leader", "g1") in snapshot(org_db)[1]


@pytest.mark.parametrize("mutate,message", [
    (lambda t: t["nodes"][0].update(level="province"), "level 'province'"),
    (lambda t: t["nodes"][0]["children"][0].update(level="town"), "expected county"),
    (lambda t: t["users"][0]["roles"].append({"role": "emperor", "node": "g1"}), "unknown role 'emperor'"),
    (lambda t: t["users"][0]["roles"].append({"role": "grid_worker", "node": "nowhere"}), "unknown node 'nowhere'"),
    (lambda t: t["nodes"].append({"code": "c1", "name": "重复", "level": "city"}), "appears twice"),
    # case numbers are searched in capitals: an lx- prefix could never be found
    (lambda t: t["nodes"][0]["children"][0].update(key_prefix="lx"), "key_prefix 'lx'"),
    (lambda t: t["nodes"][0]["children"][0].update(key_prefix=12), "key_prefix 12"),
])
def test_bad_org_files_are_refused_with_a_clear_message_and_change_nothing(org_db, mutate, message):
    import copy
    bad = copy.deepcopy(TREE)
    mutate(bad)
    with pytest.raises(OrgFileError, match=message):
        with org_db.unit_of_work() as s:
            load_org(s, bad)
    assert snapshot(org_db) == ([], [])


def test_an_org_file_that_is_not_utf8_is_refused_with_a_clear_message(org_db, tmp_path):
    from engine.org import load_org_file
    from tests.conftest import ROOT
    gbk = tmp_path / "org.yaml"
    gbk.write_bytes((ROOT / "demo" / "org.yaml").read_text(encoding="utf-8").encode("gbk"))
    with pytest.raises(OrgFileError, match=r"not UTF-8 text \(byte \d+, perhaps GBK\).*iconv -f GBK -t UTF-8"):
        with org_db.unit_of_work() as s:
            load_org_file(s, gbk)
    assert snapshot(org_db) == ([], [])


def test_demo_org_has_every_role():
    import yaml
    from engine.models import ROLES
    from tests.conftest import ROOT
    raw = yaml.safe_load((ROOT / "demo" / "org.yaml").read_text(encoding="utf-8"))
    held = {r["role"] for u in raw["users"] for r in u["roles"]}
    assert held == set(ROLES)


def test_cli_load_org(tmp_path, monkeypatch):
    import yaml
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.sqlite'}")
    path = tmp_path / "org.yaml"
    path.write_text(yaml.safe_dump(TREE, allow_unicode=True), encoding="utf-8")
    runner = CliRunner()
    assert runner.invoke(cli_main(), ["init-db"]).exit_code == 0
    result = runner.invoke(cli_main(), ["load-org", str(path)])
    assert result.exit_code == 0 and "6 created" in result.output
    result = runner.invoke(cli_main(), ["load-org", str(path)])
    assert "0 created" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("nodes: [{code: x, name: y, level: moon}]", encoding="utf-8")
    result = runner.invoke(cli_main(), ["load-org", str(bad)])
    assert result.exit_code == 1 and "level 'moon'" in result.output


def cli_main():
    from engine.cli import main
    return main
