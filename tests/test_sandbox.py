"""BPMN scripts and expressions run sandboxed (issue 9.4): no imports, files, network,
dunder walking, runaway loops or memory bombs; each escape attempt is tried, in the
sandbox directly, through a running case (nothing is stored), and at deploy time
(`gridflow validate` names the element)."""
import time
from xml.sax.saxutils import escape

import pytest
from sqlalchemy import func, select

from engine.deploy import deploy_files, validate_files
from engine.errors import ProcessError
from engine.models import Case
from engine.sandbox import ScriptRefused, SandboxedEnvironment

# (what it tries, the script)
ESCAPES = {
    "import a module": "import os",
    "import from": "from os import path",
    "import via __import__": "x = __import__('os')",
    "open a file": "x = open('/etc/passwd').read()",
    "reach the network": "import socket",
    "urllib": "import urllib.request",
    "eval": "x = eval('1+1')",
    "exec": "exec('x = 1')",
    "compile": "x = compile('1', 'f', 'eval')",
    "globals": "x = globals()",
    "vars": "x = vars()",
    "locals": "x = locals()",
    "type() to reach classes": "x = type(1)",
    "dunder class walk": "x = ().__class__.__bases__[0].__subclasses__()",
    "getattr to a dunder": "x = getattr((), '__class__')",
    "format string walk": "x = '{0.__class__}'.format(1)",
    "f-string walk": "x = f'{().__class__}'",
    "dunder dict": "x = {}.__class__.__dict__",
    "builtins module": "x = __builtins__",
    "function globals": "def f(): pass\nx = f.__globals__",
    "generator frame": "g = (i for i in [1])\nx = g.gi_frame",
    "huge power": "x = 10 ** 10 ** 8",
    "huge string": "x = 'a' * 10 ** 9",
    "huge list": "x = [0] * 10 ** 9",
    "huge range": "x = list(range(10 ** 9))",
    "in-place huge": "x = 'a'\nx *= 10 ** 9",
    "setattr": "setattr(1, 'real', 2)",
}


@pytest.mark.parametrize("what", sorted(ESCAPES))
def test_each_escape_attempt_is_refused(what):
    context = {"a": 1}
    with pytest.raises((ScriptRefused, SyntaxError, NameError, AttributeError, ImportError, TypeError,
                        ValueError, NotImplementedError)):
        SandboxedEnvironment().execute(ESCAPES[what], context)
    assert set(context) <= {"a", "g"}                     # nothing leaked into the task data


def test_a_runaway_loop_is_stopped_within_its_budget():
    env = SandboxedEnvironment(seconds=0.5)
    started = time.monotonic()
    with pytest.raises(ScriptRefused, match="longer than 0.5 s"):
        env.execute("n = 0\nwhile True:\n    n += 1", {})
    assert time.monotonic() - started < 5
    with pytest.raises(ScriptRefused, match="longer than"):
        env.evaluate("sum(1 for a in range(999) for b in range(999) for c in range(999))", {})


def test_what_the_shipped_processes_do_still_works():
    env = SandboxedEnvironment()
    data = {"grid_days": 10, "department": "城管", "part_result": "已处理", "colour": "red", "departments": ["a"]}
    env.execute("rework_count = (rework_count if 'rework_count' in dir() else 0) + 1", data)
    env.execute("rework_count = (rework_count if 'rework_count' in dir() else 0) + 1", data)
    env.execute('escalation_reason = f"网格超过{grid_days}天未化解"', data)
    env.execute('part_report = {"department": department, "result": part_result}', data)
    env.execute("total = 0\nfor d in departments:\n    total += len(d)\nnames = sorted(d.upper() for d in departments)",
                data)
    assert data["rework_count"] == 2 and data["escalation_reason"] == "网格超过10天未化解"
    assert data["part_report"] == {"department": "城管", "result": "已处理"}
    assert (data["total"], data["names"]) == (1, ["A"])
    assert "d" not in data or data["d"] == "a"
    assert env.evaluate('f"PT{int(grid_days*24*0.8)}H"', data) == "PT192H"
    assert env.evaluate('colour in ("orange", "red") and len(departments) > 0', data) is True
    assert env.evaluate("2 ** 10 + 3 * 4", {}) == 1036
    assert not any(k.startswith("_") for k in data)        # no guard leaks into task data


