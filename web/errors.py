"""Error pages: every failure tells the official what was wrong and what to do."""
import logging

from flask import render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from engine.db import DATABASE_UNAVAILABLE, driver_message
from engine.errors import Conflict, EngineError, InvalidInput, NotFound, PermissionDenied

from .i18n import MESSAGES_EN, current_lang, gettext as _

log = logging.getLogger("gridflow.web")

STATUS = {NotFound: 404, PermissionDenied: 403, Conflict: 409, InvalidInput: 400}


def engine_status(exc: EngineError) -> int:
    for cls, status in STATUS.items():
        if isinstance(exc, cls):
            return status
    return 422


RETRY_AFTER_SECONDS = 5
# The one wording of an outage, for pages (through the catalogue) and the API (web/api.py MESSAGES).
DATABASE_UNAVAILABLE_ZH = "数据库暂时无法使用，本次提交没有保存；请稍后重试。"
DATABASE_UNAVAILABLE_MESSAGES = (DATABASE_UNAVAILABLE_ZH, MESSAGES_EN[DATABASE_UNAVAILABLE_ZH])


def log_database_unavailable(logger, exc: Exception) -> None:
    """One line per failed request while the database is away (not a traceback each)."""
    logger.error("database unavailable on %s %s: %s", request.method, request.path, driver_message(exc))


def register(app):
    @app.errorhandler(EngineError)
    def engine_error(exc):
        return render_template("error.html", message=exc.text(current_lang())), engine_status(exc)

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        return render_template("error.html", message=_("页面已过期，请刷新后重新提交。")), 400

    @app.errorhandler(HTTPException)
    def http_error(exc):
        messages = {404: _("页面不存在。"), 403: _("您无权查看此内容。"), 413: _("上传的文件太大。")}
        return render_template("error.html", message=messages.get(exc.code, _("请求无效，请刷新页面后重试。"))), exc.code

    def database_unavailable(exc):
        log_database_unavailable(log, exc)
        return (render_template("error.html", message=_(DATABASE_UNAVAILABLE_ZH)), 503,
                {"Retry-After": str(RETRY_AFTER_SECONDS)})

    for unavailable in DATABASE_UNAVAILABLE:
        app.register_error_handler(unavailable, database_unavailable)

    @app.errorhandler(Exception)
    def unexpected(exc):
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_template("error.html", message=_("服务器内部错误，已记录。请稍后重试。")), 500
