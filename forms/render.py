"""Render a form definition for people and for programs.

* `json_schema` describes a submission as JSON Schema (draft 2020-12) for API
  clients;
* `form_context` turns a definition, the case data and (after a refused
  submission) the submitted values and errors into plain dicts, one per field,
  for the Jinja macros in `forms/templates/forms/macros.html`;
* `coerce_form_post` turns an HTML form POST into the dict `FormDef.validate`
  expects;
* `template_folder` is where those macros live, for a Flask app's Jinja loader.

Nothing here imports Flask or jsonschema: the web layer and API clients bring
their own.
"""
from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

from . import ATTACHMENT_ID_MAX_LENGTH, CHINA_TZ, FILLED, MAX_FILES_PER_FIELD, FieldDef, FormDef, Range

__all__ = ["json_schema", "form_context", "coerce_form_post", "template_folder",
           "CHINA_TZ", "FILE_ACCEPT"]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: What the file picker offers (photos straight from the camera on a phone).
# what engine/attachments.py accepts (KINDS; a test ties the two): the picker offers no file it would refuse
FILE_ACCEPT = "image/jpeg,image/png,image/gif,image/webp,application/pdf,.jpg,.jpeg,.png,.gif,.webp,.pdf"

#: person/node values: `_marshmallow_field` allows 1..64 characters.
_ID_MAX_LENGTH = 64

_TEXTS = {
    "zh": {"yes": "是", "no": "否", "list_sep": "、"},
    "en": {"yes": "Yes", "no": "No", "list_sep": ", "},
}

# In draft 2020-12 `format` is only an annotation unless a validator opts in:
# these patterns give every validator the shape (RFC 3339, which Python's
# `fromisoformat` and so `FormDef.validate` also read).
_DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_DATETIME_PATTERN = (r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
                     r"(Z|[+-][0-9]{2}:[0-9]{2})$")

_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


# --------------------------------------------------------------------------- helpers

def _t(text: dict | None, lang: str) -> str | None:
    """A {zh, en} text in `lang` (Chinese when the language is unknown)."""
    if not text:
        return None
    return text.get(lang) or text.get("zh") or next(iter(text.values()), None)


def _texts(lang: str) -> dict:
    return _TEXTS.get(lang, _TEXTS["zh"])


def _num(value):
    """1.0 -> 1 (for limits written in YAML as floats); other numbers unchanged."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _unique_choices(f: FieldDef) -> list[dict]:
    """Choices with duplicate values dropped (the first one wins)."""
    seen, out = [], []
    for c in f.choices:
        if not any(c["value"] == s and type(c["value"]) is type(s) for s in seen):
            seen.append(c["value"])
            out.append(c)
    return out


def _same_value(a, b) -> bool:
    """Compare a submitted value with a choice value; HTML posts everything as text."""
    if a is None or b is None:
        return False
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or str(a).lower() == str(b).lower()
    return a == b or str(a) == str(b)


def _choice_label(f: FieldDef, value, lang: str) -> str:
    for c in f.choices:
        if _same_value(value, c["value"]):
            return _t(c, lang)
    return str(value)


def _schema_pattern(pattern: str) -> str:
    """The pattern as JSON Schema means it.

    `FormDef.validate` uses `re.match` (anchored at the start only); JSON Schema
    searches anywhere, so anchor the start explicitly."""
    return pattern if pattern.startswith("^") else f"^(?:{pattern})"


def _html_pattern(pattern: str) -> str:
    """The pattern as an HTML `pattern` attribute means it.

    Browsers require the whole value to match (`^(?:pattern)$`) while
    `re.match` only anchors the start: allow any tail so both agree."""
    return f"(?:{pattern})[\\s\\S]*"


def _parse_datetime(value) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def _local(moment: datetime) -> datetime:
    """Aware moments shown in China Standard Time; naive ones are taken as local already."""
    return moment.astimezone(CHINA_TZ) if moment.tzinfo is not None else moment


# --------------------------------------------------------------------------- JSON Schema

def _choice_schema(f: FieldDef, lang: str) -> dict:
    choices = _unique_choices(f)
    values = [c["value"] for c in choices]
    schema: dict = {}
    if values and all(isinstance(v, str) for v in values):
        schema["type"] = "string"
    schema["enum"] = values
    schema["oneOf"] = [{"const": c["value"], "title": _t(c, lang)} for c in choices]
    return schema


def _property_schema(f: FieldDef, lang: str) -> dict:
    prop: dict = {"title": _t(f.label, lang)}
    help_text = _t(f.help, lang)
    if help_text:
        prop["description"] = help_text
    if f.type in ("text", "long_text"):
        prop["type"] = "string"
        min_length = _min_length(f)
        if min_length:
            prop["minLength"] = min_length
        if f.max_length is not None:
            prop["maxLength"] = f.max_length
        if f.pattern:
            prop["pattern"] = _schema_pattern(f.pattern)
    elif f.type in ("integer", "decimal"):
        prop["type"] = "integer" if f.type == "integer" else "number"
        if f.min is not None:
            prop["minimum"] = _num(f.min)
        if f.max is not None:
            prop["maximum"] = _num(f.max)
    elif f.type == "date":
        prop.update(type="string", format="date", pattern=_DATE_PATTERN)
    elif f.type == "datetime":
        prop.update(type="string", format="date-time", pattern=_DATETIME_PATTERN)
    elif f.type == "choice":
        prop.update(_choice_schema(f, lang))
    elif f.type == "multi_choice":
        prop.update(type="array", items=_choice_schema(f, lang), uniqueItems=True)
        if f.required:
            prop["minItems"] = 1
    elif f.type == "boolean":
        prop["type"] = "boolean"
    elif f.type in ("person", "node"):
        prop.update(type="string", minLength=1, maxLength=_ID_MAX_LENGTH)
    elif f.type == "file":
        prop.update(type="array", items={"type": "string", "minLength": 1, "maxLength": ATTACHMENT_ID_MAX_LENGTH},
                    maxItems=MAX_FILES_PER_FIELD, uniqueItems=True)
    else:  # pragma: no cover - parse_definition refuses unknown types
        raise ValueError(f"unsupported field type {f.type}")
    # What the API client cannot tell from the JSON type alone (long text vs
    # text, a username vs a jurisdiction code, attachment ids).
    prop["x-field-type"] = f.type
    if f.default_from:
        prop["x-default-from"] = f.default_from
    return prop



def _min_length(f: FieldDef) -> int | None:
    """A text field's effective minimum length: a required one may not be empty."""
    return max(f.min_length or 0, 1) if f.required else f.min_length

