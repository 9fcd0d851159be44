"""Checks on request bodies: pure functions from parsed JSON to validated values.

Every check raises :class:`agent.errors.InputError` naming the field (a dotted path such as
``events[3].input``) and what was expected; nothing here touches the service, so a rejected
request changes nothing. The HTTP app (``workers.http.app``) turns an ``InputError`` into a 422
``{"error": {"code": "invalid_input", "message", "field"}}``.

Every string that is kept or echoed (names, ids, targets, text inputs, the strings of ``meta``)
must be valid Unicode text: a lone UTF-16 surrogate, which JSON can spell as ``"\\ud800"``, is
refused (:func:`agent.errors.check_text`).

Examples
--------
>>> from workers.settings import Settings
>>> agent = {"kind": "classifier", "encoder": "none", "dim": 2}
>>> ev = check_event({"id": "e1", "input": [1, 0], "target": "a", "ts": "2024-01-01T00:00:00"},
...                  agent, Settings())
>>> ev["ts"].isoformat()
'2024-01-01T00:00:00+00:00'
>>> check_event({"input": [1, float("nan")], "target": "a"}, agent, Settings())
Traceback (most recent call last):
...
agent.errors.InputError: input[1]: expected a finite number, got nan
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

import numpy as np

from agent.errors import InputError, check_text
from storage.models import as_utc
from storage.repository.event_block import narrow
from workers.settings import Settings

MAX_ID_CHARS = 200
MAX_TARGET_CHARS = 1000
MAX_NAME_CHARS = 200
MAX_SPEAKER_CHARS = 200
MAX_TOP_K = 1000
MAX_VERSION = 2**53  # the largest integer every JSON client represents exactly
MAX_TRANSFORMED = 1e150  # vector entries for agents that standardise or scale (squares fit)
MAX_LIFTED = 1e24  # ... and for agents that lift (float32 features: 1e24 · 1e6 scale · d fit)
LABELED_KINDS = ("classifier", "recall")


def _join(prefix: str, name: str) -> str:
    if not prefix:
        return name
    return f"{prefix}{name}" if name.startswith("[") else f"{prefix}.{name}"


def is_int(v: Any) -> bool:
    """True for a JSON integer (``bool`` is not one)."""
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """True for a JSON number (``bool`` is not one)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_object(v: Any, field: str = "body") -> dict[str, Any]:
    """Return ``v`` if it is a JSON object, else raise."""
    if not isinstance(v, dict):
        raise InputError(field, f"expected a JSON object, got {_kind(v)}")
    return v


def check_str(v: Any, field: str, max_chars: int, required: bool = True) -> str | None:
    """A non-empty string of valid Unicode text (no lone surrogate) of at most ``max_chars``
    characters (``None`` allowed if not required).

    >>> check_str("x", "name", 10)
    'x'
    >>> check_str("", "name", 10)
    Traceback (most recent call last):
    ...
    agent.errors.InputError: name: expected a non-empty string
    """
    if v is None:
        if required:
            raise InputError(field, "required (a non-empty string)")
        return None
    if not isinstance(v, str):
        raise InputError(field, f"expected a string, got {_kind(v)}")
    if not v.strip():
        raise InputError(field, "expected a non-empty string")
    if len(v) > max_chars:
        raise InputError(field, f"too long: {len(v)} characters, at most {max_chars}")
    return check_text(v, field)


def check_ts(v: Any, field: str) -> datetime:
    """An ISO-8601 timestamp string; a naive one is UTC. Returns it converted to UTC.

    >>> check_ts("2024-05-01T12:00:00-02:00", "ts").isoformat()
    '2024-05-01T14:00:00+00:00'
    >>> check_ts("9999-12-31T23:59:59-05:00", "as_of")
    Traceback (most recent call last):
    ...
    agent.errors.InputError: as_of: the timestamp '9999-12-31T23:59:59-05:00' is outside the range of UTC times (0001-01-01 to 9999-12-31)
    """
    if not isinstance(v, str):
        raise InputError(field, f"expected an ISO-8601 timestamp string, got {_kind(v)}")
    try:
        dt = datetime.fromisoformat(v.strip())
    except ValueError:
        raise InputError(field, f"expected an ISO-8601 timestamp, got {v!r}") from None
    return as_utc(dt, field, repr(v))


