"""Deltas: what one commit adds to a memory state, and how it is applied.

A layer's state ``S`` has shape ``(d_v, d_k)``. One commit changes it by

    S_new = gamma * pad_rows(S_old, d_v_new) + E.T @ A        (factor form, rank <= n)
    S_new = gamma * pad_rows(S_old, d_v_new) + D              (dense form)

``pad_rows`` appends zero rows when labels appeared (a new row starts at zero).
The live learner and every rebuild call :func:`apply_layer` with the same arrays,
so a rebuilt state is bit-identical to the live one on the same machine and library.

Examples
--------
>>> import numpy as np
>>> S = np.zeros((2, 3))
>>> A = np.array([[1.0, 0.0, 0.0]])
>>> E = np.array([[0.5, 0.0, 0.0]])
>>> ld = LayerDelta.factors(A=A, E=E, gamma=1.0)
>>> apply_layer(S, ld)[:, 0].tolist()
[0.5, 0.0, 0.0]
>>> ld.dense_is_smaller
False
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "LayerDelta",
    "Delta",
    "apply_layer",
    "apply_delta",
    "pad_rows",
    "state_checksum",
    "StateView",
    "PrefixHasher",
    "factor_form",
    "shift_selector",
]


@dataclass(frozen=True)
class LayerDelta:
    """The change of one memory layer in one commit.

    Exactly one of ``(A, E)`` or ``dense`` is set. ``shape`` is the layer's shape
    after the commit ``(d_v, d_k)``.
    """

    shape: tuple[int, int]
    gamma: float = 1.0
    A: np.ndarray | None = None  # (n, d_k)
    E: np.ndarray | None = None  # (n, d_v)
    dense: np.ndarray | None = None  # (d_v, d_k)

    def __post_init__(self) -> None:
        if (self.dense is None) == (self.A is None or self.E is None):
            raise ValueError("LayerDelta needs either (A, E) or dense, not both or neither")
        if self.dense is not None and tuple(self.dense.shape) != tuple(self.shape):
            raise ValueError(f"dense delta shape {self.dense.shape} != layer shape {self.shape}")
        if self.A is not None and self.E is not None:
            n_a, d_k = self.A.shape
            n_e, d_v = self.E.shape
            if n_a != n_e or (d_v, d_k) != tuple(self.shape):
                raise ValueError(
                    f"factor shapes A{self.A.shape} E{self.E.shape} do not give layer {self.shape}"
                )

    @classmethod
    def factors(cls, A: np.ndarray, E: np.ndarray, gamma: float = 1.0) -> LayerDelta:
        return cls(shape=(int(E.shape[1]), int(A.shape[1])), gamma=float(gamma), A=A, E=E)

    @classmethod
    def of_dense(cls, D: np.ndarray, gamma: float = 1.0) -> LayerDelta:
        return cls(shape=(int(D.shape[0]), int(D.shape[1])), gamma=float(gamma), dense=D)

    @property
    def is_dense(self) -> bool:
        return self.dense is not None

    @property
    def rank(self) -> int:
        return int(self.A.shape[0]) if self.A is not None else min(self.shape)

    @property
    def dense_is_smaller(self) -> bool:
        """True when the dense matrix takes fewer numbers than the factors as stored:
        ``n*(d_k+d_v)``, or ``n*d_k`` when E is implied by A (:func:`factor_form`)."""
        if self.A is None or self.E is None:
            return True
        d_v, d_k = self.shape
        per_row = d_k if factor_form(self.A, self.E) != "factors" else d_k + d_v
        return self.rank * per_row > d_k * d_v

    def to_dense(self) -> np.ndarray:
        if self.dense is not None:
            return self.dense
        assert self.A is not None and self.E is not None
        return self.E.T @ self.A

    def compact(self) -> LayerDelta:
        """The smaller of the factor and dense forms (DESIGN §2)."""
        if self.A is not None and self.dense_is_smaller:
            return LayerDelta.of_dense(self.to_dense(), self.gamma)
        return self

    def astype(self, dtype: np.dtype | str) -> LayerDelta:
        """The same delta with its arrays cast (e.g. float16 storage). Apply the cast
        delta, not the original, to keep live and rebuilt states identical."""
        dt = np.dtype(dtype)
        if self.dense is not None:
            return LayerDelta.of_dense(np.ascontiguousarray(self.dense, dtype=dt), self.gamma)
        assert self.A is not None and self.E is not None
        return LayerDelta.factors(
            np.ascontiguousarray(self.A, dtype=dt), np.ascontiguousarray(self.E, dtype=dt), self.gamma
        )

    def norm(self) -> float:
        """Frobenius norm of the additive part (reported as ``delta_norm``), in float64.

        Factors: ``‖EᵀA‖²_F = Σ (E Eᵀ) ⊙ (A Aᵀ)``, two n × n Gram matrices instead of the
        d_v × d_k product (an rls fold of P at d_k = 3072 would cost as much as the fold).

        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> ld = LayerDelta.factors(rng.standard_normal((4, 6)), rng.standard_normal((4, 5)))
        >>> bool(np.isclose(ld.norm(), np.linalg.norm(ld.to_dense()), rtol=1e-12))
        True
        """
        if self.dense is not None:
            return float(np.linalg.norm(np.asarray(self.dense, dtype=np.float64)))
        assert self.A is not None and self.E is not None
        A = np.asarray(self.A, dtype=np.float64)  # (n, d_k)
        E = np.asarray(self.E, dtype=np.float64)  # (n, d_v)
        n, (d_v, d_k) = A.shape[0], self.shape
        if n * (d_k + d_v) >= d_k * d_v:  # the product is the smaller computation
            return float(np.linalg.norm(E.T @ A))
        return float(np.sqrt(max(float(np.sum((E @ E.T) * (A @ A.T))), 0.0)))

    def nbytes(self) -> int:
        if self.dense is not None:
            return int(self.dense.nbytes)
        assert self.A is not None and self.E is not None
        return int(self.A.nbytes + self.E.nbytes)


@dataclass(frozen=True)
class Delta:
    """One commit: a :class:`LayerDelta` per changed layer, plus labels first seen in it."""

    layers: dict[str, LayerDelta]
    labels_added: list[str] = field(default_factory=list)

    def compact(self) -> Delta:
        return Delta({k: v.compact() for k, v in self.layers.items()}, list(self.labels_added))

    def astype(self, dtype: np.dtype | str) -> Delta:
        return Delta({k: v.astype(dtype) for k, v in self.layers.items()}, list(self.labels_added))

    def norm(self) -> float:
        return float(np.sqrt(sum(ld.norm() ** 2 for ld in self.layers.values())))

    def nbytes(self) -> int:
        return sum(ld.nbytes() for ld in self.layers.values())


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal shapes, dtypes and bytes (unlike ``==``: −0.0 ≠ +0.0 here)."""
    return a.shape == b.shape and a.dtype == b.dtype and \
        np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()


