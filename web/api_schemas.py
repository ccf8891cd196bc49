"""Marshmallow schemas of every JSON body the API reads or writes.

Request schemas refuse unknown keys (`Meta.unknown = RAISE`) and bound every
string, so malformed input is a 400 with per-field messages, never a 500.
Response schemas are what `web/api.py` dumps and what `web/openapi.py`
publishes: one source for the code and the documentation.

Marshmallow field names that would shadow Schema attributes (`fields`,
`schema`) use `data_key` for their JSON name.
"""
from __future__ import annotations

import functools
import re
from datetime import datetime

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from engine.clock import CHINA


@functools.cache
def schema(cls: type[Schema], many: bool = False) -> Schema:
    """One instance per schema class, shared by all requests: a marshmallow schema keeps no
    state between loads and dumps, and building one costs more than dumping a small answer."""
    return cls(many=many)

#: identifiers: process keys, BPMN ids, colours, node codes (what the engine stores in String(≤100))
IDENT_RE = r"^[A-Za-z0-9_.\-]+$"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ChinaDateTime(fields.DateTime):
    """A moment as ISO 8601 in China time (+08:00), as the audit API, the exports and every
    page give it: one client reading two endpoints must not see two clocks."""

    def _serialize(self, value, attr, obj, **kwargs):
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(CHINA).replace(microsecond=0)
        return super()._serialize(value, attr, obj, **kwargs)


def no_control_chars(value: str) -> None:
    if _CONTROL.search(value or ""):
        raise ValidationError("must not contain control characters")


def ident(max_length: int, **kwargs):
    return fields.String(validate=[validate.Length(min=1, max=max_length),
                                   validate.Regexp(IDENT_RE, error="letters, digits, '_', '-' or '.' only")],
                         **kwargs)


class StrictSchema(Schema):
    class Meta:
        unknown = RAISE


# ----------------------------------------------------------------- errors

class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={
        "description": "machine-readable code: invalid, unauthorized, token_expired, token_revoked, forbidden, "
                       "not_found, conflict, too_large, method_not_allowed, unsupported_media_type, "
                       "process_error, login_locked, internal_error, unavailable"})
    message = fields.String(required=True, metadata={"description": "what went wrong, for a person"})
    field_errors = fields.Dict(
        keys=fields.String(), values=fields.List(fields.String()), data_key="fields",
        metadata={"description": "per-field messages (400 only). Form data errors are keyed by the form "
                                 "field name; errors of the request body itself by its key (`process`, "
                                 "`grid`, `data` …); `_schema` when the body is not an object"})


# ----------------------------------------------------------------- auth

class TokenRequestSchema(StrictSchema):
    username = fields.String(required=True, validate=[validate.Length(min=1, max=64), no_control_chars])
    password = fields.String(required=True, validate=[validate.Length(min=1, max=256), no_control_chars],
                             load_only=True)


class PasswordChangeSchema(StrictSchema):
    current = fields.String(required=True, validate=[validate.Length(min=1, max=256), no_control_chars],
                            load_only=True, metadata={"description": "your password now"})
    new = fields.String(required=True, validate=[validate.Length(min=1, max=256), no_control_chars],
                        load_only=True, metadata={"description": "8 to 128 characters of three kinds (lower case, "
                                                                 "upper case, digits, other), without your username"})


class PasswordChangedSchema(Schema):
    changed = fields.Boolean(required=True)
    token = fields.String(required=True, metadata={
        "description": "a new token: the ones issued before the change no longer work"})
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds the token stays valid"})


class RoleSchema(Schema):
    role = fields.String(metadata={"example": "grid_worker"})
    node = fields.String(metadata={"description": "jurisdiction node code", "example": "linxi-xinguang-g1"})
    node_name = fields.String(metadata={"example": "新光社区第一网格"})
    level = fields.String(metadata={"description": "city, county, town, community, grid or department"})


class UserSchema(Schema):
    id = fields.Integer()
    username = fields.String()
    display_name = fields.String()
    roles = fields.List(fields.Nested(RoleSchema))
    read_only = fields.Boolean(metadata={"description": "true for auditors: they may read, never write"})


class TokenSchema(Schema):
    token = fields.String(required=True, metadata={"description": "send as `Authorization: Bearer <token>`"})
    token_type = fields.String(metadata={"example": "Bearer"})
    expires_in = fields.Integer(metadata={"description": "seconds the token stays valid"})
    user = fields.Nested(UserSchema)


# ----------------------------------------------------------------- shared pieces

class PersonSchema(Schema):
    id = fields.Integer()
    display_name = fields.String(allow_none=True)


class GridSchema(Schema):
    id = fields.Integer(allow_none=True)
    code = fields.String(allow_none=True, metadata={"example": "linxi-xinguang-g1"})
    name = fields.String(allow_none=True, metadata={"example": "新光社区第一网格"})


