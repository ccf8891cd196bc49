"""Who may see a case, start a process, and upload or read its files."""
import pytest

from engine.errors import InvalidInput, NotFound, PermissionDenied
from tests.helpers import REPORT, work

PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def start(service, **overrides):
    return service.start_case("grid_matter", "linxi-xinguang-g1", {**REPORT, **overrides}, "lx_wgy1")


@pytest.mark.parametrize("username,sees", [
    ("lx_wgy1", True),    # reporter, grid worker of the grid
    ("lx_wgz1", True),    # grid leader of the grid
    ("lxz_pd", True),     # town dispatcher: the grid lies under the town
    ("lxx_dc", True),     # county auditor
    ("cf_pd", True),      # city dispatcher
    ("lx_wgy3", False),   # grid worker of another grid
    ("lxz_cg", False),    # a department not (yet) involved
    ("wy_wgy1", False),   # another city
    ("wyx_pd", False),    # another county's dispatcher
])
def test_case_visibility_follows_the_jurisdiction_tree(service, username, sees):
    case = start(service)
    if sees:
        assert service.view_case(username, case.business_key).case.id == case.id
    else:
        with pytest.raises(PermissionDenied):
            service.view_case(username, case.business_key)


def test_a_department_sees_the_cases_dispatched_to_it(service):
    case = start(service, colour="red", category="public_order")
    with pytest.raises(PermissionDenied):
        service.view_case("lxz_pcs", case.business_key)
    work(service, "lxz_pd", "town_dispatch", {"department": "paichusuo"})
    assert service.view_case("lxz_pcs", case.business_key).case.id == case.id
    with pytest.raises(PermissionDenied):
        service.view_case("lxz_cg", case.business_key)


def test_case_detail_has_path_highlights_and_names(service):
    case = start(service)
    work(service, "lx_wgz1", "micro_mediation", {"resolved": True, "mediation_note": "ok"})
    detail = service.view_case("lxz_pd", case.business_key)
    assert detail.highlights["completed"][:4] == ["start", "decide_dispatch", "gw_level", "micro_mediation"]
    assert "flow_to_grid" in detail.highlights["flows"] and detail.highlights["active"] == ["record_result"]
    assert detail.diagram_xml.startswith("<?xml") and "bpmndi:BPMNDiagram" in detail.diagram_xml
    assert "孙丽娟" in detail.user_names.values()   # the grid leader who completed a step


def test_startable_processes_and_grids(service):
    options = {o.process_key: o for o in service.startable("lx_wgy1")}
    assert [(code, name) for code, name, _id in options["grid_matter"].grids] == [("linxi-xinguang-g1", "新光社区第一网格")]
    assert options["grid_matter"].start_form == "grid_matter_report"
    # dispatchers don't report grid matters (they may start other processes, e.g. a mediation)
    assert "grid_matter" not in {o.process_key for o in service.startable("lxz_pd")}
    assert service.startable("lxz_cg") == []       # a department handler starts nothing
    assert service.startable("lxx_dc") == []       # auditors start nothing


def test_auditor_cannot_start_claim_complete_or_upload(service):
    case = start(service)
    task_id = case.open_items[0].id
    with pytest.raises(PermissionDenied):
        service.start_case("grid_matter", "linxi-xinguang-g1", REPORT, "lxx_dc")
    with pytest.raises(PermissionDenied):
        service.claim(task_id, "lxx_dc")
    with pytest.raises(PermissionDenied):
        service.complete_task(task_id, {"resolved": True, "mediation_note": "x"}, "lxx_dc")
    with pytest.raises(PermissionDenied):
        service.upload_attachment("lxx_dc", "p.png", PNG, case.business_key)


def test_photos_uploaded_before_the_start_are_linked_to_the_case(service):
    att = service.upload_attachment("lx_wgy1", "现场照片.png", PNG)
    case = start(service, photos=[att.id])
    meta, path = service.open_attachment("lxz_pd", att.id)
    assert meta.case_id == case.id and meta.content_type == "image/png" and path.read_bytes() == PNG
    with pytest.raises(PermissionDenied):
        service.open_attachment("lx_wgy3", att.id)
    # someone else's pending upload cannot be claimed
    other = service.upload_attachment("lx_wgy3", "b.png", PNG)
    with pytest.raises(InvalidInput, match="upload it again"):
        start(service, photos=[other.id])
    with pytest.raises(NotFound):
        service.open_attachment("lx_wgy1", other.id)


