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

# libyaml's loader when PyYAML was built with it (its wheels are): the same documents as
# yaml.safe_load at ~30x the speed. Loading the 50 shipped forms took ~1 s of pure Python a
# registry, paid by every worker's start and every test that made a service.
_FAST_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str):
    """yaml.safe_load of a text, by libyaml where PyYAML has it. A text libyaml refuses is
    read again by the pure-Python loader, whose error is the one raised: it points at the
    place a designer has to mend (libyaml's often at the end of the text)."""
    try:
        return yaml.load(text, Loader=_FAST_SAFE_LOADER)  # noqa: S506 -- a safe loader
    except yaml.YAMLError:
        return yaml.safe_load(text)

FORMS_DIR = Path(__file__).resolve().parent

FIELD_TYPES = (
    "text", "long_text", "integer", "decimal", "date", "datetime", "choice",
    "multi_choice", "boolean", "person", "node", "file",
)
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: a file field's value: at most this many attachment ids (UUIDs), each at most this long
MAX_FILES_PER_FIELD = 20
ATTACHMENT_ID_MAX_LENGTH = 64


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
    # `required_if: {visit_outcome: [needs_help]}` -> ("visit_outcome", ("needs_help",));
    # or, for a number, a range (`{extension_days: {min: 1}}` -> ("extension_days", Range(1, None)));
    # or for any field, being filled in (`{prior_case_no: filled}` -> ("prior_case_no", FILLED))
    required_if: tuple | None = None
    # `required_unless: {outcome: [escalate]}`: the same condition, read the other way: the
    # field is required whenever it does NOT hold (办结时间 unless the handler escalates, outcome
    # left empty counting as "not escalate"); stored as `required_if` with this flag set
    required_unless: bool = False
    # a person field: the roles one of which the named official must hold at the case's
    # grid or above (`roles: [leader]`); empty: any role there (engine/service.py, _check_people)
    roles: tuple = ()
    # a date or time of something done (办结时间, 答复日期 …): one after the moment of
    # submission is a slip of the finger that would skew every time limit counted from it
    not_future: bool = False
    # a date or time that cannot come before these others (`not_before: [reply_date]`): a
    # request for review before the reply it disputes is a slip that would move the legal
    # window; each one an input of the form or a read-only field shown from the case's data
    not_before: tuple = ()
    # a person field: the choice field of the same form naming the department type
    # (`responsible_unit`) where the person must hold a role (engine/service.py, _check_people)
    unit_from: str | None = None
    # a text field naming an earlier case (`earlier_case: {process: petition, same:
    # [petitioner_name], data: {recheck_final: true}}`): it must exist, be a case of that
    # process the official may see, have the same values of `same` as this submission and
    # the given values in its data (engine/service.py, _check_earlier_cases)
    earlier_case: dict | None = None

    @property
    def choice_values(self) -> list:
        return [c["value"] for c in self.choices]

    def required_by(self, data: dict) -> bool:
        """Whether `data` makes this field required by its `required_if` (not by `required`)."""
        if self.required_if is None:
            return False
        return self._condition_holds(data) != self.required_unless

    def _condition_holds(self, data: dict) -> bool:
        value, wanted = data.get(self.required_if[0]), self.required_if[1]
        if wanted is FILLED:
            return value not in (None, "", [])
        if isinstance(wanted, Range):
            return wanted.holds(value)
        if isinstance(value, list):    # a multi-choice field: any of the values chosen
            return any(_chosen(v, wanted) for v in value)
        return _chosen(value, wanted)

    def required_if_text(self) -> str:
        """What the field is required by, for its message: a choice made, or a value given."""
        wanted = self.required_if[1]
        return f"required by the choice of {self.required_if[0]}" if isinstance(wanted, tuple) else \
            f"required by the value of {self.required_if[0]}"

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

    def validate(self, data: dict, now: datetime | None = None, context: dict | None = None) -> dict:
        """Clean a submission or raise `FormValidationError` with messages per field. `now`
        (the engine's clock) refuses a `not_future` date or time after it; `context` (the
        case's data) gives the read-only dates a `not_before` field is compared with."""
        schema = self.__dict__.get("_schema")
        if schema is None:  # built once per definition (a definition never changes)
            schema = self.__dict__["_schema"] = build_schema(self)
        try:
            cleaned, problems = schema.load(data or {}), {}
        except ValidationError as exc:
            cleaned, problems = exc.valid_data or {}, self._name_unknown_keys(_flatten(exc.messages))
        if now is not None:
            for f in self.input_fields:
                if f.not_future and f.name not in problems and _after(cleaned.get(f.name), now):
                    problems[f.name] = ["must not be in the future"]
        self._order_problems(cleaned, context or {}, problems)
        if problems:
            raise FormValidationError(self.key, problems, self._zh(problems))
        return cleaned

    def check_order(self, clean: dict, context: dict) -> None:
        """Refuse a submission (already valid on its own) whose dates come before the case's
        dates they follow (`not_before` naming read-only fields, from `context`, the case's
        data): the engine checks it once the task's data is at hand."""
        problems: dict = {}
        self._order_problems(clean, context, problems)
        if problems:
            raise FormValidationError(self.key, problems, self._zh(problems))

    def _order_problems(self, cleaned: dict, context: dict, problems: dict) -> None:
        by_name = {f.name: f for f in self.fields}
        for f in self.input_fields:
            if not f.not_before or f.name in problems:
                continue
            mine = _as_moment(cleaned.get(f.name))
            for other_name in f.not_before:
                # an input of this submission, or a read-only date shown from the case's data
                given = context.get(other_name) if by_name[other_name].readonly else cleaned.get(other_name)
                theirs = _as_moment(given)
                if mine is None or theirs is None or not _before(mine, theirs):
                    continue
                other = by_name[other_name]
                shown, other_shown = _shown(cleaned.get(f.name)), _shown(given)
                problems[f.name] = [OrderProblem(
                    f"{f.label['en']} ({shown}) must not be before {other.label['en']} ({other_name}, {other_shown})",
                    f"{f.label['zh']}（{shown}）不能早于{other.label['zh']}（{other_shown}），请核对这两个日期")]
                break

    def _name_unknown_keys(self, problems: dict) -> dict:
        """marshmallow's "Unknown field." for a key the form does not take names the key and lists
        the fields it does: an app sending `foo` (or a read-only field) was told only "not part of
        the form", not which of its keys nor what to send instead."""
        fillable = [f.name for f in self.input_fields]
        readonly = {f.name for f in self.fields if f.readonly}
        for key, shown, listing in unknown_keys(problems):
            if key in readonly:
                en, zh = f"field {shown} is read-only", f"字段 {shown} 为只读，不能提交"
            else:
                en, zh = f"the form has no field {shown}", f"表单中没有字段 {shown}"
            if listing:
                en += f"; fields you may fill: {', '.join(fillable) or '(none)'}"
                zh += f"；可填写的字段：{'、'.join(fillable) or '（无）'}"
            problems[key] = [OrderProblem(en, zh)]
        return problems

    @staticmethod
    def _zh(problems: dict) -> dict | None:
        """The messages with the Chinese of those that carry their own (the others stay English,
        for the web layer's translations); None when none does."""
        if not any(isinstance(m, OrderProblem) for msgs in problems.values() for m in msgs):
            return None
        return {k: [m.zh if isinstance(m, OrderProblem) else m for m in msgs] for k, msgs in problems.items()}


