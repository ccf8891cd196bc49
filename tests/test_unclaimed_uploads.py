"""Uploads for a form that was never submitted (a report abandoned half-way, the photos of a
report sent twice) are removed by the timer worker after UNCLAIMED_UPLOAD_DAYS; those a form
took stay, whatever their age."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from engine.models import Attachment
from engine.service import UNCLAIMED_UPLOAD_DAYS
from engine.timers import TimerWorker
from tests.helpers import REPORT
from tests.test_hostile_input import PNG

GRID = "linxi-xinguang-g1"


def _ids(service) -> set[str]:
    with service.db.read_session() as session:
        return set(session.scalars(select(Attachment.id)))


def test_uploads_no_form_took_are_removed_after_a_week_with_their_files(service, clock):
    abandoned = service.upload_attachment("lx_wgy1", "abandoned.png", PNG)
    taken = service.upload_attachment("lx_wgy1", "taken.png", PNG)
    case = service.start_case("grid_matter", GRID, {**REPORT, "photos": [taken.id]}, "lx_wgy1")
    on_case = service.upload_attachment("lx_wgz1", "on_case.png", PNG, case.business_key)
    files = {a.id: service.attachments.path(a.storage_path) for a in (abandoned, taken, on_case)}
    assert all(path.exists() for path in files.values())

    clock.advance(days=UNCLAIMED_UPLOAD_DAYS, hours=-1)
    fresh = service.upload_attachment("lx_wgy1", "fresh.png", PNG)
    assert service.purge_unclaimed_uploads() == 0            # not a week old yet
    clock.advance(hours=2)
    assert service.purge_unclaimed_uploads() == 1
    assert _ids(service) == {taken.id, on_case.id, fresh.id}
    assert not files[abandoned.id].exists() and files[taken.id].exists() and files[on_case.id].exists()
    assert service.purge_unclaimed_uploads() == 0


def test_the_timer_worker_removes_them_in_its_hourly_round(service, clock):
    stale = service.upload_attachment("lx_wgy1", "stale.png", PNG)
    clock.advance(timedelta(days=UNCLAIMED_UPLOAD_DAYS + 1))
    TimerWorker(service).purge_unclaimed_uploads()
    assert stale.id not in _ids(service)
    assert not service.attachments.path(stale.storage_path).exists()