def shift_selector(rank: int, d_v: int, dtype: Any) -> np.ndarray:
    """``[0 | I]`` (rank, d_v): the E of a delta that writes A into the last ``rank`` rows."""
    E = np.zeros((rank, d_v), dtype=dtype)  # (rank, d_v)
    E[:, d_v - rank:] = np.eye(rank, dtype=dtype)
    return E


def factor_form(A: np.ndarray, E: np.ndarray) -> str:
    """``"neg"`` when E is −A bit for bit (every rls update of P), ``"shift"`` when E is
    ``[0 | I]`` bit for bit (rows appended to pending rows), else ``"factors"``: in the first
    two, E follows from A and the store keeps A alone (``storage/deltaform.py``).

    >>> import numpy as np
    >>> A = np.ones((2, 3))
    >>> factor_form(A, -A), factor_form(A, shift_selector(2, 4, A.dtype)), factor_form(A, A[:, :2])
    ('neg', 'shift', 'factors')
    """
    if A.dtype == E.dtype:
        if E.shape == A.shape and same_bits(E, np.negative(A)):
            return "neg"
        if E.shape[0] <= E.shape[1] and same_bits(E, shift_selector(E.shape[0], E.shape[1], E.dtype)):
            return "shift"
    return "factors"


def pad_rows(S: np.ndarray, d_v: int) -> np.ndarray:
    """``S`` with zero rows appended up to ``d_v`` rows (new labels start at zero)."""
    if S.shape[0] == d_v:
        return S
    if S.shape[0] > d_v:
        raise ValueError(f"cannot shrink a layer from {S.shape[0]} to {d_v} rows")
    out = np.zeros((d_v, S.shape[1]), dtype=S.dtype)
    out[: S.shape[0]] = S
    return out


def apply_layer(S: np.ndarray, ld: LayerDelta) -> np.ndarray:
    """``S_new = gamma * pad_rows(S) + Eᵀ A`` (or ``+ D``), computed in ``S``'s dtype.

    This is the one operation both the live learner and a rebuild use. A delta with
    ``gamma == 0`` replaces the layer, so it may also give it fewer rows (the rows dropped
    are multiplied by zero anyway): the pending rows of an ``rls`` state
    (:mod:`agent.memory.pending`) empty that way when they are folded into ``P``.
    """
    if ld.gamma == 0.0 and S.shape[0] > ld.shape[0]:
        S = S[: ld.shape[0]]
    S = pad_rows(S, ld.shape[0])
    if S.shape[1] != ld.shape[1]:
        raise ValueError(f"layer has d_k={S.shape[1]}, delta expects {ld.shape[1]}")
    dt = S.dtype
    if ld.dense is not None:
        return dt.type(ld.gamma) * S + np.asarray(ld.dense, dtype=dt)
    assert ld.A is not None and ld.E is not None
    out = np.asarray(ld.E, dtype=dt).T @ np.asarray(ld.A, dtype=dt)  # (d_v, n) @ (n, d_k), fresh
    # in place on the fresh product (IEEE addition commutes: the same bits as γS + EᵀA)
    out += S if ld.gamma == 1.0 else dt.type(ld.gamma) * S
    return out


