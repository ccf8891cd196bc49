"""`gridflow` command line: schema, organisation, deployment and validation."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from forms import FormDefinitionError, FormRegistry

from . import schema
from .db import DATABASE_UNAVAILABLE, Database, driver_message
from .deploy import DeployError, deploy_files, read_model_files, read_process_dir, validate_files
from .notes import version_notes
from .org import OrgFileError, load_org_file


_DATABASE_SHOWN = "gridflow.database"   # key in the click context's meta: the database a command opened


def _db() -> Database:
    db = Database()
    context = click.get_current_context(silent=True)
    if context is not None:   # meta is shared by the group's context and its command's
        context.meta[_DATABASE_SHOWN] = db.shown_url
    return db


class _Commands(click.Group):
    """The command group, which turns a database that cannot be reached or used into one
    line saying so and what to check (exit 1) instead of a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except DATABASE_UNAVAILABLE as exc:
            shown = ctx.meta.get(_DATABASE_SHOWN)
            where = f" at {shown}" if shown else ""
            click.echo(f"error: the database{where} could not be used: {driver_message(exc, lines=2)}", err=True)
            click.echo("check DATABASE_URL (unset: the SQLite file instance/gridflow.sqlite), that the "
                       "database server is running and that the database exists", err=True)
            sys.exit(1)


@click.group(cls=_Commands)
def main():
    """gridflow: grid governance workflows (网格化治理) on SpiffWorkflow."""


@main.command("init-db")
def init_db():
    """Create or upgrade the database schema (Alembic)."""
    db = _db()
    schema.upgrade(db)
    click.echo(f"schema up to date: {db.shown_url}")


@main.command("load-org")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@click.option("--actor", default=None,
              help="who loads the file (recorded with each change; default: the login name running this)")
def load_org_cmd(path, actor):
    """Load a jurisdiction tree and its users from YAML (idempotent); every change is recorded."""
    db = _db()
    try:
        with db.unit_of_work() as session:
            report = load_org_file(session, path, actor=actor or _login_name())
    except OrgFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{path}: {report}")
    for note in report.notes:
        click.echo(f"note: {note}")
    from .service import WorkflowService
    service = WorkflowService(db)
    for username in report.deactivated:
        released = service.release_claims_of(username, actor or _login_name())
        if released:
            click.echo(f"{username}: {len(released)} claimed task(s) given back to their groups")


def _login_name(fallback: str = "load-org") -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 -- no login name in this environment (a container, a service)
        return fallback


def _forms(db: Database | None = None) -> FormRegistry:
    """The shipped forms, and with a database the designer's saved revisions (key@N), their
    keys read. Read before any transaction opens: on SQLite a second session would wait on
    the first."""
    try:
        if db is not None:
            from .form_store import VersionedForms
            forms = VersionedForms(db=db)
        else:
            forms = FormRegistry()
        forms.keys()
        return forms
    except FormDefinitionError as exc:
        click.echo(f"error in a form definition: {exc}", err=True)
        sys.exit(1)


@main.command()
@click.argument("directory", default="processes", type=click.Path(exists=True, file_okay=False))
@click.option("--actor", default=None, help="who deploys (recorded on the version)")
def deploy(directory, actor):
    """Validate and deploy every BPMN/DMN file in DIRECTORY; unchanged processes create nothing."""
    try:
        files = read_process_dir(directory)
    except DeployError as exc:
        _refuse(exc)
    if not files:
        click.echo(f"error: no .bpmn or .dmn files in {directory}", err=True)
        sys.exit(1)
    db = _db()
    forms = _forms(db)
    try:
        with db.unit_of_work() as session:
            result = deploy_files(session, files, forms.keys(), actor=actor, forms=forms)
    except DeployError as exc:
        _refuse(exc)
    for version in result.created:
        click.echo(f"deployed {version.process_key} v{version.version} ({version.content_hash[:12]}) "
                   f"from {', '.join(sorted(version.files))}")
    for key in result.unchanged:
        click.echo(f"unchanged {key}")
    for note in result.notes:
        click.echo(f"note: {note}")


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
def validate(paths):
    """Check BPMN/DMN files without storing anything; one line per problem, exit 1 if any.

    Called processes and decisions are looked up among the given files and the
    other files of their folders. A folder stands for its *.bpmn and *.dmn files,
    so `gridflow validate processes/*` passes over processes/scenarios/."""
    given = set()
    for p in map(Path, paths):
        given.update(f.resolve() for f in (sorted(p.glob("*.bpmn")) + sorted(p.glob("*.dmn")) if p.is_dir() else [p]))
    given = {path for path in given if path.is_file()}
    if not given:
        click.echo(f"error: no .bpmn or .dmn files in {' '.join(paths)}", err=True)
        sys.exit(1)
    files, context, unreadable = {}, {}, []
    for path in sorted(given):
        try:
            files.update(read_model_files([path]))
        except DeployError as exc:
            unreadable += exc.problems
        for sibling in list(path.parent.glob("*.bpmn")) + list(path.parent.glob("*.dmn")):
            if sibling.resolve() not in given and sibling.name not in files and sibling.name not in context:
                try:
                    context.update(read_model_files([sibling]))
                except DeployError:
                    pass   # only context: a sibling that cannot be read is not this check's finding
    forms = _forms()
    problems = unreadable + validate_files({**context, **files}, forms.keys())
    problems = [p for p in problems if p.file in files or p.file not in context]
    for problem in problems:
        click.echo(str(problem))
    if problems:   # notes are about a version that could be deployed: as the designer shows them
        click.echo(f"{len(problems)} problem(s) in {len(given)} file(s)", err=True)
        sys.exit(1)
    for note in version_notes({**context, **files}, forms=forms):
        if note.file in files:
            click.echo(f"note: {note}")   # refuses nothing: the exit status is the problems'
    click.echo(f"ok: {len(files)} file(s) valid")


