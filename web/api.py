"""The JSON API for the grid workers' mobile app, under /api/v1.

Bearer tokens (itsdangerous, salt "gridflow-api-token") instead of cookies, so
the blueprint is exempt from CSRF. The views stay thin: they check the shape of
the input with the marshmallow schemas of `api_schemas.py`, call the engine
service, and dump its answer with the same schemas. Every failure under /api/
is JSON `{error, message, fields?}` with the right status, never an HTML page
and never a 500 for bad input. `GET /api/v1/openapi.json` documents it all;
`GET /api/docs` shows that document with swagger-ui served from node_modules
(no CDN: the product makes no network calls beyond its own host).
"""
from __future__ import annotations

import json
import logging
import math
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from functools import wraps
from pathlib import Path

from flask import Blueprint, current_app, g, render_template, request, send_file, send_from_directory, url_for
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer
from marshmallow import ValidationError
from sqlalchemy import select
from werkzeug.exceptions import HTTPException, NotFound as HTTPNotFound
from werkzeug.routing import RequestRedirect

from engine import clock, readmodels
from engine.access import is_read_only
from engine.attachments import KINDS as ATTACHMENT_KINDS
from engine.db import DATABASE_UNAVAILABLE
from engine.errors import (AlreadyStarted, Conflict, CredentialsChanged, EngineError, InactiveAccount, InvalidInput,
                           NotFound, PermissionDenied, ProcessError)
from engine.login_guard import LoginLocked
from engine.models import JurisdictionNode
from engine.passwords import StampedActor
from engine.personal_data import PersonalData, mask_data, personal_fields
from engine.service import InboxFilters
from forms import unknown_keys
from forms.render import json_schema
from forms.safety import find_unstorable

from . import api_schemas as s
from .department_routing import department_routing
from .errors import DATABASE_UNAVAILABLE_MESSAGES, RETRY_AFTER_SECONDS, log_database_unavailable
from .extensions import service
from .i18n import localise_message
from .openapi import build_spec, document

bp = Blueprint("api", __name__)
log = logging.getLogger("gridflow.api")

V1 = "/api/v1"
TOKEN_SALT = "gridflow-api-token"
JSON_MAX_BYTES = 1024 * 1024          # default for API_JSON_MAX_BYTES
MAX_FILES = 10                        # files per upload request
TASK_ID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
CASE_ID_RE = re.compile(r"^[0-9]{1,18}$")
BUSINESS_KEY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")
INT_MAX = 2 ** 63 - 1

# Messages the API itself produces: (zh, en). Engine messages are passed through.
MESSAGES = {
    "no_token": ("缺少访问令牌：请先登录，并在请求头中携带 Authorization: Bearer <token>。",
                 "No token: log in and send Authorization: Bearer <token>."),
    "bad_token": ("访问令牌无效，请重新登录。", "The token is not valid; log in again."),
    "expired_token": ("访问令牌已过期，请重新登录。", "The token has expired; log in again."),
    "token_revoked": ("密码已更改，此前签发的访问令牌已失效；请重新登录。",
                      "The password was changed after this token was issued; log in again."),
    "inactive": ("账号不存在或已停用，请联系管理员。", "The account is unknown or deactivated; ask an administrator."),
    "bad_login": ("用户名或密码不正确。", "Wrong username or password."),
    "read_only": ("督查账号只能查看，不能办理或修改。", "Auditors may read but not change anything."),
    "idempotency_key": ("Idempotency-Key 须为 1 至 64 个可见 ASCII 字符（不含空格），建议每次上报生成一个 UUID。",
                        "Idempotency-Key must be 1 to 64 printable ASCII characters (no spaces); a UUID per report."),
    "not_json": ("请求体必须是 JSON（Content-Type: application/json）。",
                 "The body must be JSON (Content-Type: application/json)."),
    "not_multipart": ("上传文件请使用 multipart/form-data。", "Upload files as multipart/form-data."),
    "bad_json": ("请求体不是有效的 JSON。", "The body is not valid JSON."),
    "empty_body": ("请求体为空，请发送 JSON 对象。", "The body is empty; send a JSON object."),
    "invalid": ("提交的内容有误，请按字段提示修改。", "Some fields are not valid; see `fields`."),
    "repeated_param": ("此查询参数只能给出一次。", "Give this query parameter once; none takes several values."),
    "no_task": ("任务不存在。", "No such task."),
    "no_case": ("事项不存在。", "No such case."),
    "no_file": ("文件不存在。", "No such file."),
    "no_route": ("接口不存在。", "No such API route."),
    "method": ("该接口不支持此请求方法。", "This route does not accept this method."),
    "too_large": ("请求内容太大。", "The request is too large."),
    "internal": ("服务器内部错误，已记录（编号 {ref}）。请稍后重试。",
                 "Internal error; it has been logged (reference {ref}). Please try again later."),
    "unavailable": DATABASE_UNAVAILABLE_MESSAGES,
    "choose_file": ("请选择要上传的文件（字段 file）。", "Choose at least one file (field `file`)."),
    "too_many_files": ("一次最多上传 {n} 个文件。", "At most {n} files per request."),
    "unknown_field": ("未知字段。", "Unknown field."),
    "unknown_key": ("请求中没有字段 {name}；可用的字段：{names}", "the request has no field {name}; fields it takes: {names}"),
    "unknown_key_unlisted": ("请求中没有字段 {name}", "the request has no field {name}"),
    "nul": ("不能包含控制字符（NUL）。", "Must not contain NUL characters."),
    "not_finite": ("数值超出范围。", "The number is out of range."),
    "too_deep": ("嵌套层级过深或数值过大。", "Nested too deeply or a number too large."),
    "bad_text": ("包含无效字符（NUL 或不成对的代理字符）。", "Contains invalid characters (NUL or a lone surrogate)."),
}

