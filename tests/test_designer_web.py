"""The designer's pages through Flask's test client, CSRF on: library, process page,
modeler page, check/deploy JSON, diff, upload; every refusal."""
from __future__ import annotations

import glob
import io
import json
import re
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from engine.models import ProcessVersion
from tests.conftest import FIXTURES, ROOT
from tests.test_deploy import MIWG as MIWG_DIR
from tests.helpers import csrf_token

DESIGNER, ADMIN, WORKER, AUDITOR = "cf_sj", "admin", "lx_wgy1", "lxx_dc"
CAMUNDA = (FIXTURES / "camunda_report.bpmn").read_text(encoding="utf-8")
MIWG = sorted(MIWG_DIR.glob("*.bpmn"))


def unique_camunda():
    key = f"cw_{uuid.uuid4().hex[:8]}"
    return key, CAMUNDA.replace('id="camunda_report"', f'id="{key}"').replace(
        'bpmnElement="camunda_report"', f'bpmnElement="{key}"')


def post_json(client, url, payload):
    token = csrf_token(client, "/designer/" if "/designer" in url else "/inbox")
    return client.post(url, data=json.dumps(payload), content_type="application/json",
                       headers={"X-CSRFToken": token})


def versions(db) -> int:
    with db.read_session() as s:
        return s.scalar(select(func.count()).select_from(ProcessVersion))


def test_library_page_lists_processes_versions_and_running_cases(as_user):
    html = as_user(DESIGNER).get("/designer/").get_data(as_text=True)
    for key in ("grid_matter", "petition", "leader_case", "mediation", "consultation"):
        assert f'data-process="{key}"' in html
    assert "tests" in html  # deployed by
    assert 'href="/designer/processes/grid_matter/edit"' in html
    assert "流程库" in as_user(DESIGNER).get("/inbox").get_data(as_text=True)


def test_process_page_shows_the_diagram_source_and_versions(as_user):
    client = as_user(DESIGNER)
    html = client.get("/designer/processes/grid_matter").get_data(as_text=True)
    assert 'id="diagram"' in html and "bpmn-navigated-viewer" in html
    src = re.search(r'data-src="([^"]+)"', html).group(1)
    xml = client.get(src)
    assert xml.status_code == 200 and xml.mimetype == "application/xml" and b"grid_matter" in xml.data
    assert client.get("/designer/processes/grid_matter/v1/files/nope.bpmn").status_code == 404
    assert client.get("/designer/processes/nope").status_code == 404


@pytest.mark.parametrize("url", [
    "/designer/processes/grid_matter?v=99999999999999999999", "/designer/processes/grid_matter?v=-1",
    "/designer/processes/grid_matter/diff?old=99999999999999999999", "/designer/processes/grid_matter/diff?new=99999999999999999999",
    "/designer/processes/grid_matter/v99999999999999999999/files/grid_matter.bpmn",
    "/designer/processes/grid_matter/edit?v=99999999999999999999",
    "/designer/processes/grid_matter/migrate?from=99999999999999999999", "/designer/processes/grid_matter/migrate?to=99999999999999999999",
])
def test_a_version_number_out_of_range_is_no_such_version(as_user, url):
    """Found by crawling the pages with extreme parameters: these were 500s."""
    r = as_user(DESIGNER).get(url)
    assert r.status_code == 404 and "没有第" in r.get_data(as_text=True)


def test_modeler_page_loads_the_modeler_locally(as_user, app):
    client = as_user(DESIGNER)
    html = client.get("/designer/processes/grid_matter/edit").get_data(as_text=True)
    assert "bpmn-modeler.production.min.js" in html and 'id="modeler"' in html and "http" not in re.sub(
        r'https?://(www\.w3\.org|127\.0\.0\.1)[^"]*', "", " ".join(re.findall(r'(?:src|href)="([^"]+)"', html)))
    assert client.get("/vendor/bpmn-js/bpmn-modeler.production.min.js").status_code == 200
    dmn = client.get("/designer/processes/grid_matter/edit?file=dispatch_rules.dmn").get_data(as_text=True)
    assert "dmn-modeler.production.min.js" in dmn and 'data-kind="dmn"' in dmn
    assert client.get("/designer/vendor/dmn-js/dmn-modeler.production.min.js").status_code == 200
    assert client.get("/designer/processes/grid_matter/edit?file=other.bpmn").status_code == 404