SCRIPT_BPMN = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="t">
  <bpmn:process id="scripted" name="Scripted" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:scriptTask id="evil" name="Evil"><bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
      <bpmn:script>{script}</bpmn:script></bpmn:scriptTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="evil"/>
    <bpmn:sequenceFlow id="f2" sourceRef="evil" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>"""


@pytest.mark.parametrize("what", ["import a module", "import via __import__", "dunder class walk",
                                  "generator frame", "builtins module"])
def test_deploy_validation_names_the_element_of_a_script_the_sandbox_refuses(what):
    """What cannot even compile in the sandbox is refused at deploy, pointing at the element."""
    problems = validate_files({"scripted.bpmn": SCRIPT_BPMN.format(script=escape(ESCAPES[what]))})
    assert [(p.file, p.element) for p in problems] == [("scripted.bpmn", "evil")]
    assert "is not allowed" in problems[0].message and "no import" in problems[0].fix


def test_deploy_validation_passes_an_ordinary_script():
    ok = SCRIPT_BPMN.format(script=escape("n = (n if 'n' in dir() else 0) + 1"))
    assert validate_files({"scripted.bpmn": ok}) == []


@pytest.mark.parametrize("script, names", [
    ("x = open('/etc/passwd').read()", "open"),
    ("v = getattr(case, 'secret')", "getattr"),
    ("g = globals()\nt = type(g)", "globals, type"),
])
def test_deploy_validation_refuses_a_call_to_a_builtin_scripts_do_not_get(script, names):
    """RestrictedPython compiles a call to open() or getattr(); the case that ran it would fail
    with a NameError. Validation names the element and the built-ins instead."""
    problems = validate_files({"scripted.bpmn": SCRIPT_BPMN.format(script=escape(script))})
    assert [(p.file, p.element) for p in problems] == [("scripted.bpmn", "evil")]
    assert f"{names} {'are' if ',' in names else 'is'} not available to process scripts" in problems[0].message


def test_a_script_may_call_its_own_function_named_like_a_builtin():
    ok = SCRIPT_BPMN.format(script=escape("def input(v):\n    return v * 2\nn = input(2)\nm = len([n])"))
    assert validate_files({"scripted.bpmn": ok}) == []


def test_a_refused_script_in_a_running_case_changes_nothing(service, clean_db):
    """Deployed anyway (e.g. straight into the database), the sandbox still refuses at run time."""
    bpmn = SCRIPT_BPMN.format(script=escape("x = open('/etc/passwd').read()"))
    with clean_db.unit_of_work() as session:
        # bypass validation to prove the run-time wall holds on its own
        from engine import deploy
        original = deploy.validate_files
        deploy.validate_files = lambda files, form_keys=None: []
        try:
            deploy_files(session, {"scripted.bpmn": bpmn}, None, actor="tests")
        finally:
            deploy.validate_files = original
    with pytest.raises(ProcessError, match="open"):
        service.start_case("scripted", "linxi-xinguang-g1", {}, "lx_wgy1")
    with clean_db.read_session() as s:
        assert s.scalar(select(func.count()).select_from(Case).where(Case.process_key == "scripted")) == 0


def test_limits_counted_from_a_recorded_day(clock):
    """now_iso()/add_days(): a legal limit that runs from a recorded day (acceptance), not from
    when a later task happens to open; due-date expressions use the same sandbox."""
    from datetime import timedelta

    from engine.service import _due_at
    env = SandboxedEnvironment()
    data = {"handling_limit_days": 60}
    env.execute("handle_deadline = add_days(now_iso(), handling_limit_days)", data)
    accepted = clock.now()
    assert data["handle_deadline"] == (accepted + timedelta(days=60)).isoformat()
    clock.advance(days=10)
    assert _due_at("handle_deadline", data, clock.now()) == accepted + timedelta(days=60)
    data["extension_days"] = 30
    assert _due_at("add_days(handle_deadline, extension_days)", data, clock.now()) == accepted + timedelta(days=90)
    assert _due_at("P15D", data, clock.now()) == clock.now() + timedelta(days=15)
    assert _due_at("2026-12-01T18:00:00+08:00", data, clock.now()).isoformat() == "2026-12-01T18:00:00+08:00"
    assert _due_at("open('/etc/passwd')", data, clock.now()) is None      # refused: no due date, no file
    with pytest.raises(ScriptRefused, match="number of days"):
        env.execute("x = add_days(now_iso(), 'many')", {})


def test_validate_answers_as_a_parse_would_every_time():
    """The DMN engine tells a cell like '> 5' from one like '"red"' by whether it parses;
    the kept answer must keep telling them apart, each time with a SyntaxError of its own."""
    from engine.sandbox import SCRIPT_ENGINE
    SCRIPT_ENGINE.validate('colour == "red"')
    errors = []
    for _ in range(2):
        with pytest.raises(SyntaxError) as caught:
            SCRIPT_ENGINE.validate("> 5")
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    SCRIPT_ENGINE.validate("v > 5")
