"""A mobile-app-like client that knows ONLY the API contract.

It logs in as the demo officials, reads the startable processes, fills the
start form from its JSON Schema with a generic filler, reports a grid matter,
then goes round the officials' inboxes: for every task of that case it reads
the task, fills the task's form schema generically and completes it, until the
case is closed. The filler knows JSON Schema, not task or field names (a test
may pass overrides by field name to steer the process down another path).
"""
from __future__ import annotations

import io
import math
import re
import struct
import zlib

import jsonschema
import pytest

try:  # Python ≥ 3.11
    import re._constants as sre_c
    import re._parser as sre_parse
except ImportError:  # pragma: no cover
    import sre_constants as sre_c
    import sre_parse

V1 = "/api/v1"
OFFICIALS = ["lx_wgz1", "lx_wgy1", "lxz_pd", "lxz_cg", "lxz_pcs"]
REPORTER = "lx_wgy1"
FILLER_TEXT = "接口客户端自动填写的内容，用于端到端测试。"
NOW = "2026-03-02T10:00:00+08:00"


# ------------------------------------------------------------------ a string matching a regex

def _class_has(ch: str, items) -> bool:
    for op, av in items:
        if op is sre_c.LITERAL and ch == chr(av):
            return True
        if op is sre_c.RANGE and av[0] <= ord(ch) <= av[1]:
            return True
        if op is sre_c.CATEGORY and re.fullmatch(_CATEGORY_RE.get(av, r"(?!)"), ch):
            return True
    return False


_CATEGORY_RE = {sre_c.CATEGORY_DIGIT: r"\d", sre_c.CATEGORY_NOT_DIGIT: r"\D", sre_c.CATEGORY_SPACE: r"\s",
                sre_c.CATEGORY_NOT_SPACE: r"\S", sre_c.CATEGORY_WORD: r"\w", sre_c.CATEGORY_NOT_WORD: r"\W"}
_CANDIDATES = "a0Z_ -.x9"


def _one_of_class(items) -> str:
    """A character of a `[...]` class."""
    if items and items[0][0] is sre_c.NEGATE:
        return next(c for c in _CANDIDATES if not _class_has(c, items[1:]))
    candidates = _CANDIDATES + "".join(chr(av) for op, av in items if op is sre_c.LITERAL) \
        + "".join(chr(av[0]) for op, av in items if op is sre_c.RANGE)
    return next(c for c in candidates if _class_has(c, items))


def regex_example(pattern: str, repeat: int = 1) -> str:
    """A string `re.search(pattern, s)` accepts: the parse tree walked with
    each repetition taken `max(min, repeat)` times (capped by its max)."""
    def walk(tree) -> str:
        out = []
        for op, av in tree:
            if op is sre_c.LITERAL:
                out.append(chr(av))
            elif op is sre_c.NOT_LITERAL:
                out.append("a" if chr(av) != "a" else "b")
            elif op is sre_c.ANY:
                out.append("a")
            elif op is sre_c.IN:
                out.append(_one_of_class(av))
            elif op is sre_c.CATEGORY:
                out.append(next(c for c in _CANDIDATES if re.fullmatch(_CATEGORY_RE[av], c)))
            elif op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, getattr(sre_c, "POSSESSIVE_REPEAT", None)):
                low, high, sub = av
                n = min(max(low, repeat), high if high != sre_c.MAXREPEAT else max(low, repeat))
                out.append("".join(walk(sub) for _ in range(n)))
            elif op is sre_c.SUBPATTERN:
                out.append(walk(av[-1]))
            elif op is getattr(sre_c, "ATOMIC_GROUP", None):
                out.append(walk(av))
            elif op is sre_c.BRANCH:
                out.append(walk(av[1][0]))
            # AT (anchors), ASSERT, ASSERT_NOT, GROUPREF: add nothing
        return "".join(out)
    return walk(sre_parse.parse(pattern))


# ------------------------------------------------------------------ the generic filler

