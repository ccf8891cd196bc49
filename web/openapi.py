"""The API's OpenAPI document, built from the routes themselves.

Each view of `web/api.py` is declared with `document(...)` (summary, auth,
request and response schemas, the errors it can answer). `build_spec(app)`
walks `app.url_map`, so every `/api/v1` route is in the document by
construction; a route without a declaration is an error, not a gap in the docs.
Schemas come from `web/api_schemas.py` through apispec's MarshmallowPlugin.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin

from .api_schemas import ErrorSchema

API_PREFIX = "/api/v1/"
OPENAPI_VERSION = "3.0.3"

#: status -> (component name, description) of every error the API answers
ERRORS = {
    400: ("BadRequest", "Invalid input: malformed JSON, wrong types, unknown keys, or form data that fails "
                        "the form's rules. `fields` holds messages per field."),
    401: ("Unauthorized", "No token, a bad token, an expired token (`error: token_expired`), a token "
                          "issued before the account's password changed (`error: token_revoked`), or the "
                          "account was deactivated. Get a new token from POST /api/v1/auth/token."),
    403: ("Forbidden", "Not yours: outside your jurisdiction, not a candidate of the task, or an "
                       "auditor (read-only) trying to change something."),
    404: ("NotFound", "No such task, case, process, grid or file (or a malformed id)."),
    405: ("MethodNotAllowed", "The route exists but not with this method (see the `Allow` header)."),
    409: ("Conflict", "Already completed, claimed by someone else, or changed at the same moment; "
                      "refresh and try again."),
    413: ("TooLarge", "The request body is too large."),
    415: ("UnsupportedMediaType", "Wrong Content-Type: JSON endpoints need `application/json`, uploads "
                                  "`multipart/form-data`."),
    422: ("ProcessError", "The process definition failed while running this step; tell the process "
                          "designer."),
    429: ("LoginLocked", "Too many failed logins of this username (`error: login_locked`): it is locked "
                         "for a while, whatever the password; `Retry-After` gives the seconds left."),
    500: ("InternalError", "Unexpected server error; it has been logged."),
    503: ("Unavailable", "The database is unavailable for the moment: down, unreachable or busy "
                         "(`error: unavailable`); nothing was saved. Try again after the seconds "
                         "`Retry-After` gives."),
}

DESCRIPTION = """\
JSON API of gridflow, the workflow platform for grid-based social governance
(网格化社会治理), used by the grid workers' mobile app.

**Authentication.** `POST /api/v1/auth/token` with a username and password returns
a token; send it as `Authorization: Bearer <token>` on every other call. Tokens
expire (`expires_in` seconds: 401 `token_expired`) and stop working when the account's
password changes, by its owner on any device or by an administrator (401 `token_revoked`),
or the account is deactivated (401 `unauthorized`): log in again.

**Forms.** Starting a case and completing a task submit `data` described by a JSON
Schema (draft 2020-12) that the API hands out with the process (`GET /processes`)
and with the task (`GET /tasks/{task_id}`). File fields take attachment ids from
`POST /api/v1/attachments`.

**Retries.** Send an `Idempotency-Key` header (a UUID made when the report is written)
with `POST /cases`: if the answer is lost and the app sends the report again, the same
key from the same account starts nothing and answers 200 with the case the first send
started. Completing a task needs no key: a second completion of the same task is 409.

**Language.** `Accept-Language: en` gives English form titles and messages where
they exist; the default is Chinese.

**Errors.** Every error, including unknown routes (404) and methods (405), is JSON:
`{"error": code, "message": text, "fields": {name: [messages]}}` (`fields` on 400 only).
"""


@dataclass
class Operation:
    summary: str
    description: str = ""
    tags: list = field(default_factory=list)
    auth: bool = True
    body: object = None            # marshmallow schema class of a JSON body
    multipart: object = None       # marshmallow schema class of a multipart/form-data body
    query: object = None           # marshmallow schema class of the query string
    path_params: dict = field(default_factory=dict)   # name -> (JSON schema, description)
    headers: dict = field(default_factory=dict)       # request header name -> (JSON schema, description)
    # status -> {"description", "schema" (class, dict or None), "many", "headers", "content_type"}
    responses: dict = field(default_factory=dict)
    errors: tuple = ()


def document(summary: str, **kwargs):
    """Attach an OpenAPI operation to a view function."""
    def deco(fn):
        fn.openapi = Operation(summary=summary, **kwargs)
        return fn
    return deco


def openapi_path(rule: str) -> str:
    """`/api/v1/tasks/<task_id>` -> `/api/v1/tasks/{task_id}`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _response(description: str, schema=None, many: bool = False, headers: dict | None = None,
              content_type: str | tuple = "application/json"):
    out: dict = {"description": description}
    if schema is not None:
        if isinstance(schema, dict):
            body = schema
        else:
            body = {"type": "array", "items": schema} if many else schema
        types = content_type if isinstance(content_type, (list, tuple)) else [content_type]
        out["content"] = {t: {"schema": body} for t in types}
    if headers:
        out["headers"] = headers
    return out


