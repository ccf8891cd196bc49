"""Tamper evidence of the audit trail (issue 7, auditor point 4): every audit row is
chained to the previous row of its case, checkpoints chain the whole trail, and
`gridflow audit verify` reports every broken link. A one-byte change to any audit
row is detected."""
import json
import threading

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from engine import audit
from engine.models import AuditCheckpoint, AuditEvent, Case
from tests.helpers import REPORT, work

GRID = "linxi-xinguang-g1"


def closed_matter(service):
    case = service.start_case("grid_matter", GRID, dict(REPORT), "lx_wgy1")
    work(service, "lx_wgz1", "micro_mediation", {"resolved": True, "mediation_note": "双方达成谅解"})
    work(service, "lx_wgy1", "record_result", {"result_note": "已化解"})
    return case


def verify(db):
    with db.read_session() as session:
        return audit.verify(session)


def sql(db, statement, **params):
    with db.unit_of_work() as session:
        session.execute(text(statement), params)


def event_ids(db, case_id):
    with db.read_session() as session:
        return list(session.scalars(select(AuditEvent.id).where(AuditEvent.case_id == case_id)
                                    .order_by(AuditEvent.id)))


def test_an_untouched_trail_verifies_and_every_row_is_chained(service):
    first, second = closed_matter(service), closed_matter(service)
    checked, broken = verify(service.db)
    assert broken == []
    with service.db.read_session() as session:
        assert checked == session.scalar(select(func.count()).select_from(AuditEvent)) > 10
        for case in (first, second):
            rows = session.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id)
                                   .order_by(AuditEvent.id)).all()
            assert rows[0].prev_hash == ""
            assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:]))
            assert session.get(Case, case.id).audit_head == rows[-1].hash


def flip_last(col):
    return (f"{col} = SUBSTR({col}, 1, LENGTH({col}) - 1) || "
            f"CASE WHEN SUBSTR({col}, LENGTH({col}), 1) = '0' THEN '1' ELSE '0' END")


# Each column a forger could touch, and a one-character change to it.
ONE_BYTE_CHANGES = {
    "event_type": "event_type = event_type || 'x'",
    "data": "data = REPLACE(CAST(data AS TEXT), 'result_note', 'result_notf')",
    "at": None,  # a microsecond later, set below per database
    "actor_id": "actor_id = COALESCE(actor_id, 0) + 1",
    "bpmn_id": "bpmn_id = COALESCE(bpmn_id, '') || 'x'",
    "bpmn_name": "bpmn_name = COALESCE(bpmn_name, '') || 'x'",
    "flow_from": "flow_from = COALESCE(flow_from, '') || 'x'",
    "work_item_id": flip_last("work_item_id"),
    "case_id": None,  # moved to the other case, set below
    "hash": flip_last("hash"),
    "prev_hash": flip_last("prev_hash"),
}


@pytest.mark.parametrize("column", sorted(ONE_BYTE_CHANGES))
def test_a_one_byte_change_to_any_column_of_any_row_is_detected(service, column):
    case, other = closed_matter(service), closed_matter(service)
    ids = event_ids(service.db, case.id)
    # the row whose `data` holds the submitted note, so the data change really changes a byte
    with service.db.read_session() as session:
        target = session.scalar(select(AuditEvent.id).where(
            AuditEvent.case_id == case.id, AuditEvent.event_type == "task_completed",
            AuditEvent.bpmn_id == "record_result"))
    assert target in ids
    change = ONE_BYTE_CHANGES[column]
    if column == "at":
        interval = ("at + INTERVAL '1 microsecond'" if service.db.is_postgres
                    else "STRFTIME('%Y-%m-%d %H:%M:%f', at, '+0.001 seconds')")
        change = f"at = {interval}"
    elif column == "case_id":
        change = f"case_id = {other.id}"
    elif column == "data" and service.db.is_postgres:
        change = "data = CAST(REPLACE(CAST(data AS TEXT), 'result_note', 'result_notf') AS JSONB)"
    sql(service.db, f"UPDATE audit_event SET {change} WHERE id = :id", id=target)

    _, broken = verify(service.db)
    assert any(str(b).startswith(f"audit_event {target}:") for b in broken), \
        f"a change to {column} went unnoticed: {broken}"


