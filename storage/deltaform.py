"""How a layer delta is stored: its form and the arrays written for it.

Five forms (the ``deltas.form`` column):

- ``dense``: ``D`` (d_v, d_k);
- ``factors``: ``A`` (rank, d_k) then ``E`` (rank, d_v);
- ``neg``: factors with ``E = −A`` (d_v = d_k), stored as ``A`` alone. Every ``rls`` update of
  ``P`` has this form (``P − BᵀB``), so it halves what ``P`` costs to store;
- ``shift``: factors with ``E = [0 | I]`` (the last ``rank`` columns the identity), stored as ``A``
  alone: the rows appended to the pending rows ``Q`` of an ``rls`` state
  (:mod:`agent.memory.rls.pending`);
- ``rows``: rows ``A`` appended below the layer, as they are (``LayerDelta.append``): the keys and
  labels the ``softmax`` rule keeps for rehearsal (:mod:`agent.memory.softmax.replay`);
- ``put``: rows ``A`` written at row positions ``at`` (``LayerDelta.put``), stored as ``[A | at]``
  (rank, d_k + 1), the positions in A's dtype (exact whole numbers: :func:`pack` refuses positions
  the dtype cannot hold): the bounded rehearsal memory (:mod:`agent.memory.softmax.reservoir`).

A compact form is chosen only when the stored ``E`` is bit for bit the one :func:`unpack`
rebuilds (:func:`agent.memory.delta.factor_form`; negation and the 0/1 selector are exact), so
the rebuilt delta — and with it every rebuilt state — is the one the learner applied, bit for
bit. ``LayerDelta.compact`` counts the factors as stored, so the dense form is chosen only when
it is really smaller.

Examples
--------
>>> import numpy as np
>>> from agent.memory.delta import LayerDelta
>>> A = np.array([[1.0, -2.0, 0.0]])
>>> form, arrays = pack(LayerDelta.factors(A, -A))
>>> form, len(arrays)
('neg', 1)
>>> ld = unpack(form, arrays, 1.0, (3, 3))
>>> ld.E.tolist()
[[-1.0, 2.0, -0.0]]
"""

from __future__ import annotations

import numpy as np

from agent.memory.delta import LayerDelta, factor_form, shift_selector

__all__ = ["pack", "unpack", "shapes", "FORMS"]

FORMS = ("factors", "dense", "neg", "shift", "rows", "put")


def pack(ld: LayerDelta) -> tuple[str, list[np.ndarray]]:
    """``(form, arrays to store)`` for a layer delta: the most compact exact form."""
    if ld.dense is not None:
        return "dense", [ld.dense]
    if ld.appends:
        assert ld.A is not None
        return "rows", [np.asarray(ld.A)]
    if ld.at is not None:
        A = np.asarray(ld.A)
        if A.dtype.kind != "f" or (ld.at.size and int(ld.at.max()) >= 2 ** (np.finfo(A.dtype).nmant + 1)):
            raise ValueError(f"row positions up to {int(ld.at.max())} are not whole numbers in {A.dtype}")
        return "put", [np.concatenate([A, ld.at.astype(A.dtype)[:, None]], axis=1)]
    assert ld.A is not None and ld.E is not None
    A, E = np.asarray(ld.A), np.asarray(ld.E)
    form = factor_form(A, E)
    return form, ([A] if form != "factors" else [A, E])


def shapes(form: str, d_v: int, d_k: int, rank: int | None) -> list[tuple[int, int]]:
    """The shapes of the stored arrays of a delta of this form."""
    if form == "dense":
        return [(d_v, d_k)]
    if rank is None:
        raise ValueError(f"a {form} delta needs a rank")
    if form == "factors":
        return [(rank, d_k), (rank, d_v)]
    if form == "neg" and d_v != d_k:
        raise ValueError(f"a neg delta is square, got d_v={d_v}, d_k={d_k}")
    if form in ("shift", "rows") and rank > d_v:
        raise ValueError(f"a {form} delta has rank ≤ d_v, got rank={rank}, d_v={d_v}")
    if form in ("neg", "shift", "rows"):
        return [(rank, d_k)]
    if form == "put":
        if rank > d_v:
            raise ValueError(f"a put delta has rank ≤ d_v, got rank={rank}, d_v={d_v}")
        return [(rank, d_k + 1)]
    raise ValueError(f"unknown delta form {form!r}")


def unpack(form: str, arrays: list[np.ndarray], gamma: float, shape: tuple[int, int]) -> LayerDelta:
    """The :class:`LayerDelta` of stored arrays (shapes as :func:`shapes` gives them)."""
    d_v, _ = shape
    if form == "dense":
        return LayerDelta.of_dense(arrays[0], gamma)
    A = arrays[0]
    if form == "factors":
        return LayerDelta.factors(A, arrays[1], gamma)
    if form == "neg":
        return LayerDelta.factors(A, np.negative(A), gamma)
    if form == "shift":
        return LayerDelta.factors(A, shift_selector(A.shape[0], d_v, A.dtype), gamma)
    if form == "rows":
        if gamma != 1.0:
            raise ValueError(f"appended rows have gamma 1, got {gamma}")
        return LayerDelta.append(A, d_v)
    if form == "put":
        if gamma != 1.0:
            raise ValueError(f"put rows have gamma 1, got {gamma}")
        at = A[:, -1]
        if not np.array_equal(at, np.floor(at)):
            raise ValueError("put positions are not whole numbers")
        return LayerDelta.put(np.ascontiguousarray(A[:, :-1]), at.astype(np.int64), d_v)
    raise ValueError(f"unknown delta form {form!r}")
