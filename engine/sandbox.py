"""Restricted execution of BPMN scripts and expressions (script tasks, gateway
conditions, DMN cells, due-date expressions).

SpiffWorkflow's own `TaskDataEnvironment` is plain `exec`/`eval`: a process file
could import os and read the server's secrets. Process files are edited by
designers in the browser, so every script and expression here is compiled by
RestrictedPython and run with:

- no `import`, no `open`, no `eval`/`exec`/`compile`, no `getattr` on names
  starting with `_` (no dunder walking: `().__class__.__mro__` does not compile,
  `str.format` is refused because `"{0.__class__}".format(x)` would walk);
- a small set of builtins (numbers, strings, lists, dicts, `len`, `min`, `max`,
  `sorted`, `sum`, `any`, `all`, `dir()` for "is this variable set yet");
- size limits on what one operation may build (`**`, `*` on sequences, `range`)
  because a single huge C-level operation cannot be interrupted;
- a wall-clock budget per script (`SCRIPT_SECONDS`): a loop that does not end is
  stopped with a clear error, the transition rolls back, the case is unchanged.

Compiled code is cached per source text, so a condition evaluated on every
transition is compiled once per process.
"""
from __future__ import annotations

import ast
import builtins
import math
import sys
import time
from functools import lru_cache

from RestrictedPython import RestrictingNodeTransformer, compile_restricted_eval, compile_restricted_exec
from RestrictedPython import limited_builtins, safe_builtins
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (full_write_guard, guarded_iter_unpack_sequence, guarded_unpack_sequence,
                                     safer_getattr)
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine, TaskDataEnvironment

SCRIPT_SECONDS = 2.0          # wall-clock budget of one script or expression
MAX_SEQUENCE = 100_000        # items/characters one `*` may build
MAX_POWER_BITS = 10_000       # size of an integer one `**` may build
FILENAME = "<process script>"


class ScriptRefused(Exception):
    """A script broke a sandbox rule (or ran out of time)."""


# ------------------------------------------------------------ guarded ops

def _pow(base, exp):
    if isinstance(base, int) and isinstance(exp, int) and abs(base) > 1 and exp > 0:
        if exp * math.log2(abs(base)) > MAX_POWER_BITS:
            raise ScriptRefused(f"{base} ** {exp} is too large for a process script")
    return base ** exp


def _mul(a, b):
    for seq, n in ((a, b), (b, a)):
        if isinstance(seq, (str, bytes, list, tuple)) and isinstance(n, int) and len(seq) * n > MAX_SEQUENCE:
            raise ScriptRefused(f"a process script may not build a sequence of more than {MAX_SEQUENCE:,} items")
    return a * b


def _inplacevar(op, x, y):
    if op == "*=":
        return _mul(x, y)
    if op == "**=":
        return _pow(x, y)
    ops = {"+=": lambda: x + y, "-=": lambda: x - y, "/=": lambda: x / y, "//=": lambda: x // y,
           "%=": lambda: x % y, "&=": lambda: x & y, "|=": lambda: x | y, "^=": lambda: x ^ y}
    if op not in ops:
        raise ScriptRefused(f"the operator {op} is not allowed in process scripts")
    return ops[op]()


class _Transformer(RestrictingNodeTransformer):
    """RestrictedPython's checks, plus `a ** b` and `a * b` routed through size guards."""

    def visit_Import(self, node):
        self.error(node, "import is not allowed in process scripts")
        return node

    visit_ImportFrom = visit_Import

    def visit_BinOp(self, node):
        node = self.node_contents_visit(node)
        guard = {ast.Pow: "_pow_", ast.Mult: "_mul_"}.get(type(node.op))
        if guard is None:
            return node
        func = ast.copy_location(ast.Name(guard, ast.Load()), node)
        call = ast.Call(func=func, args=[node.left, node.right], keywords=[])
        return ast.copy_location(call, node)


def now_iso() -> str:
    """The engine clock's now (UTC, ISO 8601): what `add_days` and timeDate timers take."""
    from . import clock
    return clock.now().isoformat()


