"""The audit trail: the one place audit rows are written, and its tamper evidence.

Every writer (transitions, claims, 督办, timers, incidents, migrations, views of
personal data) goes through `append` or `record`; no code path updates or
deletes audit rows.

Tamper evidence. Each row stores `prev_hash` (the hash of the previous row of
its case, "" for the first) and `hash` = SHA-256 over prev_hash and the row's
canonical content. The case row keeps the head of its chain (`audit_head`);
because the case row is version-checked on every write, two transactions can
never both extend the same head. A checkpoint (`gridflow audit checkpoint`,
also taken by the timer worker) seals the hashes of all rows since the last
checkpoint into a global chain, so deleting a case's whole trail (and
rewriting its head) is detected too. `verify` recomputes everything and reports
every broken link.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select

from .db import insert_rows

from .models import AuditCheckpoint, AuditEvent, Case

_COLUMNS = ("case_id", "work_item_id", "event_type", "actor_id", "at", "bpmn_id", "bpmn_name", "flow_from", "data")
CANONICAL_VERSION = "v1"


@dataclass(slots=True)
class Event:
    """An audit row about to be appended. Audit rows go in by a plain INSERT and are never
    read back in the transaction that writes them, so they are not built as ORM objects."""
    event_type: str
    at: datetime
    case_id: int | None = None
    work_item_id: str | None = None
    actor_id: int | None = None
    bpmn_id: str | None = None
    bpmn_name: str | None = None
    flow_from: str | None = None
    data: dict | None = None


def canonical(row: dict) -> str:
    """The content a row's hash covers: every column but id and the hashes, in a form that
    survives the round trip through either database (UTC microseconds, sorted JSON)."""
    at = row["at"]
    if isinstance(at, datetime):
        at = at.astimezone(timezone.utc).isoformat(timespec="microseconds")
    payload = [CANONICAL_VERSION, row["case_id"], row["work_item_id"], row["event_type"], row["actor_id"], at,
               row["bpmn_id"], row["bpmn_name"], row["flow_from"], row["data"] or {}]
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def chain_hash(prev_hash: str, row: dict) -> str:
    return hashlib.sha256((prev_hash + "\n" + canonical(row)).encode("utf-8")).hexdigest()


_PLAIN = (str, int, bool, type(None))


def _as_stored(data: dict) -> dict:
    """`data` as a JSON column hands it back. Text keys with text, whole-number, true/false or
    null values (or lists of those), as most events carry, come back as they are: a copy. Anything
    else takes the JSON round trip (a tuple comes back a list, a number key as text …)."""
    if all(type(key) is str and (type(value) in _PLAIN
                                 or type(value) is list and all(type(item) in _PLAIN for item in value))
           for key, value in data.items()):
        return dict(data)
    return json.loads(json.dumps(data, ensure_ascii=False))


def append(session, case: Case, events: list[Event]) -> None:
    """Append events of one case, in order, in the caller's transaction (one multi-row
    INSERT, or part of a batch's: audit rows are never read back in the same transaction).
    Moves the case's chain head, which the case row's version check guards."""
    if not events:
        return
    head = case.audit_head or ""
    rows = []
    for e in events:
        row = {c: getattr(e, c) for c in _COLUMNS}
        row["case_id"] = case.id
        # the value the database will hand back, so the hash verifies after the round trip
        row["data"] = _as_stored(e.data or {})
        row["prev_hash"] = head
        head = row["hash"] = chain_hash(head, row)
        rows.append(row)
    case.audit_head = head  # before the INSERT, whose autoflush then writes the case row once
    insert_rows(session, AuditEvent, rows)


def record(session, case: Case, event_type: str, at: datetime, *, actor_id: int | None = None,
           work_item_id: str | None = None, bpmn_id: str | None = None, bpmn_name: str | None = None,
           data: dict | None = None) -> None:
    """Append one event."""
    append(session, case, [Event(case_id=case.id, work_item_id=work_item_id, event_type=event_type,
                                 actor_id=actor_id, at=at, bpmn_id=bpmn_id, bpmn_name=bpmn_name,
                                 data=data or {})])


# ------------------------------------------------------------ checkpoints

def _digest(prev: str, hashes) -> str:
    h = hashlib.sha256(prev.encode("ascii"))
    for one in hashes:
        h.update(b"\n" + (one or "").encode("ascii"))
    return h.hexdigest()


def checkpoint(session, at: datetime) -> AuditCheckpoint | None:
    """Seal every row written since the last checkpoint into the global chain.
    None when nothing new was written."""
    last = session.scalar(select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1))
    start = last.last_event_id if last else 0
    hashes = session.execute(select(AuditEvent.id, AuditEvent.hash).where(AuditEvent.id > start)
                             .order_by(AuditEvent.id)).all()
    if not hashes:
        return None
    prev = last.digest if last else ""
    cp = AuditCheckpoint(at=at, first_event_id=hashes[0][0], last_event_id=hashes[-1][0], event_count=len(hashes),
                         prev_digest=prev, digest=_digest(prev, (h for _, h in hashes)))
    session.add(cp)
    session.flush()
    return cp


# ------------------------------------------------------------ verification

@dataclass(frozen=True)
class BrokenLink:
    where: str      # "audit_event 123", "case LX-2026-000001", "checkpoint 4"
    problem: str

    def __str__(self):
        return f"{self.where}: {self.problem}"


def verify(session, batch: int = 5000) -> tuple[int, list[BrokenLink]]:
    """Recompute every case chain and the checkpoint chain. Returns (rows checked, broken links).
    Streams the trail in id order, so memory stays flat however long it is."""
    broken: list[BrokenLink] = []
    heads: dict[int, str] = {}          # case id -> hash of its latest row seen so far
    checked = 0
    last_id = 0
    cols = [getattr(AuditEvent, c) for c in ("id", "prev_hash", "hash") + _COLUMNS]
    while True:
        rows = session.execute(select(*cols).where(AuditEvent.id > last_id)
                               .order_by(AuditEvent.id).limit(batch)).mappings().all()
        if not rows:
            break
        for r in rows:
            checked += 1
            last_id = r["id"]
            where = f"audit_event {r['id']}"
            if r["case_id"] is None:
                broken.append(BrokenLink(where, "row belongs to no case"))
                continue
            expected_prev = heads.get(r["case_id"], "")
            if (r["prev_hash"] or "") != expected_prev:
                broken.append(BrokenLink(where, f"case {r['case_id']}: previous-row hash does not match "
                                                "(a row before it was removed, added or changed)"))
            if r["hash"] != chain_hash(r["prev_hash"] or "", dict(r)):
                broken.append(BrokenLink(where, f"case {r['case_id']}: content does not match its hash "
                                                "(the row was changed)"))
            heads[r["case_id"]] = r["hash"] or ""
    for case_id, key, head in session.execute(select(Case.id, Case.business_key, Case.audit_head)):
        if (head or "") != heads.get(case_id, ""):
            broken.append(BrokenLink(f"case {key}", "the last audit row is not the chain head the case "
                                                    "recorded (rows at the end were removed or added)"))
    broken.extend(_verify_checkpoints(session))
    return checked, broken


def _verify_checkpoints(session) -> list[BrokenLink]:
    broken = []
    prev_digest, prev_last = "", 0
    for cp in session.scalars(select(AuditCheckpoint).order_by(AuditCheckpoint.id)):
        where = f"checkpoint {cp.id} ({cp.at:%Y-%m-%d %H:%M})"
        if cp.prev_digest != prev_digest:
            broken.append(BrokenLink(where, "does not follow the previous checkpoint"))
        hashes = session.execute(select(AuditEvent.id, AuditEvent.hash)
                                 .where(AuditEvent.id > prev_last, AuditEvent.id <= cp.last_event_id)
                                 .order_by(AuditEvent.id)).all()
        if len(hashes) != cp.event_count:
            broken.append(BrokenLink(where, f"sealed {cp.event_count} rows, {len(hashes)} are there now "
                                            "(rows were removed or added)"))
        if _digest(cp.prev_digest, (h for _, h in hashes)) != cp.digest:
            broken.append(BrokenLink(where, "the rows it sealed have changed"))
        prev_digest, prev_last = cp.digest, cp.last_event_id
    return broken


def count_events(session) -> int:
    return session.scalar(select(func.count()).select_from(AuditEvent)) or 0