def check_input(v: Any, agent: dict[str, Any], settings: Settings, field: str) -> str | np.ndarray:
    """One model input: text for encoder ``minilm``, a vector of ``dim`` numbers for ``none``.

    A vector must hold exactly ``dim`` finite numbers (no booleans, NaN or Inf) and must not
    be all zeros (it has no direction, so it cannot be a key).
    """
    if agent.get("encoder") == "none":
        return check_key_range(check_vector(v, int(agent["dim"]), field), agent, field)
    if not isinstance(v, str):
        raise InputError(field, f"expected a non-empty string, got {_kind(v)}")
    if not v.strip():
        raise InputError(field, "expected a non-empty string")
    if len(v) > settings.max_input_chars:
        raise InputError(field, f"too long: {len(v)} characters, at most {settings.max_input_chars}")
    return check_text(v, field)


def check_key_range(a: np.ndarray, agent: dict[str, Any], field: str) -> np.ndarray:
    """A vector whose key is finite in float64 for ``agent``. A plain key ``x/‖x‖`` is, for
    any finite nonzero ``x`` (it is scaled before normalising). An agent that standardises
    (squares deviations), scales (``input_scale`` up to 1e6) or lifts (``W x``) its inputs
    takes entries up to :data:`MAX_TRANSFORMED` in magnitude, :data:`MAX_LIFTED` when it lifts
    (the lift runs in float32), so none of that overflows.

    >>> check_key_range(np.array([1e200, 0.0]), {"standardize": True}, "input")
    Traceback (most recent call last):
    ...
    agent.errors.InputError: input[0]: expected a magnitude of at most 1e+150 for an agent that standardises, scales or lifts its inputs, got 1e+200
    """
    for e in key_range_errors(a.reshape(1, -1), agent, lambda _: field).values():
        raise e
    return a


def key_range_errors(X: np.ndarray, agent: dict[str, Any],
                     field: Callable[[int], str]) -> dict[int, InputError]:
    """:func:`check_key_range` for the rows of ``X`` (n, dim) at once: the error of each row
    out of range, by row (``field(i)``: the row's input field)."""
    lifted = (agent.get("memory") or {}).get("lift_dim") is not None
    bound = MAX_LIFTED if lifted else MAX_TRANSFORMED
    if not (lifted or agent.get("standardize") or agent.get("input_scale") is not None) \
            or not X.size:
        return {}
    J = np.argmax(np.abs(X), axis=1)  # (n,)
    top = X[np.arange(len(X)), J]  # (n,) the entry of largest magnitude per row
    return {int(i): InputError(f"{field(int(i))}[{int(J[i])}]", f"expected a magnitude of at "
                               f"most {bound:g} for an agent that standardises, scales or lifts "
                               f"its inputs, got {float(top[i]):g}")
            for i in np.flatnonzero(np.abs(top.astype(np.float64)) > bound)}