def _operation(name: str, op: Operation, arguments) -> dict:
    out: dict = {"operationId": name, "summary": op.summary, "tags": list(op.tags)}
    if op.description:
        out["description"] = op.description
    params = []
    for arg in sorted(arguments):
        schema, desc = op.path_params.get(arg, ({"type": "string"}, ""))
        param = {"in": "path", "name": arg, "required": True, "schema": schema}
        if desc:
            param["description"] = desc
        params.append(param)
    if op.query is not None:
        params.append({"in": "query", "schema": op.query})
    for name, (schema, desc) in op.headers.items():
        params.append({"in": "header", "name": name, "required": False, "schema": schema, "description": desc})
    params.append("AcceptLanguage")
    out["parameters"] = params
    out["security"] = [{"bearerAuth": []}] if op.auth else []
    errors = set(op.errors) | {500, 503}
    if op.auth:
        errors.add(401)
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
        errors |= {400, 413, 415}
    if op.multipart is not None:
        out["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": op.multipart}}}
        errors |= {400, 413, 415}
    if op.query is not None:
        errors.add(400)
    responses = {}
    for status, spec in sorted(op.responses.items()):
        responses[str(status)] = _response(**spec)
    for status in sorted(errors):
        responses.setdefault(str(status), ERRORS[status][0])
    out["responses"] = responses
    return out


def build_spec(app) -> dict:
    """The OpenAPI document of every `/api/v1` route of `app`, as a dict."""
    spec = APISpec(
        title="gridflow API", version="1.0.0", openapi_version=OPENAPI_VERSION,
        plugins=[MarshmallowPlugin()],
        info={"description": DESCRIPTION},
        tags=[{"name": "auth", "description": "tokens"},
              {"name": "processes", "description": "what you may start, with the start forms"},
              {"name": "tasks", "description": "your inbox; claim, release and complete tasks"},
              {"name": "cases", "description": "cases, their history and attachments"},
              {"name": "notifications", "description": "your notifications and the unread count"},
              {"name": "dashboard", "description": "governance figures of a jurisdiction (docs/metrics.md)"},
              {"name": "meta", "description": "this document"}],
    )
    spec.components.security_scheme("bearerAuth", {
        "type": "http", "scheme": "bearer", "bearerFormat": "itsdangerous",
        "description": "token from POST /api/v1/auth/token"})
    spec.components.parameter("AcceptLanguage", "header", {
        "name": "Accept-Language", "required": False, "schema": {"type": "string", "example": "en"},
        "description": "`en` for English form titles and messages; Chinese otherwise (the default)"})
    spec.components.schema("Error", schema=ErrorSchema)
    for status, (name, desc) in ERRORS.items():
        response = {"description": desc, "content": {"application/json": {"schema": "Error"}}}
        if status == 401:
            response["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"},
                                                        "description": "Bearer challenge"}}
        if status == 405:
            response["headers"] = {"Allow": {"schema": {"type": "string"}}}
        if status == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                   "description": "seconds until the lock ends"}}
        spec.components.response(name, response)

    paths: dict[str, dict] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(API_PREFIX):
            continue
        view = app.view_functions[rule.endpoint]
        op = getattr(view, "openapi", None)
        if op is None:
            raise RuntimeError(f"API route {rule.rule} ({rule.endpoint}) has no OpenAPI declaration")
        operations = paths.setdefault(openapi_path(rule.rule), {})
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operations[method.lower()] = _operation(rule.endpoint.split(".")[-1], op, rule.arguments)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()