class OrderProblem(str):
    """An English field message that carries its Chinese (it names another field by its label,
    or the keys a submission may have: `_name_unknown_keys`)."""

    def __new__(cls, en: str, zh: str):
        text = super().__new__(cls, en)
        text.zh = zh
        return text


def _as_moment(value):
    """A date or datetime from a cleaned value or the case's ISO text; None if neither."""
    if isinstance(value, (date, datetime)):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value) if "T" in value or " " in value else date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _before(mine, theirs) -> bool:
    """`mine` earlier than `theirs`; a date against a time compares China's calendar days (a
    reply dated on the day of the acceptance is not before it)."""
    def day(v):
        if isinstance(v, datetime):
            return (v if v.tzinfo else v.replace(tzinfo=CHINA_TZ)).astimezone(CHINA_TZ).date()
        return v
    if isinstance(mine, datetime) and isinstance(theirs, datetime):
        aware = [v if v.tzinfo else v.replace(tzinfo=CHINA_TZ) for v in (mine, theirs)]
        return aware[0] < aware[1]
    return day(mine) < day(theirs)


def _shown(value) -> str:
    return value.isoformat() if isinstance(value, (date, datetime)) else str(value)


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
    """`fields`: field -> English messages; `fields_zh`, where some messages say in Chinese
    what no fixed translation can (another field's label), the same with those in Chinese."""

    def __init__(self, form_key: str, fields: dict, fields_zh: dict | None = None):
        super().__init__(f"form {form_key}: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in fields.items()))
        self.form_key = form_key
        self.fields = {k: [str(m) for m in v] for k, v in fields.items()}
        self.fields_zh = fields_zh


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
            if isinstance(c["value"], bool) or c["value"] is None:
                # YAML reads an unquoted yes/no/on/off/true/false as a boolean and ~/null as nothing:
                # the choice would offer True, and a condition `x == "yes"` could never hold
                raise FormDefinitionError(
                    f"{where}: a choice's value is {c['value']!r}, not text: YAML reads unquoted yes, no, on, off, "
                    "true, false as true/false and ~, null as nothing; quote it, e.g. value: 'yes'",
                    zh=f"选项的 value 读成了 {c['value']!r} 而不是文字：YAML 把未加引号的 yes、no、on、off、true、false "
                       "读作真/假，把 ~、null 读作空；请加引号，如 value: 'yes'")
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
                 "min_length", "max_length", "min", "max", "pattern", "personal", "required_if", "required_unless",
                 "roles",
                 "not_future", "not_before", "unit_from", "earlier_case"}
        if "required_if" in f and "required_unless" in f:
            raise FormDefinitionError(f"{where}: a field takes required_if or required_unless, not both",
                                      zh="一个字段只能设 required_if 或 required_unless 之一")
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
            required_if=_required_if_raw(f.get("required_if", f.get("required_unless")), where,
                                         "required_unless" if "required_unless" in f else "required_if"),
            required_unless=f.get("required_unless") is not None,
            roles=_roles(f.get("roles"), ftype, where),
            not_future=_not_future(f.get("not_future"), ftype, where),
            not_before=_names(f.get("not_before"), "not_before", where),
            unit_from=_unit_from(f.get("unit_from"), ftype, where),
            earlier_case=_earlier_case(f.get("earlier_case"), ftype, where),
        ))
    by_name = {f.name: f for f in fields}
    for f in fields:
        where = f"{source}: field '{f.name}'"
        if f.required_if is not None:
            _check_required_if(f, by_name, where)
        if f.not_before:
            _check_not_before(f, by_name, where)
        if f.unit_from:
            _check_unit_from(f, by_name, where)
        if f.earlier_case:
            _check_earlier_case(f, by_name, where)
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


