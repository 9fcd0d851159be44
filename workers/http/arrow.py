"""The binary ingest body: an Apache Arrow IPC stream (``application/vnd.apache.arrow.stream``).

Columns, one row per event (the fields of a JSON event, DESIGN §7):

| column | type | |
| --- | --- | --- |
| ``input`` | ``fixed_size_list<float32 or float64>[dim]`` (or ``list<...>``) for vector agents, ``string`` for text agents | required |
| ``target`` | ``string`` | required for classifier and recall agents |
| ``id`` | ``string`` | optional (null: the service makes one) |
| ``beta`` | ``float32``/``float64`` | optional (null: the agent's) |
| ``ts`` | ``timestamp`` (naive = UTC) or ISO-8601 ``string`` | optional |
| ``speaker`` | ``string`` | optional (chat agents) |

Vector inputs are checked for the whole column at once with NumPy (row lengths, nulls,
finiteness, zero rows, the key's range) and travel on as one matrix, an
:class:`~storage.repository.event_block.EventBlock` (each row stored as float32 when its numbers
are float32 exactly, like :func:`workers.validation.check_vector`); the other columns are checked
row by row with the same functions as JSON events. Errors name the row and column the way JSON
errors do (``events[3].input[7]``, ``index`` = row), so ``?partial=true`` and the answers are
the same as for JSON. Other columns are ignored, like unknown JSON fields.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np

from agent.errors import InputError, texts_ok
from storage.models import as_utc
from storage.repository.event_block import EventBlock
from workers.http.event_batch import rejected_entry
from workers.settings import Settings
from workers.validation import (
    LABELED_KINDS,
    MAX_ID_CHARS,
    MAX_SPEAKER_CHARS,
    MAX_TARGET_CHARS,
    check_event_count,
    check_input,
    check_str,
    check_ts,
    key_range_errors,
)

ARROW_TYPES = ("application/vnd.apache.arrow.stream", "application/x-apache-arrow-stream")
_OPTIONAL = ("id", "beta", "ts", "speaker")


class MalformedArrow(ValueError):
    """A body that is not a readable Arrow IPC stream (or whose columns have the wrong type)."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


def is_arrow(content_type: str | None) -> bool:
    """True when a Content-Type names an Arrow IPC stream (parameters ignored).

    >>> is_arrow("application/vnd.apache.arrow.stream"), is_arrow("application/json")
    (True, False)
    """
    return bool(content_type) and \
        str(content_type).split(";", 1)[0].strip().lower() in ARROW_TYPES