def add_days(moment, days) -> str:
    """An ISO date/time `days` later (a legal limit counted from a recorded day)."""
    from datetime import datetime, timedelta
    if not isinstance(days, (int, float)) or isinstance(days, bool) or not -36600 < days < 36600:
        raise ScriptRefused(f"add_days needs a number of days, not {days!r}")
    start = moment if isinstance(moment, datetime) else datetime.fromisoformat(str(moment))
    return (start + timedelta(days=days)).isoformat()


def today_iso() -> str:
    """The engine clock's date in China (YYYY-MM-DD): the day a step was taken, as officials
    date what they record (受理日期), so it compares with the dates they enter."""
    from datetime import timedelta, timezone
    from . import clock
    return clock.now().astimezone(timezone(timedelta(hours=8))).date().isoformat()


def window_end(day, days) -> str:
    """When a window of `days` days counted from a recorded day closes: the end (24:00 China
    time) of the `days`-th day after it, the day itself not counted (信访工作条例: 复查 may be
    asked "自收到书面答复之日起30日内"). `day` is a date, or a date/time whose date in China
    counts."""
    from datetime import date, datetime, time, timedelta, timezone
    if not isinstance(days, int) or isinstance(days, bool) or not 0 <= days < 36600:
        raise ScriptRefused(f"window_end needs a whole number of days, not {days!r}")
    china = timezone(timedelta(hours=8))
    if isinstance(day, datetime):
        start = (day if day.tzinfo else day.replace(tzinfo=china)).astimezone(china).date()
    elif isinstance(day, date):
        start = day
    else:
        text = str(day)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ScriptRefused(f"window_end needs a date, not {text[:40]!r}") from None
        start = moment.astimezone(china).date() if moment.tzinfo else moment.date()
    return datetime.combine(start + timedelta(days=days + 1), time(0), tzinfo=china).isoformat()


def _safe_builtins() -> dict:
    allowed = dict(safe_builtins)
    for name in ("delattr", "setattr", "id", "hash", "__build_class__"):
        allowed.pop(name, None)
    allowed.update(limited_builtins)  # list, tuple, and a range of at most 1,000 items
    allowed.update({
        "dict": dict, "set": set, "frozenset": frozenset, "sorted": sorted, "sum": sum, "min": min, "max": max,
        "any": any, "all": all, "enumerate": enumerate, "zip": zip, "reversed": reversed, "map": map,
        "filter": filter, "pow": _pow, "now_iso": now_iso, "add_days": add_days,
        "today_iso": today_iso, "window_end": window_end,
    })
    return allowed


SAFE_BUILTINS = _safe_builtins()


@lru_cache(maxsize=4096)
def _compile(source: str, mode: str):
    compiler = compile_restricted_exec if mode == "exec" else compile_restricted_eval
    result = compiler(source, filename=FILENAME, policy=_Transformer)
    if result.errors:
        raise ScriptRefused("; ".join(result.errors))
    return result.code


def check_source(source: str, mode: str = "exec") -> str | None:
    """Why a script or expression would be refused at run time, or None (deploy validation)."""
    try:
        _compile(source, mode)
    except ScriptRefused as exc:
        return str(exc)
    except SyntaxError as exc:
        return f"syntax error: {exc.msg} (line {exc.lineno})"
    missing = _missing_builtins_called(source, mode)
    if missing:
        return (f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not available to process scripts "
                "(the case that ran this would fail)")
    return None


# Python's built-ins a process script does not get (open, getattr, globals, input …): RestrictedPython
# compiles a call to one, and the case that runs it fails with a NameError
_WITHHELD_BUILTINS = frozenset(n for n in dir(builtins) if not n.startswith("_")) - set(SAFE_BUILTINS) - {"dir"}


