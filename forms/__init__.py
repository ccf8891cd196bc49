"""Forms as data: one YAML definition per form key in this folder.

A definition lists fields (type, zh/en labels, required or required only for a
choice made in another field, limits, choices, help, read-only fields shown from
case data). This package turns it into a
marshmallow schema that validates a submission; the web layer renders the same
definition as HTML and as JSON Schema.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import yaml
from marshmallow import Schema, ValidationError, fields as mf, validate, validates_schema

from .safety import PROBLEM_MESSAGES, text_problem

FORMS_DIR = Path(__file__).resolve().parent

FIELD_TYPES = (
    "text", "long_text", "integer", "decimal", "date", "datetime", "choice",
    "multi_choice", "boolean", "person", "node", "file",
)
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class FormDefinitionError(ValueError):
    """A form definition file is malformed; the message names the file and field. `zh` says
    the same in Chinese for the designer's form editor (without the file)."""

    def __init__(self, message: str, zh: str | None = None):
        super().__init__(message)
        self.zh = zh


@dataclass
class FieldDef:
    name: str
    type: str
    label: dict
    required: bool = False
    readonly: bool = False
    choices: list = field(default_factory=list)
    help: dict | None = None
    default_from: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    # kinds of personal data the field holds (`personal: id_number|phone`): masked for
    # everyone but the case's handlers, every unmasked view audited (engine/personal_data.py)
    personal: tuple = ()
    # required only when another field of the form has one of these values:
    # `required_if: {visit_outcome: [needs_help]}` -> ("visit_outcome", ("needs_help",))
    required_if: tuple | None = None
    # a person field: the roles one of which the named official must hold at the case's
    # grid or above (`roles: [leader]`); empty: any role there (engine/service.py, _check_people)
    roles: tuple = ()
    # a date or time of something done (办结时间, 答复日期 …): one after the moment of
    # submission is a slip of the finger that would skew every time limit counted from it
    not_future: bool = False

    @property
    def choice_values(self) -> list:
        return [c["value"] for c in self.choices]

    def required_by(self, data: dict) -> bool:
        """Whether `data` makes this field required by its `required_if` (not by `required`)."""
        return self.required_if is not None and _chosen(data.get(self.required_if[0]), self.required_if[1])

    def left_empty_in(self, data: dict) -> bool:
        """Whether `data` leaves this field empty: absent, None, "" or []. False and 0 are answers."""
        return data.get(self.name) in (None, "", [])


@dataclass
class FormDef:
    key: str
    title: dict
    fields: list[FieldDef]
    description: dict | None = None
    source: str | None = None

    @property
    def input_fields(self) -> list[FieldDef]:
        return [f for f in self.fields if not f.readonly]

    def validate(self, data: dict, now: datetime | None = None) -> dict:
        """Clean a submission or raise `FormValidationError` with messages per field. `now`
        (the engine's clock) refuses a `not_future` date or time after it."""
        schema = self.__dict__.get("_schema")
        if schema is None:  # built once per definition (a definition never changes)
            schema = self.__dict__["_schema"] = build_schema(self)
        try:
            cleaned, problems = schema.load(data or {}), {}
        except ValidationError as exc:
            cleaned, problems = exc.valid_data or {}, _flatten(exc.messages)
        if now is not None:
            for f in self.input_fields:
                if f.not_future and f.name not in problems and _after(cleaned.get(f.name), now):
                    problems[f.name] = ["must not be in the future"]
        if problems:
            raise FormValidationError(self.key, problems)
        return cleaned


# a device's clock a little ahead of the server's is no slip of the finger
FUTURE_TOLERANCE = timedelta(minutes=10)
#: China Standard Time (no daylight saving): officials enter and read local time.
CHINA_TZ = timezone(timedelta(hours=8), "CST")


