"""Test harness: one database per run (SQLite temp file, or DATABASE_URL for
PostgreSQL), emptied and migrated at the start; the demo organisation and the
shipped processes loaded once; case tables emptied before every test; a
frozen clock per test."""
from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import delete

# scrypt at its least cost for the demo accounts the suite logs in as thousands of times, in
# this process and the servers it starts (engine/passwords.py); set before engine is imported
os.environ.setdefault("GRIDFLOW_SCRYPT_N", str(2 ** 10))

from bench.scratch import reset_to_demo
from engine import clock as clock_module
from engine.db import Database
from engine.deploy import deploy_files
from engine.models import (Attachment, AuditCheckpoint, AuditEvent, Case, CaseSequence, CaseState, LoginAttempt, RollupCase,
                           RollupCases, RollupCaseTask, RollupDims, RollupReports, RollupState, RollupTasks, WorkItem,
                           WorkItemCandidate)
from engine.service import WorkflowService
from forms import FormRegistry

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# what a test module does if it opens a database (or a process that does) other than through `db`
_OWN_DATABASE = ("Database(", "DATABASE_URL", "database_url(", "create_engine", "psycopg", "CliRunner",
                 "subprocess", "gunicorn", "live_app")


def _touches_no_database(item) -> bool:
    """Neither the run's database (the `db` fixture, directly or through `service`, `app` …)
    nor one of its own: forms, the sandbox, BPMN checks … give the same answer on both runs."""
    if "db" in item.fixturenames:
        return False
    source = Path(str(item.fspath)).read_text(encoding="utf-8")
    return not any(marker in source for marker in _OWN_DATABASE)


def pytest_collection_modifyitems(config, items):
    """Each run of `.ci/run` must fit CI's 30 minutes on a 2-core machine, so what does not
    depend on the database runs once, the two runs' shares balanced. The PostgreSQL run
    leaves out the tests that touch no database and those marked `sqlite_run_only`: the
    browser tests (they drive the pages' scripts; what the pages store goes through the
    engine and views that every other test runs on both databases), `make run` (its own
    SQLite whatever the run), the authorization matrix and the event labels (rules and words
    of the views). The SQLite run leaves out those marked `postgresql_run_only`: the
    load-time checks (the API fuzz, kill -9 during load), run against the production
    database. (On one machine: SQLite 10 min, PostgreSQL 16 min before the browser tests,
    `make run`, the matrix and the labels moved to the SQLite run.)"""
    if not (os.environ.get("DATABASE_URL") or "").startswith("postgresql"):
        kept = [item for item in items if item.get_closest_marker("postgresql_run_only") is None]
    else:
        kept = [item for item in items
                if item.get_closest_marker("sqlite_run_only") is None and not _touches_no_database(item)]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item not in kept])
        items[:] = kept
CASE_TABLES = [WorkItemCandidate, WorkItem, AuditCheckpoint, AuditEvent, Attachment, CaseState, Case, CaseSequence,
               # the dashboard roll-ups count the cases above: emptied with them (not built)
               RollupState, RollupCases, RollupDims, RollupTasks, RollupReports, RollupCaseTask, RollupCase,
               # a test's failed logins must not lock an account for the next test
               LoginAttempt]


@pytest.fixture(scope="session")
def db(tmp_path_factory):
    url = os.environ.get("DATABASE_URL") or f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"
    database = Database(url)
    reset_to_demo(database, FormRegistry().keys(), actor="tests")
    yield database
    database.dispose()


@pytest.fixture
def clock():
    frozen = clock_module.FrozenClock(datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc))
    clock_module.set_clock(frozen)
    yield frozen
    clock_module.set_clock(clock_module.SystemClock())


@pytest.fixture
def clean_db(db):
    with db.unit_of_work() as session:
        for table in CASE_TABLES:
            session.execute(delete(table))
    return db


@pytest.fixture
def service(clean_db, clock):
    return WorkflowService(clean_db)


@pytest.fixture
def fixture_forms(tmp_path):
    """The shipped forms plus the forms the test fixtures name."""
    import shutil
    for path in list((ROOT / "forms").glob("*.yaml")) + list((FIXTURES / "forms").glob("*.yaml")):
        shutil.copy(path, tmp_path / path.name)
    return FormRegistry(tmp_path)


def deploy_fixture(db, *names, forms=None):
    files = {n: (FIXTURES / n).read_text(encoding="utf-8") for n in names}
    with db.unit_of_work() as session:
        return deploy_files(session, files, forms.keys() if forms else None, actor="tests")


# ------------------------------------------------------------------ web

@pytest.fixture(scope="session")
def _one_app(db):
    """The web app, made once: a create_app compiles 77 URL rules (~70 ms on a slow machine)
    and a fresh app recompiles every template it renders, for each of ~1,500 tests. Each test
    gets it with its own service and the configuration create_app gave (`app`)."""
    from web import create_app
    application = create_app({"TESTING": True, "SECRET_KEY": "test-secret", "SERVICE": WorkflowService(db)})
    return application, dict(application.config)


@pytest.fixture
def app(_one_app, service, tmp_path):
    application, config = _one_app
    service.attachments.root = tmp_path / "uploads"
    application.config.clear()
    application.config.update(config, UPLOAD_FOLDER=str(tmp_path / "uploads"))
    application.extensions["gridflow"] = service
    return application


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def as_user(app):
    """A logged-in test client per user, made once per test: as_user("lx_wgy1")."""
    from tests.helpers import login
    clients = {}

    def make(username):
        if username not in clients:
            client = app.test_client()
            login(client, username)
            clients[username] = client
        return clients[username]
    return make
