"""Forms rendered for people and programs: JSON Schema of a submission, the
field context for the HTML macros, the macros themselves, and HTML POST
coercion. Every shipped form must render and produce a JSON Schema."""
from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader
from markupsafe import escape
from werkzeug.datastructures import MultiDict

from forms import FormRegistry, FormValidationError, parse_definition
from forms.render import coerce_form_post, form_context, json_schema, template_folder

import jsonschema  # a test dependency (setup.cfg [test]); the product does not need it

CATEGORY_CHOICES = [
    {"value": "dispute", "zh": "矛盾纠纷", "en": "Dispute"},
    {"value": "safety_hazard", "zh": "安全隐患", "en": "Safety hazard"},
]

ALL_TYPES = {
    "key": "all_types",
    "title": {"zh": "全部类型", "en": "All types"},
    "description": {"zh": "每种字段类型各一个。", "en": "One field of each type."},
    "fields": [
        {"name": "shown_category", "type": "choice", "readonly": True, "label": {"zh": "事项类别", "en": "Category"},
         "choices": CATEGORY_CHOICES},
        {"name": "shown_note", "type": "long_text", "readonly": True, "label": {"zh": "事项描述", "en": "Description"}},
        {"name": "shown_flag", "type": "boolean", "readonly": True, "label": {"zh": "是否紧急", "en": "Urgent"}},
        {"name": "shown_at", "type": "datetime", "readonly": True, "label": {"zh": "上报时间", "en": "Reported at"}},
        {"name": "shown_tags", "type": "multi_choice", "readonly": True, "label": {"zh": "标签", "en": "Tags"},
         "choices": CATEGORY_CHOICES},
        {"name": "t", "type": "text", "label": {"zh": "标题", "en": "Title"}, "required": True, "max_length": 20,
         "pattern": "[a-z]+", "help": {"zh": "小写字母。", "en": "Lower-case letters."}},
        {"name": "lt", "type": "long_text", "label": {"zh": "情况说明", "en": "Details"}, "min_length": 3,
         "max_length": 2000},
        {"name": "i", "type": "integer", "label": {"zh": "涉及人数", "en": "People"}, "required": True,
         "min": 1, "max": 10},
        {"name": "d", "type": "decimal", "label": {"zh": "面积", "en": "Area"}, "min": 0, "max": 2.5},
        {"name": "day", "type": "date", "label": {"zh": "日期", "en": "Day"}},
        {"name": "at", "type": "datetime", "label": {"zh": "办结时间", "en": "Handled at"}, "required": True},
        {"name": "dept", "type": "choice", "label": {"zh": "承办部门", "en": "Department"}, "required": True,
         "default_from": "suggested_dept",
         "choices": [{"value": "chengguan", "zh": "城管", "en": "Urban management"},
                     {"value": "paichusuo", "zh": "派出所", "en": "Police station"}]},
        {"name": "mc", "type": "multi_choice", "label": {"zh": "涉及方面", "en": "Aspects"}, "required": True,
         "choices": [{"value": "x", "zh": "甲", "en": "Ex"}, {"value": "y", "zh": "乙", "en": "Why"}]},
        {"name": "ok", "type": "boolean", "label": {"zh": "是否化解", "en": "Resolved"}, "required": True},
        {"name": "who", "type": "person", "label": {"zh": "承办人", "en": "Handler"}},
        {"name": "where", "type": "node", "label": {"zh": "辖区", "en": "Jurisdiction"}},
        {"name": "photos", "type": "file", "label": {"zh": "现场照片", "en": "Photos"}},
    ],
}
READONLY = ["shown_category", "shown_note", "shown_flag", "shown_at", "shown_tags"]
INPUTS = ["t", "lt", "i", "d", "day", "at", "dept", "mc", "ok", "who", "where", "photos"]

VALID = {"t": "abc", "lt": "long enough", "i": 3, "d": 1.5, "day": "2026-03-02",
         "at": "2026-03-02T10:00:00+08:00", "dept": "paichusuo", "mc": ["x", "y"], "ok": False,
         "who": "lx_wgy1", "where": "linxizhen", "photos": ["att-1", "att-2"]}

# Submissions the server refuses; the JSON Schema must refuse them too.
INVALID = [
    ("t", ""), ("t", "ABC"), ("t", "1abc"), ("t", "a" * 21), ("t", 5), ("lt", "ab"),
    ("i", 0), ("i", 11), ("i", 2.5), ("i", "3"), ("d", 3.0), ("d", -1), ("d", "abc"),
    ("day", "2026-13-01"), ("at", "yesterday"), ("dept", "fayuan"), ("mc", []), ("mc", ["x", "z"]),
    ("mc", "x"), ("ok", "perhaps"), ("who", ""), ("who", "u" * 65), ("where", ""), ("photos", "att-1"),
    ("photos", [1]), ("shown_category", "dispute"), ("extra", 1),
]

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def form():
    return parse_definition(ALL_TYPES, "all_types.yaml")


# --------------------------------------------------------------------------- helpers