def apply_delta(layers: dict[str, np.ndarray], delta: Delta) -> dict[str, np.ndarray]:
    """Apply every layer delta; layers not in ``delta`` are kept as they are."""
    out = dict(layers)
    for name, ld in delta.layers.items():
        if name not in out:
            raise KeyError(f"delta for unknown layer {name!r}")
        out[name] = apply_layer(out[name], ld)
    return out


def state_checksum(layers: dict[str, np.ndarray], labels: list[str] | None = None) -> str:
    """A deterministic SHA-256 over layer names, dtypes, shapes, raw bytes and labels.

    >>> import numpy as np
    >>> a = state_checksum({"S": np.zeros((2, 2))}, ["x"])
    >>> a == state_checksum({"S": np.zeros((2, 2))}, ["x"])
    True
    >>> a == state_checksum({"S": np.zeros((2, 2))}, ["y"])
    False
    """
    h = hashlib.sha256()
    for name in sorted(layers):
        _hash_layer(h, name, layers[name])
    return _hash_labels(h, labels)


def _hash_layer(h: Any, name: str, arr: np.ndarray) -> None:
    arr = np.ascontiguousarray(arr)
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    h.update(name.encode())
    h.update(b"\0")
    h.update(arr.dtype.str.encode())
    h.update(repr(tuple(arr.shape)).encode())
    h.update(arr.reshape(-1).data.cast("B"))  # the raw bytes, without a copy


def _hash_labels(h: Any, labels: list[str] | None) -> str:
    for label in labels or []:
        h.update(b"\x1f")
        h.update(label.encode("utf-8"))
    return str(h.hexdigest())


class PrefixHasher:
    """:func:`state_checksum` that keeps the SHA-256 state after each layer, in sorted order,
    and starts from the longest prefix of layers that are still the same array objects.

    A learner's arrays are replaced, never changed in place, so an unchanged object has
    unchanged bytes: an ``rls`` state with pending rows hashes its ``P`` (d_k², sorted first)
    only when a fold replaced it, not at every commit (37.7 MB, about 29 ms at d_k = 3072
    float32). The digest is :func:`state_checksum`'s, bit for bit (tested).

    >>> import numpy as np
    >>> ph, layers = PrefixHasher(), {"P": np.eye(3), "S": np.zeros((2, 3))}
    >>> ph.checksum(layers, ["a"]) == state_checksum(layers, ["a"])
    True
    >>> layers["S"] = np.ones((2, 3))   # replaced: P's hash state is reused
    >>> ph.checksum(layers, ["a"]) == state_checksum(layers, ["a"]), ph.reused
    (True, 1)
    """

    def __init__(self) -> None:
        self._done: list[tuple[str, np.ndarray, Any]] = []  # (name, array, hash state after it)
        self.reused = 0  # layers taken from the cache by the last call

    def __getstate__(self) -> dict[str, Any]:  # hash states do not pickle: a copy starts empty
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def checksum(self, layers: dict[str, np.ndarray], labels: list[str] | None = None) -> str:
        names = sorted(layers)
        k = 0
        while (k < len(self._done) and k < len(names) and self._done[k][0] == names[k]
               and self._done[k][1] is layers[names[k]]):
            k += 1
        del self._done[k:]
        h = self._done[k - 1][2].copy() if k else hashlib.sha256()
        for name in names[k:]:
            _hash_layer(h, name, layers[name])
            self._done.append((name, layers[name], h.copy()))  # holds the array: its id stays its own
        self.reused = k
        return _hash_labels(h, labels)


class StateView:
    """The read side every learner shares: ``state``, ``labels`` and ``checksum`` over
    ``self._layers`` / ``self._labels`` (arrays are replaced, never changed in place)."""

    _layers: dict[str, np.ndarray]
    _labels: list[str]

    @property
    def state(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """``(layers, labels)``; the arrays are never changed in place, only replaced."""
        return dict(self._layers), list(self._labels)

    @property
    def labels(self) -> list[str]:
        return list(self._labels)

    def keep_reads_only(self) -> None:
        """Drop layers that only writes use (a serving replica's view); none by default."""

    def for_reads(self, delta: Delta) -> Delta:
        """The part of ``delta`` a reads-only view applies; all of it by default."""
        return delta

    def checksum(self) -> str:
        """:func:`state_checksum` of the state; unchanged layers are not hashed again."""
        ph = self.__dict__.get("_hasher")
        if ph is None:
            ph = self.__dict__["_hasher"] = PrefixHasher()
        return ph.checksum(self._layers, self._labels)