def _string(prop: dict) -> str:
    if prop.get("format") == "date-time":
        return NOW
    if prop.get("format") == "date":
        return NOW[:10]
    low, high = prop.get("minLength", 0), prop.get("maxLength")
    pattern = prop.get("pattern")
    if pattern:
        for repeat in range(1, 40):
            text = regex_example(pattern, repeat)
            if re.search(pattern, text) and len(text) >= low and (high is None or len(text) <= high):
                return text
        raise AssertionError(f"cannot fill pattern {pattern!r} within {low}..{high} characters")
    size = max(low, min(high if high is not None else len(FILLER_TEXT), len(FILLER_TEXT)))
    return (FILLER_TEXT * (size // len(FILLER_TEXT) + 1))[:size]


def _number(prop: dict, integer: bool):
    low, high = prop.get("minimum"), prop.get("maximum")
    xlow, xhigh = prop.get("exclusiveMinimum"), prop.get("exclusiveMaximum")
    if integer:
        bounds_low = [math.ceil(low)] if low is not None else []
        bounds_low += [math.floor(xlow) + 1] if xlow is not None else []
        bounds_high = [math.floor(high)] if high is not None else []
        bounds_high += [math.ceil(xhigh) - 1] if xhigh is not None else []
        if bounds_low:
            return max(bounds_low)
        return min(bounds_high + [1])
    lo = max([b for b in (low, xlow) if b is not None], default=None)
    hi = min([b for b in (high, xhigh) if b is not None], default=None)
    if lo is not None and hi is not None:
        return float(lo) if xlow is None or low is not None and low > xlow else (lo + hi) / 2
    if lo is not None:
        return float(lo) + (1.0 if xlow is not None and lo == xlow else 0.0)
    if hi is not None:
        return min(float(hi) - (1.0 if xhigh is not None and hi == xhigh else 0.0), 1.0)
    return 1.0


def _enum(prop: dict):
    if "enum" in prop:
        return prop["enum"][0]
    for option in prop.get("oneOf") or prop.get("anyOf") or []:
        if "const" in option:
            return option["const"]
    if "const" in prop:
        return prop["const"]
    return None


def fill_value(prop: dict, upload=None):
    choice = _enum(prop)
    if choice is not None:
        return choice
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next(k for k in kind if k != "null")
    if kind == "boolean":
        return True
    if kind in ("integer", "number"):
        return _number(prop, kind == "integer")
    if kind == "string":
        return _string(prop)
    if kind == "array":
        items = prop.get("items", {})
        if prop.get("x-field-type") == "file":
            return upload() if upload else []
        count = max(prop.get("minItems", 1), 1)
        if prop.get("uniqueItems") and _enum(items) is not None:
            values = list(items.get("enum") or [o["const"] for o in items.get("oneOf", [])])
            return values[:count]
        return [fill_value(items, upload) for _ in range(count)]
    if kind == "object":
        return fill(prop, upload=upload)
    return _string(prop)


def fill(schema: dict, overrides: dict | None = None, defaults: dict | None = None, upload=None) -> dict:
    """Data for an object JSON Schema: every property filled (optional file
    fields skipped; required ones get an uploaded file), overrides and server
    defaults first. Checked against the schema before it is returned."""
    overrides, defaults = overrides or {}, defaults or {}
    required = set(schema.get("required", []))
    data = {}
    for name, prop in (schema.get("properties") or {}).items():
        if name in overrides:
            data[name] = overrides[name]
        elif name in defaults:
            data[name] = defaults[name]
        elif prop.get("x-field-type") == "file" and name not in required:
            continue
        else:
            data[name] = fill_value(prop, upload)
    jsonschema.Draft202012Validator(schema).validate(data)
    return data


# ------------------------------------------------------------------ the client

def tiny_png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00\x00\x00\x00\x00")) + chunk(b"IEND", b""))


class GridApp:
    """What the mobile app does, over HTTP only (the Flask test client)."""

    def __init__(self, http, lang: str = "zh"):
        self.http, self.lang, self.tokens = http, lang, {}

    def login(self, username: str, password: str = "demo123") -> None:
        r = self.http.post(f"{V1}/auth/token", json={"username": username, "password": password})
        assert r.status_code == 200, r.get_data(as_text=True)
        self.tokens[username] = r.get_json()["token"]

    def call(self, method: str, path: str, user: str, expect: int = 200, **kw):
        if user not in self.tokens:
            self.login(user)
        headers = {"Authorization": f"Bearer {self.tokens[user]}", "Accept-Language": self.lang}
        r = self.http.open(V1 + path, method=method, headers=headers, **kw)
        assert r.status_code == expect, (method, path, user, r.status_code, r.get_data(as_text=True))
        assert r.mimetype == "application/json"
        return r.get_json()

    def uploader(self, user: str):
        def upload():
            files = self.call("POST", "/attachments", user, 201,
                              data={"file": (io.BytesIO(tiny_png()), "photo.png")})
            return [f["id"] for f in files]
        return upload

    def inbox(self, user: str) -> list[dict]:
        items, offset = [], 0
        while True:
            page = self.call("GET", "/tasks", user, query_string={"limit": 200, "offset": offset})
            items += page["items"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                return items

    def report(self, user: str, process: str, overrides: dict) -> dict:
        processes = self.call("GET", "/processes", user)["items"]
        (proc,) = [p for p in processes if p["key"] == process]
        grid = proc["grids"][0]["code"]
        form = proc["start_form"]
        data = fill(form["schema"], overrides, upload=self.uploader(user)) if form else {}
        return self.call("POST", "/cases", user, 201, json={"process": process, "grid": grid, "data": data})

    def work_until_closed(self, business_key: str, officials: list[str], overrides: dict,
                          use_defaults: bool, max_rounds: int = 15) -> list[tuple[str, str]]:
        """Round the inboxes completing this case's tasks; returns (official, task spec_id) in order."""
        done = []
        for _round in range(max_rounds):
            progressed = False
            for user in officials:
                for item in self.inbox(user):
                    if item["case"]["business_key"] != business_key:
                        continue
                    task = self.call("GET", f"/tasks/{item['id']}", user)
                    if not task["may_work"] or task["status"] != "open":
                        continue
                    form = task["form"]
                    data = fill(form["schema"], overrides, form["defaults"] if use_defaults else None,
                                upload=self.uploader(user)) if form else {}
                    case = self.call("POST", f"/tasks/{task['id']}/complete", user, json={"data": data})
                    done.append((user, task["spec_id"]))
                    progressed = True
                    if case["status"] == "completed":
                        return done
                    break  # the inbox changed: read it again
            assert progressed, f"nobody could move case {business_key}; done so far: {done}"
        raise AssertionError(f"case {business_key} still open after {max_rounds} rounds: {done}")


def path_of(case: dict) -> list[str]:
    return [e["bpmn_id"] for e in case["history"] if e["type"] in ("step", "task_completed") and e["bpmn_id"]]


GRID_PATH = ["start", "decide_dispatch", "gw_level", "micro_mediation", "gw_mediated",
             "record_result", "set_resolved_grid", "end_grid"]


@pytest.mark.parametrize("overrides,use_defaults,lang,tasks,path,level", [
    # first choice everywhere: a blue dispute, mediated in the grid
    ({}, False, "zh",
     [("lx_wgz1", "micro_mediation"), ("lx_wgy1", "record_result")], GRID_PATH, "grid"),
    # an urgent red public-order matter goes straight to the town, the rules pick the police station;
    # the county is informed at once (its supervision task closes when the matter is resolved) and the
    # grid worker's daily follow-up ends with it. (`departments: []`: no whistle, one department.)
    ({"category": "public_order", "colour": "red", "departments": []}, True, "en",
     [("lxz_pd", "town_dispatch"), ("lxz_pcs", "department_handle"), ("lx_wgy1", "verify_on_site"),
      ("lx_wgy1", "satisfaction")],
     ["start", "decide_dispatch", "gw_level", "fork_urgent", "town_start", "town_accept", "follow_up_start",
      "town_dispatch", "gw_whistle", "department_handle", "gw_handle_outcome", "verify_on_site", "gw_verified",
      "town_end", "town_stage", "gw_town_result", "set_resolved_town", "throw_resolved", "wait_resolved",
      "follow_up_end", "urgent_follow_up", "county_supervise_closed", "end_county_supervise_closed",
      "satisfaction", "gw_satisfaction", "gw_close_level", "end_town"], "town"),
    # mediation fails in the grid: escalated to the town, 城管 handles it
    ({"resolved": False, "departments": []}, False, "zh",
     [("lx_wgz1", "micro_mediation"), ("lxz_pd", "town_dispatch"), ("lxz_cg", "department_handle"),
      ("lx_wgy1", "verify_on_site"), ("lx_wgy1", "satisfaction")],
     ["start", "decide_dispatch", "gw_level", "micro_mediation", "gw_mediated", "town_start", "town_accept",
      "town_dispatch", "gw_whistle", "department_handle", "gw_handle_outcome", "verify_on_site", "gw_verified",
      "town_end", "town_stage", "gw_town_result", "set_resolved_town", "throw_resolved", "satisfaction",
      "gw_satisfaction", "gw_close_level", "end_town"],
     "town"),
])
def test_generic_client_drives_a_grid_matter_to_the_end(client, overrides, use_defaults, lang, tasks, path, level):
    app = GridApp(client, lang)
    for user in OFFICIALS:
        app.login(user)

    case = app.report(REPORTER, "grid_matter", overrides)
    assert case["status"] == "open" and case["open_tasks"]
    key = case["business_key"]

    done = app.work_until_closed(key, OFFICIALS, overrides, use_defaults)
    assert done == tasks

    final = app.call("GET", f"/cases/{key}", REPORTER)
    assert final["status"] == "completed" and final["closed_at"] and final["open_tasks"] == []
    assert final["summary"]["resolved_level"] == level
    assert path_of(final) == path
    types = [e["type"] for e in final["history"]]
    assert types[0] == "case_started" and types[-1] == "case_closed"
    completed = [e for e in final["history"] if e["type"] == "task_completed"]
    assert [e["bpmn_id"] for e in completed] == [spec for _, spec in tasks]
    assert all(e["actor"] and e["actor"]["display_name"] for e in completed)
    # nothing of this case is left in anyone's inbox
    for user in OFFICIALS:
        assert not [i for i in app.inbox(user) if i["case"]["business_key"] == key]


def test_generic_client_attaches_a_photo_when_the_form_asks_for_one(client):
    """A required file field is filled by uploading first (the start form's photos
    are optional, so make them required in a copy of the schema)."""
    app = GridApp(client)
    proc = [p for p in app.call("GET", "/processes", REPORTER)["items"] if p["key"] == "grid_matter"][0]
    schema = dict(proc["start_form"]["schema"])
    schema["required"] = schema["required"] + ["photos"]
    data = fill(schema, upload=app.uploader(REPORTER))
    assert len(data["photos"]) == 1
    case = app.call("POST", "/cases", REPORTER, 201,
                    json={"process": "grid_matter", "grid": proc["grids"][0]["code"], "data": data})
    case = app.call("GET", f"/cases/{case['business_key']}", REPORTER)
    assert [a["content_type"] for a in case["attachments"]] == ["image/png"]


# ------------------------------------------------------------------ the filler itself

@pytest.mark.parametrize("prop", [
    {"type": "string", "pattern": r"^\d{6}$"},
    {"type": "string", "pattern": r"^1[3-9]\d{9}$"},
    {"type": "string", "pattern": r"^(?:[A-Z]{2}-\d+)"},
    {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[a-z]{2,}$"},
    {"type": "string", "pattern": r"^(?:男|女)$"},
    {"type": "string", "pattern": r"^\w+$", "minLength": 8, "maxLength": 10},
    {"type": "string", "minLength": 30, "maxLength": 40},
    {"type": "string", "maxLength": 3},
    {"type": "string", "format": "date-time"},
    {"type": "string", "format": "date"},
    {"type": "integer", "minimum": 3, "maximum": 9},
    {"type": "integer", "maximum": -5},
    {"type": "number", "exclusiveMinimum": 0.5, "exclusiveMaximum": 1},
    {"type": "number"},
    {"type": "boolean"},
    {"enum": [2, 4]},
    {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}, "uniqueItems": True, "minItems": 2},
    {"type": "array", "items": {"type": "integer", "minimum": 10}},
])
def test_filler_respects_json_schema_constraints(prop):
    schema = {"type": "object", "properties": {"x": prop}, "required": ["x"], "additionalProperties": False}
    data = fill(schema)
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(data)
