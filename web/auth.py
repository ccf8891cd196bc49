"""Login, logout, the idle logout, an official's own password and the language switch."""
import re
import time
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from engine.errors import InvalidInput
from engine.login_guard import LoginLocked
from engine.passwords import MIN_LENGTH

from .extensions import LoginUser, service
from .i18n import LANGS, current_lang, gettext as _

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("inbox.index")


# The form pages whose submission an idle logout keeps (the next two functions): an official
# who typed a report or a task's form for longer than the idle limit lost it all on 提交,
# and the login led to the inbox, not back to the form.
_RESUMABLE = ("tasks.complete", "cases.start_submit")
_RESUMABLE_PATH = re.compile(r"/(tasks|start)/[^/?#]+")
_CARRIED = "r:"          # prefix of a kept field's name in the login form


def _resume_of_idle_post() -> dict | None:
    """What the official sent to a form page when the idle logout stopped it: the page and
    every field but the CSRF token (uploads cannot be carried: the browser must send them again)."""
    if request.method != "POST" or request.endpoint not in _RESUMABLE:
        return None
    return {"path": request.path,
            "fields": [(k, v) for k, v in request.form.items(multi=True) if k != "csrf_token"],
            "files": any(f.filename for f in request.files.values())}


def _resume_from_login_form() -> dict | None:
    """The kept submission the login form carries back (see login.html), if any."""
    path = request.form.get("resume_path") or ""
    if not _RESUMABLE_PATH.fullmatch(path):
        return None
    return {"path": path, "files": request.form.get("resume_files") == "1",
            "fields": [(k[len(_CARRIED):], v) for k, v in request.form.items(multi=True) if k.startswith(_CARRIED)]}


@bp.route("/login", methods=["GET", "POST"])
def login():
    error, status, resume = None, 200, None
    if request.method == "POST":
        resume = _resume_from_login_form()
        try:
            user = service().authenticate(request.form.get("username", ""), request.form.get("password", ""),
                                          via="web", address=request.remote_addr)
        except LoginLocked as locked:
            error, status = locked.text(current_lang()), 429
        else:
            if user is None:
                error, status = _("用户名或密码不正确，请重新输入。"), 401
            else:
                lang = session.get("lang")
                session.clear()
                if lang in LANGS:   # the language chosen on the login page holds after it
                    session["lang"] = lang
                login_user(official := LoginUser(user))
                session[_SEEN], session[_PASSWORD] = int(time.time()), official.password_stamp
                if resume is not None:
                    # back to the form with what was typed (sent with this session's CSRF token)
                    return render_template("resume_form.html", resume=resume)
                return redirect(safe_next(request.args.get("next")))
    return render_template("login.html", error=error, resume=resume), status


_SEEN = "seen"           # when the session last made a request (epoch seconds, to the minute)
_PASSWORD = "pw"         # the password the session was opened with (LoginUser.password_stamp)
# files: they neither need a login nor keep one alive
_NO_SESSION = ("static", "cases.vendor_bpmn", "designer.vendor_dmn")


def _page_session() -> bool:
    """A logged-in page session's request for a page (not a file, not the API)."""
    return "_user_id" in session and request.blueprint != "api" and request.endpoint not in _NO_SESSION


@bp.before_app_request
def logout_when_idle():
    """A page session unused for IDLE_LOGOUT_MINUTES ends (登录连接超时自动退出, as
    GB/T 22239-2019 asks): the next request logs out and goes to the login page, which
    then leads back. The API's bearer tokens have their own lifetime."""
    if not _page_session():
        return None
    now, seen = int(time.time()), session.get(_SEEN)
    minutes = current_app.config["IDLE_LOGOUT_MINUTES"]
    if isinstance(seen, int) and now - seen > minutes * 60:
        resume = _resume_of_idle_post()
        logout_user()
        session.clear()
        flash(_("超过 {n} 分钟未操作，已自动退出，请重新登录。", n=minutes))
        if resume is not None:
            return render_template("login.html", error=None, resume=resume), 401
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?") if request.method == "GET" else None))
    if not isinstance(seen, int) or now - seen >= 60:   # the cookie is rewritten once a minute at most
        session[_SEEN] = now
    return None


@bp.before_app_request
def end_sessions_of_an_old_password():
    """A session opened before the account's password changed (by its owner elsewhere, or an
    administrator's reset) ends: a password changed because it leaked shuts out whoever
    used it, on every browser."""
    if not _page_session():
        return None
    if current_user.is_authenticated and session.get(_PASSWORD) != current_user.password_stamp:
        logout_user()
        session.clear()
        flash(_("此账号的密码已修改，请用新密码重新登录。"))
        return redirect(url_for("auth.login"))
    return None


@bp.route("/logout", methods=["POST"])
@login_required
def logout():
    logout_user()
    session.clear()
    return redirect(url_for("auth.login"))


@bp.route("/account/password", methods=["GET", "POST"])
@login_required
def change_password():
    errors, status = {}, 200
    if request.method == "POST":
        form = request.form
        try:
            stamp = service().change_password(current_user.id, form.get("current", ""), form.get("new", ""),
                                              form.get("repeat", ""), address=request.remote_addr)
        except LoginLocked as locked:
            errors, status = {"current": [locked.text(current_lang())]}, 429
        except InvalidInput as refused:
            errors, status = refused.field_texts(current_lang()), 400
        else:
            # this session goes on with the new password; the account's other sessions end
            session[_PASSWORD] = stamp
            flash(_("密码已修改，下次登录请使用新密码。"))
            return redirect(url_for("inbox.index"))
    return render_template("account_password.html", errors=errors, min_length=MIN_LENGTH), status


@bp.route("/lang/<code>", methods=["POST"])
def set_language(code):
    if code in LANGS:
        session["lang"] = code
    resume = _resume_from_login_form()
    if resume is not None:
        # the switch on the login or resume page carries the kept submission (base.html): the
        # same page again in the new language, with it; a redirect lost what was typed
        if current_user.is_authenticated:
            return render_template("resume_form.html", resume=resume)
        return render_template("login.html", error=None, resume=resume)
    return redirect(safe_next(request.form.get("next") or request.referrer and urlsplit(request.referrer).path))


@bp.route("/")
def root():
    return redirect(url_for("inbox.index"))
