"""Timer start events: processes the engine starts by itself on a schedule.

SpiffWorkflow runs a timer start event inside one instance; it has no notion of
"start a new instance every month". A deployed process declares that on its
start event:

    <bpmn:startEvent id="monthly">
      <spiffworkflow:property name="schedule" value="R/2026-01-01T01:00:00+08:00/P1M" />  <!-- ISO 8601 -->
      <spiffworkflow:property name="scheduleFor" value="grid_worker" />                    <!-- one per holder -->
      <bpmn:timerEventDefinition><bpmn:timeDate>scheduled_for</bpmn:timeDate></bpmn:timerEventDefinition>

The timer worker calls `ScheduledStarts.run_once()` on every loop. For the latest
period that has begun it starts one case per holder of the `scheduleFor` role
(at their grid, as them), with `scheduled_for` = the period's moment, so the
start event's timer has fired by the time the case runs. A row in
`scheduled_start` keyed (process, period, person) is inserted and committed
before the case is started: with two workers, the second one's insert fails
and it moves on, so every person gets exactly one case per period. A start
that fails gives its key back, to be tried on the next loop. A worker that was
down starts the latest period when it comes back (earlier missed periods are
not back-filled: an evaluation of a month long past is no use).

The reverse evaluation (逆向考评) is the shipped example: the start data names the
units that handled the person's matters in the previous period.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import distinct, exists, func, select
from sqlalchemy.exc import IntegrityError
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from . import clock
from .models import (DEPARTMENT, Case, JurisdictionNode, RoleAssignment, ScheduledStart, User, WorkItem,
                     latest_versions)

log = logging.getLogger("gridflow.scheduled")

BPMN = "{http://www.omg.org/spec/BPMN/20100524/MODEL}"
SPIFF = "{http://spiffworkflow.org/bpmn/schema/1.0/core}"
EVALUATED_DEPT_TYPES = ("chengguan", "zhujian", "paichusuo", "sifasuo", "minzheng")


@dataclass
class Schedule:
    process_key: str
    start: datetime
    every: str            # ISO duration of one period, e.g. P1M
    role: str             # one case per holder of this role (at a grid)

    def step(self, moment: datetime) -> datetime:
        parsed = TimerEventDefinition.parse_iso_duration(self.every)
        return moment + TimerEventDefinition.get_timedelta_from_start(parsed, moment)

    def latest(self, now: datetime) -> tuple[datetime, datetime] | None:
        """(start of the period before, start of the latest period that has begun), or None."""
        if now < self.start:
            return None
        previous, moment = None, self.start
        while True:
            following = self.step(moment)
            if following > now:
                break
            previous, moment = moment, following
        if previous is None:   # the first period: the one before it has the same length
            previous = moment - (self.step(moment) - moment)
        return previous, moment


def read_schedule(process_key: str, files: dict[str, str]) -> Schedule | None:
    """The schedule of a process's timer start event, if it declares one."""
    for text in files.values():
        try:
            root = ET.fromstring(text.encode("utf-8"))
        except ET.ParseError:
            continue
        for process in root.iter(f"{BPMN}process"):
            if process.get("id") != process_key:
                continue
            for event in process.findall(f"{BPMN}startEvent"):
                if event.find(f"{BPMN}timerEventDefinition") is None:
                    continue
                props = {p.get("name"): p.get("value") for p in event.iter(f"{SPIFF}property")}
                if not props.get("schedule"):
                    continue
                parts = props["schedule"].strip().split("/")
                if len(parts) != 3 or not parts[0].upper().startswith("R"):
                    log.error("%s: schedule %r is not R/<start>/<duration>", process_key, props["schedule"])
                    return None
                start = datetime.fromisoformat(parts[1])
                if start.tzinfo is None:
                    log.error("%s: the schedule's start needs a time zone", process_key)
                    return None
                return Schedule(process_key, start, parts[2], props.get("scheduleFor") or "grid_worker")
    return None