class DepartmentPlaceSchema(Schema):
    unit = fields.String(allow_none=True, metadata={
        "description": "the unit a task for this department goes to; null: nobody handles it, "
                       "it goes to the dispatchers", "example": "林西县住房和城乡建设局"})
    own_place = fields.Boolean(metadata={"description": "the unit is a department of the dispatcher's own "
                                                        "place (the town's, for a town dispatch)"})
    note = fields.String(allow_none=True, metadata={
        "description": "what the web form adds to the choice's label, in the request language; null for "
                       "a department of one's own place", "example": "本级无此部门，将派至林西县住房和城乡建设局"})


class DepartmentRoutingSchema(Schema):
    fields_ = fields.List(fields.String(), data_key="fields", attribute="fields", metadata={
        "description": "the form's department choice fields", "example": ["department"]})
    rule = fields.String(metadata={"description": "how the unit is chosen, in the request language"})
    choices = fields.Dict(keys=fields.String(), values=fields.Nested(DepartmentPlaceSchema), metadata={
        "description": "by choice value: where a task for that department goes from this task's place; "
                       "empty when no place is known (a start form) or the task is not yours to work"})


class FormSchema(Schema):
    key = fields.String(metadata={"example": "grid_matter_report"})
    title = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    json_schema = fields.Dict(data_key="schema", metadata={
        "description": "JSON Schema (draft 2020-12) of the `data` to submit; titles in the request language. "
                       "`x-field-type` tells text from long_text, person, node and file (a list of attachment "
                       "ids from POST /api/v1/attachments)"})
    readonly = fields.Dict(metadata={"description": "read-only fields of the form with their current values "
                                                    "from the case, by field name"})
    defaults = fields.Dict(metadata={"description": "suggested values for input fields (`x-default-from`), "
                                                    "by field name"})
    department_routing = fields.Nested(DepartmentRoutingSchema, allow_none=True, metadata={
        "description": "a dispatch form's department choices: where each sends the matter (a town without "
                       "住建 sends it to the county's bureau), as the web form tells it; null: no such choices"})


# ----------------------------------------------------------------- processes

class ProcessSchema(Schema):
    key = fields.String(metadata={"example": "grid_matter"})
    name = fields.String()
    start_form = fields.Nested(FormSchema, allow_none=True, metadata={
        "description": "the form whose data starts a case; null: start with an empty object"})
    grids = fields.List(fields.Nested(GridSchema), metadata={"description": "grids you may start it in"})


class ProcessListSchema(Schema):
    items = fields.List(fields.Nested(ProcessSchema))


# ----------------------------------------------------------------- cases and tasks

class StartCaseSchema(StrictSchema):
    process = ident(100, required=True, metadata={"example": "grid_matter"})
    grid = ident(64, required=True, metadata={"example": "linxi-xinguang-g1"})
    data = fields.Dict(keys=fields.String(validate=validate.Length(max=100)), load_default=dict,
                       metadata={"description": "the start form's data, as its JSON Schema describes"})


class CompleteTaskSchema(StrictSchema):
    data = fields.Dict(keys=fields.String(validate=validate.Length(max=100)), load_default=dict,
                       metadata={"description": "the task form's data, as its JSON Schema describes"})


class ReassignTaskSchema(StrictSchema):
    to = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=64),
                       metadata={"description": "the new holder's username; empty or null gives a claimed group "
                                                "task back to its group", "example": "lx_wgz1"})
    reason = fields.String(required=True, validate=validate.Length(min=1, max=500),
                           metadata={"description": "why (recorded in the case's audit trail and sent to the "
                                                    "new holder)", "example": "原承办人出差"})


class CaseRefSchema(Schema):
    id = fields.Integer()
    business_key = fields.String(metadata={"example": "LX-2026-000001"})
    title = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "open or completed"})
    process = fields.String()
    category = fields.String(allow_none=True)
    colour = fields.String(allow_none=True)
    grid = fields.Nested(GridSchema)
    summary = fields.Dict(metadata={"description": "short case fields reports filter on"})


class TaskBriefSchema(Schema):
    id = fields.String(metadata={"description": "task id (a UUID)"})
    name = fields.String()
    spec_id = fields.String(metadata={"description": "BPMN id of the user task"})
    process = fields.String()
    status = fields.String(metadata={"description": "open, completed or cancelled"})
    created_at = ChinaDateTime()
    due_at = ChinaDateTime(allow_none=True)
    overdue = fields.Boolean()
    claimed_at = ChinaDateTime(allow_none=True)
    assignee = fields.Nested(PersonSchema, allow_none=True, metadata={
        "description": "who holds the task; null: any candidate may claim it"})
    role = fields.String(allow_none=True, metadata={"description": "candidate role"})
    candidate_unit = fields.String(allow_none=True, metadata={"description": "unit whose role holders are "
                                                                               "candidates"})


class InboxItemSchema(TaskBriefSchema):
    case = fields.Nested(CaseRefSchema)