def read_table(data: bytes) -> Any:
    """The stream's record batches as one ``pyarrow.Table`` (:class:`MalformedArrow` if the
    bytes are not a complete IPC stream)."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    if not data:
        raise MalformedArrow("the body is empty (expected an Arrow IPC stream)")
    try:
        return ipc.open_stream(pa.py_buffer(data)).read_all()
    except (pa.ArrowException, OSError, ValueError) as e:
        raise MalformedArrow(f"not a readable Arrow IPC stream: {e}") from None


def _vectors(col: Any, dim: int) -> tuple[np.ndarray, dict[int, InputError]]:
    """An input column → ``(X (n, dim) float, errors by row)``; bad rows of X are zeros."""
    import pyarrow as pa

    col = col.combine_chunks() if hasattr(col, "combine_chunks") else col
    t = col.type
    if not (pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t)) \
            or not pa.types.is_floating(t.value_type) or pa.types.is_float16(t.value_type):
        raise MalformedArrow(f"column input: expected fixed_size_list<float32 or float64>[{dim}]"
                             f", got {t}", "input")
    n = len(col)
    errors: dict[int, InputError] = {}
    dt = np.float32 if pa.types.is_float32(t.value_type) else np.float64
    if pa.types.is_fixed_size_list(t) and t.list_size == dim and col.null_count == 0:
        values = col.values.slice(col.offset * dim, n * dim)
        if values.null_count == 0:  # the common case: no hole, the numbers as they came
            X = values.to_numpy(zero_copy_only=False).reshape(n, dim)  # (n, dim)
            ok = np.isfinite(X).all(axis=1) & X.any(axis=1)
            if ok.all():
                return X, errors
    null_rows = col.is_null().to_numpy(zero_copy_only=False)  # (n,)
    if pa.types.is_fixed_size_list(t):
        if t.list_size != dim:
            raise MalformedArrow(f"column input: expected lists of {dim} numbers, got "
                                 f"{t.list_size}", "input")
        sizes = np.full(n, dim)
    else:
        sizes = col.value_lengths().fill_null(dim).to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(null_rows):
        errors[int(i)] = InputError(f"events[{i}].input", "required")
    for i in np.flatnonzero((sizes != dim) & ~null_rows):
        errors[int(i)] = InputError(f"events[{i}].input", f"expected {dim} numbers, got {sizes[i]}")
    X = np.zeros((n, dim), dtype=dt)  # (n, dim)
    ok = ~null_rows & (sizes == dim)
    if pa.types.is_fixed_size_list(t):
        values = col.values.slice(col.offset * dim, n * dim)
        flat = values.to_numpy(zero_copy_only=False).astype(dt, copy=False)  # nulls → NaN
        holes = values.is_null().to_numpy(zero_copy_only=False)
        X[:] = flat.reshape(n, dim)
        H = holes.reshape(n, dim)
    else:
        H = np.zeros((n, dim), dtype=bool)
        for i in np.flatnonzero(ok):
            row = col[int(i)].values
            X[i] = row.to_numpy(zero_copy_only=False)
            H[i] = row.is_null().to_numpy(zero_copy_only=False)
    for i in np.flatnonzero(ok & H.any(axis=1)):
        j = int(np.argmax(H[i]))
        errors[int(i)] = InputError(f"events[{i}].input[{j}]", "expected a finite number, got null")
    ok &= ~H.any(axis=1)
    finite = np.isfinite(X)
    for i in np.flatnonzero(ok & ~finite.all(axis=1)):
        j = int(np.argmin(finite[i]))
        errors[int(i)] = InputError(f"events[{i}].input[{j}]",
                                    f"expected a finite number, got {float(X[i, j])!r}")
    ok &= finite.all(axis=1)
    for i in np.flatnonzero(ok & ~X.any(axis=1)):
        errors[int(i)] = InputError(f"events[{i}].input", "the vector is all zeros; it has no "
                                    "direction to use as a key")
    X[~ok] = 0.0
    return X, errors


class _BadTimestamp:
    """A ``ts`` cell Python cannot hold as a datetime (reported as ``events[i].ts``)."""

    def __init__(self, why: str) -> None:
        self.why = why


def _column(table: Any, name: str) -> list[Any] | None:
    if name not in table.column_names:
        return None
    col = table.column(name)
    try:
        return col.to_pylist()  # type: ignore[no-any-return]
    except (OverflowError, ValueError):  # a timestamp outside Python's range: find which
        out: list[Any] = []
        for cell in col:
            try:
                out.append(cell.as_py())
            except (OverflowError, ValueError) as e:
                out.append(_BadTimestamp(str(e)))
        return out


def _ts(v: Any, field: str) -> datetime:
    if isinstance(v, _BadTimestamp):
        raise InputError(field, f"the timestamp is outside the range of UTC times "
                         f"(0001-01-01 to 9999-12-31): {v.why}")
    if isinstance(v, datetime):
        return as_utc(v, field)
    return check_ts(v, field)


def _check_types(table: Any, agent: dict[str, Any]) -> None:
    import pyarrow as pa

    def want(name: str, ok: bool, what: str) -> None:
        if name in table.column_names and not ok:
            raise MalformedArrow(f"column {name}: expected {what}, got "
                                 f"{table.schema.field(name).type}", name)

    types = {f.name: f.type for f in table.schema}
    if "input" not in types:
        raise MalformedArrow("column input: required", "input")
    if agent.get("kind") in LABELED_KINDS and "target" not in types:
        raise MalformedArrow("column target: required (a string column)", "target")
    is_text = lambda n: n in types and (pa.types.is_string(types[n]) or  # noqa: E731
                                        pa.types.is_large_string(types[n]))
    for name in ("target", "id", "speaker"):
        want(name, is_text(name), "a string column")
    if agent.get("encoder") != "none":
        want("input", is_text("input"), "a string column (this agent encodes texts)")
    want("beta", "beta" in types and pa.types.is_floating(types["beta"]), "a float column")
    want("ts", "ts" in types and (pa.types.is_timestamp(types["ts"]) or is_text("ts")),
         "a timestamp or ISO-8601 string column")


def arrow_events(data: bytes, agent: dict[str, Any], settings: Settings
                 ) -> tuple[list[int], list[dict[str, Any]] | EventBlock, list[dict[str, Any]],
                            str | None, int]:
    """An Arrow ingest body → ``(rows of the valid events, the valid events, rejected entries,
    field of the first problem, number of rows)``, as :func:`workers.http.event_batch.split_events`
    checks JSON events. A vector agent's valid events come as one :class:`EventBlock` (their
    inputs as one matrix, never split into an array per row); a text agent's as dicts."""
    table = read_table(data)
    _check_types(table, agent)
    n = table.num_rows
    check_event_count(n, settings)
    vectors = agent.get("encoder") == "none"
    errors: dict[int, InputError] = {}
    inputs: list[Any] = []
    if vectors:
        X, errors = _vectors(table.column("input"), int(agent["dim"]))  # (n, dim)
        # what check_input checks beyond the column pass: the key's range (a lifting,
        # scaling or standardising agent); the first problem of a row is the one reported
        errors = {**key_range_errors(X, agent, lambda i: f"events[{i}].input"), **errors}
    else:
        inputs = table.column("input").to_pylist()
    labeled = agent.get("kind") in LABELED_KINDS
    cols = {name: _column(table, name) for name in ("target", *_OPTIONAL)}
    if vectors and not errors:
        clean = clean_columns(cols, n, labeled)
        if clean is not None:  # no row has a problem: the block without a check per row
            return list(range(n)), EventBlock(X, *clean), [], None, n
    rows: list[int] = []
    valid: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    first: str | None = None
    for i in range(n):
        f = f"events[{i}]"
        try:
            if i in errors:
                raise errors[i]
            ev: dict[str, Any] = {}
            if not vectors:
                x = inputs[i]
                if x is None:
                    raise InputError(f"{f}.input", "required")
                ev["input"] = check_input(x, agent, settings, f"{f}.input")
            got = {k: (c[i] if c is not None else None) for k, c in cols.items()}
            if labeled:
                ev["target"] = check_str(got["target"], f"{f}.target", MAX_TARGET_CHARS)
            elif got["speaker"] is not None:
                ev["speaker"] = check_str(got["speaker"], f"{f}.speaker", MAX_SPEAKER_CHARS)
            if got["id"] is not None:
                ev["id"] = check_str(got["id"], f"{f}.id", MAX_ID_CHARS)
            b = got["beta"]
            if b is not None:
                if not (np.isfinite(b) and 0.0 < b <= 1.0):
                    raise InputError(f"{f}.beta", f"expected a number in (0, 1], got {b!r}")
                ev["beta"] = float(b)
            if got["ts"] is not None:
                ev["ts"] = _ts(got["ts"], f"{f}.ts")
            rows.append(i)
            valid.append(ev)
        except InputError as e:
            rejected.append(rejected_entry(i, None, str(e)))
            first = first or e.field
    if vectors and rows:
        ids = [ev.pop("id", None) for ev in valid]
        return rows, EventBlock(X[rows], ids, valid), rejected, first, n
    return rows, valid, rejected, first, n


