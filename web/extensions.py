import os

from flask import current_app, send_from_directory
from flask_login import LoginManager, UserMixin
from flask_wtf import CSRFProtect

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
        # still the password an organisation file gave: every page asks them to choose their own
        self.initial_password = user.password_changed_at is None

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