def json_schema(form: FormDef, lang: str = "zh") -> dict:
    """JSON Schema (draft 2020-12) of a submission to `form`, titles in `lang`.

    Only input fields are properties (read-only ones are shown from case data
    and refused in a submission; they are listed under `x-readonly` so a client
    can display them). Optional fields may be left out. The schema is at least
    as strict as `FormDef.validate`: anything it accepts, `validate` accepts
    (the server also tolerates `null` for optional fields and a few textual
    spellings, e.g. of booleans, which the schema does not advertise).
    """
    properties = {f.name: _property_schema(f, lang) for f in form.input_fields}
    schema: dict = {
        "$schema": JSON_SCHEMA_DIALECT,
        "title": _t(form.title, lang),
    }
    description = _t(form.description, lang)
    if description:
        schema["description"] = description
    schema.update({
        "type": "object",
        "properties": properties,
        "required": [f.name for f in form.input_fields if f.required],
        "additionalProperties": False,
        "x-form-key": form.key,
        "x-readonly": [{"name": f.name, "title": _t(f.label, lang), "x-field-type": f.type}
                       for f in form.fields if f.readonly],
    })
    conditional = [_required_if_schema(f, form) for f in form.input_fields if f.required_if]
    if conditional:
        schema["allOf"] = conditional
    return schema


def _required_if_schema(f: FieldDef, form: FormDef) -> dict:
    """`f` required (and not empty) when its `required_if` condition holds (`required_unless`:
    when it does not): the other field has
    one of the values (a multi-choice: contains one), its number lies in the range, or it
    is filled in."""
    other, values = f.required_if
    if values is FILLED:
        condition = _filled_schema(next(o for o in form.input_fields if o.name == other))
    elif isinstance(values, Range):
        condition = {"type": "number"}
        if values.min is not None:
            condition["minimum"] = _num(values.min)
        if values.max is not None:
            condition["maximum"] = _num(values.max)
    elif next(o for o in form.input_fields if o.name == other).type == "multi_choice":
        condition = {"type": "array", "contains": {"enum": list(values)}}
    else:
        condition = {"enum": list(values)}
    # `required_unless`: required where the condition does not hold (the other field absent,
    # empty or another value), as `FieldDef.required_by` reads it
    return {"if": {"properties": {other: condition}, "required": [other]},
            "else" if f.required_unless else "then": {"required": [f.name],
                                                      "properties": {f.name: _filled_schema(f)}}}


