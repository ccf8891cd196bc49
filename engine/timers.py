"""The timer worker: fires due BPMN timers (legal time limits, escalations,
reminders), exactly once in effect, with several workers, after downtime too.

Every transition stores the case's next timer due time in `gf_case.next_timer_at`
(indexed). A worker repeatedly takes the due cases in due order and, for each,
in one transaction: locks the row (`FOR UPDATE SKIP LOCKED` on PostgreSQL, so
two workers never take the same case; SQLite has one writer), re-checks that it
is still due, fires, saves. A worker that was down fires the backlog, oldest
first, when it comes back.

A case whose timers fail to fire (a script error after a timer, say) is retried
with exponential backoff; after `max_failures` attempts it becomes an incident
(with the error) for the admins, who are notified, and its timers stop until it
is resolved (`/admin/incidents`).
"""
from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import audit, clock
from .db import DATABASE_UNAVAILABLE, deferred_inserts, driver_message
from .models import Case, Incident
from .service import WorkflowService

log = logging.getLogger("gridflow.timers")


@dataclass
class RunStats:
    fired: int = 0
    skipped: int = 0
    failed: int = 0
    incidents: int = 0


class TimerWorker:
    def __init__(self, service: WorkflowService, batch: int = 200, max_failures: int = 5,
                 backoff: timedelta = timedelta(minutes=1), per_transaction: int | None = None):
        self.service = service
        self.db = service.db
        self.batch = batch
        # SQLite has one writer: short transactions keep the web responsive while a backlog fires
        self.per_transaction = per_transaction or (50 if service.db.is_postgres else 10)
        self.max_failures = max_failures
        self.backoff = backoff

    # Strictly before now: SpiffWorkflow fires a timer only once its time is in the past,
    # so a case due exactly now would be taken, not fire, and be taken again forever.
    def due_case_ids(self, now: datetime, limit: int | None = None) -> list[int]:
        return [case_id for case_id, _due in self._due(now, limit)]

    def _due(self, now: datetime, limit: int | None = None) -> list[tuple[int, datetime]]:
        with self.db.read_session() as session:
            return list(session.execute(
                select(Case.id, Case.next_timer_at).where(Case.status == "open", Case.next_timer_at < now)
                .order_by(Case.next_timer_at, Case.id).limit(limit or self.batch)))

    def fire_case(self, case_id: int, now: datetime) -> bool:
        """Fire one case's due timers; False if it was not due (any more) or is being
        fired by another worker right now."""
        try:
            with self.db.unit_of_work() as session:
                query = select(Case).where(Case.id == case_id, Case.status == "open", Case.next_timer_at < now)
                query = query.with_for_update(skip_locked=True) if self.db.is_postgres else query
                case = session.scalar(query)
                if case is None:
                    return False
                due = case.next_timer_at
                self.service.fire_loaded_case(session, case)
                self._record_fired(session, case, due)
                return True
        except Exception as exc:  # a failing case must not stop the others
            self._record_failure(case_id, now, exc)
            raise

    def _record_failure(self, case_id: int, now: datetime, exc: Exception) -> None:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        with self.db.unit_of_work() as session:
            case = session.get(Case, case_id)
            if case is None:
                return
            case.timer_failures = (case.timer_failures or 0) + 1
            if case.timer_failures >= self.max_failures:
                session.add(Incident(case_id=case.id, kind="timer", error=error[:4000],
                                     attempts=case.timer_failures, created_at=now))
                audit.record(session, case, "incident", now,
                             data={"kind": "timer", "error": error[:1000], "attempts": case.timer_failures})
                case.next_timer_at = None  # stop retrying: an admin has to look at it
                self.service.notifier.incident(session, case, error[:500], now)
                log.error("case %s: timers failed %d times, incident raised: %s",
                          case.business_key, case.timer_failures, error)
            else:
                case.next_timer_at = now + self.backoff * (2 ** (case.timer_failures - 1))
                log.warning("case %s: firing timers failed (attempt %d), retry at %s: %s",
                            case.business_key, case.timer_failures, case.next_timer_at, error)

    def fire_batch(self, case_ids: list[int], now: datetime) -> int:
        """Fire many due cases in ONE transaction: their rows locked in one query (skipping
        rows another worker holds), states and open tasks read in two more, the audit and
        notification rows written in one INSERT each. Any error rolls the whole batch back
        and raises; the caller then fires those cases one by one, so the failing case is
        retried and reported on its own and the others still fire. Returns how many fired."""
        with self.db.unit_of_work() as session:
            query = (select(Case).where(Case.id.in_(case_ids), Case.status == "open", Case.next_timer_at < now)
                     .order_by(Case.next_timer_at, Case.id))
            query = query.with_for_update(skip_locked=True) if self.db.is_postgres else query
            cases = list(session.scalars(query))
            if not cases:
                return 0
            self.service.prefetch_for_firing(session, cases)
            with deferred_inserts(session), session.no_autoflush:
                for case in cases:
                    due = case.next_timer_at
                    self.service.fire_loaded_case(session, case)
                    self._record_fired(session, case, due)
                # the rows of all the cases together: one executemany per table
                self.service.write_transitions(session)
            return len(cases)

    @staticmethod
    def _record_fired(session, case: Case, due: datetime) -> None:
        audit.record(session, case, "timers_fired", clock.now(),
                     data={"due": due.isoformat(), "next": case.next_timer_at.isoformat()
                           if case.next_timer_at else None})
        case.timer_failures = 0

    def run_once(self, now: datetime | None = None) -> RunStats:
        """Fire everything due by `now` (the engine clock by default), in due order:
        `per_transaction` cases at a time, falling back to one case per transaction
        for a batch that failed."""
        now = now or clock.now()
        stats = RunStats()
        taken: dict[int, datetime] = {}   # case -> the due time it had when this run took it
        stuck: set[int] = set()           # taken, yet still due at that same time
        while True:
            due = self._due(now, self.batch + len(stuck))
            # a case still showing the due time it was taken with did not move (its timer
            # did not fire): leave it for the next look rather than take it again and again
            stuck.update(case_id for case_id, at in due if taken.get(case_id) == at)
            ids = [case_id for case_id, _at in due if case_id not in stuck][:self.batch]
            if not ids:
                return stats
            taken.update((case_id, at) for case_id, at in due if case_id in ids)
            progressed = False
            for start in range(0, len(ids), self.per_transaction):
                chunk = ids[start:start + self.per_transaction]
                try:
                    fired = self.fire_batch(chunk, now) if len(chunk) > 1 else None
                except Exception as exc:  # noqa: BLE001 -- retried case by case just below
                    log.info("a batch of %d cases failed (%s); firing them one by one", len(chunk), exc)
                    fired = None
                if fired is not None:
                    stats.fired += fired
                    stats.skipped += len(chunk) - fired
                    progressed = progressed or fired > 0
                    continue
                for case_id in chunk:
                    try:
                        if self.fire_case(case_id, now):
                            stats.fired += 1
                            progressed = True
                        else:
                            stats.skipped += 1
                    except Exception:
                        stats.failed += 1
                        progressed = True
            if not progressed:
                return stats  # all remaining are locked by other workers

    def run_forever(self, stop: threading.Event, interval: float = 5.0,
                    checkpoint_every: timedelta = timedelta(hours=1),
                    rollups_every: timedelta = timedelta(seconds=30)) -> None:
        from .scheduled_starts import ScheduledStarts
        scheduled = ScheduledStarts(self.service)
        log.info("timer worker started (batch %d, every %.1fs)", self.batch, interval)
        next_checkpoint = next_rollups = clock.now()
        while not stop.is_set():
            try:
                stats = self.run_once()
                scheduled.run_safely()   # timer start events: new cases on a schedule
                if stats.fired or stats.failed:
                    log.info("fired %d, failed %d, skipped %d", stats.fired, stats.failed, stats.skipped)
                if clock.now() >= next_checkpoint:
                    self.seal_audit_trail()
                    self.refresh_statistics()
                    self.purge_unclaimed_uploads()
                    next_checkpoint = clock.now() + checkpoint_every
                if clock.now() >= next_rollups:
                    self.refresh_rollups()
                    next_rollups = clock.now() + rollups_every
            except DATABASE_UNAVAILABLE as exc:
                # the database went away (restarted, unreachable): nothing of this round was
                # committed half-way (each firing is its own transaction), so wait and take the
                # due timers again; the worker must outlive the outage, not end with it
                log.error("database unavailable, retrying in %.0f s: %s", interval, driver_message(exc))
            stop.wait(interval)
        log.info("timer worker stopped")

    def refresh_rollups(self) -> None:
        """Take the cases written since the last round into the dashboard roll-ups
        (engine/rollup.py), once they are built (`gridflow metrics refresh`)."""
        from . import rollup
        round_size, taken = 500, 0
        try:
            while True:   # short transactions: completions never wait long for the write lock
                with self.db.unit_of_work() as session:
                    if not rollup.is_built(session):
                        return
                    done = rollup.refresh(session, clock.now(), limit=round_size)
                taken += done
                if done < round_size:
                    break
            if taken:
                log.info("dashboard roll-ups: %d cases taken in", taken)
        except Exception:   # the figures stay exact meanwhile (dirty cases are read live)
            log.exception("dashboard roll-up refresh failed; next round retries")

    def purge_unclaimed_uploads(self) -> None:
        """Uploads no form took within a week (`WorkflowService.purge_unclaimed_uploads`);
        a failure waits for the next round: it must not stop the timers."""
        try:
            removed = self.service.purge_unclaimed_uploads()
            if removed:
                log.info("removed %d uploads no submitted form took", removed)
        except Exception as exc:  # noqa: BLE001 -- maintenance, retried next round
            log.warning("unclaimed uploads not removed (next round retries): %s", exc)

    def refresh_statistics(self) -> None:
        """SQLite's planner statistics, as the data grows (`Database.refresh_statistics`).
        A failure (the database busy past its timeout) waits for the next round: it must
        not stop the timers."""
        try:
            self.db.refresh_statistics()
        except Exception as exc:  # noqa: BLE001 -- maintenance, retried next round
            log.warning("planner statistics not refreshed (next round retries): %s", exc)

    def seal_audit_trail(self) -> None:
        """An audit checkpoint (engine/audit.py); another worker sealing at the same
        moment wins, and this one simply leaves it to the next round."""
        try:
            with self.db.unit_of_work() as session:
                cp = audit.checkpoint(session, clock.now())
            if cp:
                log.info("audit checkpoint %d: %d rows up to %d", cp.id, cp.event_count, cp.last_event_id)
        except IntegrityError:
            log.info("audit checkpoint taken by another worker")