def _refuse(exc: DeployError) -> None:
    for problem in exc.problems:
        click.echo(str(problem), err=True)
    click.echo(f"nothing deployed: {len(exc.problems)} problem(s)", err=True)
    sys.exit(1)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--processes", "processes_dir", default="processes", type=click.Path(exists=True, file_okay=False))
@click.option("--org", "org_path", default="demo/org.yaml", type=click.Path(exists=True, dir_okay=False))
def scenarios(paths, processes_dir, org_path):
    """Run process scenarios (default: every processes/scenarios/*/*.yaml) against a
    scratch database with the demo organisation and a frozen clock; exit 1 if any fails."""
    import tempfile
    from datetime import datetime, timezone

    from . import clock as clock_module
    from .scenarios import Scenario, ScenarioFailure, find_scenarios, run_scenario
    from .service import WorkflowService

    files = [Path(p) for p in paths] or find_scenarios(Path(processes_dir) / "scenarios")
    # a folder of one process's scenarios, or the scenarios/ folder above them
    files = [f for p in files for f in ((sorted(p.glob("*.yaml")) or find_scenarios(p)) if p.is_dir() else [p])]
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite:///{tmp}/scenarios.sqlite")
        schema.upgrade(db)
        try:
            with db.unit_of_work() as session:
                load_org_file(session, org_path)
                forms = _forms()
                deploy_files(session, read_process_dir(processes_dir), forms.keys(), actor="scenarios", forms=forms)
        except DeployError as exc:
            _refuse(exc)
        failures = 0
        for path in files:
            try:
                scenario = Scenario.load(path)
            except ValueError as exc:   # a file that is no scenario: a failure like the others, not a traceback
                failures += 1
                click.echo(f"FAIL {path.parent.name}/{path.stem}  cannot be read: {exc}")
                continue
            frozen = clock_module.FrozenClock(datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc))
            clock_module.set_clock(frozen)
            try:
                result = run_scenario(WorkflowService(db), frozen, scenario)
                click.echo(f"PASS {path.parent.name}/{path.stem}  ({result.business_key}, {result.steps_done} steps)")
            except ScenarioFailure as exc:
                failures += 1
                click.echo(f"FAIL {path.parent.name}/{path.stem}  at {exc.step}: {exc.message}")
            finally:
                clock_module.set_clock(clock_module.SystemClock())
        db.dispose()
    click.echo(f"{len(files) - failures} passed, {failures} failed")
    sys.exit(1 if failures else 0)


def worker_logging() -> None:
    """The timer worker's log: gridflow's own lines at INFO (timers fired, incidents), not
    SpiffWorkflow's line for every task state change (its `spiff` loggers log at INFO)."""
    import logging
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("spiff").setLevel(logging.WARNING)


@main.command()
@click.option("--interval", default=5.0, show_default=True, type=click.FloatRange(min=0.1), help="seconds between looks for due timers")
@click.option("--batch", default=200, show_default=True, type=click.IntRange(min=1), help="cases taken per query")
@click.option("--once", is_flag=True, help="fire what is due now and exit")
def worker(interval, batch, once):
    """Fire due BPMN timers until stopped (SIGTERM/SIGINT finish the current case, then exit)."""
    import signal
    import threading

    from .service import WorkflowService
    from .timers import TimerWorker

    worker_logging()
    timer_worker = TimerWorker(WorkflowService(_db()), batch=batch)
    if once:
        stats = timer_worker.run_once()
        click.echo(f"fired {stats.fired}, failed {stats.failed}, skipped {stats.skipped}")
        return
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    timer_worker.run_forever(stop, interval)


@main.group("metrics")
def metrics_group():
    """The governance dashboard's roll-ups (engine/rollup.py)."""


@metrics_group.command("refresh")
@click.option("--rebuild", is_flag=True, help="count every case afresh instead of those written since the last refresh")
def metrics_refresh(rebuild):
    """Build the dashboard roll-ups (the first time), or take in the cases written since the
    last refresh. The worker does the latter every 30 s once they are built."""
    import time

    from . import clock, rollup

    db = _db()
    began = time.perf_counter()
    try:
        with db.unit_of_work() as session:
            built = rollup.is_built(session)
            if rebuild or not built:
                taken = rollup.rebuild(session, clock.now())
                what = "built from"
            else:
                taken = rollup.refresh(session, clock.now())
                what = "refreshed with"
    finally:
        db.dispose()
    click.echo(f"dashboard roll-ups {what} {taken} cases in {time.perf_counter() - began:.1f} s")