def _after(value, now: datetime) -> bool:
    """Whether a cleaned date or time lies after `now`: a time without an offset is China's
    (an official's), a date is after today in China."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=CHINA_TZ)
        return moment > now + FUTURE_TOLERANCE
    if isinstance(value, date):
        return value > now.astimezone(CHINA_TZ).date()
    return False


class FormValidationError(ValueError):
    def __init__(self, form_key: str, fields: dict):
        super().__init__(f"form {form_key}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in fields.items()))
        self.form_key = form_key
        self.fields = fields


def _flatten(messages) -> dict[str, list[str]]:
    out = {}
    for key, value in (messages or {}).items():
        if isinstance(value, dict):
            value = [m for msgs in value.values() for m in (msgs if isinstance(msgs, list) else [msgs])]
        out[key] = [str(m) for m in (value if isinstance(value, list) else [value])]
    return out


def _label(value, where: str) -> dict:
    if isinstance(value, str):
        return {"zh": value, "en": value}
    if not isinstance(value, dict) or "zh" not in value:
        raise FormDefinitionError(f"{where}: label must be text or {{zh: ..., en: ...}}",
                                  zh="label 须为文字，或写成 {zh: ..., en: ...}")
    stray = sorted(str(k) for k in set(value) - {"zh", "en"})
    if stray:   # `en: If refused, the department …` unquoted in {…} splits at the comma
        raise FormDefinitionError(f"{where}: a label has unknown keys {', '.join(stray)}; a text with a comma "
                                  "inside {…} must be quoted",
                                  zh=f"文字有未知的键：{'、'.join(stray)}；写在 {{…}} 中含逗号的文字须加引号")
    return {"zh": value["zh"], "en": value.get("en", value["zh"])}


def parse_definition(raw: dict, source: str = "<form>") -> FormDef:
    if not isinstance(raw, dict):
        raise FormDefinitionError(f"{source}: a form definition must be a mapping",
                                  zh="表单定义须为键值结构（key、title、fields …）")
    key = raw.get("key")
    if not key or not NAME_RE.match(str(key)):
        raise FormDefinitionError(f"{source}: 'key' must be an identifier (letters, digits, _)",
                                  zh="key 须为标识符（字母、数字、下划线）")
    fields_raw = raw.get("fields")
    if not isinstance(fields_raw, list):
        raise FormDefinitionError(f"{source}: 'fields' must be a list", zh="fields 须为列表")
    seen, fields = set(), []
    for i, f in enumerate(fields_raw):
        where = f"{source}: field #{i + 1}"
        if not isinstance(f, dict):
            raise FormDefinitionError(f"{where} must be a mapping", zh=f"第 {i + 1} 个字段须为键值结构")
        name = f.get("name")
        if not name or not NAME_RE.match(str(name)):
            raise FormDefinitionError(f"{where}: 'name' must be an identifier",
                                      zh=f"第 {i + 1} 个字段的 name 须为标识符（字母、数字、下划线）")
        where = f"{source}: field '{name}'"
        if name in seen:
            raise FormDefinitionError(f"{where} is defined twice", zh=f"字段 {name} 定义了两次")
        seen.add(name)
        ftype = f.get("type")
        if ftype not in FIELD_TYPES:
            raise FormDefinitionError(f"{where}: type '{ftype}' is not one of {', '.join(FIELD_TYPES)}",
                                      zh=f"类型“{ftype}”不可用，可选：{', '.join(FIELD_TYPES)}")
        choices = []
        for c in f.get("choices") or []:
            if not isinstance(c, dict) or "value" not in c:
                raise FormDefinitionError(f"{where}: each choice needs a 'value'", zh="每个选项都须有 value")
            stray = sorted(str(k) for k in set(c) - {"value", "zh", "en"})
            if stray:   # `en: Sheds (e.g. a, b)` unquoted in a {…} mapping splits at the comma
                raise FormDefinitionError(
                    f"{where}: choice '{c['value']}' has unknown keys {', '.join(stray)}; a label with a comma "
                    "inside {…} must be quoted", zh=f"选项“{c['value']}”有未知的键：{'、'.join(stray)}；"
                    "写在 {…} 中含逗号的文字须加引号")
            choices.append({"value": c["value"], "zh": str(c.get("zh", c["value"])),
                            "en": str(c.get("en", c.get("zh", c["value"])))})
        if ftype in ("choice", "multi_choice") and not choices:
            raise FormDefinitionError(f"{where}: a {ftype} field needs 'choices'", zh=f"{ftype} 字段须有 choices（选项）")
        _check_limits(f, ftype, where)
        pattern = f.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise FormDefinitionError(f"{where}: pattern must be text (a regular expression)",
                                          zh="pattern 须为文字（正则表达式）")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise FormDefinitionError(f"{where}: pattern is not a valid regular expression ({exc})",
                                          zh=f"pattern 不是有效的正则表达式（{exc}）") from None
        for flag in ("required", "readonly"):
            if flag in f and not isinstance(f[flag], bool):
                raise FormDefinitionError(f"{where}: {flag} must be true or false, not {f[flag]!r}",
                                          zh=f"{flag} 须为 true 或 false，不能是 {f[flag]!r}")
        known = {"name", "type", "label", "required", "readonly", "choices", "help", "default_from",
                 "min_length", "max_length", "min", "max", "pattern", "personal", "required_if", "roles",
                 "not_future"}
        unknown = set(f) - known
        if unknown:
            raise FormDefinitionError(f"{where}: unknown keys {', '.join(sorted(unknown))}",
                                      zh=f"未知的键：{', '.join(sorted(unknown))}")
        fields.append(FieldDef(
            name=name, type=ftype, label=_label(f.get("label", name), where),
            required=bool(f.get("required", False)), readonly=bool(f.get("readonly", False)),
            choices=choices, help=_label(f["help"], where) if f.get("help") else None,
            default_from=f.get("default_from"), min_length=f.get("min_length"),
            max_length=f.get("max_length"), min=f.get("min"), max=f.get("max"), pattern=pattern,
            personal=_personal(f.get("personal"), where),
            required_if=_required_if_raw(f.get("required_if"), where),
            roles=_roles(f.get("roles"), ftype, where),
            not_future=_not_future(f.get("not_future"), ftype, where),
        ))
    by_name = {f.name: f for f in fields}
    for f in fields:
        if f.required_if is not None:
            _check_required_if(f, by_name, f"{source}: field '{f.name}'")
    return FormDef(key=key, title=_label(raw.get("title", key), source), fields=fields,
                   description=_label(raw["description"], source) if raw.get("description") else None,
                   source=source)


def _check_limits(f: dict, ftype: str, where: str) -> None:
    """Limits of the right kind: whole numbers of characters, numbers for min/max, a field
    name for default_from. Anything else would only fail when an official submits."""
    for key in ("min_length", "max_length"):
        value = f.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise FormDefinitionError(f"{where}: {key} must be a whole number of characters (0 or more), "
                                      f"not {value!r}", zh=f"{key} 须为字数（0 或正整数），不能是 {value!r}")
    for key in ("min", "max"):
        value = f.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or value != value or value in (float("inf"), float("-inf"))):
            raise FormDefinitionError(f"{where}: {key} must be a number, not {value!r}",
                                      zh=f"{key} 须为数字，不能是 {value!r}")
    default_from = f.get("default_from")
    if default_from is not None and not (isinstance(default_from, str) and NAME_RE.match(default_from)):
        raise FormDefinitionError(f"{where}: default_from must name a case field (letters, digits, _), "
                                  f"not {default_from!r}",
                                  zh=f"default_from 须为案件字段名（字母、数字、下划线），不能是 {default_from!r}")


def _not_future(value, ftype: str, where: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise FormDefinitionError(f"{where}: not_future must be true or false, not {value!r}",
                                  zh=f"not_future 须为 true 或 false，不能是 {value!r}")
    if value and ftype not in ("date", "datetime"):
        raise FormDefinitionError(f"{where}: not_future is for date and datetime fields only",
                                  zh="not_future 只能用于日期（date）或日期时间（datetime）字段")
    return value


def _roles(value, ftype: str, where: str) -> tuple:
    """`roles: [leader]` (or `leader, mediator`) of a person field, as role codes."""
    if value is None:
        return ()
    if ftype != "person":
        raise FormDefinitionError(f"{where}: roles is for person fields only", zh="roles 只能用于 person（人员）字段")
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and NAME_RE.match(n) for n in names):
        raise FormDefinitionError(f"{where}: roles must list role codes, e.g. [leader]",
                                  zh="roles 须列出角色代码，如 [leader]")
    return tuple(names)


def _required_if_raw(value, where: str) -> tuple | None:
    """`{field: value or [values]}` -> (field, (values...)); checked against the form later."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise FormDefinitionError(f"{where}: required_if must name one field and its values, "
                                  "e.g. {{outcome: [needs_help]}}",
                                  zh="required_if 须写明一个字段及其取值，如 {outcome: [needs_help]}")
    (other, values), = value.items()
    values = tuple(values) if isinstance(values, list) else (values,)
    if not values:
        raise FormDefinitionError(f"{where}: required_if needs at least one value of '{other}'",
                                  zh=f"required_if 须至少给出字段 {other} 的一个取值")
    return str(other), values


