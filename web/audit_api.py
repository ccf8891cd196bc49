"""The auditor's part of /api/v1: case search and a case's trace (read-only, any token).

Registered on the API blueprint (web/api.py's `route`), so the routes share its
authentication, JSON errors and OpenAPI document.
"""
from __future__ import annotations

from marshmallow import Schema, fields, validate

from engine.errors import InvalidInput
from engine.export import search_records, trace_document
from engine.search import MAX_LIMIT, MAX_OFFSET, STATUSES, CaseSearch, SearchFilters
from engine.trace import CaseTrace

from . import api_schemas as s
from .api import V1, _json, case_ref_param, json_response, query_args, route
from .extensions import service


API_NAMES = {"process_key": "process"}


class CaseSearchQuerySchema(s.StrictSchema):
    business_key = fields.String(validate=[validate.Length(max=40), s.no_control_chars], metadata={
        "description": "case number or its beginning (`LX-2026-` finds them all)"})
    process = s.ident(100, metadata={"description": "process key"})
    status = fields.String(validate=validate.OneOf(STATUSES), metadata={"description": "open, completed or cancelled"})
    node = s.ident(64, metadata={"description": "jurisdiction node code: cases of its subtree"})
    created_from = fields.Date(metadata={"description": "created on or after this day (China time)"})
    created_to = fields.Date(metadata={"description": "created on or before this day (China time)"})
    participant = fields.String(validate=[validate.Length(max=64), s.no_control_chars], metadata={
        "description": "username of anyone who acted on the case (started, claimed, completed, urged …)"})
    task = fields.String(validate=[validate.Length(max=200), s.no_control_chars], metadata={
        "description": "a user task the case had: its BPMN id or its name; of `process` when that is given "
                       "(petition's `review` is 复查, consultation's 结果研判)"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_LIMIT))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_OFFSET))


class CaseSearchRowSchema(Schema):
    business_key = fields.String()
    title = fields.String()
    process = fields.String(metadata={"description": "process name"})
    process_key = fields.String()
    status = fields.String()
    grid = fields.String(metadata={"description": "grid name"})
    category = fields.String(allow_none=True)
    colour = fields.String(allow_none=True)
    created_at = fields.String(metadata={"description": "ISO 8601, China time"})
    closed_at = fields.String(allow_none=True)
    summary = fields.Dict(metadata={"description": "case fields; personal data (ID, phone numbers) masked"})


class CaseSearchSchema(Schema):
    items = fields.List(fields.Nested(CaseSearchRowSchema))
    limit = fields.Integer()
    offset = fields.Integer()
    has_more = fields.Boolean(metadata={"description": "another page follows"})


class TraceStepSchema(Schema):
    seq = fields.Integer()
    at = fields.String(metadata={"description": "ISO 8601, China time"})
    event_type = fields.String()
    kind = fields.String(metadata={"description": "started, completed, claimed, step, reminder, escalation, "
                                                  "urge (督办), reassign (改派), migration, incident …"})
    bpmn_name = fields.String(allow_none=True)
    bpmn_id = fields.String(allow_none=True)
    flow_from = fields.String(allow_none=True)
    actor = fields.String(allow_none=True)
    username = fields.String(allow_none=True)
    role = fields.String(allow_none=True, metadata={"description": "the role the person acted in"})
    node = fields.String(allow_none=True, metadata={"description": "the unit or jurisdiction they acted from"})
    node_code = fields.String(allow_none=True, metadata={"description": "that unit's or jurisdiction's code"})
    submitted = fields.Dict()
    references = fields.Dict(metadata={
        "description": "the people and units `submitted` holds by id or username (督办's `holders`, a new task's "
                       "`node_id` …), each key as {username, name} or {code, name} (a list for a list; null for "
                       "one that no longer exists)"})
    changed = fields.Dict(metadata={"description": "{field: [before, after]} of values this step changed"})
    task_id = fields.String(allow_none=True)


class TraceSchema(Schema):
    case = fields.Dict()
    personal_data_masked = fields.Boolean(metadata={
        "description": "true unless you handle the case; an unmasked answer is recorded in the audit trail"})
    path = fields.List(fields.String(), metadata={"description": "BPMN ids of the elements passed, in order"})
    steps = fields.List(fields.Nested(TraceStepSchema))


@route(f"{V1}/cases", "GET", tags=["cases"], summary="Search cases in your jurisdiction (auditors)",
       description="Newest first. Every filter is optional and they combine. Personal data in `summary` is "
                   "masked. `has_more` says whether another page follows.",
       query=CaseSearchQuerySchema, responses={200: _json("a page of cases", CaseSearchSchema)})
def search_cases(user):
    q = query_args(s.schema(CaseSearchQuerySchema))
    filters = SearchFilters(business_key=q.get("business_key"), process_key=q.get("process"),
                            status=q.get("status"), node=q.get("node"), created_from=q.get("created_from"),
                            created_to=q.get("created_to"), participant=q.get("participant"), task=q.get("task"),
                            limit=q["limit"], offset=q["offset"])
    try:
        page = CaseSearch(service()).search(user.id, filters)
    except InvalidInput as exc:
        # the engine names its filter process_key; this query names it process
        raise InvalidInput(exc.message, zh=exc.zh, fields={API_NAMES.get(k, k): v for k, v in exc.fields.items()},
                           fields_zh=exc.fields_zh and {API_NAMES.get(k, k): v for k, v in exc.fields_zh.items()}) from None
    return json_response(s.schema(CaseSearchSchema).dump({"items": search_records(page.rows), "limit": page.limit,
                                                  "offset": page.offset, "has_more": page.has_more}))


@route(f"{V1}/cases/<ref>/trace", "GET", tags=["cases"], summary="A case's full trace (auditors)",
       description="Every audit event in order: who, when, in which role and unit, what they submitted or "
                   "changed; reminders, escalations, 督办, migrations and incidents included.",
       path_params={"ref": ({"type": "string"}, "the case's numeric id or its business key")},
       responses={200: _json("the trace", TraceSchema)}, errors=[403, 404])
def case_trace(user, ref):
    trace = CaseTrace(service()).trace(user.id, case_ref_param(ref), via="api_trace")
    return json_response(s.schema(TraceSchema).dump(trace_document(trace)))