ENGINE_STATUS = [(NotFound, 404, "not_found"), (PermissionDenied, 403, "forbidden"),
                 (Conflict, 409, "conflict"), (InvalidInput, 400, "invalid"),
                 (ProcessError, 422, "process_error")]
HTTP_CODES = {400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "too_large", 415: "unsupported_media_type"}


# ------------------------------------------------------------------ language and errors

def lang() -> str:
    """`Accept-Language: en` -> English; anything else Chinese (the officials' language)."""
    best = request.accept_languages.best_match(["zh", "zh-CN", "zh-Hans", "en"])
    return "en" if best == "en" else "zh"


def msg(key: str, **values) -> str:
    zh, en = MESSAGES[key]
    text = en if lang() == "en" else zh
    return text.format(**values) if values else text


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, fields: dict | None = None,
                 headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.fields, self.headers = fields, headers or {}


def json_response(body, status: int = 200, headers: dict | None = None):
    response = current_app.response_class(
        json.dumps(body, ensure_ascii=False, allow_nan=False), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def error_response(status: int, code: str, message: str, fields: dict | None = None,
                   headers: dict | None = None):
    body = {"error": code, "message": message}
    if fields:
        # the validators' (English) messages in the caller's language, as the web forms show them
        body["field_errors"] = {str(k)[:200]: [localise_message(m, lang()) for m in (v if isinstance(v, (list, tuple)) else [v])]
                                for k, v in list(fields.items())[:200]}
    response = json_response(s.schema(s.ErrorSchema).dump(body), status, headers)
    response.headers["Cache-Control"] = "no-store"
    return response


def _flatten(messages, prefix: str = "") -> dict[str, list[str]]:
    """marshmallow's nested messages as {"a.b": [..]}."""
    out: dict[str, list[str]] = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(value, dict) and set(value) <= {"key", "value"} and value and prefix:
                # a Dict field's per-entry messages: {"key": [...], "value": [...]};
                # a bad key is reported on the Dict itself (never echo a huge key back)
                for part in _flatten(value.get("key", []), prefix).values():
                    out.setdefault(prefix, []).extend(f"key: {m}" for m in part)
                for part in _flatten(value.get("value", []), name).values():
                    out.setdefault(name, []).extend(part)
            else:
                for k, v in _flatten(value, name).items():
                    out.setdefault(k, []).extend(v)
    elif isinstance(messages, (list, tuple)):
        for item in messages:
            if isinstance(item, (dict, list, tuple)):
                for k, v in _flatten(item, prefix).items():
                    out.setdefault(k, []).extend(v)
            else:
                out.setdefault(prefix or "_schema", []).append(str(item))
    else:
        out.setdefault(prefix or "_schema", []).append(str(messages))
    return out


def _is_api_path() -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


@bp.before_app_request
def _api_routing_errors():
    """Unknown routes and methods under /api/ answer JSON. They never reach a
    view, so the blueprint's error handlers do not see them; intercept the
    routing error here instead."""
    exc = request.routing_exception
    if exc is None or not _is_api_path() or isinstance(exc, RequestRedirect):
        return None
    if isinstance(exc, HTTPException):
        headers = {}
        if exc.code == 405:
            headers["Allow"] = ", ".join(sorted(getattr(exc, "valid_methods", None) or []))
            return error_response(405, "method_not_allowed", msg("method"), headers=headers)
        if exc.code == 404:
            return error_response(404, "not_found", msg("no_route"))
        return error_response(exc.code or 400, HTTP_CODES.get(exc.code, "error"), exc.description or "")
    return None


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError):
    return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)


@bp.errorhandler(EngineError)
def _engine_error(exc: EngineError):
    if isinstance(exc, CredentialsChanged):  # the token is of an earlier password
        return _api_error(_unauthorized("token_revoked", "token_revoked"))
    if isinstance(exc, InactiveAccount):  # what the token names is no (longer an) account
        return _api_error(_unauthorized("inactive"))
    if isinstance(exc, LoginLocked):      # too many failed logins of the name: 429, and for how long
        return error_response(429, exc.code, exc.text(lang()), headers={"Retry-After": str(exc.retry_after)})
    for cls, status, code in ENGINE_STATUS:
        if isinstance(exc, cls):
            break
    else:
        status, code = 422, getattr(exc, "code", "error")
    if status == 422:
        log.warning("process error on %s %s: %s", request.method, request.path, exc.message)
    fields = exc.field_texts(lang()) if isinstance(exc, InvalidInput) else None
    return error_response(status, code, exc.text(lang()), fields)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    status = exc.code or 500
    if status == 413:
        return error_response(413, "too_large", msg("too_large"))
    if status == 404:
        return error_response(404, "not_found", msg("no_route"))
    if status == 405:
        return error_response(405, "method_not_allowed", msg("method"),
                              headers={"Allow": ", ".join(sorted(getattr(exc, "valid_methods", None) or []))})
    return error_response(status, HTTP_CODES.get(status, "error"), exc.description or exc.name)