def _check_required_if(f: FieldDef, by_name: dict, where: str) -> None:
    other_name, values = f.required_if
    other = by_name.get(other_name)
    if other is None or other.name == f.name or other.readonly:
        raise FormDefinitionError(f"{where}: required_if names '{other_name}', which is not another input "
                                  "field of this form",
                                  zh=f"required_if 引用的“{other_name}”不是本表单的其他可填字段")
    if other.type not in ("choice", "boolean"):
        raise FormDefinitionError(f"{where}: required_if needs a choice or boolean field; "
                                  f"'{other_name}' is {other.type}",
                                  zh=f"required_if 只能引用单选或是/否字段；“{other_name}”是 {other.type}")
    allowed = other.choice_values if other.type == "choice" else [True, False]
    wrong = [v for v in values if not _chosen(v, allowed)]
    if wrong:
        raise FormDefinitionError(f"{where}: required_if: {wrong[0]!r} is not a value of '{other_name}' "
                                  f"({', '.join(map(repr, allowed))})",
                                  zh=f"required_if：{wrong[0]!r} 不是“{other_name}”的取值")
    if f.required or f.readonly:
        raise FormDefinitionError(f"{where}: a field with required_if is neither required nor readonly",
                                  zh="设了 required_if 的字段不能同时为 required 或 readonly")