def test_removing_or_adding_rows_is_detected(service):
    case = closed_matter(service)
    ids = event_ids(service.db, case.id)

    sql(service.db, "DELETE FROM audit_event WHERE id = :id", id=ids[3])
    _, broken = verify(service.db)
    assert any(f"audit_event {ids[4]}" in str(b) and "previous-row hash" in str(b) for b in broken)


def test_removing_the_newest_rows_is_detected_by_the_case_head(service):
    case = closed_matter(service)
    ids = event_ids(service.db, case.id)
    sql(service.db, "DELETE FROM audit_event WHERE id = :id", id=ids[-1])
    _, broken = verify(service.db)
    assert [str(b) for b in broken] == [f"case {case.business_key}: the last audit row is not the chain head "
                                        "the case recorded (rows at the end were removed or added)"]


def test_a_forged_row_appended_is_detected(service):
    case = closed_matter(service)
    sql(service.db, "INSERT INTO audit_event (case_id, event_type, at, data, prev_hash, hash) "
                    "SELECT case_id, 'task_completed', at, data, hash, hash FROM audit_event WHERE id = :id",
        id=event_ids(service.db, case.id)[-1])
    forged = max(event_ids(service.db, case.id))
    _, broken = verify(service.db)
    assert [str(b) for b in broken] == [f"audit_event {forged}: case {case.id}: content does not match its hash "
                                        "(the row was changed)"]


def test_a_whole_trail_removed_with_its_head_is_caught_by_the_checkpoint(service, clock):
    case, keep = closed_matter(service), closed_matter(service)
    with service.db.unit_of_work() as session:
        cp = audit.checkpoint(session, clock.now())
    assert cp.event_count == len(event_ids(service.db, case.id)) + len(event_ids(service.db, keep.id))
    assert verify(service.db)[1] == []

    # a careful forger: the case's rows and its head, together
    sql(service.db, "DELETE FROM audit_event WHERE case_id = :id", id=case.id)
    sql(service.db, "UPDATE gf_case SET audit_head = NULL WHERE id = :id", id=case.id)
    _, broken = verify(service.db)
    assert [b.where for b in broken] == [f"checkpoint {cp.id} ({cp.at:%Y-%m-%d %H:%M})"] * 2
    assert "rows were removed or added" in str(broken[0])


def test_checkpoints_chain_and_seal_only_new_rows(service, clock):
    closed_matter(service)
    with service.db.unit_of_work() as session:
        first = audit.checkpoint(session, clock.now())
        assert audit.checkpoint(session, clock.now()) is None  # nothing new
    closed_matter(service)
    with service.db.unit_of_work() as session:
        second = audit.checkpoint(session, clock.now())
    assert second.prev_digest == first.digest and second.first_event_id > first.last_event_id
    assert verify(service.db)[1] == []

    sql(service.db, "UPDATE audit_checkpoint SET prev_digest = 'x' WHERE id = :id", id=second.id)
    assert "does not follow the previous checkpoint" in str(verify(service.db)[1])


def test_two_checkpoints_at_once_cannot_fork_the_chain(service, clock):
    closed_matter(service)
    with service.db.unit_of_work() as session:
        audit.checkpoint(session, clock.now())
    closed_matter(service)
    # both read the same last checkpoint; the second insert is refused
    with pytest.raises(IntegrityError):
        with service.db.unit_of_work() as session:
            audit.checkpoint(session, clock.now())
            session.add(AuditCheckpoint(at=clock.now(), first_event_id=1, last_event_id=1, event_count=0,
                                        prev_digest=session.scalars(select(AuditCheckpoint.prev_digest)
                                                                    .order_by(AuditCheckpoint.id.desc())).first(),
                                        digest="x"))
            session.flush()
    assert verify(service.db)[1] == []