def _database_unavailable(exc: Exception):
    """The database is down, unreachable or busy past its wait: the transaction rolled back
    whole, so the caller is told nothing was saved and when to try again (503), not a 500."""
    log_database_unavailable(log, exc)
    return error_response(503, "unavailable", msg("unavailable"), headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


for _unavailable in DATABASE_UNAVAILABLE:
    bp.register_error_handler(_unavailable, _database_unavailable)


@bp.errorhandler(Exception)
def _unexpected(exc: Exception):
    ref = uuid.uuid4().hex[:12]
    log.exception("unhandled API error %s on %s %s", ref, request.method, request.path)
    return error_response(500, "internal_error", msg("internal", ref=ref))


@bp.after_request
def _no_store(response):
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


# ------------------------------------------------------------------ authentication

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=TOKEN_SALT)


def issue_token(user_id: int, stamp: str) -> str:
    """A bearer token for the account, bound to its current password (`stamp`): a new
    password, its owner's or an administrator's reset, revokes every token issued before."""
    return _serializer().dumps({"uid": user_id, "pw": stamp})


def _unauthorized(key: str, code: str = "unauthorized"):
    challenge = 'Bearer realm="gridflow"' if key == "no_token" else 'Bearer realm="gridflow", error="invalid_token"'
    return ApiError(401, code, msg(key), headers={"WWW-Authenticate": challenge})


class TokenPrincipal(StampedActor):
    """Who a valid token names, before the account is read: for the views whose engine
    transaction reads and checks the account and the password stamp itself
    (`route(..., account="engine")`); they pass it to the service as the actor."""


def _authenticate(read_account: bool = True):
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized("no_token")
    if len(token) > 2048:
        raise _unauthorized("bad_token")
    try:
        payload = _serializer().loads(token, max_age=current_app.config["API_TOKEN_MAX_AGE"])
    except SignatureExpired:
        raise _unauthorized("expired_token", "token_expired") from None
    except BadData:
        raise _unauthorized("bad_token") from None
    uid = payload.get("uid") if isinstance(payload, dict) else None
    stamp = payload.get("pw") if isinstance(payload, dict) else None
    if not isinstance(uid, int) or isinstance(uid, bool) or not 0 < uid < 2 ** 31:
        raise _unauthorized("bad_token")
    if not isinstance(stamp, str):   # a token of before tokens named the password
        raise _unauthorized("token_revoked", "token_revoked")
    principal = TokenPrincipal(uid, stamp)
    if not read_account:
        return principal
    # re-checked on every request: a deactivated account or a changed password stops here
    # (one statement)
    user = readmodels.active_principal(service().db, uid)
    if user is None:
        raise _unauthorized("inactive")
    if not principal.matches(user.password_stamp):
        raise _unauthorized("token_revoked", "token_revoked")
    g.api_user = user
    return user


def route(rule: str, method: str, *, auth: str | None = "read", account: str = "read", **doc):
    """Register a view under `rule` for `method`, with its OpenAPI declaration.
    auth: None (public), "read" (any valid token) or "write" (not an auditor).
    Authenticated views receive the user as their first argument.
    account: "read" (the account and its roles are read before the view, one statement)
    or "engine": the view only runs one engine transition, whose own first statement
    vouches for the account (`WorkflowService._user`: an unknown or deactivated one is
    `InactiveAccount`, answered 401; an auditor is refused there too); the view gets a
    `TokenPrincipal` (the id) and a round trip is saved."""
    def deco(fn):
        view = fn
        if auth:
            @wraps(fn)
            def view(*args, **kwargs):
                user = _authenticate(read_account=account == "read")
                if auth == "write" and account == "read" and is_read_only(user):
                    raise ApiError(403, "forbidden", msg("read_only"))
                return fn(user, *args, **kwargs)
        errors = set(doc.pop("errors", ()))
        if auth == "write":
            errors.add(403)
        document(auth=bool(auth), errors=tuple(sorted(errors)), **doc)(view)
        bp.add_url_rule(rule, endpoint=fn.__name__, view_func=view, methods=[method])
        return view
    return deco


# ------------------------------------------------------------------ input

