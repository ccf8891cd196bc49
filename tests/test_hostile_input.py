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