PERSONAL_KINDS = ("id_number", "phone")


def _personal(value, where: str) -> tuple:
    if value is None:
        return ()
    kinds = tuple(k.strip() for k in str(value).split("|") if k.strip())
    bad = [k for k in kinds if k not in PERSONAL_KINDS]
    if bad or not kinds:
        raise FormDefinitionError(f"{where}: personal must be {' | '.join(PERSONAL_KINDS)} "
                                  f"(several joined by |), not '{value}'",
                                  zh=f"personal 须为 {' | '.join(PERSONAL_KINDS)}（多个用 | 连接），不能是“{value}”")
    return kinds


def _marshmallow_field(f: FieldDef):
    validators = []
    kwargs = {"required": f.required}
    if not f.required:
        kwargs["allow_none"] = True
    if f.type in ("text", "long_text"):
        if f.min_length is not None or f.max_length is not None:
            validators.append(validate.Length(min=f.min_length, max=f.max_length))
        if f.pattern:
            validators.append(validate.Regexp(f.pattern, error="does not match the required format"))
        if f.required:
            validators.append(_not_blank)
        return StorableString(validate=validators, **kwargs)
    if f.type in ("integer", "decimal"):
        if f.min is not None or f.max is not None:
            validators.append(validate.Range(min=f.min, max=f.max))
        if f.type == "integer":
            return mf.Integer(validate=validators, strict=True, **kwargs)
        return mf.Float(validate=validators, allow_nan=False, **kwargs)
    if f.type == "date":
        return mf.Date(**kwargs)
    if f.type == "datetime":
        return mf.DateTime(**kwargs)
    if f.type == "boolean":
        return mf.Boolean(**kwargs)
    if f.type == "choice":
        return mf.Raw(validate=validate.OneOf(f.choice_values, error="must be one of: {choices}"), **kwargs)
    if f.type == "multi_choice":
        validators = [validate.ContainsOnly(f.choice_values), _each_chosen_once]
        if f.required:
            validators.append(validate.Length(min=1, error="choose at least one"))
        return mf.List(mf.Raw(), validate=validators, **kwargs)
    if f.type in ("person", "node"):
        return StorableString(validate=[validate.Length(min=1, max=64)], **kwargs)
    if f.type == "file":
        return mf.List(StorableString(validate=validate.Length(max=64)), validate=validate.Length(max=20), **kwargs)
    raise FormDefinitionError(f"unsupported type {f.type}")


