"""Form definitions: every shipped form loads, and every field type refuses bad input."""
from datetime import datetime, timezone

import pytest

from forms import FormDefinitionError, FormRegistry, FormValidationError, parse_definition

ALL_TYPES = {
    "key": "all_types",
    "title": {"zh": "全部类型", "en": "All types"},
    "fields": [
        {"name": "t", "type": "text", "label": "文本", "required": True, "max_length": 5, "pattern": "^[a-z]+$"},
        {"name": "lt", "type": "long_text", "label": "长文本", "min_length": 3},
        {"name": "i", "type": "integer", "label": "整数", "min": 1, "max": 10},
        {"name": "d", "type": "decimal", "label": "小数", "max": 2.5},
        {"name": "day", "type": "date", "label": "日期"},
        {"name": "at", "type": "datetime", "label": "时间"},
        {"name": "c", "type": "choice", "label": "选择", "choices": [{"value": "a", "zh": "甲"}, {"value": "b"}]},
        {"name": "mc", "type": "multi_choice", "label": "多选", "choices": [{"value": "x"}, {"value": "y"}]},
        {"name": "yes", "type": "boolean", "label": "是否"},
        {"name": "who", "type": "person", "label": "人员"},
        {"name": "where", "type": "node", "label": "辖区"},
        {"name": "shown", "type": "text", "label": "只读", "readonly": True},
    ],
}


@pytest.fixture
def form():
    return parse_definition(ALL_TYPES, "all_types.yaml")


def test_every_shipped_form_loads():
    forms = FormRegistry().forms
    assert {"grid_matter_report", "micro_mediation", "town_dispatch", "department_handle",
            "verify_on_site", "satisfaction", "record_result"} <= set(forms)
    for f in forms.values():
        assert f.title["zh"] and all(fd.label["zh"] for fd in f.fields)


def test_valid_submission_is_cleaned(form):
    clean = form.validate({"t": "abc", "lt": "long enough", "i": 3, "d": 1.5, "day": "2026-03-02",
                           "at": "2026-03-02T10:00:00+08:00", "c": "a", "mc": ["x", "y"], "yes": True,
                           "who": "lx_wgy1", "where": "linxizhen"})
    assert clean["i"] == 3 and clean["c"] == "a" and clean["mc"] == ["x", "y"]


@pytest.mark.parametrize("field,value", [
    ("t", ""), ("t", "toolong"), ("t", "ABC"), ("lt", "ab"), ("i", 0), ("i", 11), ("i", "3"), ("i", 2.5),
    ("d", 3.0), ("d", "abc"), ("day", "2026-13-01"), ("at", "yesterday"), ("c", "z"), ("mc", ["x", "z"]),
    ("mc", "x"), ("yes", "perhaps"), ("who", ""), ("shown", "cannot submit read-only"), ("extra", 1),
])
def test_each_kind_of_bad_input_is_refused_at_its_field(form, field, value):
    data = {"t": "abc", field: value}
    with pytest.raises(FormValidationError) as err:
        form.validate(data)
    assert field in err.value.fields


def test_required_field_missing(form):
    with pytest.raises(FormValidationError) as err:
        form.validate({})
    assert list(err.value.fields) == ["t"]


@pytest.mark.parametrize("broken,message", [
    ({"key": "x y", "fields": []}, "'key'"),
    ({"key": "x", "fields": "nope"}, "'fields' must be a list"),
    ({"key": "x", "fields": [{"name": "a", "type": "colour"}]}, "type 'colour'"),
    ({"key": "x", "fields": [{"name": "a", "type": "choice"}]}, "needs 'choices'"),
    ({"key": "x", "fields": [{"name": "a", "type": "text"}, {"name": "a", "type": "text"}]}, "twice"),
    ({"key": "x", "fields": [{"name": "a", "type": "text", "pattern": "("}]}, "regular expression"),
    ({"key": "x", "fields": [{"name": "a", "type": "text", "colour": "red"}]}, "unknown keys"),
])
def test_malformed_definitions_name_the_problem(broken, message):
    with pytest.raises(FormDefinitionError, match=message):
        parse_definition(broken, "x.yaml")