class _Filled:
    """`required_if: {field: filled}`: required when that field is filled in, whatever its kind."""

    def __repr__(self):
        return "filled"


FILLED = _Filled()


@dataclass(frozen=True)
class Range:
    """`required_if: {field: {min: 1}}`: required when that number lies in [min, max]."""
    min: float | None = None
    max: float | None = None

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)


REQUIRED_IF_EXAMPLES = "{outcome: [needs_help]}, {extension_days: {min: 1}} or {prior_case_no: filled}"


def _required_if_raw(value, where: str, key: str = "required_if") -> tuple | None:
    """`{field: value or [values]}` -> (field, (values...)); `{field: {min: a, max: b}}` ->
    (field, Range); `{field: filled}` -> (field, FILLED). Checked against the form later."""
    if value is None:
        return None
    if not isinstance(value, dict) or len(value) != 1:
        raise FormDefinitionError(f"{where}: {key} must name one field and what of it, e.g. "
                                  f"{REQUIRED_IF_EXAMPLES}",
                                  zh=f"{key} 须写明一个字段及条件，如 {REQUIRED_IF_EXAMPLES}")
    (other, values), = value.items()
    if values == "filled":
        return str(other), FILLED
    if isinstance(values, dict):
        stray = sorted(str(k) for k in set(values) - {"min", "max"})
        bounds = [values.get("min"), values.get("max")]
        if stray or not values or not all(b is None or (isinstance(b, (int, float)) and not isinstance(b, bool))
                                          for b in bounds):
            raise FormDefinitionError(f"{where}: {key} of '{other}' as a range takes numbers min and/or max, "
                                      f"e.g. {{{other}: {{min: 1}}}}",
                                      zh=f"{key} 对“{other}”设范围时只能写数字 min 和/或 max，如 {{{other}: {{min: 1}}}}")
        if None not in bounds and bounds[0] > bounds[1]:
            raise FormDefinitionError(f"{where}: {key} of '{other}': min {bounds[0]} is above max {bounds[1]}",
                                      zh=f"{key} 对“{other}”的范围 min {bounds[0]} 大于 max {bounds[1]}")
        return str(other), Range(*bounds)
    values = tuple(values) if isinstance(values, list) else (values,)
    if not values:
        raise FormDefinitionError(f"{where}: {key} needs at least one value of '{other}'",
                                  zh=f"{key} 须至少给出字段 {other} 的一个取值")
    return str(other), values