def _reject_unstorable(value, path: str):
    """Refuse, per field, what the database cannot store (forms.safety decides)."""
    found = find_unstorable(value, path)
    if found:
        where, problem = found
        raise ApiError(400, "invalid", msg("invalid"),
                       fields={(where or "_schema")[:200]: [msg("too_deep" if problem == "too_large" else problem)]})


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def json_body(schema):
    """The request's JSON object loaded by `schema`: 415 if not JSON, 413 if too
    large, 400 if malformed or invalid (with per-field messages)."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", msg("not_json"))
    request.max_content_length = min(
        current_app.config.get("API_JSON_MAX_BYTES", JSON_MAX_BYTES),
        current_app.config.get("MAX_CONTENT_LENGTH") or JSON_MAX_BYTES)
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise ApiError(400, "invalid", msg("empty_body"))
    try:
        payload = json.loads(raw.decode("utf-8-sig"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError(400, "invalid", msg("bad_json")) from None
    _reject_unstorable(payload, "")
    try:
        return schema.load(payload)
    except ValidationError as exc:
        fields = _name_unknown_keys(schema, _flatten(exc.messages))
        raise ApiError(400, "invalid", msg("invalid"), fields=fields) from None


def _name_unknown_keys(schema, fields: dict) -> dict:
    """A key the body does not take is named, with the keys it does (as a form's unknown key
    is, forms/__init__.py), not just "Unknown field."."""
    names = [f.data_key or name for name, f in schema.fields.items() if not f.dump_only]
    separator = "、" if lang() == "zh" else ", "
    for key, shown, listing in unknown_keys(fields):
        fields[key] = [msg("unknown_key", name=shown, names=separator.join(names)) if listing
                       else msg("unknown_key_unlisted", name=shown)]
    return fields


def query_args(schema):
    # no filter takes a list: `?colour=red&colour=blue` would silently filter by red alone
    repeated = sorted(name for name, values in request.args.lists() if len(values) > 1)
    if repeated:
        raise ApiError(400, "invalid", msg("invalid"), fields={name: [msg("repeated_param")] for name in repeated})
    args = request.args.to_dict(flat=True)
    _reject_unstorable(args, "")
    try:
        return schema.load(args)
    except ValidationError as exc:
        raise ApiError(400, "invalid", msg("invalid"), fields=_flatten(exc.messages)) from None


def task_id_param(task_id: str) -> str:
    if not TASK_ID_RE.match(task_id or ""):
        raise ApiError(404, "not_found", msg("no_task"))
    return task_id.lower()


def case_ref_param(ref: str):
    """A case's numeric id or its business key; anything else is a 404."""
    if CASE_ID_RE.match(ref or ""):
        number = int(ref)
        if 0 < number <= INT_MAX:
            return number
    elif BUSINESS_KEY_RE.match(ref or ""):
        return ref
    raise ApiError(404, "not_found", msg("no_case"))


def uploaded_files() -> list[tuple[str, bytes]]:
    if request.mimetype != "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", msg("not_multipart"))
    files, form = request.files, request.form  # 413 when over MAX_CONTENT_LENGTH
    # a part without a name is read as the key None: named "" here, refused like any other
    unknown = {k or "" for k in form.keys()} | {k or "" for k in files.keys() if k != "file"}
    if unknown:
        raise ApiError(400, "invalid", msg("invalid"), fields={
            k[:100]: [msg("choose_file") if k == "file" else msg("unknown_field")] for k in sorted(unknown)[:20]})
    chosen = [f for f in files.getlist("file")]
    if not chosen:
        raise ApiError(400, "invalid", msg("choose_file"), fields={"file": [msg("choose_file")]})
    if len(chosen) > MAX_FILES:
        raise ApiError(400, "invalid", msg("too_many_files", n=MAX_FILES),
                       fields={"file": [msg("too_many_files", n=MAX_FILES)]})
    out = []
    for storage in chosen:
        name = (storage.filename or "file").replace("\x00", "")[:1000]
        data = storage.read()
        # Check them all before storing any: one bad file refuses the whole request.
        service().attachments.check(name, data)
        out.append((name, data))
    return out


# ------------------------------------------------------------------ output

def jsonable(value, depth: int = 0):
    """Workflow data as strict JSON (no NaN, dates as ISO text, unknown types as text)."""
    if depth > 40:
        return None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v, depth + 1) for v in value]
    return str(value)


def _public(data: dict | None) -> dict:
    return {k: jsonable(v) for k, v in (data or {}).items() if not str(k).startswith("_")}


def _nodes(ids) -> dict[int, JurisdictionNode]:
    """Jurisdiction nodes by id (code and name), cached for the request.
    The service's read models carry ids and names, not codes."""
    cache = g.setdefault("api_nodes", {})
    missing = {i for i in ids if i and i not in cache}
    if missing:
        with service().db.read_session() as session:
            for node in session.scalars(select(JurisdictionNode).where(JurisdictionNode.id.in_(missing))):
                cache[node.id] = {"id": node.id, "code": node.code, "name": node.name}
    return cache


def _grid(grid_id: int | None, name: str | None = None) -> dict:
    node = _nodes([grid_id]).get(grid_id) if grid_id else None
    return dict(node) if node else {"id": grid_id, "code": None, "name": name}


def _grid_id_from_path(path: str | None) -> int | None:
    parts = [p for p in (path or "").strip("/").split("/") if p.isdigit()]
    return int(parts[-1]) if parts else None


def _person(user_id, names: dict | None = None):
    if not user_id:
        return None
    names = names if names is not None else {}
    if user_id not in names:
        user = service().get_user(user_id)
        names[user_id] = user.display_name if user else None
    return {"id": user_id, "display_name": names[user_id]}


def _overdue(item) -> bool:
    return bool(item.status == "open" and item.due_at is not None and item.due_at < clock.now())


def _task_brief(item, names: dict | None = None) -> dict:
    unit = _nodes([item.candidate_node_id]).get(item.candidate_node_id) if item.candidate_node_id else None
    return {
        "id": item.id, "name": item.name, "spec_id": item.spec_id, "process": item.process_key,
        "status": item.status, "created_at": item.created_at, "due_at": item.due_at, "overdue": _overdue(item),
        "claimed_at": item.claimed_at, "assignee": _person(item.assignee_id, names), "role": item.role,
        "candidate_unit": unit["name"] if unit else None,
    }


def _case_ref(case) -> dict:
    return {
        "id": case.id, "business_key": case.business_key, "title": case.title or None, "status": case.status,
        "process": case.process_key, "category": case.category, "colour": case.colour,
        "grid": _grid(case.grid_id), "summary": _public(mask_data(case.summary, personal_fields(service().forms))),
    }