def test_vendor_files_come_from_the_packages_dist_only(as_user):
    """bpmn-js and dmn-js are served from node_modules/<package>/dist, cached, never sniffed;
    nothing outside dist/ (the package's own files, the repository) is reachable."""
    client = as_user(DESIGNER)
    for url in ("/vendor/bpmn-js/bpmn-viewer.production.min.js", "/designer/vendor/dmn-js/dmn-viewer.production.min.js"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.cache_control.max_age == 24 * 3600
    for url in ("/vendor/bpmn-js/../package.json", "/vendor/bpmn-js/..%2Fpackage.json",
                "/designer/vendor/dmn-js/../package.json", "/vendor/bpmn-js/nope.js"):
        assert client.get(url).status_code == 404, url


def test_check_and_deploy_json_then_diff_page(as_user, clean_db):
    client = as_user(DESIGNER)
    key, text = unique_camunda()
    name = f"{key}.bpmn"
    bad = post_json(client, "/designer/check", {"files": {name: text.replace('camunda:candidateGroups="网格员"', "")}})
    body = bad.get_json()
    assert bad.status_code == 200 and body["ok"] is False
    assert [(p["element"], p["file"]) for p in body["problems"]] == [("Task_Verify", name)]
    assert body["problems"][0]["message"] == "用户任务“现场核查”不在任何泳道中"       # the page's language
    assert body["problems"][0]["fix"].startswith("请把它放进以“层级.角色”命名的泳道")

    before = versions(clean_db)
    refused = post_json(client, "/designer/deploy", {"files": {name: "<bpmn:definitions"}})
    assert refused.status_code == 400 and refused.get_json()["ok"] is False and versions(clean_db) == before

    first = post_json(client, "/designer/deploy", {"files": {name: text}})
    assert first.status_code == 200 and first.get_json()["created"][0]["version"] == 1
    second = post_json(client, "/designer/deploy", {"files": {name: text.replace('name="现场核查"', 'name="现场核实"')}})
    created = second.get_json()["created"]
    assert [(c["process"], c["version"]) for c in created] == [(key, 2)]
    assert created[0]["url"] == f"/designer/processes/{key}?v=2"
    page = client.get(created[0]["url"]).get_data(as_text=True)
    assert "v2" in page and DESIGNER in page

    diff = client.get(f"/designer/processes/{key}/diff?old=1&new=2").get_data(as_text=True)
    assert 'data-element="Task_Verify"' in diff and "现场核查 → 现场核实" in diff
    # the element's type in the page's language (it was userTask on the Chinese page)
    assert re.search(r'data-element="Task_Verify"><td><code>Task_Verify</code></td><td>用户任务</td>', diff)
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/designer/")})
    english = client.get(f"/designer/processes/{key}/diff?old=1&new=2").get_data(as_text=True)
    assert re.search(r'data-element="Task_Verify"><td><code>Task_Verify</code></td><td>userTask</td>', english)


def test_the_english_diff_page_names_elements_by_their_english_names(as_user, clean_db):
    """The diff listed 现场核查 on the English page; it shows each element's `nameEn` as the
    version it comes from has it (a removed element: the old version's), the BPMN name where
    there is none, and the Chinese page keeps the Chinese names."""
    client = as_user(DESIGNER)
    key, text = unique_camunda()
    spiff = 'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" '
    text = text.replace("<bpmn:definitions ", "<bpmn:definitions " + spiff, 1)

    def named(source, english):
        return source.replace('<bpmn:incoming>Flow_1</bpmn:incoming>', (
            '<bpmn:extensionElements><spiffworkflow:properties>'
            f'<spiffworkflow:property name="nameEn" value="{english}" />'
            '</spiffworkflow:properties></bpmn:extensionElements><bpmn:incoming>Flow_1</bpmn:incoming>'), 1)
    first = named(text, "Verify on site")
    second = named(text, "Check on site").replace('name="现场核查"', 'name="现场核实"')
    assert first != text and "Check on site" in second
    for files in ({f"{key}.bpmn": first}, {f"{key}.bpmn": second}):
        assert post_json(client, "/designer/deploy", {"files": files}).status_code == 200
    row = r'data-element="Task_Verify"><td><code>Task_Verify</code></td><td>[^<]*</td><td>([^<]*)</td>'
    chinese = client.get(f"/designer/processes/{key}/diff?old=1&new=2").get_data(as_text=True)
    assert re.search(row, chinese).group(1) == "现场核实"
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/designer/")})
    english = client.get(f"/designer/processes/{key}/diff?old=1&new=2").get_data(as_text=True)
    assert re.search(row, english).group(1) == "Check on site"
    backwards = client.get(f"/designer/processes/{key}/diff?old=2&new=1").get_data(as_text=True)
    assert re.search(row, backwards).group(1) == "Verify on site"


def test_upload_reports_problems_and_deploys_good_files(as_user, clean_db):
    client = as_user(DESIGNER)
    key, text = unique_camunda()
    token = csrf_token(client, "/designer/upload")
    before = versions(clean_db)
    bad = client.post("/designer/upload", data={"csrf_token": token, "action": "deploy",
                                                "file": (io.BytesIO(b"<not xml"), "broken.bpmn")},
                      content_type="multipart/form-data")
    # the designer's language: Chinese by default, the CLI's English after the switch
    assert bad.status_code == 400 and "XML 格式错误" in bad.get_data(as_text=True) and versions(clean_db) == before
    assert "请在建模器中打开并重新保存" in bad.get_data(as_text=True)
    client.post("/lang/en", data={"csrf_token": token})
    again = client.post("/designer/upload", data={"csrf_token": csrf_token(client, "/designer/upload"),
                                                  "action": "check", "file": (io.BytesIO(b"<not xml"), "broken.bpmn")},
                        content_type="multipart/form-data")
    assert again.status_code == 400 and "not well-formed XML" in again.get_data(as_text=True)
    client.post("/lang/zh", data={"csrf_token": csrf_token(client, "/designer/upload")})
    wrong = client.post("/designer/upload", data={"csrf_token": token, "action": "check",
                                                  "file": (io.BytesIO(b"x"), "notes.txt")},
                        content_type="multipart/form-data")
    assert wrong.status_code == 400 and 'id="upload-error"' in wrong.get_data(as_text=True)
    good = client.post("/designer/upload", data={"csrf_token": token, "action": "deploy",
                                                 "file": (io.BytesIO(text.encode()), f"{key}.bpmn")},
                       content_type="multipart/form-data")
    html = good.get_data(as_text=True)
    assert good.status_code == 200 and 'id="deployed"' in html and f"{key} v1" in html
    assert versions(clean_db) == before + 1


def test_uploading_every_miwg_file_gives_a_report_page(as_user, clean_db):
    client = as_user(DESIGNER)
    token = csrf_token(client, "/designer/upload")
    before = versions(clean_db)
    assert len(MIWG) >= 20
    for path in MIWG:
        response = client.post("/designer/upload", data={"csrf_token": token, "action": "deploy",
                                                         "file": (io.BytesIO(path.read_bytes()), path.name)},
                               content_type="multipart/form-data")
        html = response.get_data(as_text=True)
        assert response.status_code == 400, path.name
        assert 'class="responsive problems"' in html and "Traceback" not in html, path.name
    assert versions(clean_db) == before


@pytest.mark.parametrize("who", [WORKER, "lxz_pd"])
def test_officials_are_refused_every_designer_page(as_user, who):
    client = as_user(who)
    for url in ("/designer/", "/designer/processes/grid_matter", "/designer/processes/grid_matter/edit",
                "/designer/processes/grid_matter/diff?old=1&new=1", "/designer/upload",
                "/designer/processes/grid_matter/v1/files/grid_matter.bpmn"):
        assert client.get(url).status_code == 403, url
    assert "流程库" not in client.get("/inbox").get_data(as_text=True)


@pytest.mark.parametrize("who", [WORKER, AUDITOR])
def test_only_designers_and_admins_may_change(as_user, clean_db, who):
    client = as_user(who)
    key, text = unique_camunda()
    before = versions(clean_db)
    for url in ("/designer/check", "/designer/deploy"):
        response = post_json(client, url, {"files": {f"{key}.bpmn": text}})
        assert response.status_code == 403 and response.get_json()["ok"] is False, url
    token = csrf_token(client, "/inbox")
    upload = client.post("/designer/upload", data={"csrf_token": token, "action": "deploy",
                                                   "file": (io.BytesIO(text.encode()), f"{key}.bpmn")},
                         content_type="multipart/form-data")
    assert upload.status_code == 403
    assert client.get("/designer/processes/grid_matter/edit").status_code == 403
    assert versions(clean_db) == before


def test_auditor_reads_the_library_without_edit_links(as_user):
    html = as_user(AUDITOR).get("/designer/").get_data(as_text=True)
    assert 'data-process="grid_matter"' in html and "/edit" not in html


def test_admin_may_deploy(as_user):
    key, text = unique_camunda()
    response = post_json(as_user(ADMIN), "/designer/deploy", {"files": {f"{key}.bpmn": text}})
    assert response.status_code == 200 and response.get_json()["created"][0]["version"] == 1


def test_post_without_csrf_is_refused(as_user):
    response = as_user(DESIGNER).post("/designer/deploy", data=json.dumps({"files": {}}),
                                      content_type="application/json")
    assert response.status_code == 400


def test_malformed_json_is_a_400(as_user):
    client = as_user(DESIGNER)
    token = csrf_token(client, "/designer/")
    for body in ("not json", json.dumps({"files": "x"}), json.dumps([1])):
        response = client.post("/designer/check", data=body, content_type="application/json",
                               headers={"X-CSRFToken": token})
        assert response.status_code == 400


MESSAGE_RE = re.compile(r"""(?<![\w.])_\(\s*(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)')""")


def test_every_designer_ui_string_has_english():
    from web.i18n import MESSAGES_EN
    paths = glob.glob(str(ROOT / "web" / "templates" / "designer" / "*.html")) + [str(ROOT / "web" / "designer.py")]
    found, missing = 0, []
    for path in paths:
        for match in MESSAGE_RE.finditer(Path(path).read_text(encoding="utf-8")):
            text = match.group(1) if match.group(1) is not None else match.group(2)
            found += 1
            if text not in MESSAGES_EN:
                missing.append(f"{Path(path).name}: {text}")
    assert found > 40 and not missing, missing


def test_check_notes_an_element_the_dashboard_reads_and_deploys_all_the_same(as_user):
    from tests.test_deploy import grid_matter_renamed
    client = as_user(DESIGNER)
    text = grid_matter_renamed("micro_mediation", "grid_mediation")
    checked = post_json(client, "/designer/check", {"files": {"grid_matter.bpmn": text}})
    body = checked.get_json()
    assert checked.status_code == 200 and body["ok"] is True and body["problems"] == []
    assert [(n["file"], n["element"]) for n in body["notes"]] == [("grid_matter.bpmn", "micro_mediation")]
    assert "升级到镇" in body["notes"][0]["message"] and "保留其 id" in body["notes"][0]["fix"]
    # the shipped file: nothing to note
    shipped = (ROOT / "processes" / "grid_matter.bpmn").read_text(encoding="utf-8")
    assert post_json(client, "/designer/check", {"files": {"grid_matter.bpmn": shipped}}).get_json()["notes"] == []
    # the upload page shows the note beside "no problems"
    token = csrf_token(client, "/designer/upload")
    page = client.post("/designer/upload", data={"csrf_token": token, "action": "check",
                                                 "file": (io.BytesIO(text.encode()), "grid_matter.bpmn")},
                       content_type="multipart/form-data").get_data(as_text=True)
    assert 'id="report-ok"' in page and 'id="report-notes"' in page and "micro_mediation" in page


def test_designer_pages_in_english_name_the_process_in_english(as_user):
    client = as_user(DESIGNER)
    client.post("/lang/en", data={"csrf_token": csrf_token(client, "/designer/")})
    pages = {"/designer/": "Grid matter", "/designer/processes/grid_matter": "Grid matter · Process library",
             "/designer/processes/grid_matter/scenarios": "Scenarios: Grid matter",
             "/designer/processes/grid_matter/edit": "Grid matter · based on v"}
    for path, expected in pages.items():
        html = client.get(path).get_data(as_text=True)
        assert expected in html, path
    client.post("/lang/zh", data={"csrf_token": csrf_token(client, "/designer/")})
    assert "网格事项办理 · 流程库" in client.get("/designer/processes/grid_matter").get_data(as_text=True)