def _filled_schema(f: FieldDef) -> dict:
    """What a filled-in value of `f` looks like (the server counts "", [] and null as empty)."""
    return {"type": "string", "minLength": 1} if f.type in ("text", "long_text", "person", "node") else \
        {"type": "array", "minItems": 1} if f.type in ("multi_choice", "file") else {"not": {"type": "null"}}


# --------------------------------------------------------------------------- HTML context

def _input_value(f: FieldDef, value):
    """`value` as the HTML control wants it: text, or a list of texts for multi_choice/file."""
    if f.type in ("multi_choice", "file"):
        if value is None or value == "":
            return []
        items = value if isinstance(value, (list, tuple)) else [value]
        return [str(v) for v in items]
    if value is None:
        return ""
    if f.type == "boolean":
        if value is True or value is False:
            return "true" if value else "false"
        return str(value).lower() if str(value).lower() in ("true", "false") else ""
    if f.type == "datetime":
        moment = _parse_datetime(value)
        return _local(moment).strftime("%Y-%m-%dT%H:%M") if moment else str(value)
    if f.type == "date":
        if isinstance(value, datetime):
            return _local(value).date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        return str(value)
    if f.type in ("integer", "decimal") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(_num(value))
    return str(value)


def _display_value(f: FieldDef, value, lang: str) -> str:
    """`value` as a person reads it: choice labels, 是/否, local time; "" when missing."""
    texts = _texts(lang)
    if value is None or value == "" or value == []:
        return ""
    if f.type == "boolean":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if isinstance(value, bool):
            return texts["yes"] if value else texts["no"]
        return str(value)
    if f.type == "choice":
        return _choice_label(f, value, lang)
    if f.type in ("multi_choice", "file"):
        items = value if isinstance(value, (list, tuple)) else [value]
        if f.type == "multi_choice":
            items = [_choice_label(f, v, lang) for v in items]
        return texts["list_sep"].join(str(v) for v in items)
    if f.type == "datetime":
        moment = _parse_datetime(value)
        return _local(moment).strftime("%Y-%m-%d %H:%M") if moment else str(value)
    if f.type == "date":
        if isinstance(value, datetime):
            return _local(value).date().isoformat()
        return value.isoformat() if isinstance(value, date) else str(value)
    if f.type in ("integer", "decimal") and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(_num(value))
    return str(value)


def _html_attrs(f: FieldDef, value) -> dict:
    """HTML5 validation attributes mirroring the definition's limits.

    `True` means a boolean attribute (`required`); other values are text."""
    attrs: dict = {}
    if f.readonly:
        return attrs
    # A group of checkboxes cannot say "at least one" in HTML: `required` on
    # each box would demand every box. The server checks it.
    if f.required and f.type != "multi_choice":
        # Attachments already stored (re-render) satisfy a required file field.
        if not (f.type == "file" and value):
            attrs["required"] = True
    if f.type in ("text", "long_text"):
        min_length = _min_length(f)
        if min_length:
            attrs["minlength"] = min_length
        if f.max_length is not None:
            attrs["maxlength"] = f.max_length
        if f.pattern and f.type == "text":  # textarea has no pattern attribute
            attrs["pattern"] = _html_pattern(f.pattern)
    elif f.type in ("integer", "decimal"):
        attrs["step"] = "1" if f.type == "integer" else "any"
        attrs["inputmode"] = "numeric" if f.type == "integer" else "decimal"
        if f.min is not None:
            attrs["min"] = _num(f.min)
        if f.max is not None:
            attrs["max"] = _num(f.max)
    elif f.type in ("person", "node"):
        attrs.update(maxlength=_ID_MAX_LENGTH, autocapitalize="none", autocomplete="off",
                     spellcheck="false")
    elif f.type == "file":
        attrs.update(multiple=True, accept=FILE_ACCEPT)
    return attrs


def _normalise_errors(messages) -> list[str]:
    if not messages:
        return []
    if isinstance(messages, dict):
        return [m for v in messages.values() for m in _normalise_errors(v)]
    if isinstance(messages, (list, tuple)):
        return [str(m) for m in messages]
    return [str(messages)]