def _form(form, case_data: dict | None = None, department_places: dict | None = None) -> dict | None:
    if form is None:
        return None
    language, case_data = lang(), case_data or {}
    readonly = {f.name: jsonable(case_data.get(f.name)) for f in form.fields if f.readonly}
    defaults = {f.name: jsonable(case_data[f.default_from]) for f in form.input_fields
                if f.default_from and case_data.get(f.default_from) is not None}
    text = (lambda t: (t.get(language) or t.get("zh")) if t else None)
    return {"key": form.key, "title": text(form.title), "description": text(form.description),
            "json_schema": json_schema(form, language), "readonly": readonly, "defaults": defaults,
            # where a dispatch's department choices go, as the task page tells it
            "department_routing": department_routing(form, department_places, language)}


def _attachment(att) -> dict:
    return {"id": att.id, "filename": att.filename, "content_type": att.content_type, "size": att.size,
            "uploaded_at": getattr(att, "uploaded_at", None)}


def _event(event, names: dict) -> dict:
    return {"id": event.id, "type": event.event_type, "at": event.at, "actor": _person(event.actor_id, names),
            "bpmn_id": event.bpmn_id, "name": event.bpmn_name, "flow_from": event.flow_from,
            "task_id": event.work_item_id, "data": jsonable(event.data or {})}


def _case_detail(detail) -> dict:
    case, names = detail.case, dict(detail.user_names)
    out = _case_ref(case)
    out.update(
        process_name=detail.version.name if detail.version else None,
        process_version=detail.version.version if detail.version else None,
        created_at=case.created_at, updated_at=case.updated_at, closed_at=case.closed_at,
        created_by=_person(case.created_by_id, names), data=_public(detail.data),
        open_tasks=[_task_brief(i, names) for i in detail.open_items],
        history=[_event(e, names) for e in detail.events],
        attachments=[_attachment(a) for a in detail.attachments],
        may_contribute=bool(detail.may_contribute))
    return out


def _case_step(view) -> dict:
    """The case as a step (a start, a completion) left it, from the engine's answer
    alone: the case row and its open tasks, plus one statement for the names of the
    people and units they mention. Its data, history and attachments are
    GET /api/v1/cases/{ref}: rebuilding them here would cost a dozen statements and
    a deserialized workflow on every step. Only the masked summary of the data is
    shown, as in any list, so it is shown to whoever made the step."""
    case, items = view.case, list(view.open_items)
    names, nodes = readmodels.labels(
        service().db, user_ids=[case.created_by_id] + [i.assignee_id for i in items],
        node_ids=[case.grid_id] + [i.candidate_node_id for i in items], org=view.org)
    g.setdefault("api_nodes", {}).update(nodes)
    out = _case_ref(case)
    out.update(created_at=case.created_at, updated_at=case.updated_at, closed_at=case.closed_at,
               created_by=_person(case.created_by_id, names),
               open_tasks=[_task_brief(i, names) for i in sorted(items, key=lambda i: (i.created_at, i.id))])
    return out


def _task_detail(detail) -> dict:
    detail = PersonalData(service()).guard_task_detail(g.api_user.id, detail, "api_task")
    out = _task_brief(detail.item)
    out.update(may_work=bool(detail.may_work), case=_case_ref(detail.case),
               form=_form(detail.form, detail.case_data, detail.department_places))
    return out


def _user(user) -> dict:
    return {"id": user.id, "username": user.username, "display_name": user.display_name,
            "roles": [{"role": ra.role, "node": ra.node.code, "node_name": ra.node.name, "level": ra.node.level}
                      for ra in user.roles],
            "read_only": is_read_only(user)}


# ------------------------------------------------------------------ routes: auth and processes

def _json(desc: str, schema, many: bool = False, **extra) -> dict:
    return {"description": desc, "schema": schema, "many": many, **extra}


TASK_ID = ({"type": "string", "format": "uuid"}, "task id (from the inbox)")
CASE_REF = ({"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$"},
            "the case's numeric id or its business key (e.g. LX-2026-000001)")
LOCATION = {"Location": {"schema": {"type": "string"}, "description": "URL of the case"}}


@route(f"{V1}/auth/token", "POST", auth=None, tags=["auth"], summary="Log in: get a bearer token",
       body=s.TokenRequestSchema,
       description="Five failed logins of one username within 15 minutes lock it for 15 minutes: "
                   "429 with `Retry-After`, whatever the password.",
       responses={200: _json("a token and who it belongs to", s.TokenSchema)}, errors=[401, 429])
def issue_api_token():
    body = json_body(s.schema(s.TokenRequestSchema))
    user = service().authenticate(body["username"], body["password"], via="api", address=request.remote_addr)
    if user is None:
        raise ApiError(401, "unauthorized", msg("bad_login"),
                       headers={"WWW-Authenticate": 'Bearer realm="gridflow"'})
    user = service().get_user(user.id)
    if user is None:
        raise _unauthorized("inactive")
    return json_response(s.schema(s.TokenSchema).dump({
        "token": issue_token(user.id, user.password_stamp), "token_type": "Bearer",
        "expires_in": int(current_app.config["API_TOKEN_MAX_AGE"]), "user": _user(user)}))


