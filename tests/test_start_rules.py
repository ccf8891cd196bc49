"""Who may start what, and where: a role held in a department (信访局, 司法所 …)
starts cases in the grids under the node the department belongs to."""
from datetime import datetime, timedelta, timezone

from engine.service import _due_at


def test_dispatchers_do_not_report_grid_matters_but_may_start_mediations(service):
    started_by_dispatcher = {o.process_key for o in service.startable("lxz_pd")}
    assert "grid_matter" not in started_by_dispatcher and "mediation" in started_by_dispatcher


def test_a_department_officer_starts_cases_in_the_grids_of_its_county(service):
    options = {o.process_key: o for o in service.startable("lxx_xf")}   # 林西县信访局
    assert "petition" in options
    grids = [code for code, _name, _id in options["petition"].grids]
    assert "linxi-xinguang-g1" in grids and "wuyuan-maojiaqiao-g1" not in grids
    mediator = {o.process_key: o for o in service.startable("lx_tjy")}  # 林西镇司法所 mediator
    assert [c for c, _name, _id in mediator["mediation"].grids][:1] == ["linxi-xinguang-g1"]


def test_due_date_from_a_data_field_whose_name_starts_with_p():
    now = datetime(2026, 3, 2, tzinfo=timezone.utc)
    assert _due_at("performance_deadline", {"performance_deadline": 5}, now) == now + timedelta(days=5)
    assert _due_at("P3D", {}, now) == now + timedelta(days=3)
