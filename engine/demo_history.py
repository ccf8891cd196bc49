"""`gridflow demo --cases N`: a year of plausible history, made through the engine.

Every case is started and worked through `WorkflowService` exactly as officials
would, with the engine clock moved forward through the last twelve months: the
deadlines, escalations, reminders and legal time limits fire by the timer
worker as the clock passes them. So the dashboard shows figures the chains
really produce, not numbers typed into tables.

Who does what: the holder of each task (its assignee, a named candidate, or the
first holder of its role at its node). With what data: the data the process
scenarios (`processes/scenarios/`) submit for that task, so the text is the
designers' own; the fields that steer the path (resolved? verified? satisfied?
accept?) are drawn with plausible odds; anything the scenarios do not cover is
filled from the form definition. How fast: a delay per task drawn around a
typical time, with a tail that passes the deadline now and then. A random seed
makes a run repeatable.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from forms import CHINA_TZ, load_yaml

from . import clock as clock_module
from .errors import EngineError, InvalidInput
from .models import Case, RoleAssignment, User, WorkItemCandidate

log = logging.getLogger("gridflow.demo")

# share of each process among the cases started
PROCESS_MIX = (("grid_matter", 0.62), ("household_visit", 0.25), ("petition", 0.06), ("mediation", 0.045),
               ("consultation", 0.025))
# colour of a grid matter: most are routine
COLOUR_ODDS = (("blue", 0.55), ("yellow", 0.30), ("orange", 0.10), ("red", 0.05))
# (typical hours to act, share that takes far longer: the deadlines' business)
PACE = {
    "micro_mediation": (30, 0.10), "record_result": (4, 0.02), "town_dispatch": (3, 0.03),
    "department_handle": (40, 0.12), "county_dispatch": (5, 0.05), "county_handle": (60, 0.10),
    "city_handle": (80, 0.10), "verify_on_site": (18, 0.05), "county_verify": (20, 0.05), "city_verify": (20, 0.05),
    "satisfaction": (20, 0.02), "daily_follow_up": (6, 0.0), "county_supervise": (8, 0.05), "report_in": (6, 0.10),
    "handle_part": (30, 0.10), "flag_missing_report": (4, 0.0),
    "decide": (24 * 7, 0.08), "handle": (24 * 30, 0.10), "handle_extended": (24 * 15, 0.05),
    "approve_extension": (24 * 2, 0.0), "notify_extension": (24, 0.0), "written_reply": (24 * 3, 0.05),
    "review": (24 * 20, 0.05), "recheck": (24 * 20, 0.05), "supervise_acceptance": (24, 0.0),
    "supervise_handling": (24, 0.0), "assist": (30, 0.10),
}
DEFAULT_PACE = (24, 0.05)
# tasks nobody has to do: left to their timers most of the time (e.g. no review requested in 30 days)
OPTIONAL = {"review_request": 0.15, "recheck_request": 0.25}
# the steering fields and their odds
STEERING = {
    ("micro_mediation", "resolved"): ((True, 0.65), (False, 0.35)),
    ("verify_on_site", "verified"): ((True, 0.88), (False, 0.12)),
    ("county_verify", "verified"): ((True, 0.9), (False, 0.1)),
    ("city_verify", "verified"): ((True, 0.9), (False, 0.1)),
    ("satisfaction", "satisfaction"): (("satisfied", 0.80), ("basically_satisfied", 0.16), ("unsatisfied", 0.04)),
    ("department_handle", "outcome"): (("resolved", 0.94), ("escalate", 0.06)),
    ("county_handle", "outcome"): (("resolved", 0.95), ("escalate", 0.05)),
    ("decide", "acceptance"): (("accept", 0.78), ("forward", 0.12), ("not_accept", 0.10)),
    ("decide", "hard_case"): ((False, 0.95), (True, 0.05)),
    ("handle", "hard_case"): ((False, 0.97), (True, 0.03)),
    ("start", "visit_outcome"): (("nothing_found", 0.62), ("resolved_on_spot", 0.25), ("needs_help", 0.13)),
}
LATEST_HOUR = 21   # officials act in office hours and the evening, China time


def _pick(rng: random.Random, odds):
    roll, total = rng.random(), 0.0
    for value, p in odds:
        total += p
        if roll < total:
            return value
    return odds[-1][0]


@dataclass(order=True)
class _Event:
    at: datetime
    seq: int
    kind: str = field(compare=False)          # start | act
    ref: object = field(compare=False)        # a start plan, or a business key


@dataclass
class Report:
    started: int = 0
    steps: int = 0
    closed: int = 0
    skipped: int = 0
    timer_runs: int = 0


class DemoHistory:
    def __init__(self, service, scenarios_dir: Path | str = "processes/scenarios", seed: int = 8):
        self.service = service
        self.db = service.db
        self.rng = random.Random(seed)
        self.seq = itertools.count()
        self.pool = self._scenario_pool(Path(scenarios_dir))
        self._holders: dict = {}

    # -------------------------------------------------------------- data

    @staticmethod
    def _scenario_pool(root: Path) -> dict:
        """(process, spec id) → the data dicts the scenarios submit; (process, "start") → start data."""
        pool: dict = {}
        for path in sorted(root.glob("*/*.yaml")):
            raw = load_yaml(path.read_text(encoding="utf-8")) or {}
            process = raw.get("process")
            if raw.get("earlier"):   # its data names the case an earlier scenario made: none here
                continue
            if raw.get("start", {}).get("data"):
                pool.setdefault((process, "start"), []).append(raw["start"]["data"])
            for step in raw.get("steps") or []:
                if isinstance(step, dict) and "task" in step and isinstance(step.get("data"), dict):
                    pool.setdefault((process, step["task"]), []).append(step["data"])
        return pool

    def _fill(self, form_key: str | None, base: dict, spec_id: str) -> dict:
        """Data for a form: the chosen base, steering fields drawn, times set to now,
        and required fields the base lacks filled from the definition."""
        form = self.service.forms.get(form_key) if form_key else None
        data = dict(base)
        now = clock_module.now()
        if form is not None:
            names = {f.name for f in form.input_fields}
            data = {k: v for k, v in data.items() if k in names}
            for f in form.input_fields:
                if f.type == "datetime" and (f.name in data or f.required):
                    data[f.name] = now.isoformat()
                elif f.type == "date" and (f.name in data or f.required):
                    # China's date, as the engine dates what it records (受理日期): a reply made
                    # soon after an acceptance at 00:30 must not be dated the day before it
                    data[f.name] = now.astimezone(CHINA_TZ).date().isoformat()
                elif f.name not in data and f.required:
                    data[f.name] = self._value(f)
                if (spec_id, f.name) in STEERING:
                    data[f.name] = _pick(self.rng, STEERING[(spec_id, f.name)])
            for f in form.input_fields:   # what the choices drawn above make required
                if f.required_by(data) and f.left_empty_in(data):
                    data[f.name] = self._value(f)
        return data

    def _value(self, f):
        if f.type in ("choice",):
            return self.rng.choice(f.choice_values)
        if f.type == "multi_choice":
            return [self.rng.choice(f.choice_values)]
        if f.type == "boolean":
            return True
        if f.type in ("integer", "decimal"):
            low = f.min if f.min is not None else 1
            high = f.max if f.max is not None else max(low, 10)
            return self.rng.randint(int(low), int(high)) if f.type == "integer" else float(low)
        if f.type in ("text", "long_text"):
            text = "已按规定办理，情况属实，处理结果已告知当事人。"
            if f.min_length and len(text) < f.min_length:
                text = (text * (f.min_length // len(text) + 1))
            return text[:f.max_length] if f.max_length else text
        if f.type == "person":
            return "lxx_ld1"
        return None

    # -------------------------------------------------------------- who

    def _starters(self) -> dict[str, list[tuple[str, str]]]:
        """process → [(username, grid code)] the demo people may start it with."""
        with self.db.read_session() as session:
            users = [u.username for u in session.scalars(select(User).where(User.active.is_(True))
                                                         .order_by(User.username))]
        options: dict[str, list] = {}
        for username in users:
            for option in self.service.startable(username):
                for code, _name, _id in option.grids:
                    options.setdefault(option.process_key, []).append((username, code))
        return options

    def _actor(self, item) -> int | None:
        if item.assignee_id:
            return item.assignee_id
        with self.db.read_session() as session:
            named = session.scalar(select(WorkItemCandidate.user_id).where(WorkItemCandidate.work_item_id == item.id)
                                   .order_by(WorkItemCandidate.user_id).limit(1))
            if named:
                return named
            key = (item.role, item.candidate_node_id)
            if key not in self._holders:
                self._holders[key] = session.scalar(
                    select(RoleAssignment.user_id).join(User, User.id == RoleAssignment.user_id)
                    .where(RoleAssignment.role == item.role, RoleAssignment.node_id == item.candidate_node_id,
                           User.active.is_(True)).order_by(RoleAssignment.user_id).limit(1))
            return self._holders[key]

    # -------------------------------------------------------------- when

    def _delay(self, spec_id: str) -> timedelta:
        typical, late = PACE.get(spec_id, DEFAULT_PACE)
        hours = self.rng.lognormvariate(0, 0.6) * typical
        if self.rng.random() < late:
            hours *= self.rng.uniform(3, 6)
        return timedelta(hours=max(0.2, hours))

    # -------------------------------------------------------------- run

    def run(self, cases: int, months: int = 12, end: datetime | None = None, progress=None) -> Report:
        from .timers import TimerWorker
        real_clock = clock_module.get_clock()
        end = end or real_clock.now()
        start = end - timedelta(days=round(months * 30.4))
        frozen = clock_module.FrozenClock(start)
        clock_module.set_clock(frozen)
        report = Report()
        try:
            starters = self._starters()
            mix = [(p, w) for p, w in PROCESS_MIX if starters.get(p)]
            total = sum(w for _p, w in mix)
            mix = [(p, w / total) for p, w in mix]
            queue: list[_Event] = []
            span = (end - start).total_seconds()
            for _ in range(cases):
                at = start + timedelta(seconds=self.rng.random() * span)
                heapq.heappush(queue, _Event(at, next(self.seq), "start", _pick(self.rng, mix)))
            timers = TimerWorker(self.service)
            while queue:
                event = heapq.heappop(queue)
                if event.at > end:
                    break
                if event.at > frozen.now():
                    frozen.set(event.at)
                    # what fell due meanwhile fires first, as a worker running all along would have done
                    # only what is due strictly before now: at exactly its due time SpiffWorkflow does
                    # not fire a timer yet, and the worker would take the case again and again
                    if timers.run_once(frozen.now() - timedelta(microseconds=1)).fired:
                        report.timer_runs += 1
                if event.kind == "start":
                    key = self._start(event.ref, starters, report)
                    if key:
                        self._schedule(queue, key, frozen.now())
                else:
                    self._act(queue, event.ref, frozen.now(), report)
                if progress and report.started and event.kind == "start" and report.started % 100 == 0:
                    progress(report)
            frozen.set(end)
            timers.run_once(end - timedelta(microseconds=1))
            report.timer_runs += 1
            with self.db.read_session() as session:
                report.closed = session.query(Case).filter(Case.closed_at.is_not(None)).count()
        finally:
            clock_module.set_clock(real_clock)
        return report

    def _start(self, process_key: str, starters: dict, report: Report) -> str | None:
        username, grid = self.rng.choice(starters[process_key])
        base = self.rng.choice(self.pool.get((process_key, "start")) or [{}])
        version_form = {"grid_matter": "grid_matter_report", "petition": "petition_register",
                        "mediation": "mediation_intake", "consultation": "consultation_topic",
                        "household_visit": "household_visit"}.get(process_key)
        data = self._fill(version_form, base, "start")
        if process_key == "grid_matter":
            data["colour"] = _pick(self.rng, COLOUR_ODDS)
            data["category"] = self.rng.choice(["dispute", "dispute", "environment", "environment", "safety_hazard",
                                                "infrastructure", "public_order", "livelihood", "other"])
        try:
            view = self.service.start_case(process_key, grid, data, username)
        except EngineError as exc:
            log.warning("demo: could not start %s in %s as %s: %s", process_key, grid, username, exc.message)
            report.skipped += 1
            return None
        report.started += 1
        return view.business_key

    def _schedule(self, queue, key: str, now: datetime) -> None:
        view = self.service.get_case(key)
        if view.status != "open":
            return
        workable = [i for i in view.open_items if self._actor(i) is not None]
        if workable:
            item = min(workable, key=lambda i: (i.created_at, i.id))
            if item.spec_id in OPTIONAL and self.rng.random() >= OPTIONAL[item.spec_id]:
                wake = view.case.next_timer_at   # nobody asks: the window's timer closes it
            else:
                wake = now + self._delay(item.spec_id)
        else:
            wake = view.case.next_timer_at       # waiting on a timer only
        if wake is not None:
            heapq.heappush(queue, _Event(max(wake + timedelta(minutes=1), now), next(self.seq), "act", key))

    def _act(self, queue, key: str, now: datetime, report: Report) -> None:
        view = self.service.get_case(key)
        if view.status != "open":
            return
        items = sorted(view.open_items, key=lambda i: (i.created_at, i.id))
        if items:
            # the oldest task someone can work (a level nobody staffs leaves its task waiting)
            for item in items:
                if item.spec_id in OPTIONAL and item.due_at and item.due_at <= now:
                    continue
                actor = self._actor(item)
                if actor is not None and self._complete(key, item, actor, report):
                    break
            else:
                report.skipped += 1
                if all(self._actor(i) is None for i in items) and view.case.next_timer_at is None:
                    return   # nothing will ever move it: left open, as the inbox shows it
        self._schedule(queue, key, now)

    def _complete(self, key: str, item, actor: int, report: Report) -> bool:
        choices = list(self.pool.get((item.process_key, item.spec_id)) or [])
        self.rng.shuffle(choices)
        for base in choices[:2] + [{}]:
            try:
                self.service.complete_task(item.id, self._fill(item.form_key, base, item.spec_id), actor)
                report.steps += 1
                return True
            except InvalidInput:
                continue
            except EngineError as exc:
                log.warning("demo: %s %s: %s", key, item.spec_id, exc.message)
                return False
        return False