def form_context(form: FormDef, case_data: dict | None, submitted=None,
                 errors: dict | None = None, lang: str = "zh") -> list[dict]:
    """One plain dict per field of `form`, in definition order, for `render_fields`.

    `value` is, for an input field, the submitted value when `submitted` is
    given (re-rendering after `FormValidationError`; a raw POST MultiDict is
    coerced first), else the case data under `default_from`; for a read-only
    field, the case data under its name. `input_value` is that value formatted
    for the HTML control (text; a list of texts for multi_choice and file;
    datetimes as local `YYYY-MM-DDTHH:MM`), `display_value` is it as a person
    reads it ("" when missing). `errors` is `FormValidationError.fields`;
    messages under names that are not fields of the form are not included.
    """
    case_data = case_data or {}
    errors = errors or {}
    if submitted is not None and hasattr(submitted, "getlist"):
        submitted = coerce_form_post(form, submitted)
    out = []
    for f in form.fields:
        if f.readonly:
            value = case_data.get(f.name)
        elif submitted is not None:
            value = submitted.get(f.name)
        elif f.default_from:
            value = case_data.get(f.default_from)
        else:
            value = None
        input_value = _input_value(f, value)
        field_errors = [] if f.readonly else _normalise_errors(errors.get(f.name))
        selected = input_value if isinstance(input_value, list) else [input_value]
        choices = [{"value": str(c["value"]), "label": _t(c, lang),
                    "selected": any(_same_value(s, c["value"]) for s in selected if s != "")}
                   for c in _unique_choices(f)]
        out.append({
            "name": f.name,
            "id": f.name,
            "type": f.type,
            "label": _t(f.label, lang),
            "help": _t(f.help, lang),
            "required": f.required,
            "readonly": f.readonly,
            "choices": choices,
            "value": value,
            "input_value": input_value,
            "display_value": _display_value(f, value, lang),
            "errors": field_errors,
            "attrs": _html_attrs(f, value),
        })
    return out


def template_folder() -> str:
    """Absolute path of `forms/templates` (holds `forms/macros.html`).

    In Flask: `app.jinja_loader = ChoiceLoader([app.jinja_loader,
    FileSystemLoader(template_folder())])`, then in a template
    `{% from "forms/macros.html" import render_fields %}`.
    """
    return str(Path(__file__).resolve().parent / "templates")


# --------------------------------------------------------------------------- HTML POST

def _getlist(data, name: str) -> list:
    if hasattr(data, "getlist"):
        return list(data.getlist(name))
    value = data.get(name)
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _match_choice(f: FieldDef, text: str):
    """The choice value (with its YAML type, e.g. an int) posted as `text`; else `text`."""
    for c in f.choices:
        if _same_value(text, c["value"]):
            return c["value"]
    return text


def _coerce_datetime(text: str) -> str:
    """`<input type=datetime-local>` gives local time without an offset: add +08:00."""
    moment = _parse_datetime(text)
    if moment is None:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TZ)
    return moment.isoformat()


def coerce_form_post(form: FormDef, data) -> dict:
    """An HTML form POST (`request.form`, or any mapping) as `FormDef.validate` wants it.

    Only input fields are read (a CSRF token or a read-only field's name in the
    POST is ignored); file fields are left to the web layer, which stores the
    uploads and fills in attachment ids. Text is trimmed and line breaks
    normalised to "\\n". An empty value of an optional field is omitted; of a
    required text/person/node field it stays "" (the validator says "must not
    be empty"); of other required fields it is omitted (reported as missing).
    Numbers that do not parse stay text so the validator reports them.
    """
    out: dict = {}
    for f in form.input_fields:
        if f.type == "file":
            continue
        raw = [v for v in _getlist(data, f.name) if v is not None]
        if f.type == "multi_choice":
            values = [_match_choice(f, str(v).strip()) for v in raw if str(v).strip() != ""]
            if values:
                out[f.name] = values
            continue
        text = str(raw[0]) if raw else None
        if text is None:
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
        if text == "":
            if f.required and f.type in ("text", "long_text", "person", "node"):
                out[f.name] = ""
            continue
        if f.type == "boolean":
            lowered = text.lower()
            out[f.name] = True if lowered == "true" else False if lowered == "false" else text
        elif f.type == "integer":
            out[f.name] = int(text) if _INT_RE.fullmatch(text) else text
        elif f.type == "decimal":
            out[f.name] = float(text) if _FLOAT_RE.fullmatch(text) else text
        elif f.type == "datetime":
            out[f.name] = _coerce_datetime(text)
        elif f.type == "choice":
            out[f.name] = _match_choice(f, text)
        else:  # text, long_text, date, person, node
            out[f.name] = text
    return out