class ScheduledStarts:
    def __init__(self, service, batch: int = 200):
        self.service = service
        self.db = service.db
        self.batch = batch

    def schedules(self) -> list[Schedule]:
        with self.db.read_session() as session:
            found = [read_schedule(v.process_key, v.files) for v in latest_versions(session)]
            return [s for s in found if s is not None]

    def run_once(self, now: datetime | None = None) -> int:
        """Start what is due for the latest period of every schedule; returns how many cases were started."""
        now = now or clock.now()
        started = 0
        for schedule in self.schedules():
            window = schedule.latest(now)
            if window is None:
                continue
            started += self._start_period(schedule, *window)
        return started

    def run_safely(self) -> int:
        """For the timer worker's loop: a failure is logged, never stops the timers."""
        try:
            return self.run_once()
        except Exception:
            log.exception("scheduled starts failed")
            return 0

    def _start_period(self, schedule: Schedule, previous: datetime, moment: datetime) -> int:
        period = moment.strftime("%Y-%m-%dT%H:%M")
        with self.db.read_session() as session:
            pending = session.execute(
                select(RoleAssignment.user_id, func.min(RoleAssignment.node_id))
                .join(JurisdictionNode, JurisdictionNode.id == RoleAssignment.node_id)
                .join(User, User.id == RoleAssignment.user_id)
                .where(RoleAssignment.role == schedule.role, JurisdictionNode.level == "grid", User.active.is_(True),
                       ~exists().where(ScheduledStart.process_key == schedule.process_key,
                                       ScheduledStart.period == period,
                                       ScheduledStart.user_id == RoleAssignment.user_id))
                .group_by(RoleAssignment.user_id).order_by(RoleAssignment.user_id).limit(self.batch)).all()
        started = 0
        for user_id, grid_id in pending:
            claim_id = self._claim(schedule.process_key, period, user_id)
            if claim_id is None:
                continue   # another worker has it
            try:
                data = self.start_data(user_id, grid_id, previous, moment)
                view = self.service.start_case(schedule.process_key, grid_id, data, user_id)
            except Exception:
                log.exception("%s %s: could not start for user %s; will retry", schedule.process_key, period, user_id)
                with self.db.unit_of_work() as session:
                    claim = session.get(ScheduledStart, claim_id)
                    if claim is not None:
                        session.delete(claim)
                continue
            with self.db.unit_of_work() as session:
                session.get(ScheduledStart, claim_id).case_id = view.case.id
            started += 1
        if started:
            log.info("%s %s: started %d", schedule.process_key, period, started)
        return started

    def _claim(self, process_key: str, period: str, user_id: int) -> int | None:
        try:
            with self.db.unit_of_work() as session:
                claim = ScheduledStart(process_key=process_key, period=period, user_id=user_id,
                                       claimed_at=clock.now())
                session.add(claim)
                session.flush()
                return claim.id
        except IntegrityError:
            return None

    # every key `start_data` may give a case (the deploy notes count them as set)
    START_DATA_KEYS = frozenset({"scheduled_for", "period", "evaluator", "matters", "community_node_id",
                                 "community_name", "town_node_id", "town_name", "departments",
                                 *(f"dept_{t}_node_id" for t in EVALUATED_DEPT_TYPES)})

    def start_data(self, user_id: int, grid_id: int, since: datetime, until: datetime) -> dict:
        """Who evaluates what: the person's community and town, and the departments that
        worked on the matters they reported, in [since, until)."""
        with self.db.read_session() as session:
            user = session.get(User, user_id)
            grid = session.get(JurisdictionNode, grid_id)
            ancestors = {n.id: n for n in session.scalars(
                select(JurisdictionNode).where(JurisdictionNode.id.in_(grid.ancestor_ids())))}
            by_level = {n.level: n for n in ancestors.values()}
            worked = (select(WorkItem.candidate_node_id, WorkItem.case_id)
                      .join(Case, Case.id == WorkItem.case_id)
                      .where(Case.created_by_id == user_id, Case.process_key == "grid_matter",
                             WorkItem.status == "completed", WorkItem.completed_at >= since,
                             WorkItem.completed_at < until).subquery())
            matters = session.scalar(select(func.count(distinct(worked.c.case_id))))
            departments = session.scalars(
                select(JurisdictionNode).join(worked, worked.c.candidate_node_id == JurisdictionNode.id)
                .where(JurisdictionNode.level == DEPARTMENT, JurisdictionNode.dept_type.in_(EVALUATED_DEPT_TYPES))
                .distinct().order_by(JurisdictionNode.path.desc())).all()   # nearest (deepest) first
        data = {"scheduled_for": until.isoformat(), "period": since.strftime("%Y-%m"),
                "evaluator": user.username, "matters": int(matters or 0)}
        for level, key in (("community", "community"), ("town", "town")):
            node = by_level.get(level)
            if node is not None:
                data[f"{key}_node_id"], data[f"{key}_name"] = node.id, node.name
        names = []
        for dept in departments:
            if f"dept_{dept.dept_type}_node_id" not in data:
                data[f"dept_{dept.dept_type}_node_id"] = dept.id
                names.append(dept.name)
        data["departments"] = "、".join(names)
        return data
