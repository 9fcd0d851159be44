"""Strict JSON and NDJSON parsing of request bodies.

Python's ``json`` accepts the non-standard literals ``NaN``, ``Infinity`` and ``-Infinity``;
these parsers reject them (a body that holds them is malformed JSON), and they decode bytes as
UTF-8 (with or without a BOM) and say where a document breaks.

Examples
--------
>>> loads_strict(b'{"a": [1, 2.5]}')
{'a': [1, 2.5]}
>>> loads_strict(b'{"a": NaN}')
Traceback (most recent call last):
...
workers.http.ndjson.MalformedJSON: line 1 column 7: NaN is not valid JSON (use a finite number)
>>> [(ln.line, ln.value, ln.error) for ln in parse_ndjson(b'{"x": 1}\\n\\nnot json\\n')]
[(1, {'x': 1}, None), (3, None, 'line 3: malformed JSON: Expecting value (column 1)')]
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import orjson

NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl",
                "application/x-jsonlines", "application/jsonlines")


class MalformedJSON(ValueError):
    """A body (or NDJSON line) that is not valid JSON; ``str()`` says where."""


def _reject_constant(name: str) -> Any:
    raise _Constant(name)


class _Constant(ValueError):
    pass


def _finite_float(text: str) -> float:
    """``parse_float`` hook: a number literal too large for a double (``1e400``) would become
    ``inf``; reject it like the ``Infinity`` literal."""
    v = float(text)
    if not math.isfinite(v):
        raise _Constant(text)
    return v


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MalformedJSON(f"not UTF-8 text (byte {e.start})") from None


def _loads_raw(text: str) -> Any:
    """Strict JSON. Fast path: orjson, which refuses NaN/Infinity/1e400 too and parses valid
    JSON to the same values; when it refuses, the standard parser decides (and says why)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)


def _loads_text(text: str) -> Any:
    try:
        return _loads_raw(text)
    except _Constant as c:
        where = _where(text, str(c))
        raise MalformedJSON(f"{where}{c} is not valid JSON (use a finite number)") from None
    except json.JSONDecodeError as e:
        raise MalformedJSON(f"line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise MalformedJSON("nested too deeply") from None


def _where(text: str, token: str) -> str:
    i = text.find(token)
    if i < 0:
        return ""
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return f"line {line} column {col}: "


def loads_strict(data: bytes | str) -> Any:
    """Parse one JSON document strictly (no NaN/Infinity); raise :class:`MalformedJSON`."""
    text = _decode(data) if isinstance(data, bytes) else data
    if not text.strip():
        raise MalformedJSON("the body is empty (expected a JSON document)")
    return _loads_text(text)


@dataclass(frozen=True)
class NdjsonLine:
    """One non-blank NDJSON line: its 1-based ``line`` number and ``value`` or ``error``."""

    line: int
    value: Any = None
    error: str | None = None


def parse_ndjson(data: bytes | str) -> list[NdjsonLine]:
    """Split an NDJSON body into its non-blank lines, each parsed strictly.

    Blank lines are skipped (but still counted in line numbers); a bad line does not stop
    the others from parsing, so every bad line can be reported at once.
    """
    text = _decode(data) if isinstance(data, bytes) else data
    out: list[NdjsonLine] = []
    for n, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            out.append(NdjsonLine(n, _loads_raw(raw)))
        except _Constant as c:
            out.append(NdjsonLine(n, None, f"line {n}: {c} is not valid JSON (use a finite number)"))
        except json.JSONDecodeError as e:
            out.append(NdjsonLine(n, None, f"line {n}: malformed JSON: {e.msg} (column {e.colno})"))
        except RecursionError:
            out.append(NdjsonLine(n, None, f"line {n}: malformed JSON: nested too deeply"))
    return out


def is_ndjson(content_type: str | None) -> bool:
    """True when a Content-Type names NDJSON (any parameters ignored).

    >>> is_ndjson("application/x-ndjson; charset=utf-8"), is_ndjson("application/json")
    (True, False)
    """
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() in NDJSON_TYPES


def is_json(content_type: str | None) -> bool:
    """True when a Content-Type is JSON or absent (a missing type is read as JSON)."""
    if not content_type:
        return True
    base = content_type.split(";", 1)[0].strip().lower()
    return base == "application/json" or (base.startswith("application/") and base.endswith("+json"))