def _not_blank(text: str) -> None:
    """A required text is more than spaces: the web form strips them, a JSON client need not."""
    if isinstance(text, str) and not text.strip():
        raise ValidationError("must not be empty")


def _each_chosen_once(values) -> None:
    """A multi-choice answer names each option once (the form's JSON Schema says `uniqueItems`):
    a department chosen twice would be given the matter twice."""
    if isinstance(values, list) and len({(type(v), v) for v in values if isinstance(v, (str, int, float, bool))}) \
            != len(values):
        raise ValidationError("choose each option once")


class StorableString(mf.String):
    """A string the database can store: no NUL, no lone surrogates."""

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        problem = text_problem(text)
        if problem:
            raise ValidationError(PROBLEM_MESSAGES[problem])
        return text


class _SubmissionSchema(Schema):
    class Meta:
        # Read-only and unknown keys are refused: a submission carries only what the form asks.
        unknown = "raise"

    conditional: tuple = ()   # the FieldDefs with required_if

    @validates_schema(skip_on_field_errors=False)
    def _required_by_choice(self, data, **_kwargs):
        missing = {f.name: [f"required by the choice of {f.required_if[0]}"] for f in self.conditional
                   if f.required_by(data) and f.left_empty_in(data)}
        if missing:
            raise ValidationError(missing)


def _chosen(value, values) -> bool:
    """`value` is one of `values`, of the same type (True is not 1, "1" is not 1)."""
    return any(value == v and type(value) is type(v) for v in values)


def build_schema(form: FormDef) -> Schema:
    attrs = {f.name: _marshmallow_field(f) for f in form.input_fields}
    attrs["conditional"] = tuple(f for f in form.input_fields if f.required_if)
    schema_cls = type(f"{form.key}_Schema", (_SubmissionSchema,), attrs)
    return schema_cls()


def _dump_value(value):
    import datetime as _dt
    if isinstance(value, (_dt.datetime, _dt.date)):
        return value.isoformat()
    return value


def to_task_data(form: FormDef, cleaned: dict) -> dict:
    """JSON-safe task data from a cleaned submission (dates as ISO text)."""
    return {k: _dump_value(v) for k, v in cleaned.items()}


class FormRegistry:
    """All form definitions of a folder, loaded once and looked up by key."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory else FORMS_DIR
        self._forms: dict[str, FormDef] | None = None

    def _load(self) -> dict[str, FormDef]:
        forms = {}
        for path in sorted(self.directory.glob("*.yaml")):
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            except yaml.YAMLError as exc:
                raise FormDefinitionError(f"{path.name}: not valid YAML ({exc})") from None
            form = parse_definition(raw, source=path.name)
            if form.key != path.stem:
                raise FormDefinitionError(f"{path.name}: key '{form.key}' must match the file name")
            forms[form.key] = form
        return forms

    @property
    def forms(self) -> dict[str, FormDef]:
        if self._forms is None:
            self._forms = self._load()
        return self._forms

    def keys(self) -> set[str]:
        return set(self.forms)

    def get(self, key: str) -> FormDef | None:
        return self.forms.get(key)
from .render import coerce_form_post, form_context, json_schema, template_folder  # noqa: E402,F401