@main.command("unlock-login")
@click.argument("username")
@click.option("--by", "unlocked_by", default=None, help="who unlocks (recorded; default: your login name)")
def unlock_login(username, unlocked_by):
    """Lift the lock that failed logins put on USERNAME (engine/login_guard.py); recorded."""
    from .service import WorkflowService

    db = _db()
    try:
        unlocked = WorkflowService(db).unlock_login(username, unlocked_by or _login_name("cli"))
    finally:
        db.dispose()
    click.echo(f"{username}: unlocked; its failed logins count afresh" if unlocked
               else f"{username}: not locked; nothing to do")


@main.command("login-log")
@click.option("--user", "username", default=None, help="only this username (as typed at login)")
@click.option("--failures", is_flag=True, help="only failed, refused and unlocking attempts")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=1), help="how many, newest first")
def login_log(username, failures, limit):
    """The recorded logins, newest first: time (UTC+8), outcome, username, door, address, note."""
    from sqlalchemy import select

    from .clock import CHINA
    from .login_guard import filtered
    from .models import LoginAttempt

    query = filtered(select(LoginAttempt), username, failures=failures)
    query = query.order_by(LoginAttempt.id.desc()).limit(max(1, limit))
    db = _db()
    try:
        with db.read_session() as session:
            for row in session.scalars(query):
                click.echo("\t".join([row.at.astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S"), row.outcome,
                                      row.username, row.via, row.address or "-", row.note or ""]))
    finally:
        db.dispose()


@main.group("audit")
def audit_group():
    """Tamper evidence of the audit trail."""


@audit_group.command("verify")
def audit_verify():
    """Recompute every case's hash chain and the checkpoints; exit 1 listing every broken link."""
    from . import audit

    db = _db()
    try:
        with db.read_session() as session:
            checked, broken = audit.verify(session)
    finally:
        db.dispose()
    for link in broken:
        click.echo(str(link))
    click.echo(f"{checked} audit rows checked, {len(broken)} broken link(s)")
    sys.exit(1 if broken else 0)


@audit_group.command("checkpoint")
def audit_checkpoint():
    """Seal every audit row written since the last checkpoint into the global chain."""
    from . import audit, clock

    db = _db()
    try:
        with db.unit_of_work() as session:
            cp = audit.checkpoint(session, clock.now())
            click.echo(f"checkpoint {cp.id}: {cp.event_count} rows up to {cp.last_event_id}" if cp
                       else "nothing new since the last checkpoint")
    finally:
        db.dispose()


@main.command()
@click.option("--cases", default=2000, show_default=True, type=click.IntRange(min=0), help="how many cases to create")
@click.option("--months", default=12, show_default=True, type=click.IntRange(min=1), help="spread over this many months up to now")
@click.option("--seed", default=8, show_default=True, help="random seed (the same seed, the same history)")
@click.option("--if-empty", is_flag=True, help="do nothing if the database already has cases (for make run)")
def demo(cases, months, seed, if_empty):
    """Create a realistic history through the engine: N cases over the last months (engine/demo_history.py)."""
    import time

    from sqlalchemy import func, select

    from .demo_history import DemoHistory
    from .models import Case
    from .service import WorkflowService

    db = _db()
    if if_empty:
        with db.read_session() as session:
            existing = session.scalar(select(func.count()).select_from(Case))
        if existing:
            click.echo(f"demo history: {existing} cases already there, nothing added")
            return
    began = time.perf_counter()
    report = DemoHistory(WorkflowService(db), seed=seed).run(
        cases, months=months, progress=lambda r: click.echo(f"  {r.started} cases, {r.steps} steps …"))
    click.echo(f"demo history: {report.started} cases started, {report.steps} steps, {report.closed} closed, "
               f"{report.skipped} waits where no one could act (a level nobody staffs), in {time.perf_counter() - began:.0f} s")


@main.command("setup-demo")
@click.option("--org", "org_path", default="demo/org.yaml", type=click.Path(exists=True, dir_okay=False))
@click.option("--processes", "processes_dir", default="processes", type=click.Path(exists=True, file_okay=False))
def setup_demo(org_path, processes_dir):
    """Schema + demo organisation + deploy processes/: what `make run` needs."""
    db = _db()
    schema.upgrade(db)
    with db.unit_of_work() as session:
        report = load_org_file(session, org_path, actor="setup-demo")
    click.echo(f"organisation from {org_path}: {report}")
    ctx = click.get_current_context()
    ctx.invoke(deploy, directory=processes_dir, actor="setup-demo")
    click.echo(f"database: {db.shown_url}")


if __name__ == "__main__":
    main()