def test_concurrent_writers_to_one_case_never_fork_its_chain(service):
    """Two officials acting on the same case at the same moment: one wins, the chain stays linear."""
    case = service.start_case("grid_matter", GRID, dict(REPORT), "lx_wgy1")
    item = case.open_items[0].id
    errors = []

    def claim_and_release(user):
        try:
            service.claim(item, user)
        except Exception as exc:  # noqa: BLE001 -- the loser's Conflict/PermissionDenied is expected
            errors.append(exc)

    threads = [threading.Thread(target=claim_and_release, args=(u,)) for u in ("lx_wgz1", "lx_wgy1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert verify(service.db)[1] == []


def test_cli_verify_exit_codes(service, monkeypatch):
    from engine.cli import main
    closed_matter(service)
    monkeypatch.setenv("DATABASE_URL", str(service.db.engine.url.render_as_string(hide_password=False)))
    runner = CliRunner()
    result = runner.invoke(main, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert "0 broken link(s)" in result.output
    assert runner.invoke(main, ["audit", "checkpoint"]).exit_code == 0

    sql(service.db, "UPDATE audit_event SET event_type = 'x' WHERE id = (SELECT MIN(id) FROM audit_event)")
    result = runner.invoke(main, ["audit", "verify"])
    assert result.exit_code == 1
    assert "content does not match its hash" in result.output
    assert "0 broken link(s)" not in result.output


def test_rows_written_before_the_chain_existed_are_sealed_by_the_migration(tmp_path):
    """An upgraded database verifies from the start: revision 0007 chains the old rows."""
    from engine import schema
    from engine.db import Database
    db = Database(f"sqlite:///{tmp_path / 'old.sqlite'}")
    schema.upgrade(db, "0006")
    with db.engine.begin() as conn:
        conn.execute(text("INSERT INTO jurisdiction_node (id, code, name, level, path) "
                          "VALUES (1, 'g', 'g', 'grid', '/1/')"))
        conn.execute(text("INSERT INTO process_version (id, process_key, version, name, content_hash, files, "
                          "properties, deployed_at) VALUES (1, 'p', 1, 'p', 'h', '{}', '{}', '2026-01-01 00:00:00')"))
        conn.execute(text("INSERT INTO gf_case (id, business_key, process_key, process_version_id, grid_id, "
                          "grid_path, status, title, summary, created_at, updated_at, timer_failures, row_version) "
                          "VALUES (7, 'K-1', 'p', 1, 1, '/1/', 'open', '', '{}', '2026-01-01 00:00:00', "
                          "'2026-01-01 00:00:00', 0, 1)"))
        for n in range(3):
            conn.execute(text("INSERT INTO audit_event (case_id, event_type, at, data) "
                              f"VALUES (7, 'step', '2026-01-01 00:00:0{n}.000123', '{{\"n\": {n}}}')"))
    schema.upgrade(db)
    with db.read_session() as session:
        checked, broken = audit.verify(session)
    db.dispose()
    assert (checked, broken) == (3, [])


@pytest.mark.parametrize("data", [
    {}, {"again": True, "iterations": 100}, {"type": "ScriptTask"}, {"note": "已化解", "by": None},
    {"role": "grid_worker", "node_id": 16, "assignee_id": None, "candidates": [1, 2]},
    {"tags": ("a", "b")}, {1: "number key"}, {"score": 4.5}, {"nested": {"a": [1, {"b": 2}]}},
    {"big": 2 ** 70}, {"flag": False, "list": []}, {"mixed": [1, "x", None, True, 2.5]},
])
def test_event_data_is_hashed_as_the_database_hands_it_back(data):
    from engine.audit import _as_stored
    stored = _as_stored(data)
    assert stored == json.loads(json.dumps(data, ensure_ascii=False))
    assert json.dumps(stored, sort_keys=True) == json.dumps(json.loads(json.dumps(data)), sort_keys=True)
    assert stored is not data   # a copy: the caller's dict may change afterwards
