"""Flask app: inboxes, forms, case pages and the JSON API for the grid app.

`create_app(config)` builds it; the views stay thin and call the engine
service (`app.extensions["gridflow"]`), which owns every transaction.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask, request
from jinja2 import ChoiceLoader, FileSystemLoader

from engine.db import Database
from engine.service import WorkflowService
from forms.render import template_folder as forms_template_folder

from . import i18n
from .extensions import csrf, login_manager


def _secret_key(instance_path: str) -> str:
    """SECRET_KEY from the environment, else a random key kept in instance/ (never in the repo)."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = Path(instance_path) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # gunicorn's workers start together on a fresh install, each making its app: the key
        # is written whole to a file of its own and linked into place, which only the first
        # worker gets to do; the others read the winner's key. (Written in place, two workers
        # could keep different keys, and a session signed by one was refused by the other.)
        draft = path.with_name(f"secret_key.{os.getpid()}.{secrets.token_hex(4)}")
        draft.write_text(secrets.token_hex(32))
        draft.chmod(0o600)
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        except OSError:   # a file system without hard links: created exclusively instead
            try:
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
                    out.write(draft.read_text())
            except FileExistsError:
                pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=str(Path("instance").resolve()))
    config = dict(config or {})
    app.config.from_mapping(
        DATABASE_URL=os.environ.get("DATABASE_URL"),
        UPLOAD_FOLDER=str(Path(app.instance_path) / "uploads"),
        FORMS_DIR=None,
        MAX_CONTENT_LENGTH=60 * 1024 * 1024,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # http://127.0.0.1 in the demo; set GRIDFLOW_SECURE_COOKIES=1 behind HTTPS
        SESSION_COOKIE_SECURE=os.environ.get("GRIDFLOW_SECURE_COOKIES") == "1",
        REMEMBER_COOKIE_HTTPONLY=True,
        WTF_CSRF_TIME_LIMIT=None,
        API_TOKEN_MAX_AGE=7 * 24 * 3600,
        IDLE_LOGOUT_MINUTES=int(os.environ.get("GRIDFLOW_IDLE_MINUTES") or 30),
        NODE_MODULES=str(Path(__file__).resolve().parent.parent / "node_modules"),
    )
    app.config.update(config)
    if not app.config.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = _secret_key(app.instance_path)

    service = config.get("SERVICE")
    if service is None:
        from engine.form_store import VersionedForms  # shipped forms + the designer's saved revisions
        database = Database(app.config["DATABASE_URL"])
        service = WorkflowService(database, forms=VersionedForms(app.config["FORMS_DIR"], database),
                                  upload_dir=app.config["UPLOAD_FOLDER"])
    app.extensions["gridflow"] = service

    app.jinja_loader = ChoiceLoader([app.jinja_loader, FileSystemLoader(forms_template_folder())])
    login_manager.init_app(app)
    csrf.init_app(app)
    i18n.init_app(app)

    from . import api, audit, auth, cases, dashboard, designer, errors, inbox, supervision, tasks
    app.register_blueprint(auth.bp)
    app.register_blueprint(inbox.bp)
    app.register_blueprint(tasks.bp)
    app.register_blueprint(cases.bp)
    app.register_blueprint(supervision.bp)
    app.register_blueprint(designer.bp)
    app.register_blueprint(audit.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(api.bp)
    csrf.exempt(api.bp)  # bearer tokens, no cookies: CSRF does not apply
    errors.register(app)
    app.after_request(_security_headers)
    return app


# Pages load scripts, styles and data from this site only and may not be framed by another
# (clickjacking). No page has an inline script; styles may be inline (bpmn-js and the
# templates set some). dmn-js (the designer's decision tables) and swagger-ui (/api/docs)
# build functions from strings in places, so those pages also allow 'unsafe-eval'.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
               "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; object-src 'none'; "
               "frame-ancestors 'none'; base-uri 'self'; form-action 'self'")
EVAL_POLICY = PAGE_POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-eval'")


def _security_headers(response):
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    if response.mimetype == "text/html":
        needs_eval = request.blueprint == "designer" or request.endpoint == "api.docs"
        response.headers.setdefault("Content-Security-Policy", EVAL_POLICY if needs_eval else PAGE_POLICY)
    return response