@pytest.mark.parametrize("value", ["yes", "no", "on", "true", "~"])
def test_an_unquoted_yes_or_no_choice_value_is_named_to_the_designer(value):
    """YAML reads `value: yes` as True: the form would offer "True" and a condition comparing
    the answer with "yes" could never hold."""
    import yaml
    text = f"key: x\nfields:\n  - name: a\n    type: choice\n    choices:\n      - {{value: {value}, zh: 是}}\n"
    with pytest.raises(FormDefinitionError, match="quote it") as err:
        parse_definition(yaml.safe_load(text), "x.yaml")
    assert "请加引号" in err.value.zh
    quoted = text.replace(f"value: {value},", f"value: '{value}',")
    assert parse_definition(yaml.safe_load(quoted), "x.yaml").fields[0].choice_values == [value]


def test_registry_requires_key_to_match_file_name(tmp_path):
    (tmp_path / "a.yaml").write_text("key: b\nfields: []\n", encoding="utf-8")
    with pytest.raises(FormDefinitionError, match="must match the file name"):
        FormRegistry(tmp_path).keys()


# ------------------------------------------------------------ required_if

OUTCOME = {"name": "outcome", "type": "choice", "required": True,
           "choices": [{"value": "fine"}, {"value": "needs_help"}, {"value": "referred"}]}


def conditional(field_type="long_text", values=("needs_help", "referred"), **extra):
    return parse_definition({"key": "visit", "fields": [
        OUTCOME, {"name": "ok", "type": "boolean"},
        {"name": "need", "type": field_type, "required_if": {"outcome": list(values)}, **extra}]}, "visit.yaml")


@pytest.mark.parametrize("outcome", ["needs_help", "referred"])
@pytest.mark.parametrize("missing", [{}, {"need": ""}, {"need": None}])
def test_a_field_required_by_a_choice_is_refused_when_missing(outcome, missing):
    with pytest.raises(FormValidationError) as err:
        conditional().validate({"outcome": outcome, **missing})
    assert err.value.fields == {"need": ["required by the choice of outcome"]}


def test_a_field_required_by_a_choice_is_optional_otherwise_and_kept_when_given():
    form = conditional()
    assert form.validate({"outcome": "fine"}) == {"outcome": "fine"}
    assert form.validate({"outcome": "needs_help", "need": "代缴取暖费"})["need"] == "代缴取暖费"


def test_required_if_on_a_boolean_and_for_a_list_field():
    form = parse_definition({"key": "k", "fields": [
        {"name": "ok", "type": "boolean", "required": True},
        {"name": "why", "type": "multi_choice", "choices": [{"value": "a"}], "required_if": {"ok": False}}]})
    assert form.validate({"ok": True}) == {"ok": True}
    for missing in ({}, {"why": []}):
        with pytest.raises(FormValidationError) as err:
            form.validate({"ok": False, **missing})
        assert list(err.value.fields) == ["why"]


def test_the_conditional_error_comes_with_the_other_fields_errors():
    with pytest.raises(FormValidationError) as err:
        conditional(max_length=3).validate({"outcome": "needs_help", "ok": "perhaps"})
    assert set(err.value.fields) == {"ok", "need"}


@pytest.mark.parametrize("required_if,message", [
    ({"nope": ["x"]}, "'nope', which is not another input field"),
    ({"need": ["x"]}, "'need', which is not another input field"),            # itself
    ({"label": ["x"]}, "not another input field"),                            # a read-only field
    ({"text": ["x"]}, "needs a choice or boolean field; 'text' is text"),
    ({"outcome": ["lost"]}, "'lost' is not a value of 'outcome'"),
    ({"outcome": []}, "at least one value"),
    ({"outcome": ["fine"], "ok": [True]}, "must name one field"),
    ("outcome", "must name one field"),
])
def test_a_broken_required_if_names_the_problem(required_if, message):
    with pytest.raises(FormDefinitionError, match=message) as err:
        parse_definition({"key": "k", "fields": [
            OUTCOME, {"name": "text", "type": "text"}, {"name": "label", "type": "text", "readonly": True},
            {"name": "need", "type": "text", "required_if": required_if}]}, "k.yaml")
    assert err.value.zh