def _check_required_if(f: FieldDef, by_name: dict, where: str) -> None:
    other_name, values = f.required_if
    key = "required_unless" if f.required_unless else "required_if"
    other = by_name.get(other_name)
    if other is None or other.name == f.name or other.readonly:
        raise FormDefinitionError(f"{where}: {key} names '{other_name}', which is not another input "
                                  "field of this form",
                                  zh=f"{key} 引用的“{other_name}”不是本表单的其他可填字段")
    if isinstance(values, Range):
        if other.type not in ("integer", "decimal"):
            raise FormDefinitionError(f"{where}: {key} gives a range (min/max), which needs a number field; "
                                      f"'{other_name}' is {other.type}",
                                      zh=f"{key} 的范围（min/max）只能用于数字字段；“{other_name}”是 {other.type}")
    elif values is FILLED:
        if other.type == "boolean":   # a yes/no is always answered: say which answer
            raise FormDefinitionError(f"{where}: {key}: a yes/no field such as '{other_name}' is always "
                                      f"answered; name the answer, e.g. {{{other_name}: [true]}}",
                                      zh=f"{key}：是/否字段“{other_name}”总有回答，请写明哪个回答，如 {{{other_name}: [true]}}")
    else:
        if other.type not in ("choice", "multi_choice", "boolean"):
            raise FormDefinitionError(f"{where}: {key} lists values, which needs a choice or boolean field; "
                                      f"'{other_name}' is {other.type} (use {{{other_name}: filled}}"
                                      + (f" or {{{other_name}: {{min: 1}}}}" if other.type in ("integer", "decimal")
                                         else "") + ")",
                                      zh=f"{key} 列出取值时只能引用单选、多选或是/否字段；“{other_name}”是 {other.type}"
                                         f"（可写 {{{other_name}: filled}}"
                                      + (f" 或 {{{other_name}: {{min: 1}}}}" if other.type in ("integer", "decimal")
                                         else "") + "）")
        allowed = other.choice_values if other.type in ("choice", "multi_choice") else [True, False]
        wrong = [v for v in values if not _chosen(v, allowed)]
        if wrong:
            raise FormDefinitionError(f"{where}: {key}: {wrong[0]!r} is not a value of '{other_name}' "
                                      f"({', '.join(map(repr, allowed))})",
                                      zh=f"{key}：{wrong[0]!r} 不是“{other_name}”的取值")
    if f.required or f.readonly:
        raise FormDefinitionError(f"{where}: a field with {key} is neither required nor readonly",
                                  zh=f"设了 {key} 的字段不能同时为 required 或 readonly")


def _names(value, key: str, where: str) -> tuple:
    """`key: name` or `key: [names]` as a tuple of field names."""
    if value is None:
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and NAME_RE.match(n) for n in names):
        raise FormDefinitionError(f"{where}: {key} must name fields of this form, e.g. {key}: [reply_date]",
                                  zh=f"{key} 须写本表单的字段名，如 {key}: [reply_date]")
    return tuple(names)


def _check_not_before(f: FieldDef, by_name: dict, where: str) -> None:
    if f.type not in ("date", "datetime") or f.readonly:
        raise FormDefinitionError(f"{where}: not_before is for date and datetime input fields only",
                                  zh="not_before 只能用于可填的日期（date）或日期时间（datetime）字段")
    for name in f.not_before:
        other = by_name.get(name)
        if other is None or other.name == f.name or other.type not in ("date", "datetime"):
            raise FormDefinitionError(
                f"{where}: not_before names '{name}', which is not another date or datetime field of this form "
                "(a date of the case is shown as a read-only field)",
                zh=f"not_before 引用的“{name}”不是本表单的其他日期字段（案件中已有的日期须作为只读字段列出）")


def _unit_from(value, ftype: str, where: str) -> str | None:
    if value is None:
        return None
    if ftype != "person":
        raise FormDefinitionError(f"{where}: unit_from is for person fields only", zh="unit_from 只能用于 person（人员）字段")
    if not isinstance(value, str) or not NAME_RE.match(value):
        raise FormDefinitionError(f"{where}: unit_from must name a choice field of this form, e.g. responsible_unit",
                                  zh="unit_from 须写本表单的单选字段名，如 responsible_unit")
    return value


