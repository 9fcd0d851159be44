"""Vector events in columns: one ingest request's inputs as one matrix, from the HTTP edge to
the event rows, so no step handles (or sends between actors) one small array per event.

An :class:`EventBlock` row ``i`` stands for the event ``{"input": inputs[i], **fields[i],
"id": ids[i]}`` (no ``id`` when it is None). Each input is stored as float32 when its numbers
are float32 exactly, else as float64: the rule of ``workers.validation.check_vector``, so a
block stores the rows, byte for byte, that its :meth:`EventBlock.events` would.

:func:`parse_block` is the block's form of ``[events._payload(ev, i) for ev in events]`` (the
reference it is tested against: tests/test_event_block.py): the same checks in the same order
per row, with the inputs' finiteness, narrowing and bytes taken for the whole matrix at once.

>>> import numpy as np
>>> b = EventBlock(np.array([[0.5, 1.0], [0.1, 2.0]]), ["a", None], [{"target": "x"}] * 2)
>>> [(p[0], p[2], p[3].dtype.str) for p in parse_block(b)]
[('a', '{"target":"x"}', '<f4'), (None, '{"target":"x"}', '<f8')]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.errors import texts_ok
from storage.errors import InputError
from storage.models import EVENT_ID_LEN
from storage.repository.events import check_event_id, stored_payload

_FLOATS = ("<f4", "<f8")


class EventBlock:
    """Events of one request in columns.

    Parameters
    ----------
    inputs : ndarray, shape (n, d)
        The vector inputs, little-endian float32 or float64 (each row is narrowed to float32
        where exact when stored).
    ids : sequence of str or None, length n
        The client's event ids (None: the service makes one).
    fields : sequence of dict, length n
        The rest of each event (``target``, ``beta``, ``ts``, ...): its stored payload.
    """

    __slots__ = ("inputs", "ids", "fields")

    def __init__(self, inputs: np.ndarray, ids: Sequence[str | None],
                 fields: Sequence[dict[str, Any]]) -> None:
        X = np.ascontiguousarray(inputs)
        if X.ndim != 2 or X.dtype.str not in _FLOATS:
            raise ValueError(f"inputs: expected an (n, d) float32 or float64 array, got "
                             f"{X.dtype} {X.shape}")
        if len(ids) != len(X) or len(fields) != len(X):
            raise ValueError(f"{len(X)} inputs, {len(ids)} ids, {len(fields)} fields")
        self.inputs = X  # (n, d)
        self.ids = list(ids)
        self.fields = list(fields)

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def of_events(cls, events: Sequence[Any]) -> EventBlock | None:
        """``events`` in columns, when each is a dict whose ``input`` is a 1-d little-endian
        float array, all of one size, and that holds no other array; else None (they are
        stored one by one, as given).

        >>> import numpy as np
        >>> len(EventBlock.of_events([{"input": np.ones(3), "target": "a"}]))
        1
        >>> EventBlock.of_events([{"input": [1.0, 2.0], "target": "a"}]) is None
        True
        """
        rows: list[np.ndarray] = []
        ids: list[str | None] = []
        fields: list[dict[str, Any]] = []
        for ev in events:
            x = ev.get("input") if isinstance(ev, dict) else None
            if not isinstance(x, np.ndarray) or x.ndim != 1 or x.dtype.str not in _FLOATS:
                return None
            rest = {k: v for k, v in ev.items() if k != "input" and k != "id"}
            if any(isinstance(v, np.ndarray) for v in rest.values()):
                return None  # an embedding beside the input: the general path
            rows.append(x)
            ids.append(ev.get("id"))
            fields.append(rest)
        if not rows or len({x.shape for x in rows}) != 1:
            return None
        return cls(np.stack(rows), ids, fields)  # (n, d): float64 unless every row is float32

    def events(self) -> list[Any]:
        """The events one by one, each input narrowed as it is stored (the reference form;
        a row whose fields are not an object stands as it is, which the store refuses)."""
        out: list[Any] = []
        for x, cid, rest in zip(self.inputs, self.ids, self.fields, strict=True):
            if not isinstance(rest, dict):
                out.append(rest)
                continue
            ev = {"input": narrow(x), **rest}
            if cid is not None:
                ev["id"] = cid
            out.append(ev)
        return out


def narrow(x: np.ndarray) -> np.ndarray:
    """One float input as it is stored: float32 when its numbers are float32 exactly, else as
    is (NaN never is; beyond float32's range is tested first: np.errstate costs more)."""
    if x.dtype == np.float32 or x.max() > _F32_MAX or x.min() < -_F32_MAX:
        return x
    f = x.astype(np.float32)
    return f if (f == x).all() else x


_F32_MAX = float(np.finfo(np.float32).max)


class BlockColumns:
    """A block's rows as stored, in columns (:func:`parse_columns`): ``ids`` (str or None),
    ``payloads`` and their JSON ``texts`` (lists of n), and the inputs: row ``i`` stored as
    ``F[i]`` (float32) when ``exact[i]``, else as ``X[i]`` (float64)."""

    __slots__ = ("ids", "payloads", "texts", "X", "F", "exact")

    def __init__(self, ids: list[str | None], payloads: list[dict[str, Any]], texts: list[str],
                 X: np.ndarray, F: np.ndarray, exact: np.ndarray) -> None:
        self.ids, self.payloads, self.texts = ids, payloads, texts
        self.X, self.F, self.exact = X, F, exact  # (n, d), (n, d) float32, (n,) bool

    def matrix(self) -> np.ndarray | None:
        """The ``(n, d)`` stored inputs as one matrix of one dtype; None when rows differ."""
        if self.exact.all():
            return self.F
        return self.X if not self.exact.any() else None

    def rows(self) -> list[tuple[Any, ...]]:
        """:func:`parse_block`'s tuples."""
        F, X, exact = self.F, self.X, self.exact
        return [(cid, p, t, F[i] if exact[i] else X[i]) for i, (cid, p, t) in
                enumerate(zip(self.ids, self.payloads, self.texts, strict=True))]


def parse_block(block: EventBlock) -> list[tuple[Any, ...]]:
    """Per row ``(client id or None, payload, payload JSON text, stored input array)``: what
    ``events._payload`` gives for the row's event. Raises the
    :class:`InputError` of the first bad row (its id, its payload, then its input)."""
    return parse_columns(block).rows()


def parse_columns(block: EventBlock) -> BlockColumns:
    """:func:`parse_block` in columns (the same checks, the same first error)."""
    X = block.inputs  # (n, d)
    finite = np.isfinite(X).all(axis=1)  # (n,)
    if X.dtype == np.float32:
        F, exact = X, np.ones(len(X), dtype=bool)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            F = X.astype(np.float32)  # (n, d): beyond float32's range → inf ≠ the number
        exact = (F == X).all(axis=1)  # (n,)
    ids_ok = texts_ok(block.ids, EVENT_ID_LEN)  # every id valid: no row checks its own
    memo: dict[tuple[Any, ...], tuple[dict[str, Any], str]] = {}  # fields → payload, text
    ids: list[str | None] = list(block.ids) if ids_ok else []
    payloads: list[dict[str, Any]] = []
    texts: list[str] = []
    for i, (cid, rest) in enumerate(zip(block.ids, block.fields, strict=True)):
        field = f"events[{i}]"
        if not isinstance(rest, dict):
            raise InputError(field, "expected an object")
        if not ids_ok:
            ids.append(check_event_id(cid, field))
        key = _fields_key(rest)
        got = memo.get(key) if key is not None else None
        if got is None:
            got = stored_payload(rest, field)
            if key is not None:
                memo[key] = got
        if not finite[i]:
            raise InputError(f"{field}.input", "has NaN or Inf values")
        payloads.append(got[0])
        texts.append(got[1])
    return BlockColumns(ids, payloads, texts, X, F, exact)


def _fields_key(rest: dict[str, Any]) -> tuple[Any, ...] | None:
    """A key under which equal ``rest`` dicts have the same stored payload and JSON text, or
    None (not memoised): str, int, bool and non-zero float values only (equal non-zero floats
    print alike; 0.0 and -0.0 are equal but do not; a datetime's text depends on its zone)."""
    key: list[Any] = []
    for k, v in rest.items():
        t = type(v)
        if t is not str and t is not int and t is not bool and not (t is float and v != 0.0):
            return None
        key.append((k, t, v))
    return tuple(key)