def test_required_if_is_not_combined_with_required():
    with pytest.raises(FormDefinitionError, match="neither required nor readonly"):
        parse_definition({"key": "k", "fields": [
            OUTCOME, {"name": "need", "type": "text", "required": True, "required_if": {"outcome": ["fine"]}}]})


def test_a_conditional_boolean_answered_false_is_an_answer_to_validation_and_to_the_demo_history():
    """False is an answer, not an empty field: validation accepts it, and the demo history's
    filling-in keeps it (it used to replace it with True)."""
    from types import SimpleNamespace

    from engine.demo_history import DemoHistory

    form = parse_definition({"key": "k", "fields": [
        OUTCOME, {"name": "signed", "type": "boolean", "required_if": {"outcome": ["referred"]}}]})
    assert form.validate({"outcome": "referred", "signed": False}) == {"outcome": "referred", "signed": False}
    with pytest.raises(FormValidationError):
        form.validate({"outcome": "referred"})
    history = DemoHistory.__new__(DemoHistory)
    history.service, history.rng = SimpleNamespace(forms={"k": form}), None
    assert history._fill("k", {"outcome": "referred", "signed": False}, "some_task")["signed"] is False
    assert history._fill("k", {"outcome": "referred"}, "some_task")["signed"] is True


# ------------------------------------------------------------ not_future

NOW = datetime(2026, 3, 2, 8, 30, tzinfo=timezone.utc)        # 16:30 in China


def done_on(field_type):
    return parse_definition({"key": "k", "fields": [
        {"name": "at", "type": field_type, "required": True, "not_future": True},
        {"name": "note", "type": "text", "required": True}]}, "k.yaml")


@pytest.mark.parametrize("field_type,value", [
    ("date", "2026-03-03"),                         # tomorrow in China
    ("datetime", "2026-03-02T16:41:00+08:00"),      # past the ten minutes' grace
    ("datetime", "2026-03-02T16:41:00"),            # no offset: China's time
    ("datetime", "2026-03-02T08:41:00+00:00"),
])
def test_a_not_future_field_refuses_a_moment_after_now_beside_the_other_fields_problems(field_type, value):
    with pytest.raises(FormValidationError) as err:
        done_on(field_type).validate({"at": value}, now=NOW)
    assert err.value.fields == {"at": ["must not be in the future"], "note": ["Missing data for required field."]}


@pytest.mark.parametrize("field_type,value", [
    ("date", "2026-03-02"),                         # today in China (still 1 March in UTC at 00:30 CST)
    ("datetime", "2026-03-02T16:39:00+08:00"),      # a phone a few minutes ahead
    ("datetime", "2026-03-02T16:39:00"),
    ("datetime", "2025-12-31T23:00:00+08:00"),
])
def test_a_not_future_field_accepts_now_and_the_past(field_type, value):
    assert "at" in done_on(field_type).validate({"at": value, "note": "x"}, now=NOW)


def test_a_date_is_compared_with_todays_date_in_china():
    just_after_midnight_in_china = datetime(2026, 3, 1, 16, 5, tzinfo=timezone.utc)   # 3-2 00:05 CST
    assert done_on("date").validate({"at": "2026-03-02", "note": "x"}, now=just_after_midnight_in_china)


def test_without_a_clock_not_future_is_not_checked():
    assert done_on("date").validate({"at": "2099-01-01", "note": "x"})


@pytest.mark.parametrize("field,message", [
    ({"name": "a", "type": "text", "not_future": True}, "date and datetime fields only"),
    ({"name": "a", "type": "date", "not_future": "yes"}, "true or false"),
])
def test_a_misplaced_not_future_names_the_problem(field, message):
    with pytest.raises(FormDefinitionError, match=message) as err:
        parse_definition({"key": "k", "fields": [field]}, "k.yaml")
    assert err.value.zh