class _Collect(HTMLParser):
    """Every start tag with its attributes, and the text of each element by id."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self._stack: list[tuple[str, str | None]] = []
        self.text_by_id: dict[str, str] = {}
        self.text_parts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag not in ("input", "br", "img", "meta", "link"):
            self._stack.append((tag, attrs.get("id")))
            if attrs.get("id"):
                self.text_by_id.setdefault(attrs["id"], "")

    def handle_endtag(self, tag):
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text_parts.append(data)
        for _, ident in self._stack:
            if ident:
                self.text_by_id[ident] += data

    def find(self, tag=None, **attrs) -> list[dict]:
        return [a for t, a in self.tags if (tag is None or t == tag)
                and all(a.get(k.rstrip("_")) == v for k, v in attrs.items())]

    def one(self, tag=None, **attrs) -> dict:
        found = self.find(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag} {attrs}>, found {len(found)}"
        return found[0]


def env() -> Environment:
    return Environment(loader=FileSystemLoader(template_folder()), autoescape=True)


def render(fields, lang="zh", macro="render_fields") -> str:
    template = env().from_string(
        '{% from "forms/macros.html" import ' + macro + ' %}{{ ' + macro + '(fields, lang) }}')
    return template.render(fields=fields, lang=lang)


def parse(html: str) -> _Collect:
    parser = _Collect()
    parser.feed(html)
    parser.close()
    return parser


def by_name(fields):
    return {f["name"]: f for f in fields}


def schema_validator(schema):
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return jsonschema.Draft202012Validator(schema, format_checker=checker), checker


# --------------------------------------------------------------------------- JSON Schema

def test_schema_top_level(form):
    schema = json_schema(form)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert schema["title"] == "全部类型" and schema["description"] == "每种字段类型各一个。"
    assert list(schema["properties"]) == INPUTS  # read-only fields are not submitted
    assert schema["required"] == ["t", "i", "at", "dept", "mc", "ok"]
    assert schema["x-form-key"] == "all_types"
    assert [(r["name"], r["title"]) for r in schema["x-readonly"]] == [
        ("shown_category", "事项类别"), ("shown_note", "事项描述"), ("shown_flag", "是否紧急"),
        ("shown_at", "上报时间"), ("shown_tags", "标签")]
    en = json_schema(form, lang="en")
    assert en["title"] == "All types" and en["x-readonly"][0]["title"] == "Category"


@pytest.mark.parametrize("name,expected", [
    ("t", {"type": "string", "minLength": 1, "maxLength": 20, "pattern": "^(?:[a-z]+)",
           "title": "标题", "description": "小写字母。"}),
    ("lt", {"type": "string", "minLength": 3, "maxLength": 2000, "title": "情况说明"}),
    ("i", {"type": "integer", "minimum": 1, "maximum": 10}),
    ("d", {"type": "number", "minimum": 0, "maximum": 2.5}),
    ("day", {"type": "string", "format": "date", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$"}),
    ("at", {"type": "string", "format": "date-time"}),
    ("dept", {"type": "string", "enum": ["chengguan", "paichusuo"],
              "oneOf": [{"const": "chengguan", "title": "城管"}, {"const": "paichusuo", "title": "派出所"}]}),
    ("mc", {"type": "array", "uniqueItems": True, "minItems": 1,
            "items": {"type": "string", "enum": ["x", "y"],
                      "oneOf": [{"const": "x", "title": "甲"}, {"const": "y", "title": "乙"}]}}),
    ("ok", {"type": "boolean", "title": "是否化解"}),
    ("who", {"type": "string", "minLength": 1, "maxLength": 64, "x-field-type": "person"}),
    ("where", {"type": "string", "minLength": 1, "x-field-type": "node"}),
    ("photos", {"type": "array", "items": {"type": "string", "minLength": 1, "maxLength": 64}, "maxItems": 20,
                "uniqueItems": True}),
])
def test_schema_property_per_type(form, name, expected):
    prop = json_schema(form)["properties"][name]
    assert {k: prop.get(k) for k in expected} == expected


def test_schema_optional_text_has_no_min_length_and_help_absent_means_no_description(form):
    prop = json_schema(form)["properties"]
    assert "minLength" not in json_schema(parse_definition(
        {"key": "k", "fields": [{"name": "a", "type": "text"}]}))["properties"]["a"]
    assert "description" not in prop["lt"]
    assert "minItems" not in json_schema(parse_definition(
        {"key": "k", "fields": [{"name": "a", "type": "multi_choice", "choices": [{"value": "x"}]}]}
    ))["properties"]["a"]


def test_schema_choice_titles_follow_the_language(form):
    prop = json_schema(form, lang="en")["properties"]["dept"]
    assert prop["title"] == "Department"
    assert [o["title"] for o in prop["oneOf"]] == ["Urban management", "Police station"]
    assert json_schema(form, lang="en")["properties"]["mc"]["items"]["oneOf"][1]["title"] == "Why"


def test_schema_keeps_non_text_choice_values_and_drops_duplicates():
    f = parse_definition({"key": "k", "fields": [{"name": "n", "type": "choice", "choices": [
        {"value": 1, "zh": "一"}, {"value": 2, "zh": "二"}, {"value": 1, "zh": "重复"}]}]})
    prop = json_schema(f)["properties"]["n"]
    assert "type" not in prop and prop["enum"] == [1, 2]
    assert prop["oneOf"] == [{"const": 1, "title": "一"}, {"const": 2, "title": "二"}]


def test_valid_submission_passes_schema_and_server(form):
    assert form.validate(VALID)["i"] == 3
    schema = json_schema(form)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator, _ = schema_validator(schema)
    assert list(validator.iter_errors(VALID)) == []
    assert list(validator.iter_errors({k: VALID[k] for k in ("t", "i", "at", "dept", "mc", "ok")})) == []


@pytest.mark.parametrize("name,value", INVALID)
def test_invalid_submission_fails_schema_and_server(form, name, value):
    data = {**VALID, name: value}
    with pytest.raises(FormValidationError) as err:
        form.validate(data)
    assert name in err.value.fields
    validator, checker = schema_validator(json_schema(form))
    accepted = not list(validator.iter_errors(data))
    assert "date" in checker.checkers, "jsonschema must check the date format"
    assert not accepted, f"schema accepted {name}={value!r}"


@pytest.mark.parametrize("value,ok", [
    ("2026-03-02T10:00:00+08:00", True), ("2026-03-02T02:00:00Z", True), ("2026-03-02T10:00:00.250+08:00", True),
    ("2026-03-02T10:00+08:00", False), ("2026-03-02T10:00:00", False), ("2026-03-02", False),
    ("yesterday", False),
])
def test_datetime_shape_is_checked_without_format_assertion(form, value, ok):
    """Validators treat `format` as an annotation by default; the pattern still holds the shape,
    and whatever it accepts the server accepts."""
    data = {**VALID, "at": value}
    assert jsonschema.Draft202012Validator(json_schema(form)).is_valid(data) is ok
    if ok:
        assert form.validate(data)["at"].tzinfo is not None


def test_missing_required_field_fails_schema(form):
    data = {k: v for k, v in VALID.items() if k != "ok"}
    with pytest.raises(FormValidationError):
        form.validate(data)
    validator, _ = schema_validator(json_schema(form))
    assert any("'ok' is a required property" in e.message for e in validator.iter_errors(data))


def test_schema_pattern_agrees_with_the_server_on_a_tail():
    """`re.match` anchors only the start: "abc1" passes [a-z]+ on the server, so in the schema too."""
    f = parse_definition({"key": "k", "fields": [{"name": "a", "type": "text", "pattern": "[a-z]+"}]})
    assert f.validate({"a": "abc1"}) == {"a": "abc1"}
    assert json_schema(f)["properties"]["a"]["pattern"] == "^(?:[a-z]+)"
    anchored = parse_definition({"key": "k", "fields": [{"name": "a", "type": "text", "pattern": "^1\\d{10}$"}]})
    assert json_schema(anchored)["properties"]["a"]["pattern"] == "^1\\d{10}$"
    validator, _ = schema_validator(json_schema(f))
    assert validator.is_valid({"a": "abc1"}) and not validator.is_valid({"a": "1abc"})


# --------------------------------------------------------------------------- form_context

CASE = {"suggested_dept": "paichusuo", "shown_category": "safety_hazard", "shown_note": "楼道堆放杂物\n<script>alert(1)</script>",
        "shown_flag": True, "shown_at": "2026-03-02T02:00:00+00:00", "shown_tags": ["dispute", "safety_hazard"],
        "t": "not a prefill: no default_from"}


def test_context_has_one_plain_dict_per_field_in_order(form):
    fields = form_context(form, CASE, None, None, "zh")
    assert [f["name"] for f in fields] == READONLY + INPUTS
    t = by_name(fields)["t"]
    assert t["label"] == "标题" and t["help"] == "小写字母。" and t["required"] is True
    assert t["readonly"] is False and t["type"] == "text" and t["errors"] == []
    assert by_name(fields)["shown_note"]["readonly"] is True


def test_context_prefills_from_case_data_via_default_from(form):
    fields = by_name(form_context(form, CASE, None, None, "zh"))
    assert fields["dept"]["value"] == "paichusuo"
    assert [c for c in fields["dept"]["choices"] if c["selected"]] == [
        {"value": "paichusuo", "label": "派出所", "selected": True}]
    assert fields["t"]["value"] is None  # same name in case data is no prefill without default_from
    assert by_name(form_context(form, {}, None, None, "zh"))["dept"]["value"] is None


def test_context_rerender_uses_submitted_values_and_errors(form):
    submitted = {"t": "ABC", "i": "twelve", "dept": "chengguan", "mc": ["y"], "ok": False,
                 "at": "2026-03-02T10:30:00+08:00"}
    errors = {"t": ["does not match the required format"], "i": ["Not a valid integer."],
              "lt": "Shorter than minimum length 3.", "nonexistent": ["ignored"]}
    fields = by_name(form_context(form, CASE, submitted, errors, "zh"))
    assert fields["t"]["value"] == "ABC" and fields["t"]["errors"] == ["does not match the required format"]
    assert fields["i"]["input_value"] == "twelve" and fields["i"]["errors"] == ["Not a valid integer."]
    assert fields["lt"]["errors"] == ["Shorter than minimum length 3."]
    assert fields["dept"]["value"] == "chengguan"  # the official's choice beats the prefill
    assert fields["day"]["value"] is None and fields["day"]["errors"] == []
    assert [c["value"] for c in fields["mc"]["choices"] if c["selected"]] == ["y"]
    assert fields["ok"]["input_value"] == "false"
    assert fields["at"]["input_value"] == "2026-03-02T10:30"
    assert fields["shown_category"]["value"] == "safety_hazard"  # read-only still from the case


def test_context_coerces_a_raw_post(form):
    post = MultiDict([("i", "7"), ("mc", "x"), ("mc", "y"), ("ok", "true"), ("at", "2026-03-02T10:00")])
    fields = by_name(form_context(form, CASE, post, None, "zh"))
    assert fields["i"]["value"] == 7 and fields["mc"]["value"] == ["x", "y"] and fields["ok"]["value"] is True
    assert fields["at"]["value"] == "2026-03-02T10:00:00+08:00" and fields["at"]["input_value"] == "2026-03-02T10:00"


@pytest.mark.parametrize("lang,expected", [
    ("zh", {"shown_category": "安全隐患", "shown_flag": "是", "shown_at": "2026-03-02 10:00",
            "shown_tags": "矛盾纠纷、安全隐患"}),
    ("en", {"shown_category": "Safety hazard", "shown_flag": "Yes", "shown_at": "2026-03-02 10:00",
            "shown_tags": "Dispute, Safety hazard"}),
])
def test_context_readonly_display_values(form, lang, expected):
    fields = by_name(form_context(form, CASE, None, None, lang))
    assert {k: fields[k]["display_value"] for k in expected} == expected
    assert fields["shown_note"]["display_value"] == CASE["shown_note"]
    assert fields["shown_category"]["value"] == "safety_hazard"


@pytest.mark.parametrize("value,zh,en", [(False, "否", "No"), ("false", "否", "No"), (None, "", "")])
def test_context_boolean_display(form, value, zh, en):
    case = {"shown_flag": value}
    assert by_name(form_context(form, case, None, None, "zh"))["shown_flag"]["display_value"] == zh
    assert by_name(form_context(form, case, None, None, "en"))["shown_flag"]["display_value"] == en


def test_context_unknown_choice_value_is_shown_as_is(form):
    fields = by_name(form_context(form, {"shown_category": "retired_category"}, None, None, "zh"))
    assert fields["shown_category"]["display_value"] == "retired_category"


def test_context_labels_in_english(form):
    fields = by_name(form_context(form, {}, None, None, "en"))
    assert fields["dept"]["label"] == "Department" and fields["t"]["help"] == "Lower-case letters."
    assert [c["label"] for c in fields["dept"]["choices"]] == ["Urban management", "Police station"]


@pytest.mark.parametrize("name,attrs", [
    ("t", {"required": True, "minlength": 1, "maxlength": 20, "pattern": "(?:[a-z]+)[\\s\\S]*"}),
    ("lt", {"minlength": 3, "maxlength": 2000}),  # no pattern on a textarea
    ("i", {"required": True, "min": 1, "max": 10, "step": "1", "inputmode": "numeric"}),
    ("d", {"min": 0, "max": 2.5, "step": "any", "inputmode": "decimal"}),
    ("day", {}), ("at", {"required": True}), ("dept", {"required": True}),
    ("mc", {}),  # `required` on each checkbox would demand every box
    ("ok", {"required": True}),
    ("who", {"maxlength": 64, "autocapitalize": "none", "autocomplete": "off", "spellcheck": "false"}),
    ("photos", {"multiple": True, "accept": "image/jpeg,image/png,image/gif,image/webp,application/pdf,.jpg,.jpeg,.png,.gif,.webp,.pdf"}),
    ("shown_note", {}),
])
def test_context_html_attributes(form, name, attrs):
    assert by_name(form_context(form, {}, None, None, "zh"))[name]["attrs"] == attrs


# --------------------------------------------------------------------------- macros

def test_template_folder_holds_the_macros():
    folder = Path(template_folder())
    assert folder.is_absolute() and (folder / "forms" / "macros.html").is_file()


def test_macro_renders_labels_required_markers_and_controls(form):
    html = render(form_context(form, CASE, None, None, "zh"))
    doc = parse(html)
    # every label points at a control that exists, every control has a label or legend
    ids = {a["id"] for _, a in doc.tags if "id" in a}
    assert {a["for"] for a in doc.find("label")} <= ids
    assert doc.text_by_id  # sanity: the parser saw ids
    assert '<label for="t">标题 <span class="required" aria-hidden="true">*</span></label>' in html
    assert '<label for="lt">情况说明</label>' in html  # optional: no marker
    assert html.count('class="required"') == 6
    assert doc.one("input", id="t")["type"] == "text"
    assert doc.one("input", id="t")["pattern"] == "(?:[a-z]+)[\\s\\S]*"
    assert "required" in doc.one("input", id="t") and "required" not in doc.one("input", id="day")
    assert doc.one("textarea", name="lt")["maxlength"] == "2000"
    assert doc.one("input", name="i") | {} == {"type": "number", "id": "i", "name": "i", "max": "10",
                                                 "min": "1", "inputmode": "numeric", "required": None,
                                                 "step": "1", "value": ""}
    assert doc.one("input", name="d")["step"] == "any"
    assert doc.one("input", name="day")["type"] == "date"
    assert doc.one("input", name="at")["type"] == "datetime-local"
    assert doc.one("input", name="who")["type"] == "text" and doc.one("input", name="where")["type"] == "text"
    photos = doc.one("input", name="photos")
    assert photos["type"] == "file" and "multiple" in photos and photos["accept"].startswith("image/jpeg")
    help_ = doc.text_by_id["t-help"]
    assert help_ == "小写字母。" and doc.one("input", id="t")["aria-describedby"] == "t-help"
    assert 'class="field field-text"' in html and html.count('<div class="field ') == len(INPUTS)


def test_macro_select_has_blank_option_and_prefilled_choice(form):
    doc = parse(render(form_context(form, CASE, None, None, "zh")))
    select = doc.one("select", name="dept")
    assert select["id"] == "dept" and "required" in select
    options = doc.find("option")
    assert [o["value"] for o in options] == ["", "chengguan", "paichusuo"]
    assert [o["value"] for o in options if "selected" in o] == ["paichusuo"]
    html = render(form_context(form, CASE, None, None, "zh"))
    assert '<option value="">请选择</option>' in html and ">派出所</option>" in html
    assert '<option value="">Choose…</option>' in render(form_context(form, CASE, None, None, "en"), "en")


def test_macro_checkboxes_and_yes_no_radios(form):
    submitted = {"mc": ["y"], "ok": True}
    doc = parse(render(form_context(form, {}, submitted, None, "zh")))
    boxes = doc.find("input", type="checkbox", name="mc")
    assert [b["value"] for b in boxes] == ["x", "y"] and [("checked" in b) for b in boxes] == [False, True]
    assert all("required" not in b for b in boxes)
    radios = doc.find("input", type="radio", name="ok")
    assert [r["value"] for r in radios] == ["true", "false"]
    assert [("checked" in r) for r in radios] == [True, False] and all("required" in r for r in radios)
    html = render(form_context(form, {}, submitted, None, "zh"))
    assert '<legend>是否化解 <span class="required" aria-hidden="true">*</span></legend>' in html
    assert "> 是</label>" in html and "> 否</label>" in html
    assert "至少选一项" in html  # the group's "at least one" said in words
    en = render(form_context(form, {}, {"ok": False}, None, "en"), "en")
    assert "> Yes</label>" in en and "> No</label>" in en
    assert [("checked" in r) for r in parse(en).find("input", type="radio", name="ok")] == [False, True]


def test_macro_errors_are_announced(form):
    errors = {"t": ["does not match the required format"], "i": ["Not a valid integer.", "Too big."],
              "mc": ["choose at least one"]}
    html = render(form_context(form, {}, {"t": "ABC", "i": "x"}, errors, "zh"))
    doc = parse(html)
    assert doc.text_by_id["t-error"] == "does not match the required format"
    assert doc.one("p", id="t-error")["class"] == "error"
    t = doc.one("input", id="t")
    assert t["aria-invalid"] == "true" and t["aria-describedby"] == "t-help t-error" and t["value"] == "ABC"
    i = doc.one("input", id="i")
    assert i["aria-describedby"] == "i-error i-error-2" and doc.text_by_id["i-error-2"] == "Too big."
    assert all(b["aria-invalid"] == "true" and b["aria-describedby"] == "mc-error"
               for b in doc.find("input", name="mc"))
    assert "aria-invalid" not in doc.one("input", id="day")
    assert 'class="field field-text invalid"' in html
    described = {i for _, a in doc.tags for i in a.get("aria-describedby", "").split()}
    assert described <= {a["id"] for _, a in doc.tags if "id" in a}


def test_macro_readonly_fields_are_a_summary_not_inputs(form):
    html = render(form_context(form, CASE, None, None, "zh"))
    doc = parse(html)
    for name in READONLY:
        assert not doc.find(name=name), f"read-only {name} must not be an input"
    assert html.index('<dl class="case-summary">') < html.index('<div class="field ')
    assert "<dt>事项类别</dt>" in html and "<dd>安全隐患</dd>" in html and "<dd>是</dd>" in html
    assert "<dd>2026-03-02 10:00</dd>" in html and "<dd>矛盾纠纷、安全隐患</dd>" in html
    assert '<dd class="pre-wrap">楼道堆放杂物\n&lt;script&gt;alert(1)&lt;/script&gt;</dd>' in html


def test_macro_escapes_case_and_submitted_data(form):
    evil = '"><script>alert(1)</script>'
    case = {"shown_note": evil, "shown_category": evil}
    submitted = {"t": evil, "lt": "</textarea><script>x()</script>", "who": evil, "photos": [evil]}
    html = render(form_context(form, case, submitted, {"t": [evil]}, "zh"))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html and "&#34;&gt;&lt;script&gt;" in html
    doc = parse(html)
    assert doc.one("input", id="t")["value"] == evil  # round-trips as text in the browser
    assert doc.text_by_id["t-error"] == evil
    source = (Path(template_folder()) / "forms" / "macros.html").read_text(encoding="utf-8")
    assert "|safe" not in source.replace(" ", "") and "autoescape false" not in source


def test_macro_textarea_keeps_the_value(form):
    html = render(form_context(form, {}, {"lt": "第一行\n第二行"}, None, "zh"))
    assert ' rows="4">\n第一行\n第二行</textarea>' in html


def test_render_readonly_alone(form):
    html = render(form_context(form, CASE, None, None, "en"), "en", macro="render_readonly")
    doc = parse(html)
    assert not doc.find("input") and not doc.find("select") and not doc.find("textarea")
    assert [t for t, _ in doc.tags].count("dt") == len(READONLY)
    assert "<dt>Urgent</dt>" in html and "<dd>Yes</dd>" in html and "<dd>Safety hazard</dd>" in html
    empty = render(form_context(form, {}, None, None, "zh"), macro="render_readonly")
    assert empty.count('<span class="empty">未填写</span>') == len(READONLY)
    none = parse_definition({"key": "k", "fields": [{"name": "a", "type": "text"}]})
    assert render(form_context(none, {}, None, None, "zh"), macro="render_readonly").strip() == ""


def test_file_field_with_stored_attachments(form):
    fields = by_name(form_context(form, {}, {"photos": ["att-1", "att-2"]}, None, "zh"))
    assert fields["photos"]["input_value"] == ["att-1", "att-2"]
    required = parse_definition({"key": "k", "fields": [
        {"name": "p", "type": "file", "label": "照片", "required": True}]})
    assert by_name(form_context(required, {}, None, None, "zh"))["p"]["attrs"]["required"] is True
    stored = form_context(required, {}, {"p": ["att-1"]}, None, "zh")
    assert "required" not in stored[0]["attrs"]  # no need to upload again
    assert "已上传：att-1" in render(stored)


# --------------------------------------------------------------------------- coerce_form_post

@pytest.mark.parametrize("name,posted,expected", [
    ("t", ["  abc  "], "abc"),
    ("lt", ["a\r\nb\r\n"], "a\nb"),
    ("i", ["7"], 7), ("i", ["-3"], -3), ("i", ["7.5"], "7.5"), ("i", ["12a"], "12a"), ("i", ["1_000"], "1_000"),
    ("d", ["2.5"], 2.5), ("d", [".5"], 0.5), ("d", ["1e2"], 100.0), ("d", ["abc"], "abc"), ("d", ["nan"], "nan"),
    ("day", ["2026-03-02"], "2026-03-02"),
    ("at", ["2026-03-02T10:00"], "2026-03-02T10:00:00+08:00"),
    ("at", ["2026-03-02T10:00:30"], "2026-03-02T10:00:30+08:00"),
    ("at", ["2026-03-02T02:00:00+00:00"], "2026-03-02T02:00:00+00:00"),
    ("at", ["not a time"], "not a time"),
    ("dept", ["chengguan"], "chengguan"), ("dept", ["nope"], "nope"),
    ("mc", ["x", "y"], ["x", "y"]), ("mc", ["y"], ["y"]),
    ("ok", ["true"], True), ("ok", ["false"], False), ("ok", ["maybe"], "maybe"),
    ("who", ["lx_wgy1"], "lx_wgy1"), ("where", ["linxizhen"], "linxizhen"),
])
def test_coerce_each_type(form, name, posted, expected):
    out = coerce_form_post(form, MultiDict([(name, v) for v in posted]))
    assert out == {name: expected}
    assert type(out[name]) is type(expected)


@pytest.mark.parametrize("post", [
    MultiDict(),  # nothing posted
    MultiDict([("lt", ""), ("d", "  "), ("day", ""), ("who", ""), ("where", "")]),  # optional left empty
    MultiDict([("i", ""), ("at", ""), ("dept", ""), ("ok", "")]),  # required but not text: reported missing
    MultiDict([("mc", "")]),
])
def test_coerce_omits_missing_and_empty_values(form, post):
    assert coerce_form_post(form, post) == {}


def test_coerce_keeps_empty_required_text_so_it_is_reported(form):
    out = coerce_form_post(form, MultiDict([("t", "   ")]))
    assert out == {"t": ""}
    with pytest.raises(FormValidationError) as err:
        form.validate(out)
    assert "must not be empty" in " ".join(err.value.fields["t"])


def test_coerce_ignores_files_readonly_and_unknown_keys(form):
    post = MultiDict([("photos", "x.jpg"), ("shown_note", "tampered"), ("csrf_token", "abc"), ("t", "abc")])
    assert coerce_form_post(form, post) == {"t": "abc"}


def test_coerce_bad_numbers_are_reported_by_validation(form):
    post = MultiDict([("t", "abc"), ("i", "12a"), ("d", "abc"), ("at", "2026-03-02T10:00"),
                      ("dept", "chengguan"), ("mc", "x"), ("ok", "true")])
    with pytest.raises(FormValidationError) as err:
        form.validate(coerce_form_post(form, post))
    assert set(err.value.fields) == {"i", "d"}


def test_coerce_then_validate_a_full_post(form):
    post = MultiDict([("t", "abc"), ("lt", "情况属实\r\n已处理"), ("i", "3"), ("d", "1.5"), ("day", "2026-03-02"),
                      ("at", "2026-03-02T10:00"), ("dept", "paichusuo"), ("mc", "x"), ("mc", "y"), ("ok", "false"),
                      ("who", "lx_wgy1"), ("where", "linxizhen"), ("csrf_token", "tok")])
    clean = form.validate(coerce_form_post(form, post))
    assert clean["i"] == 3 and clean["d"] == 1.5 and clean["ok"] is False and clean["mc"] == ["x", "y"]
    assert clean["lt"] == "情况属实\n已处理"
    assert clean["at"] == dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert clean["at"].astimezone(dt.timezone.utc).hour == 2


def test_coerce_matches_choice_values_that_are_not_text():
    f = parse_definition({"key": "k", "fields": [
        {"name": "n", "type": "choice", "choices": [{"value": 1, "zh": "一"}, {"value": 2, "zh": "二"}]},
        {"name": "m", "type": "multi_choice", "choices": [{"value": 1}, {"value": 2}]}]})
    out = coerce_form_post(f, MultiDict([("n", "2"), ("m", "1"), ("m", "2")]))
    assert out == {"n": 2, "m": [1, 2]} and f.validate(out) == {"n": 2, "m": [1, 2]}
    ctx = by_name(form_context(f, {}, out, None, "zh"))
    assert [c["selected"] for c in ctx["n"]["choices"]] == [False, True]


def test_coerce_accepts_a_plain_dict(form):
    assert coerce_form_post(form, {"i": "4", "mc": ["x"], "ok": "true"}) == {"i": 4, "mc": ["x"], "ok": True}


# --------------------------------------------------------------------------- shipped forms

SHIPPED = sorted(FormRegistry().keys())


def test_shipped_forms_are_all_covered():
    assert {p.stem for p in (ROOT / "forms").glob("*.yaml")} == set(SHIPPED) and len(SHIPPED) >= 7


@pytest.mark.parametrize("key", SHIPPED)
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_shipped_form_renders_and_has_a_schema(key, lang):
    form = FormRegistry().get(key)
    schema = json_schema(form, lang)
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["properties"]) == {f.name for f in form.input_fields}
    assert set(schema["required"]) == {f.name for f in form.input_fields if f.required}
    assert [r["name"] for r in schema["x-readonly"]] == [f.name for f in form.fields if f.readonly]
    assert all(p["title"] for p in schema["properties"].values())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert not jsonschema.Draft202012Validator(schema).is_valid({}) or not schema["required"]

    case = {f.name: (f.choice_values[0] if f.choices else "现场<核实>") for f in form.fields if f.readonly}
    html = render(form_context(form, case, None, None, lang), lang)
    doc = parse(html)
    for f in form.input_fields:
        assert str(escape(f.label[lang])) in html
        controls = doc.find(name=f.name)
        assert controls, f"{key}: no control for {f.name}"
        if f.type not in ("multi_choice", "boolean"):
            assert doc.find("label", for_=f.name), f"{key}: no label for {f.name}"
    for f in form.fields:
        if f.readonly:
            assert f"<dt>{escape(f.label[lang])}</dt>" in html and not doc.find(name=f.name)
    assert "<核实>" not in html


# --------------------------------------------------------------------------- required_if

def _conditional(field_type):
    extra = {"choices": [{"value": "a"}]} if field_type == "multi_choice" else {}
    return parse_definition({"key": "visit", "fields": [
        {"name": "outcome", "type": "choice", "required": True, "choices": [{"value": "fine"}, {"value": "needs_help"}]},
        {"name": "need", "type": field_type, "required_if": {"outcome": ["needs_help"]}, **extra}]})


@pytest.mark.parametrize("field_type,filled,empty", [
    ("long_text", "代缴取暖费", ""), ("multi_choice", ["a"], []), ("integer", 3, None)])
def test_schema_and_server_agree_on_a_field_required_by_a_choice(field_type, filled, empty):
    form = _conditional(field_type)
    validator, _ = schema_validator(json_schema(form))
    jsonschema.Draft202012Validator.check_schema(json_schema(form))
    _assert_schema_and_server_agree(form, validator, [
        ({"outcome": "fine"}, True), ({"outcome": "needs_help", "need": filled}, True),
        ({"outcome": "needs_help"}, False), ({"outcome": "needs_help", "need": empty}, False)])


@pytest.mark.parametrize("other,condition,data_on,data_off", [
    ({"name": "days", "type": "integer"}, {"min": 1}, {"days": 3}, {"days": 0}),
    ({"name": "case_no", "type": "text"}, "filled", {"case_no": "LX-1"}, {"case_no": ""}),
    ({"name": "units", "type": "multi_choice", "choices": [{"value": "a"}, {"value": "b"}]}, ["b"],
     {"units": ["a", "b"]}, {"units": ["a"]}),
])
def test_schema_and_server_agree_on_required_if_of_a_number_a_filled_field_and_a_multi_choice(
        other, condition, data_on, data_off):
    form = parse_definition({"key": "k", "fields": [
        other, {"name": "need", "type": "text", "required_if": {other["name"]: condition}}]})
    validator, _ = schema_validator(json_schema(form))
    _assert_schema_and_server_agree(form, validator, [
        (data_off, True), ({**data_on, "need": "x"}, True), (data_on, False), ({**data_on, "need": ""}, False)])


@pytest.mark.parametrize("other,condition,data_on,data_off", [
    ({"name": "outcome", "type": "choice", "choices": [{"value": "resolved"}, {"value": "escalate"}]}, ["escalate"],
     {"outcome": "escalate"}, {"outcome": "resolved"}),
    ({"name": "units", "type": "multi_choice", "choices": [{"value": "a"}, {"value": "b"}]}, ["b"],
     {"units": ["a", "b"]}, {"units": ["a"]}),
    ({"name": "days", "type": "integer"}, {"min": 1}, {"days": 3}, {"days": 0}),
])
def test_schema_and_server_agree_on_required_unless(other, condition, data_on, data_off):
    """`required_unless` (办结时间 unless the handler escalates): required where the condition does
    not hold, the other field left out or empty included; not required where it holds."""
    form = parse_definition({"key": "k", "fields": [
        other, {"name": "need", "type": "text", "required_unless": {other["name"]: condition}}]})
    schema = json_schema(form)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator, _ = schema_validator(schema)
    _assert_schema_and_server_agree(form, validator, [
        (data_on, True), ({**data_on, "need": "x"}, True), ({**data_off, "need": "x"}, True),
        (data_off, False), ({**data_off, "need": ""}, False), ({}, False), ({"need": "x"}, True)])


@pytest.mark.parametrize("field, en", [
    ({"name": "need", "type": "text", "required_unless": {"outcome": ["escalat"]}},
     "required_unless: 'escalat' is not a value of 'outcome'"),
    ({"name": "need", "type": "text", "required_unless": {"outcome": ["escalate"]}, "required": True},
     "a field with required_unless is neither required nor readonly"),
    ({"name": "need", "type": "text", "required_unless": {"outcome": ["escalate"]},
      "required_if": {"outcome": ["resolved"]}}, "a field takes required_if or required_unless, not both"),
    ({"name": "need", "type": "text", "required_unless": {"nothing": ["escalate"]}},
     "required_unless names 'nothing', which is not another input field"),
])
def test_the_definition_check_names_what_is_wrong_with_required_unless(field, en):
    from forms import FormDefinitionError
    with pytest.raises(FormDefinitionError) as err:
        parse_definition({"key": "k", "fields": [
            {"name": "outcome", "type": "choice", "choices": [{"value": "resolved"}, {"value": "escalate"}]}, field]})
    assert en in str(err.value)
    assert "required_unless" in err.value.zh or "required_if" in err.value.zh


def test_department_handling_asks_the_time_handled_only_when_the_matter_is_handled():
    """办结时间 was required of a handler escalating the matter, who has finished nothing."""
    form = FormRegistry().get("department_handle")
    validator, _ = schema_validator(json_schema(form))
    base = {"handling_result": "已协调", "escalation_reason": "需县住建局协调"}
    when = "2026-03-02T10:00:00+08:00"
    _assert_schema_and_server_agree(form, validator, [
        ({**base, "outcome": "escalate"}, True), ({**base, "outcome": "escalate", "handled_at": when}, True),
        ({**base, "outcome": "resolved"}, False), (base, False), ({**base, "outcome": ""}, False),
        ({**base, "outcome": "resolved", "handled_at": when}, True), ({**base, "handled_at": when}, True)])


def _assert_schema_and_server_agree(form, validator, cases):
    """The browser's JSON Schema and the server's validation accept and refuse the same data."""
    for data, ok in cases:
        schema_ok = not list(validator.iter_errors(data))
        try:
            form.validate(data)
            server_ok = True
        except FormValidationError:
            server_ok = False
        assert (schema_ok, server_ok) == (ok, ok), data


def test_schema_and_server_agree_on_a_file_field():
    """The schema said any list of ids while the server took at most 20 of at most 64
    characters, and both took one id twice (the case then listed the photo twice)."""
    form = parse_definition({"key": "k", "fields": [{"name": "photos", "type": "file"}]})
    validator, _ = schema_validator(json_schema(form))
    _assert_schema_and_server_agree(form, validator, [
        ({"photos": ["a", "b"]}, True), ({"photos": []}, True), ({"photos": ["a", "a"]}, False),
        ({"photos": [str(i) for i in range(20)]}, True), ({"photos": [str(i) for i in range(21)]}, False),
        ({"photos": ["x" * 64]}, True), ({"photos": ["x" * 65]}, False), ({"photos": [""]}, False)])


def test_every_shipped_conditional_field_is_in_its_schema():
    for form in FormRegistry().forms.values():
        conditional = {f.name for f in form.input_fields if f.required_if}
        named = {name for rule in json_schema(form).get("allOf", [])
                 for name in (rule.get("then") or rule["else"])["required"]}
        assert named == conditional, form.key


def test_the_file_picker_offers_exactly_what_uploads_accept():
    """The picker offered Word, Excel and video files that every upload then refused, and the
    official had to choose every file again."""
    from engine.attachments import KINDS
    from forms.render import FILE_ACCEPT
    offered = FILE_ACCEPT.split(",")
    assert {t for t in offered if "/" in t} == {content_type for content_type, _limit, _check in KINDS}
    assert not [t for t in offered if t.endswith("/*")]