def _missing_builtins_called(source: str, mode: str) -> list[str]:
    tree = ast.parse(source, mode=mode)
    defined = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    defined |= {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    called = {node.func.id for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    return sorted((called & _WITHHELD_BUILTINS) - defined)


def _dir_of(context: dict):
    def restricted_dir(*obj):
        if not obj:
            return sorted(context)            # "is this variable set yet?"
        return [n for n in builtins.dir(obj[0]) if not n.startswith("_")]
    return restricted_dir


def _guards(context: dict) -> dict:
    return {
        "__builtins__": {**SAFE_BUILTINS, "dir": _dir_of(context)},
        "__name__": "process_script",
        "__metadata__": {},
        "_getattr_": _getattr,
        "_getitem_": default_guarded_getitem,
        "_getiter_": default_guarded_getiter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": full_write_guard,
        "_inplacevar_": _inplacevar,
        "_pow_": _pow,
        "_mul_": _mul,
        "_print_": _NoPrint,
    }


def _getattr(obj, name, default=None):
    if type(obj).__module__ not in ("builtins", "datetime", "decimal"):
        raise ScriptRefused(f"process scripts may only use attributes of plain values, not of "
                            f"{type(obj).__name__}")
    return safer_getattr(obj, name, default)


class _NoPrint:
    """`print` in a process script goes nowhere (there is no console)."""

    def __init__(self, _getattr_=None):
        pass

    def _call_print(self, *args, **kwargs):
        pass

    def __call__(self):
        return ""


_GUARD_NAMES = frozenset(_guards({}))


def _with_deadline(run, seconds: float):
    """Run `run()`, stopping it if it is still going after `seconds`: a trace function
    watches only the script's own frames (filename FILENAME), so engine code runs untraced."""
    deadline = time.monotonic() + seconds

    def in_script(frame, event, arg):
        if time.monotonic() > deadline:
            raise ScriptRefused(f"the script ran longer than {seconds:g} s and was stopped")
        return in_script

    def on_call(frame, event, arg):
        return in_script if frame.f_code.co_filename == FILENAME else None

    previous = sys.gettrace()
    sys.settrace(on_call)
    try:
        return run()
    finally:
        sys.settrace(previous)


class SandboxedEnvironment(TaskDataEnvironment):
    """SpiffWorkflow's task-data environment (task data are the script's variables),
    with RestrictedPython compilation, guards and a time budget."""

    def __init__(self, seconds: float = SCRIPT_SECONDS):
        super().__init__({})
        self.seconds = seconds

    def evaluate(self, expression, context, external_context=None):
        code = _compile(expression, "eval")
        scope = {**(external_context or {}), **context}
        scope.update(_guards(scope))
        return _with_deadline(lambda: eval(code, scope), self.seconds)  # noqa: S307 -- restricted code

    def execute(self, script, context, external_context=None):
        self.check_for_overwrite(context, external_context or {})
        code = _compile(script, "exec")
        scope = dict(context)
        scope.update(external_context or {})
        scope.update(_guards(scope))
        _with_deadline(lambda: exec(code, scope), self.seconds)  # noqa: S102 -- restricted code
        # what the script left behind becomes task data again: its variables, not our guards
        for key in list(context):
            if key not in scope:
                del context[key]
        for key, value in scope.items():
            if key in _GUARD_NAMES or (external_context and key in external_context) or callable(value) \
                    or key.startswith("_"):
                continue
            context[key] = value
        return True


@lru_cache(maxsize=4096)
def _syntax_error(expression: str) -> SyntaxError | None:
    try:
        ast.parse(expression)
    except SyntaxError as exc:
        return exc
    return None


class SandboxedScriptEngine(PythonScriptEngine):
    """SpiffWorkflow's engine on the sandboxed environment. Its DMN engine asks `validate`
    (a parse) two or three times per rule cell on every decision, for the same few texts:
    the answer is kept."""

    def validate(self, expression):
        error = _syntax_error(expression)
        if error is not None:
            raise SyntaxError(*error.args)  # a new one each time: a kept one would pile up tracebacks


def sandboxed_engine(seconds: float = SCRIPT_SECONDS) -> PythonScriptEngine:
    return SandboxedScriptEngine(environment=SandboxedEnvironment(seconds))


SCRIPT_ENGINE = sandboxed_engine()
