"""UI language: zh-CN by default, English by a switch.

The templates are written in Chinese (the officials' language) and wrapped in
`_()`; `MESSAGES_EN` maps each to English. A tiny catalogue instead of
Flask-Babel: the product has two languages, its form labels already carry both
(forms/*.yaml), and this needs no compile step for .mo files.
`tests/test_i18n.py` fails if a `_()` string has no English entry.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import request, session

LANGS = ("zh", "en")
CHINA = timezone(timedelta(hours=8), "CST")

MESSAGES_EN: dict[str, str] = {
    # layout
    "网格化治理工作平台": "Grid Governance Workflow",
    "收件箱": "Inbox",
    "上报/发起": "Report / start",
    "退出": "Log out",
    "登录": "Log in",
    "用户名": "Username",
    "密码": "Password",
    "用户名或密码不正确，请重新输入。": "Wrong username or password; please try again.",
    "演示账号的密码均为 demo123。": "Every demo account's password is demo123.",
    "出错了": "Something went wrong",
    "返回收件箱": "Back to the inbox",
    "页面不存在。": "This page does not exist.",
    "您无权查看此内容。": "You may not see this.",
    "请求无效，请刷新页面后重试。": "The request was not valid; refresh the page and try again.",
    "上传的文件太大。": "The upload is too large.",
    "服务器内部错误，已记录。请稍后重试。": "Internal error; it has been logged. Please try again later.",
    "页面已过期，请刷新后重新提交。": "The page has expired; refresh it and submit again.",
    "语言": "Language",
}


def current_lang() -> str:
    lang = session.get("lang") if session else None
    if lang in LANGS:
        return lang
    best = request.accept_languages.best_match(["zh", "zh-CN", "en"]) if request else None
    return "en" if best == "en" else "zh"


def gettext(text: str, **values) -> str:
    if current_lang() == "en":
        text = MESSAGES_EN.get(text, text)
    return text.format(**values) if values else text


def label(value, lang: str | None = None) -> str:
    """A {zh, en} label from a form definition in the current language."""
    if isinstance(value, dict):
        return value.get(lang or current_lang()) or value.get("zh") or ""
    return value or ""


def local_time(moment: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """UTC in the database; China Standard Time on screen."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(CHINA).strftime(fmt)


def init_app(app):
    app.jinja_env.globals.update(_=gettext, current_lang=current_lang, label=label, LANGS=LANGS)
    app.jinja_env.filters["local_time"] = local_time