class InboxQuerySchema(StrictSchema):
    """Unknown query parameters are refused like unknown body keys: a misspelt filter
    (`?colour=red&overdu=1`) must not silently return the unfiltered inbox."""

    process = ident(100, metadata={"description": "process key"})
    task = ident(100, metadata={"description": "BPMN id of the task (spec_id)"})
    colour = ident(16, metadata={"description": "severity colour of the case"})
    overdue = fields.Boolean(load_default=False, metadata={"description": "only tasks past their due time"})
    q = fields.String(validate=[validate.Length(max=40), no_control_chars],
                      metadata={"description": "business key prefix, e.g. LX-2026"})
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


class InboxSchema(Schema):
    items = fields.List(fields.Nested(InboxItemSchema))
    total = fields.Integer(metadata={"description": "all matching tasks, ignoring limit and offset"})
    limit = fields.Integer()
    offset = fields.Integer()


class NotificationsQuerySchema(StrictSchema):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=200))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=1_000_000))


class NotificationSchema(Schema):
    id = fields.Integer()
    kind = fields.String(metadata={"description": "new_task, reminder, escalation, urge (督办) or incident"})
    subject = fields.String(metadata={"description": "the task's or the process element's name"})
    note = fields.String(allow_none=True, metadata={
        "description": "the 督办 note, the reassignment's reason, the incident's error"})
    business_key = fields.String(allow_none=True, metadata={"description": "the case it is about"})
    task_id = fields.String(allow_none=True, metadata={"description": "the task it is about (GET /api/v1/tasks/{id})"})
    task_status = fields.String(allow_none=True, metadata={
        "description": "that task now: open, completed or cancelled; a notice of a task no longer open is not "
                       "unread"})
    sent_by = fields.String(allow_none=True, metadata={"description": "who pressed 督办 or reassigned the task"})
    created_at = ChinaDateTime()
    read_at = ChinaDateTime(allow_none=True)
    unread = fields.Boolean()


class NotificationsSchema(Schema):
    items = fields.List(fields.Nested(NotificationSchema))
    total = fields.Integer(metadata={"description": "all your notifications"})
    unread = fields.Integer(metadata={"description": "those still unread (the badge)"})
    limit = fields.Integer()
    offset = fields.Integer()


class UnreadSchema(Schema):
    marked = fields.Integer(metadata={"description": "notifications this request marked read"})
    unread = fields.Integer(metadata={"description": "those still unread after it"})


class TaskSchema(TaskBriefSchema):
    may_work = fields.Boolean(metadata={"description": "you may claim and complete it"})
    case = fields.Nested(CaseRefSchema)
    form = fields.Nested(FormSchema, allow_none=True, metadata={
        "description": "null when the task has no form: complete it with an empty object"})


class AttachmentSchema(Schema):
    id = fields.String()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    uploaded_at = ChinaDateTime(allow_none=True)


class EventSchema(Schema):
    id = fields.Integer()
    type = fields.String(metadata={"description": "case_started, step, task_created, task_claimed, "
                                                  "task_unclaimed, task_completed, task_cancelled, "
                                                  "attachment_added, lane_unresolved, case_closed …"})
    at = ChinaDateTime()
    actor = fields.Nested(PersonSchema, allow_none=True)
    bpmn_id = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    flow_from = fields.String(allow_none=True, metadata={"description": "BPMN element it came from"})
    task_id = fields.String(allow_none=True)
    data = fields.Dict()


class CaseSchema(CaseRefSchema):
    process_name = fields.String(allow_none=True)
    process_version = fields.Integer(allow_none=True)
    created_at = ChinaDateTime()
    updated_at = ChinaDateTime(allow_none=True)
    closed_at = ChinaDateTime(allow_none=True)
    created_by = fields.Nested(PersonSchema, allow_none=True)
    data = fields.Dict(allow_none=True, metadata={"description": "the case's current data (null when only "
                                                                 "the summary is available)"})
    open_tasks = fields.List(fields.Nested(TaskBriefSchema))
    history = fields.List(fields.Nested(EventSchema), metadata={"description": "the audit trail, oldest first"})
    attachments = fields.List(fields.Nested(AttachmentSchema))
    may_contribute = fields.Boolean(metadata={"description": "you may add files to the case"})


class CaseStepSchema(CaseRefSchema):
    """What a start or a completion answers: the case as the step left it. Its data,
    history and attachments are `GET /api/v1/cases/{ref}` (a new case's `Location`)."""
    created_at = ChinaDateTime()
    updated_at = ChinaDateTime(allow_none=True)
    closed_at = ChinaDateTime(allow_none=True)
    created_by = fields.Nested(PersonSchema, allow_none=True)
    open_tasks = fields.List(fields.Nested(TaskBriefSchema), metadata={
        "description": "the tasks now waiting, oldest first; empty once the case is closed"})


class UploadFormSchema(Schema):
    """multipart/form-data: one or more `file` parts."""
    file = fields.List(fields.Raw(metadata={"type": "string", "format": "binary"}), required=True,
                       validate=validate.Length(min=1, max=10),  # web/api.py MAX_FILES
                       metadata={"description": "one or more files: JPEG, PNG, GIF, WebP (≤ 10 MB) or PDF "
                                                "(≤ 20 MB); the type is read from the content, and a name ending in "
                                                "another of these types (x.pdf holding a PNG) is refused"})