@pytest.mark.parametrize("name,data,message", [
    ("notes.png", b"just text, not an image", "not an accepted file type"),
    ("big.png", PNG + b"\0" * (10 * 1024 * 1024), "limit"),
    ("empty.pdf", b"", "not an accepted file type"),
])
def test_bad_uploads_are_refused_with_a_reason(service, name, data, message):
    with pytest.raises(InvalidInput, match=message):
        service.upload_attachment("lx_wgy1", name, data)


PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32 + b"\xff\xd9"


@pytest.mark.parametrize("name,data,en,zh", [
    ("scan.pdf", PNG, "named .pdf but holds a PNG image", "文件名为 .pdf，但内容是 PNG 图片；请改正文件名或重新选择文件"),
    ("现场.JPG", PDF, "named .jpg but holds a PDF document", "文件名为 .jpg，但内容是 PDF 文件"),
    ("photo.png", JPEG, "named .png but holds a JPEG image", "内容是 JPEG 图片"),
], ids=["pdf-holding-png", "jpg-holding-pdf", "png-holding-jpeg"])
def test_a_name_saying_another_type_than_the_content_is_refused(service, tmp_path, name, data, en, zh):
    """Stored under its name, x.pdf holding a PNG would be opened, forwarded and archived as a
    PDF it is not: the official is told what the file really is, and nothing is stored."""
    service.attachments.root = tmp_path / "uploads"
    with pytest.raises(InvalidInput, match=en) as refused:
        service.upload_attachment("lx_wgy1", name, data)
    assert zh in refused.value.text("zh") and name in refused.value.text("zh")
    assert not service.attachments.root.exists() or not any(service.attachments.root.rglob("*"))


def test_a_file_too_large_and_named_as_another_type_is_told_both(service, tmp_path):
    """A 12 MB PNG named .pdf: the size limit of a PNG and the wrong name, in one refusal."""
    service.attachments.root = tmp_path / "uploads"
    with pytest.raises(InvalidInput, match="over the 10 MB limit for a PNG image, and it is named .pdf but holds "
                                           "a PNG image") as refused:
        service.upload_attachment("lx_wgy1", "scan.pdf", PNG + b"\0" * (12 * 1024 * 1024))
    assert "超过此类文件的上限 10 MB；文件名为 .pdf，与内容不符" in refused.value.text("zh")
    assert refused.value.field_texts("zh") == {"file": ["不能超过 10 MB", "文件名为 .pdf，但内容是 PNG 图片；请改正文件名"]}
    assert not service.attachments.root.exists() or not any(service.attachments.root.rglob("*"))


@pytest.mark.parametrize("name,data,content_type", [
    ("scan.PDF", PDF, "application/pdf"), ("现场.jpeg", JPEG, "image/jpeg"), ("IMG_0001.JPG", JPEG, "image/jpeg"),
    ("mmexport1690000000000", PNG, "image/png"),          # a phone's name with no ending: the content decides
    ("现场照片2026.3.2", JPEG, "image/jpeg"),              # a date in the name is no file type
], ids=["pdf", "jpeg", "upper-case-jpg", "no-ending", "date-in-name"])
def test_a_name_that_agrees_with_the_content_or_says_no_type_is_accepted(service, tmp_path, name, data, content_type):
    service.attachments.root = tmp_path / "uploads"
    assert service.upload_attachment("lx_wgy1", name, data).content_type == content_type


def test_upload_to_a_case_needs_an_open_task_there(service):
    case = start(service)
    att = service.upload_attachment("lx_wgz1", "../../etc/passwd.png", PNG, case.business_key)
    assert att.filename == "passwd.png" and ".." not in att.storage_path
    with pytest.raises(PermissionDenied):
        service.upload_attachment("lxz_pd", "p.png", PNG, case.business_key)   # sees it, has no task in it
    with pytest.raises(PermissionDenied):
        service.upload_attachment("lx_wgy3", "p.png", PNG, case.business_key)  # outside the jurisdiction
