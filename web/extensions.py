import os
from datetime import timedelta

from flask import current_app, send_from_directory
from flask_login import LoginManager, UserMixin
from flask_wtf import CSRFProtect

from engine import clock
from engine.passwords import MAX_AGE_DAYS, password_stamp

login_manager = LoginManager()
login_manager.login_view = "auth.login"
login_manager.login_message = None
csrf = CSRFProtect()


def service():
    """The engine service of the running app."""
    return current_app.extensions["gridflow"]


class LoginUser(UserMixin):
    """The logged-in official, as Flask-Login sees them."""

    def __init__(self, user):
        self.id = user.id
        self.username = user.username
        self.display_name = user.display_name
        self.roles = [(ra.role, ra.node.name, ra.node.level) for ra in user.roles]
        # every page asks them to choose a password: still the one an organisation file gave
        # ("initial"), or one chosen more than MAX_AGE_DAYS ago ("old")
        changed = user.password_changed_at
        self.password_notice = "initial" if changed is None else \
            "old" if clock.now() - changed > timedelta(days=MAX_AGE_DAYS) else None
        self.password_max_age_days = MAX_AGE_DAYS
        # changes with every new password (its owner's or an administrator's reset): a session
        # opened with an older one ends (web/auth.py)
        self.password_stamp = password_stamp(user.password_hash)

    def get_id(self):
        return str(self.id)

    def has_role(self, *roles) -> bool:
        return any(r[0] in roles for r in self.roles)

    @property
    def read_only(self) -> bool:
        return bool(self.roles) and all(r[0] == "auditor" for r in self.roles)


@login_manager.user_loader
def _load_user(user_id):
    user = service().get_user(int(user_id)) if str(user_id).isdigit() else None
    return LoginUser(user) if user else None


def send_npm_dist(package: str, filename: str):
    """A file of an npm package's dist/ folder (bpmn-js, dmn-js), served from node_modules:
    never copied into the repo. Cached a day by the browser."""
    root = os.path.join(current_app.config["NODE_MODULES"], package, "dist")
    response = send_from_directory(root, filename, max_age=24 * 3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
