"""What a database cannot store, checked once for every entry point (forms, the
engine's lookups, the JSON API): NUL characters (PostgreSQL text and JSONB
refuse them), lone surrogates (not UTF-8), non-finite numbers, integers beyond
64 bits, and absurd nesting."""
from __future__ import annotations

import math

MAX_DEPTH = 20
MAX_INT = 2 ** 63 - 1


def text_problem(text: str) -> str | None:
    """None, or why this text cannot be stored: 'nul' or 'bad_text'."""
    if "\x00" in text:
        return "nul"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "bad_text"
    return None


def find_unstorable(value, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first (path, problem) in a JSON-like value that cannot be stored, or None.
    Problems: nul, bad_text, not_finite, too_large, too_deep."""
    if depth > MAX_DEPTH:
        return path, "too_deep"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        problem = text_problem(value)
        return (path, problem) if problem else None
    if isinstance(value, int):
        return None if -MAX_INT - 1 <= value <= MAX_INT else (path, "too_large")
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, "not_finite")
    if isinstance(value, dict):
        for key, item in value.items():
            key_text = str(key)
            if text_problem(key_text):
                return path, "bad_text"  # never echo an unencodable key back
            found = find_unstorable(item, f"{path}.{key_text}" if path else key_text, depth + 1)
            if found:
                return found
        return None
    if isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            found = find_unstorable(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
    return None


def storable_ref(value) -> bool:
    """Can this id / code / username be looked up at all (else: it names nothing)?"""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return 0 < value <= MAX_INT
    if isinstance(value, str):
        return 0 < len(value) <= 400 and text_problem(value) is None
    return False


PROBLEM_MESSAGES = {
    "nul": "contains a NUL character",
    "bad_text": "contains invalid characters (a lone surrogate)",
    "not_finite": "must be a finite number",
    "too_large": "number is too large",
    "too_deep": "is nested too deeply",
}