def test_the_shipped_dates_of_things_done_are_not_future():
    forms = FormRegistry()
    for key, name in [("department_handle", "handled_at"), ("grid_city_handle", "handled_at"),
                      ("petition_written_reply", "reply_date"), ("petition_review", "review_date"),
                      ("mediation_agreement", "signed_on")]:
        assert next(f for f in forms.get(key).fields if f.name == name).not_future, (key, name)
    assert not next(f for f in forms.get("mediation_agreement").fields if f.name == "fulfilment_deadline").not_future


# ------------------------------------------------------------ every shipped form

WRONG_BY_TYPE = {
    "text": 123, "long_text": ["not", "text"], "integer": "abc", "decimal": "abc", "date": "2026-13-01",
    "datetime": "yesterday", "choice": "__no_such_choice__", "multi_choice": ["__no_such_choice__"],
    "boolean": "perhaps", "person": "", "node": "", "file": "not a list",
}


def _shipped_fields():
    for form in FormRegistry().forms.values():
        for f in form.fields:
            yield pytest.param(form, f, id=f"{form.key}.{f.name}")


@pytest.mark.parametrize("form,field", list(_shipped_fields()))
def test_every_field_of_every_shipped_form_refuses_bad_input_at_the_field(form, field):
    """A wrong value for each field of each shipped form is refused at that field: a value
    of the wrong kind, text over its length limit, a read-only field submitted at all."""
    bad = [WRONG_BY_TYPE[field.type]]
    if field.max_length is not None:
        bad.append("字" * (field.max_length + 1))
    if field.required and field.type in ("text", "long_text"):
        bad.append("   ")
    for value in bad:
        with pytest.raises(FormValidationError) as err:
            form.validate({field.name: value})
        assert field.name in err.value.fields, (value, err.value.fields)


@pytest.mark.parametrize("form", list(FormRegistry().forms.values()), ids=lambda f: f.key)
def test_every_shipped_form_names_each_required_field_left_out(form):
    required = {f.name for f in form.input_fields if f.required}
    try:
        form.validate({})
    except FormValidationError as err:
        assert required <= set(err.fields) and set(err.fields) <= {f.name for f in form.input_fields}
    else:
        assert not required


# ------------------------------------------------------------ not_before

def ordered(**extra):
    return parse_definition({"key": "k", "fields": [
        {"name": "replied", "type": "date", "readonly": True, "label": {"zh": "答复日期", "en": "Replied on"}},
        {"name": "asked", "type": "date", "required": True, "label": {"zh": "请求复查日期", "en": "Asked on"},
         "not_before": ["replied"], **extra},
        {"name": "answered", "type": "datetime", "label": {"zh": "复查时间", "en": "Answered at"},
         "not_before": "asked"}]}, "k.yaml")


def test_a_date_before_the_case_date_it_follows_is_refused_naming_both_in_both_languages():
    with pytest.raises(FormValidationError) as err:
        ordered().validate({"asked": "2026-03-01"}, context={"replied": "2026-03-02"})
    assert err.value.fields == {"asked": ["Asked on (2026-03-01) must not be before Replied on (replied, 2026-03-02)"]}
    assert err.value.fields_zh == {"asked": ["请求复查日期（2026-03-01）不能早于答复日期（2026-03-02），请核对这两个日期"]}


def test_dates_of_the_same_submission_keep_their_order_and_the_same_day_is_not_before():
    form = ordered()
    assert form.validate({"asked": "2026-03-02"}, context={"replied": "2026-03-02"})
    assert form.validate({"asked": "2026-03-02", "answered": "2026-03-02T00:30:00+08:00"})
    with pytest.raises(FormValidationError) as err:   # 3-1 23:30 in China is the day before
        form.validate({"asked": "2026-03-02", "answered": "2026-03-01T15:30:00+00:00"})
    assert list(err.value.fields) == ["answered"] and "Asked on" in err.value.fields["answered"][0]
    assert form.validate({"asked": "2026-03-01"})     # no case date to compare with: nothing to say