@route(f"{V1}/auth/password", "POST", tags=["auth"], summary="Change your own password",
       description="`current` is checked: a wrong one counts as a failed login, and the lock of "
                   "POST /api/v1/auth/token applies (429). `new`: 8 to 128 characters of three kinds "
                   "(lower case, upper case, digits, other), without your username, not the current one; "
                   "a refusal (400) names the field. Every token issued before stops working (401 "
                   "`token_revoked`, here and on the account's other devices); the answer carries a new one.",
       body=s.PasswordChangeSchema,
       responses={200: _json("the password was changed", s.PasswordChangedSchema)}, errors=[429])
def change_password(user):
    body = json_body(s.schema(s.PasswordChangeSchema))
    stamp = service().change_password(user.id, body["current"], body["new"], body["new"],
                                      address=request.remote_addr, via="api")
    return json_response(s.schema(s.PasswordChangedSchema).dump({
        "changed": True, "token": issue_token(user.id, stamp), "token_type": "Bearer",
        "expires_in": int(current_app.config["API_TOKEN_MAX_AGE"])}))


@route(f"{V1}/processes", "GET", tags=["processes"], summary="Processes you may start, with their start forms",
       description="Each process comes with the JSON Schema of its start form (titles in the request "
                   "language) and the grids you may start it in. Auditors get an empty list.",
       responses={200: _json("startable processes", s.ProcessListSchema)})
def list_processes(user):
    items = []
    for option in service().startable(user.id):
        form = service().forms.get(option.start_form) if option.start_form else None
        items.append({"key": option.process_key, "name": option.name, "start_form": _form(form),
                      "grids": [{"id": grid_id, "code": code, "name": name} for code, name, grid_id in option.grids]})
    return json_response(s.schema(s.ProcessListSchema).dump({"items": items}))


# ------------------------------------------------------------------ routes: cases

IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,64}")   # printable ASCII, no spaces: a UUID fits


@route(f"{V1}/cases", "POST", auth="write", account="engine", tags=["cases"], summary="Start a case (report a matter)",
       description="`data` must satisfy the start form's JSON Schema from GET /api/v1/processes. "
                   "Send an `Idempotency-Key` (e.g. a UUID made when the report is written) so that a "
                   "retry after a timeout or a lost answer reports nothing twice: the same key from the "
                   "same account starts no second case and answers 200 with the case it started.",
       body=s.StartCaseSchema,
       headers={"Idempotency-Key": ({"type": "string", "minLength": 1, "maxLength": 64,
                                     "pattern": "^[\\x21-\\x7e]+$"},
                                    "one key per report, 1-64 printable ASCII characters; kept with the case")},
       responses={201: _json("the new case as the start left it (status, open tasks); its data, history "
                             "and attachments: GET the `Location`", s.CaseStepSchema, headers=LOCATION),
                  200: _json("this Idempotency-Key already started a case: that case as it stands now "
                             "(nothing was started again)", s.CaseStepSchema, headers=LOCATION)},
       errors=[422])
def create_case(user):
    body = json_body(s.schema(s.StartCaseSchema))
    key = request.headers.get("Idempotency-Key")
    if key is not None and not IDEMPOTENCY_KEY.fullmatch(key):
        text = msg("idempotency_key")
        raise ApiError(400, "invalid", text, fields={"Idempotency-Key": [text]})
    status = 201
    try:
        view = service().start_case(body["process"], body["grid"], body["data"], user, start_token=key)
    except NotFound as exc:
        # the resource is /cases; an unknown grid or process is a bad field, not a missing route
        name = exc.details.get("field") or "process"
        raise ApiError(400, "invalid", exc.text(lang()), fields={name: [exc.text(lang())]}) from None
    except AlreadyStarted as exc:
        # a retry of a report that did start (its answer was lost): the case it started, not a second
        view, status = service().get_case(exc.business_key), 200
    return json_response(s.schema(s.CaseStepSchema).dump(_case_step(view)), status,
                         {"Location": url_for("api.get_case", ref=view.case.business_key)})


@route(f"{V1}/cases/<ref>", "GET", tags=["cases"], summary="A case: data, open tasks, history, attachments",
       path_params={"ref": CASE_REF}, responses={200: _json("the case", s.CaseSchema)}, errors=[403, 404])
def get_case(user, ref):
    detail = service().view_case(user.id, case_ref_param(ref))
    detail = PersonalData(service()).guard_case_detail(user.id, detail, "api_case")
    return json_response(s.schema(s.CaseSchema).dump(_case_detail(detail)))


@route(f"{V1}/cases/<ref>/attachments", "POST", auth="write", tags=["cases"],
       summary="Add files to a case",
       description="multipart/form-data with one or more `file` parts. You need an open task in the case "
                   "(or to have started it while it is open). All files are checked before any is stored.",
       path_params={"ref": CASE_REF}, multipart=s.UploadFormSchema,
       responses={201: _json("the stored files", s.AttachmentSchema, many=True)}, errors=[403, 404])
def upload_case_files(user, ref):
    case_ref = case_ref_param(ref)
    files = uploaded_files()
    stored = [service().upload_attachment(user.id, name, data, case_ref) for name, data in files]
    return json_response(s.schema(s.AttachmentSchema, many=True).dump([_attachment(a) for a in stored]), 201)


@route(f"{V1}/attachments", "POST", auth="write", tags=["cases"],
       summary="Upload files for a form you are about to submit",
       description="For a form's file field (e.g. the start form's photos): upload first, then put the "
                   "returned ids in the field. The files join the case when the form is submitted.",
       multipart=s.UploadFormSchema,
       responses={201: _json("the stored files", s.AttachmentSchema, many=True)})
