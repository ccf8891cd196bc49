"""Form definitions: every shipped form loads, and every field type refuses bad input."""
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


def test_registry_requires_key_to_match_file_name(tmp_path):
    (tmp_path / "a.yaml").write_text("key: b\nfields: []\n", encoding="utf-8")
    with pytest.raises(FormDefinitionError, match="must match the file name"):
        FormRegistry(tmp_path).keys()