def check_vector(v: Any, dim: int, field: str) -> np.ndarray:
    """A vector input (a JSON list, or an array from a binary body) → a 1-d float array of
    ``dim`` numbers, checked with NumPy in one pass: the one check of every vector input.

    Each number must be finite (no booleans, NaN or Inf) and the vector must not be all zeros
    (it has no direction, so it cannot be a key). The array is float32 when every number is a
    float32 exactly (what the store keeps, 4 bytes a number), else float64: the same numbers.

    >>> check_vector([1, 0.5], 2, "input").dtype.name
    'float32'
    >>> check_vector([0.1, 0], 2, "input").tolist()
    [0.1, 0.0]
    >>> check_vector([1, True], 2, "input")
    Traceback (most recent call last):
    ...
    agent.errors.InputError: input[1]: expected a finite number, got a boolean
    """
    if isinstance(v, np.ndarray):
        if v.ndim != 1 or v.dtype.kind not in "fiu":
            raise InputError(field, f"expected a list of {dim} numbers, got an array of {v.dtype}")
        a = v
    elif isinstance(v, list):
        if len(v) != dim:
            raise InputError(field, f"expected {dim} numbers, got {len(v)}")
        try:
            if not _NUMBER_TYPES.issuperset(map(type, v)):
                raise TypeError
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, OverflowError):  # not all ints/floats, or an int beyond floats
            _first_bad(v, field)  # raises for what is not a finite number
            a = np.asarray([float(x) for x in v], dtype=np.float64)  # e.g. float subclasses
    else:
        raise InputError(field, f"expected a list of {dim} numbers, got {_kind(v)}")
    if a.shape != (dim,):
        raise InputError(field, f"expected {dim} numbers, got {a.size}")
    finite = np.isfinite(a)
    if not finite.all():
        if isinstance(v, list):
            _first_bad(v, field)
        i = int(np.argmin(finite))
        raise InputError(f"{field}[{i}]", f"expected a finite number, got {float(a[i])!r}")
    if not a.any():
        raise InputError(field, "the vector is all zeros; it has no direction to use as a key")
    return a if a.dtype == np.float32 else narrow(a.astype(np.float64, copy=False))


_NUMBER_TYPES = frozenset((int, float))


def _first_bad(v: list[Any], field: str) -> None:
    """Raise for the first entry of ``v`` that is not a finite number (the error path only)."""
    for i, x in enumerate(v):
        if not is_number(x):
            raise InputError(f"{field}[{i}]", f"expected a finite number, got {_kind(x)}")
        if abs(x) > _FLOAT_MAX or not math.isfinite(x):
            raise InputError(f"{field}[{i}]", f"expected a finite number, got {x!r}")
_FLOAT_MAX = float(np.finfo(np.float64).max)


def check_event(raw: Any, agent: dict[str, Any], settings: Settings, field: str = "") -> dict[str, Any]:
    """One event for ``agent`` (a dict with ``kind``, ``encoder``, ``dim``).

    Returns ``{"input", "target"?, "id"?, "beta"?, "ts"?, "meta"?, "speaker"?}`` with ``ts``
    as an aware datetime. Unknown fields are ignored; chat events keep no target.
    """
    ev = check_object(raw, field or "event")
    out: dict[str, Any] = {}
    if "input" not in ev or ev["input"] is None:
        raise InputError(_join(field, "input"), "required")
    out["input"] = check_input(ev["input"], agent, settings, _join(field, "input"))
    if agent.get("kind") in LABELED_KINDS:
        out["target"] = check_str(ev.get("target"), _join(field, "target"), MAX_TARGET_CHARS)
    elif ev.get("speaker") is not None:
        out["speaker"] = check_str(ev["speaker"], _join(field, "speaker"), MAX_SPEAKER_CHARS)
    if ev.get("id") is not None:
        out["id"] = check_str(ev["id"], _join(field, "id"), MAX_ID_CHARS)
    if ev.get("beta") is not None:
        b = ev["beta"]
        if not is_number(b) or not math.isfinite(b) or not 0.0 < b <= 1.0:
            raise InputError(_join(field, "beta"), f"expected a number in (0, 1], got {b!r}")
        out["beta"] = float(b)
    if ev.get("ts") is not None:
        out["ts"] = check_ts(ev["ts"], _join(field, "ts"))
    if ev.get("meta") is not None:
        where = _join(field, "meta")
        out["meta"] = check_json_text(check_object(ev["meta"], where), where)
    return out