def upload_pending_files(user):
    files = uploaded_files()
    stored = [service().upload_attachment(user.id, name, data, None) for name, data in files]
    return json_response(s.schema(s.AttachmentSchema, many=True).dump([_attachment(a) for a in stored]), 201)


@route(f"{V1}/attachments/<attachment_id>", "GET", tags=["cases"], summary="Download a file",
       path_params={"attachment_id": ({"type": "string", "format": "uuid"}, "attachment id")},
       responses={200: {"description": "the file's bytes, with the type read from its content when it was "
                                       "uploaded", "content_type": tuple(kind[0] for kind in ATTACHMENT_KINDS),
                        "schema": {"type": "string", "format": "binary"}}},
       errors=[403, 404])
def download_file(user, attachment_id):
    if not TASK_ID_RE.match(attachment_id or ""):
        raise ApiError(404, "not_found", msg("no_file"))
    att, path = service().open_attachment(user.id, attachment_id.lower())
    if not Path(path).is_file():
        raise ApiError(404, "not_found", msg("no_file"))
    response = send_file(path, mimetype=att.content_type, as_attachment=True, download_name=att.filename,
                         max_age=0)
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# ------------------------------------------------------------------ routes: tasks

@route(f"{V1}/tasks", "GET", tags=["tasks"], summary="My inbox",
       description="Open tasks you may work: assigned to you, or waiting for a role you hold. Same filters "
                   "as the inbox page; ordered by due time.",
       query=s.InboxQuerySchema, responses={200: _json("a page of tasks and the total", s.InboxSchema)})
def list_tasks(user):
    q = query_args(s.schema(s.InboxQuerySchema))
    filters = InboxFilters(process_key=q.get("process"), spec_id=q.get("task"), colour=q.get("colour"),
                           overdue=q["overdue"], business_key=(q.get("q") or "").strip() or None,
                           limit=q["limit"], offset=q["offset"])
    rows, total = service().inbox_page(user.id, filters)
    names = {r.item.assignee_id: r.claimed_by for r in rows if r.item.assignee_id}
    _nodes([_grid_id_from_path(r.item.grid_path) for r in rows] + [r.item.candidate_node_id for r in rows])
    items = []
    for row in rows:
        item = _task_brief(row.item, names)
        item["case"] = {"id": row.item.case_id, "business_key": row.business_key, "title": row.case_title or None,
                        "status": "open", "process": row.item.process_key, "colour": row.colour,
                        "grid": _grid(_grid_id_from_path(row.item.grid_path), row.grid_name)}
        items.append(item)
    return json_response(s.schema(s.InboxSchema).dump(
        {"items": items, "total": total, "limit": filters.limit, "offset": filters.offset}))


@route(f"{V1}/tasks/<task_id>", "GET", tags=["tasks"], summary="A task with its form",
       description="`form.schema` is the JSON Schema of the data to complete it with; `form.readonly` the "
                   "case values the form shows; `form.defaults` suggested values.",
       path_params={"task_id": TASK_ID}, responses={200: _json("the task", s.TaskSchema)}, errors=[403, 404])
def get_task(user, task_id):
    detail = service().task_detail(user.id, task_id_param(task_id))
    return json_response(s.schema(s.TaskSchema).dump(_task_detail(detail)))


@route(f"{V1}/tasks/<task_id>/claim", "POST", auth="write", tags=["tasks"],
       summary="Claim a group task: it becomes yours alone",
       path_params={"task_id": TASK_ID}, responses={200: _json("the task, now yours", s.TaskSchema)},
       errors=[403, 404, 409])
def claim_task(user, task_id):
    task_id = task_id_param(task_id)
    service().claim(task_id, user.id)
    return json_response(s.schema(s.TaskSchema).dump(_task_detail(service().task_detail(user.id, task_id))))


@route(f"{V1}/tasks/<task_id>/unclaim", "POST", auth="write", tags=["tasks"],
       summary="Release a task you claimed back to its group",
       path_params={"task_id": TASK_ID}, responses={200: _json("the task, released", s.TaskSchema)},
       errors=[403, 404, 409])
def unclaim_task(user, task_id):
    task_id = task_id_param(task_id)
    service().unclaim(task_id, user.id)
    return json_response(s.schema(s.TaskSchema).dump(_task_detail(service().task_detail(user.id, task_id))))


@route(f"{V1}/tasks/<task_id>/reassign", "POST", auth="write", tags=["tasks"],
       summary="Reassign an open task (改派): to another official, or a claimed group task back to its group",
       description="Centre dispatchers and leaders over the case. A group task goes only to a holder of its "
                   "role at its unit; a task assigned by name, or one nobody's lane held, to an active "
                   "official holding a role over the case's grid. A bad `to` or `reason` is a 400 with "
                   "`fields`; anyone else gets 403; a finished task is a 409.",
       path_params={"task_id": TASK_ID}, body=s.ReassignTaskSchema,
       responses={200: _json("the task, reassigned", s.TaskSchema)}, errors=[403, 404, 409])
def reassign_task(user, task_id):
    task_id = task_id_param(task_id)
    body = json_body(s.schema(s.ReassignTaskSchema))
    service().supervision.reassign(task_id, body.get("to"), body["reason"], user.id)
    return json_response(s.schema(s.TaskSchema).dump(_task_detail(service().task_detail(user.id, task_id))))


