"""Input a database cannot store never reaches it: every entry point of the
engine refuses it with a clear error (never a crash), on SQLite and PostgreSQL."""
import pytest

from engine.errors import InvalidInput, NotFound, PermissionDenied
from engine.service import InboxFilters
from tests.helpers import REPORT

GRID = "linxi-xinguang-g1"


@pytest.mark.parametrize("text", ["abc\x00defgh", "abc\ud800defgh"])
def test_start_and_complete_refuse_unstorable_text(service, text):
    with pytest.raises(InvalidInput) as err:
        service.start_case("grid_matter", GRID, {**REPORT, "description": text}, "lx_wgy1")
    assert "description" in err.value.fields
    case = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    with pytest.raises(InvalidInput) as err:
        service.complete_task(case.open_items[0].id, {"resolved": True, "mediation_note": text}, "lx_wgz1")
    assert "mediation_note" in err.value.fields


@pytest.mark.parametrize("ref", ["lx\x00", "\ud800", 10 ** 20, -1, "x" * 5000, None, 3.5])
def test_lookups_with_impossible_references_find_nothing(service, ref):
    case = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    with pytest.raises(NotFound):
        service.view_case("lx_wgy1", ref)
    with pytest.raises(NotFound):
        service.complete_task(ref, {}, "lx_wgz1")
    with pytest.raises(NotFound):
        service.start_case("grid_matter", ref, REPORT, "lx_wgy1")
    with pytest.raises(NotFound):
        service.start_case(ref, GRID, REPORT, "lx_wgy1")
    with pytest.raises(PermissionDenied):
        service.claim(case.open_items[0].id, ref)
    assert service.get_user(ref) is None
    assert service.authenticate(ref if isinstance(ref, str) else "lx_wgy1", "\ud800") is None


@pytest.mark.parametrize("filters,field", [
    (InboxFilters(process_key="a\x00"), "process_key"),
    (InboxFilters(business_key="\ud800"), "business_key"),
    (InboxFilters(offset=10 ** 20), "offset"),
    (InboxFilters(limit=0), "limit"),
    (InboxFilters(limit=10 ** 6), "limit"),
])
def test_inbox_filters_are_bounded(service, filters, field):
    with pytest.raises(InvalidInput) as err:
        service.inbox("lxz_pd", filters)
    assert field in err.value.fields


def test_data_without_a_form_is_checked_too(clean_db, clock, fixture_forms):
    from engine.service import WorkflowService
    from tests.conftest import deploy_fixture
    deploy_fixture(clean_db, "loop.bpmn", forms=fixture_forms)
    service = WorkflowService(clean_db, forms=fixture_forms)
    deep = 1
    for _ in range(25):
        deep = [deep]
    for bad in ({"note": "a\x00"}, {"n": float("inf")}, {"n": 10 ** 30}, {"deep": deep}):
        with pytest.raises(InvalidInput):
            service.start_case("loop", GRID, bad, "lx_wgy1")
    with pytest.raises(InvalidInput):
        service.start_case("loop", GRID, ["not", "a", "mapping"], "lx_wgy1")


# ------------------------------------------------------------------ through the web and the API

import io  # noqa: E402

from sqlalchemy import func, select  # noqa: E402

from engine.models import Attachment, AuditEvent, Case, WorkItem  # noqa: E402
from werkzeug.http import parse_options_header  # noqa: E402

from tests.helpers import login  # noqa: E402

PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
       b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00\x00IEND\xaeB`\x82")
SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
SQL = "'); DROP TABLE gf_case; --"


def evil(field: str) -> str:
    """HTML and SQL injection, tagged with the field it was typed into."""
    return f"{field}:{SCRIPT}{IMG}\"'{SQL}"


def _db_counts(service):
    with service.db.read_session() as s:
        return tuple(s.scalar(select(func.count()).select_from(m)) for m in (Case, WorkItem, AuditEvent, Attachment))


def test_injection_in_every_text_field_is_stored_verbatim_and_escaped_on_every_page(service, app):
    report = {**REPORT, **{f: evil(f) for f in ("description", "location", "parties")}}
    case = service.start_case("grid_matter", GRID, report, "lx_wgy1")
    escalation = {"resolved": False, "mediation_note": evil("mediation_note"),
                  "escalation_reason": evil("escalation_reason")}
    view = service.complete_task(case.open_items[0].id, escalation, "lx_wgz1")
    (town_task,) = [i.id for i in view.open_items if i.spec_id == "town_dispatch"]
    service.upload_attachment("lxz_pd", f"{IMG}{SQL}.png", PNG, case.business_key)
    key = case.business_key

    pages = {
        "lx_wgy1": ["/inbox", f"/cases/{key}", "/notifications", f"/inbox?q={SCRIPT}"],
        "lxz_pd": ["/inbox", f"/tasks/{town_task}", f"/cases/{key}", "/supervision", "/notifications"],
        "lxx_dc": [f"/cases/{key}"],
    }
    shown = set()
    for user, paths in pages.items():
        client = app.test_client()
        login(client, user)
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, (user, path, r.status_code)
            page = r.get_data(as_text=True)
            assert SCRIPT not in page and IMG not in page, (user, path)   # as text only, escaped
            shown |= {f for f in ("description", "location", "parties", "mediation_note", "escalation_reason")
                      if f"{f}:&lt;script&gt;alert(1)&lt;/script&gt;" in page}
    # every field was on some page, escaped (the check above is not vacuous)
    assert shown == {"description", "location", "parties", "mediation_note", "escalation_reason"}, shown

    # the SQL was data: stored and returned verbatim, every table still there
    token = app.test_client().post("/api/v1/auth/token", json={"username": "lxz_pd", "password": "demo123"})
    r = app.test_client().get(f"/api/v1/cases/{key}",
                              headers={"Authorization": f"Bearer {token.get_json()['token']}"})
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    data = r.get_json()["data"]
    assert all(data[f] == evil(f) for f in ("description", "location", "parties", "mediation_note"))
    assert all(c > 0 for c in _db_counts(service))


def test_oversized_uploads_on_the_web_pages_are_refused_and_change_nothing(service, tmp_path):
    from web import create_app
    service.attachments.root = tmp_path / "uploads"
    app = create_app({"TESTING": True, "SECRET_KEY": "s", "SERVICE": service, "WTF_CSRF_ENABLED": False,
                      "MAX_CONTENT_LENGTH": 256 * 1024, "UPLOAD_FOLDER": str(tmp_path / "uploads")})
    case = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    client = app.test_client()
    client.post("/login", data={"username": "lx_wgz1", "password": "demo123"})
    before = _db_counts(service)
    big = PNG + b"\0" * (512 * 1024)
    for path, extra in ((f"/cases/{case.business_key}/attachments", {}),
                        (f"/tasks/{case.open_items[0].id}", {"resolved": "true", "mediation_note": "附照片"})):
        r = client.post(path, data={**extra, "file": (io.BytesIO(big), "big.png")},
                        content_type="multipart/form-data")
        assert r.status_code == 413, path
        assert "上传的文件太大" in r.get_data(as_text=True)
    assert _db_counts(service) == before
    assert not (tmp_path / "uploads").exists() or not any(p.is_file() for p in (tmp_path / "uploads").rglob("*"))


def test_wrong_content_types_on_the_web_forms_change_nothing(service, app):
    case = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    task_id = case.open_items[0].id
    client = app.test_client()
    login(client, "lx_wgz1")
    from tests.helpers import csrf_token
    token = csrf_token(client, f"/tasks/{task_id}")
    before = _db_counts(service)
    for content_type, body in (("application/json", '{"resolved": true, "mediation_note": "x"}'),
                               ("text/plain", "resolved=true&mediation_note=x"),
                               ("application/xml", "<resolved>true</resolved>")):
        r = client.post(f"/tasks/{task_id}", data=body, content_type=content_type,
                        headers={"X-CSRFToken": token})
        assert r.status_code == 400, content_type
        assert "此项为必填" in r.get_data(as_text=True)
    assert _db_counts(service) == before


@pytest.mark.parametrize("name", ["../../../etc/passwd.png", "..\\..\\windows\\system32\\x.png",
                                  "/abs/path/现场.png", "\x00evil.png", "....png", "a/../../b/..png"])
def test_path_traversal_in_upload_names_through_the_web_page(service, app, name):
    case = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    client = app.test_client()
    login(client, "lx_wgz1")
    from tests.helpers import csrf_token
    r = client.post(f"/cases/{case.business_key}/attachments",
                    data={"csrf_token": csrf_token(client, f"/cases/{case.business_key}"),
                          "file": (io.BytesIO(PNG), name)}, content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)[:500]
    with service.db.read_session() as s:
        (att,) = s.scalars(select(Attachment).where(Attachment.case_id == case.id))
    assert att.filename and not {"/", "\\", "\x00"} & set(att.filename) and not att.filename.startswith(".")
    root = service.attachments.root.resolve()
    assert root in service.attachments.path(att.storage_path).parents
    r = client.get(f"/attachments/{att.id}")
    assert r.status_code == 200 and r.data == PNG


@pytest.mark.parametrize("name", ["a\r\nX-Injected: 1.png", "b\nSet-Cookie: session=x.png", 'c"; filename="evil.html'])
def test_header_injection_in_a_stored_file_name_is_neutralised_on_download(service, app, name):
    case = service.start_case("grid_matter", GRID, REPORT, "lx_wgy1")
    att = service.upload_attachment("lx_wgz1", name, PNG, case.business_key)
    client = app.test_client()
    login(client, "lx_wgz1")
    token = app.test_client().post("/api/v1/auth/token", json={"username": "lx_wgz1", "password": "demo123"})
    for r in (client.get(f"/attachments/{att.id}"),
              app.test_client().get(f"/api/v1/attachments/{att.id}",
                                    headers={"Authorization": f"Bearer {token.get_json()['token']}"})):
        assert r.status_code == 200 and r.data == PNG
        disposition = r.headers["Content-Disposition"]
        kind, options = parse_options_header(disposition)
        assert kind in ("attachment", "inline") and options == {"filename": att.filename}, disposition
        assert not {"\r", "\n", '"'} & set(att.filename)
        assert "X-Injected" not in r.headers and "session=x" not in r.headers.get("Set-Cookie", "")