def _check_unit_from(f: FieldDef, by_name: dict, where: str) -> None:
    other = by_name.get(f.unit_from)
    if other is None or other.readonly or other.type != "choice":
        raise FormDefinitionError(f"{where}: unit_from names '{f.unit_from}', which is not a choice input field "
                                  "of this form (its values department types)",
                                  zh=f"unit_from 引用的“{f.unit_from}”不是本表单可填的单选字段（取值为部门类型）")


def _earlier_case(value, ftype: str, where: str) -> dict | None:
    if value is None:
        return None
    if ftype != "text":
        raise FormDefinitionError(f"{where}: earlier_case is for text fields (a case number) only",
                                  zh="earlier_case 只能用于文本字段（案件编号）")
    example = "{process: petition, same: [petitioner_name], data: {recheck_final: true}}"
    if not isinstance(value, dict) or not isinstance(value.get("process"), str) \
            or not NAME_RE.match(value["process"]) or set(value) - {"process", "same", "data"} \
            or not isinstance(value.get("data", {}), dict):
        raise FormDefinitionError(f"{where}: earlier_case must give the process key, optionally the fields "
                                  f"that must be the same and the data the earlier case must have, e.g. {example}",
                                  zh=f"earlier_case 须写明流程标识，可再写须相同的字段和原案件须有的数据，如 {example}")
    return {"process": value["process"], "same": _names(value.get("same") or None, "earlier_case.same", where),
            "data": dict(value.get("data") or {})}


def _check_earlier_case(f: FieldDef, by_name: dict, where: str) -> None:
    for name in f.earlier_case["same"]:
        other = by_name.get(name)
        if other is None or other.name == f.name or other.readonly:
            raise FormDefinitionError(f"{where}: earlier_case.same names '{name}', which is not another input "
                                      "field of this form",
                                      zh=f"earlier_case.same 引用的“{name}”不是本表单的其他可填字段")


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
        return mf.List(StorableString(validate=validate.Length(min=1, max=ATTACHMENT_ID_MAX_LENGTH)),
                       validate=[validate.Length(max=MAX_FILES_PER_FIELD, error="at most {max} files"),
                                 _each_attached_once], **kwargs)
    raise FormDefinitionError(f"unsupported type {f.type}")


def _each_attached_once(values) -> None:
    """A file field names each attachment once (its JSON Schema says `uniqueItems`): an app
    retrying an upload's id, or sending it twice, would show the case's photo twice."""
    if isinstance(values, list) and len({v for v in values if isinstance(v, str)}) != len(values):
        raise ValidationError("attach each file once")


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
        missing = {f.name: [f.required_if_text()] for f in self.conditional
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
    if isinstance(value, datetime):
        # Stored as China time to the second, as every moment the API and the pages give:
        # an app sending UTC (`toISOString()`: "…T01:00:00.500Z") must not leave a "+00:00"
        # beside the "+08:00" of the rest of the case, nor a naive time (taken as China's,
        # as `_after` reads it) that other readers could take for UTC.
        moment = value if value.tzinfo is not None else value.replace(tzinfo=CHINA_TZ)
        return moment.astimezone(CHINA_TZ).replace(microsecond=0).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_task_data(form: FormDef, cleaned: dict) -> dict:
    """JSON-safe task data from a cleaned submission (dates as ISO text)."""
    return {k: _dump_value(v) for k, v in cleaned.items()}


# an unknown key's message lists the fields one may send, for this many unknown keys of a
# submission (the form's and the API body's): the answer to thousands of junk keys stays small
LIST_FIELDS_FOR_UNKNOWN_KEYS = 10


def unknown_keys(problems: dict) -> list[tuple[str, str, bool]]:
    """The keys marshmallow answered "Unknown field." (a form's data, the API's body), each as
    (key, key as shown: at most 64 characters, never a huge key echoed back whole, whether its
    message lists the fields one may send: the first LIST_FIELDS_FOR_UNKNOWN_KEYS only)."""
    unknown = [key for key, messages in problems.items() if messages == ["Unknown field."]]
    return [(key, key if len(key) <= 64 else key[:64] + "…", n < LIST_FIELDS_FOR_UNKNOWN_KEYS)
            for n, key in enumerate(unknown)]


class FormRegistry:
    """All form definitions of a folder, loaded once and looked up by key."""

    def __init__(self, directory: Path | str | None = None):
        self.directory = Path(directory) if directory else FORMS_DIR
        self._forms: dict[str, FormDef] | None = None

    def _load(self) -> dict[str, FormDef]:
        forms = {}
        for path in sorted(self.directory.glob("*.yaml")):
            try:
                raw = load_yaml(path.read_text(encoding="utf-8"))
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