def check_json_text(v: Any, field: str) -> Any:
    """``v`` (parsed JSON) when every string in it, object keys included, is valid Unicode
    text; else :class:`InputError` naming the value (``meta.note``, ``meta.tags[2]``) or, for
    a bad key, the object holding it. Walks without recursion (JSON may nest deeply).

    >>> check_json_text({"tags": ["a", "b\\udfff"]}, "meta")
    Traceback (most recent call last):
    ...
    agent.errors.InputError: meta.tags[1]: not valid Unicode text: a lone UTF-16 surrogate '\\udfff' at character 1
    """
    todo = [(v, field)]
    while todo:
        node, where = todo.pop()
        if isinstance(node, str):
            check_text(node, where)
        elif isinstance(node, dict):
            kids = [(x, _join(where, check_text(key, where, "text in a key")))
                    for key, x in node.items()]
            todo.extend(reversed(kids))  # (first in document order is reported first)
        elif isinstance(node, list):
            todo.extend(reversed([(x, f"{where}[{i}]") for i, x in enumerate(node)]))
    return v


def check_event_count(n: int, settings: Settings) -> None:
    """Raise for an empty batch; :class:`TooMany` for one over ``max_events_per_request``."""
    if n == 0:
        raise InputError("events", "expected at least one event")
    if n > settings.max_events_per_request:
        raise TooMany("events", f"{n} events in one request, at most "
                      f"{settings.max_events_per_request} (DELTAMEM_MAX_EVENTS_PER_REQUEST)")


class TooMany(InputError):
    """Too many items in one request (HTTP 413, code ``too_many_events``)."""


def check_inputs(inputs: list[Any], agent: dict[str, Any],
                 settings: Settings) -> list[str] | np.ndarray:
    """The inputs of a predict (a non-empty list: ``PredictRequest`` checked its length) for
    ``agent``: its texts, or one ``(n, dim)`` array (one buffer to the serving actor)."""
    checked = [check_input(x, agent, settings, f"inputs[{i}]") for i, x in enumerate(inputs)]
    if agent.get("encoder") == "none":
        return np.stack([np.asarray(x, dtype=np.float64) for x in checked])
    return checked  # type: ignore[return-value]


def check_agent_body(body: Any) -> tuple[str, dict[str, Any]]:
    """A create-agent body → ``(name, config dict)`` validated by ``AgentConfig``."""
    from agent.config import AgentConfig

    body = integral_ints(check_object(body), AGENT_INT_FIELDS)
    name = check_str(body.get("name"), "name", MAX_NAME_CHARS)
    return name, AgentConfig.from_dict(body).to_dict()  # type: ignore[return-value]


AGENT_INT_FIELDS = ("dim", "memory.lift_dim", "memory.replay", "memory.reservoir", "guard.window",
                    "guard.sample", "prompt.top_k", "prompt.recent")


def integral_ints(body: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``body`` where the integer ``fields`` (dotted paths) given as integral floats
    (``4.0``: JSON Schema counts it as an integer) are ints; anything else is left as sent.

    >>> integral_ints({"dim": 4.0, "memory": {"lift_dim": 8.0, "beta": 1.0}}, AGENT_INT_FIELDS)
    {'dim': 4, 'memory': {'lift_dim': 8, 'beta': 1.0}}
    """
    out = dict(body)
    for path in fields:
        *parents, leaf = path.split(".")
        node: Any = out
        chain = []
        for p in parents:
            node = node.get(p) if isinstance(node, dict) else None
            chain.append(p)
        if isinstance(node, dict) and isinstance(node.get(leaf), float) and node[leaf].is_integer():
            copy = dict(node)
            copy[leaf] = int(copy[leaf])
            holder = out
            for p in chain[:-1]:
                holder[p] = dict(holder[p])
                holder = holder[p]
            if chain:
                holder[chain[-1]] = copy
            else:
                out = copy
    return out


def _kind(v: Any) -> str:
    """A JSON type name for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, (int, float)):
        return f"the number {v!r}"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__