def clean_columns(cols: dict[str, list[Any] | None], n: int, labeled: bool
                  ) -> tuple[list[str | None], list[dict[str, Any]]] | None:
    """``(ids, fields)`` of a vector agent's rows as :func:`arrow_events`'s checks row by row
    build them, when column-wide checks show that no row has a problem in its target,
    speaker, id or beta (and no row has a ts, which is converted row by row); else None,
    and the row-by-row checks find the rows at fault (tests/test_api_arrow.py compares)."""
    if cols["ts"] is not None and any(v is not None for v in cols["ts"]):
        return None
    name, limit = ("target", MAX_TARGET_CHARS) if labeled else ("speaker", MAX_SPEAKER_CHARS)
    values = cols[name]
    if labeled and values is None:
        return None
    if values is not None and not texts_ok(values, limit, required=labeled):
        return None
    ids = cols["id"] if cols["id"] is not None else [None] * n
    if not texts_ok(ids, MAX_ID_CHARS, required=False):
        return None
    betas = cols["beta"]
    if betas is not None and not all(b is None or (type(b) is float and np.isfinite(b)
                                                    and 0.0 < b <= 1.0) for b in betas):
        return None
    names = [None] * n if values is None else values
    fields: list[dict[str, Any]] = [{} if v is None else {name: v} for v in names]
    if betas is not None:
        for f, b in zip(fields, betas, strict=True):
            if b is not None:
                f["beta"] = float(b)
    return ids, fields