@route(f"{V1}/tasks/<task_id>/complete", "POST", auth="write", account="engine", tags=["tasks"],
       summary="Complete a task with its form data",
       description="`data` must satisfy `form.schema` of GET /api/v1/tasks/{task_id}. Invalid data is a 400 "
                   "with `fields` and changes nothing; a task already completed is a 409.",
       path_params={"task_id": TASK_ID}, body=s.CompleteTaskSchema,
       responses={200: _json("the case as the step left it (status, open tasks); its data, history and "
                             "attachments: GET /api/v1/cases/{ref}", s.CaseStepSchema)},
       errors=[403, 404, 409, 422])
def complete_task(user, task_id):
    task_id = task_id_param(task_id)
    body = json_body(s.schema(s.CompleteTaskSchema))
    view = service().complete_task(task_id, body["data"], user)
    return json_response(s.schema(s.CaseStepSchema).dump(_case_step(view)))


# ------------------------------------------------------------------ routes: notifications

@route(f"{V1}/notifications", "GET", tags=["notifications"], summary="My notifications, newest first",
       description="New tasks, reminders, escalations, 督办 and (for admins and designers) incidents, with the "
                   "unread count the app shows as its badge. A notice of a task no longer open (done, or "
                   "withdrawn when a deadline sent the matter up) is not unread.",
       query=s.NotificationsQuerySchema,
       responses={200: _json("a page of notifications, the total and the unread count", s.NotificationsSchema)})
def list_notifications(user):
    q = query_args(s.schema(s.NotificationsQuerySchema))
    notifier = service().notifier
    total = notifier.count(user.id)
    rows = notifier.page(user.id, limit=q["limit"], offset=q["offset"]) if total else []
    items = [{"id": r.notification.id, "kind": r.notification.kind, "subject": r.notification.subject,
              "note": r.notification.note, "business_key": r.business_key, "task_id": r.notification.work_item_id,
              "task_status": r.task_status, "sent_by": r.actor_name, "created_at": r.notification.created_at,
              "read_at": r.notification.read_at, "unread": r.unread} for r in rows]
    return json_response(s.schema(s.NotificationsSchema).dump(
        {"items": items, "total": total, "unread": notifier.unread_count(user.id), "limit": q["limit"],
         "offset": q["offset"]}))


@route(f"{V1}/notifications/<int:notification_id>/read", "POST", tags=["notifications"],
       summary="Mark one of your notifications read",
       description="Someone else's notification is a 404, as one that does not exist.",
       path_params={"notification_id": ({"type": "integer", "minimum": 1}, "notification id (from the list)")},
       responses={200: _json("the unread count after it", s.UnreadSchema)}, errors=[404])
def read_notification(user, notification_id):
    notifier = service().notifier
    before = notifier.unread_count(user.id)
    notifier.mark_read(user.id, notification_id)
    after = notifier.unread_count(user.id)
    return json_response(s.schema(s.UnreadSchema).dump({"marked": before - after, "unread": after}))


@route(f"{V1}/notifications/read-all", "POST", tags=["notifications"], summary="Mark all your notifications read",
       responses={200: _json("how many were marked, and the unread count after it (0)", s.UnreadSchema)})
def read_all_notifications(user):
    notifier = service().notifier
    marked = notifier.mark_all_read(user.id)
    return json_response(s.schema(s.UnreadSchema).dump({"marked": marked, "unread": notifier.unread_count(user.id)}))


# ------------------------------------------------------------------ routes: dashboard (web/dashboard.py)

from . import dashboard as _dashboard  # noqa: E402  (it uses this module's helpers)

route(f"{V1}/dashboard", "GET", tags=["dashboard"], summary="Governance figures of a jurisdiction",
      description="办结率, 按期办结率, 满意率, 返工率, resolution levels, escalations, counts, overdue, 督办, "
                  "petitions, grid workers, reverse evaluation and the drill-down to the child nodes, for a "
                  "node and its subtree and a period: the figures of the dashboard page. Leaders, centre "
                  "dispatchers and auditors, within their jurisdiction. Definitions: docs/metrics.md.",
      query=_dashboard.DashboardQuerySchema,
      responses={200: _json("the figures", _dashboard.RESPONSE_SCHEMA)}, errors=[403, 404])(_dashboard.api_dashboard)


# ------------------------------------------------------------------ documentation

@route(f"{V1}/openapi.json", "GET", auth=None, tags=["meta"], summary="This API as OpenAPI 3",
       responses={200: {"description": "the OpenAPI document", "schema": {"type": "object"}}})
def openapi_document():
    return json_response(build_spec(current_app))


@bp.route("/api/docs", methods=["GET"])
def docs():
    return render_template("api_docs.html", spec_url=url_for("api.openapi_document"),
                           asset=lambda name: url_for("api.docs_asset", filename=name),
                           init_url=url_for("api.docs_init"))


DOCS_INIT = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: %s,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
});
"""


@bp.route("/api/docs/init.js", methods=["GET"])
def docs_init():
    body = DOCS_INIT % json.dumps(url_for("api.openapi_document"))
    return current_app.response_class(body, mimetype="text/javascript")


@bp.route("/api/docs/assets/<path:filename>", methods=["GET"])
def docs_asset(filename):
    """swagger-ui-dist from the repo's node_modules (installed by `npm ci`); that directory only."""
    directory = Path(current_app.config["NODE_MODULES"]) / "swagger-ui-dist"
    if not directory.is_dir():
        raise HTTPNotFound()
    return send_from_directory(directory, filename, max_age=3600)