@pytest.mark.parametrize("field,message", [
    ({"name": "a", "type": "text", "not_before": ["d"]}, "date and datetime input fields only"),
    ({"name": "a", "type": "date", "not_before": ["nope"]}, "'nope', which is not another date"),
    ({"name": "a", "type": "date", "not_before": ["t"]}, "'t', which is not another date"),
    ({"name": "a", "type": "date", "not_before": ["a"]}, "'a', which is not another date"),
    ({"name": "a", "type": "date", "not_before": 3}, "must name fields of this form"),
])
def test_a_wrong_not_before_names_the_problem(field, message):
    with pytest.raises(FormDefinitionError, match=message) as err:
        parse_definition({"key": "k", "fields": [{"name": "d", "type": "date"}, {"name": "t", "type": "text"}, field]},
                         "k.yaml")
    assert err.value.zh


def test_the_petition_dates_follow_the_dates_they_count_from():
    forms = FormRegistry()
    for key, name, after in [("petition_written_reply", "reply_date", "accepted_on"),
                             ("petition_review_request", "review_requested_on", "reply_date"),
                             ("petition_review", "review_date", "review_requested_on"),
                             ("petition_recheck_request", "recheck_requested_on", "review_date"),
                             ("petition_recheck", "recheck_date", "recheck_requested_on")]:
        assert next(f for f in forms.get(key).fields if f.name == name).not_before == (after,), key


# ------------------------------------------------------------ required_if of other kinds

def kinds_form():
    return parse_definition({"key": "k", "fields": [
        {"name": "days", "type": "integer", "required": True, "min": 0, "max": 30},
        {"name": "why", "type": "long_text", "required_if": {"days": {"min": 1}}},
        {"name": "case_no", "type": "text"},
        {"name": "note", "type": "text", "required_if": {"case_no": "filled"}},
        {"name": "units", "type": "multi_choice", "choices": [{"value": "a"}, {"value": "b"}]},
        {"name": "plan", "type": "text", "required_if": {"units": ["b"]}}]}, "k.yaml")


@pytest.mark.parametrize("data,missing", [
    ({"days": 5}, "why"), ({"days": 5, "why": ""}, "why"), ({"days": 0, "case_no": "LX-1"}, "note"),
    ({"days": 0, "units": ["a", "b"]}, "plan"),
])
def test_required_if_on_a_number_a_filled_field_and_a_multi_choice(data, missing):
    with pytest.raises(FormValidationError) as err:
        kinds_form().validate(data)
    assert list(err.value.fields) == [missing]


def test_required_if_of_other_kinds_is_optional_otherwise():
    form = kinds_form()
    assert form.validate({"days": 0, "case_no": "", "units": ["a"]}) == {"days": 0, "case_no": "", "units": ["a"]}
    assert form.validate({"days": 3, "why": "情况复杂"})["why"] == "情况复杂"


def test_an_extension_without_its_reason_is_refused():
    form = FormRegistry().get("petition_handle")
    with pytest.raises(FormValidationError) as err:
        form.validate({"handling_result": "进展", "hard_case": False, "extension_days": 10})
    assert err.value.fields == {"extension_reason": ["required by the value of extension_days"]}
    assert form.validate({"handling_result": "办结", "hard_case": False, "extension_days": 0})


@pytest.mark.parametrize("required_if,message", [
    ({"note": {"min": 1}}, "a range \\(min/max\\), which needs a number field; 'note' is text"),
    ({"days": {"least": 1}}, "as a range takes numbers min and/or max"),
    ({"days": {"min": "one"}}, "as a range takes numbers min and/or max"),
    ({"days": {"min": 5, "max": 1}}, "min 5 is above max 1"),
    ({"days": [1]}, "lists values, which needs a choice or boolean field; 'days' is integer \\(use \\{days: filled\\} "
                    "or \\{days: \\{min: 1\\}\\}\\)"),
    ({"ok": "filled"}, "a yes/no field such as 'ok' is always answered"),
])
def test_a_required_if_of_the_wrong_kind_names_the_problem(required_if, message):
    with pytest.raises(FormDefinitionError, match=message) as err:
        parse_definition({"key": "k", "fields": [
            {"name": "days", "type": "integer"}, {"name": "note", "type": "text"}, {"name": "ok", "type": "boolean"},
            {"name": "need", "type": "text", "required_if": required_if}]}, "k.yaml")
    assert err.value.zh
