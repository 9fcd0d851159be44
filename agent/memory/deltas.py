"""Deltas: what one commit adds to a memory state, and how it is applied.

A layer's state ``S`` has shape ``(d_v, d_k)``. One commit changes it by

    S_new = gamma * pad_rows(S_old, d_v_new) + E.T @ A        (factor form, rank <= n)
    S_new = gamma * pad_rows(S_old, d_v_new) + D              (dense form)
    S_new = [S_old; A]                                         (appended rows)
    S_new = pad_rows(S_old, d_v_new);  S_new[at] = A           (rows put, LayerDelta.put)

The third grows the append-only layers of the ``softmax`` rule (every key and label learnt,
:mod:`agent.memory.softmax.replay`): the old rows are kept as they are, bit for bit. The last one writes whole rows at given positions (new rows at the end must all be
written): the bounded rehearsal memory of :mod:`agent.memory.softmax.reservoir` replaces a row in place,
again an exact copy.

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

from dataclasses import dataclass, field

import numpy as np

from agent.memory.forms import factor_form

__all__ = ["LayerDelta", "Delta", "apply_layer", "apply_delta", "pad_rows"]


@dataclass(frozen=True)
class LayerDelta:
    """The change of one memory layer in one commit.

    Exactly one of ``(A, E)``, ``dense`` or appended rows (``A`` with ``appends``) is set.
    ``shape`` is the layer's shape after the commit ``(d_v, d_k)``.
    """

    shape: tuple[int, int]
    gamma: float = 1.0
    A: np.ndarray | None = None  # (n, d_k)
    E: np.ndarray | None = None  # (n, d_v)
    dense: np.ndarray | None = None  # (d_v, d_k)
    appends: bool = False  # A is n rows appended below the layer (γ = 1, no E)
    at: np.ndarray | None = None  # (n,) int64: A's rows are put at these rows (γ = 1, no E)

    def __post_init__(self) -> None:
        if self.at is not None:
            if (self.A is None or self.E is not None or self.dense is not None or self.gamma != 1.0
                    or self.appends):
                raise ValueError("a put delta has rows A and positions at alone, with gamma 1")
            at = self.at
            if (self.A.ndim != 2 or self.A.shape[1] != self.shape[1] or at.ndim != 1
                    or at.shape[0] != self.A.shape[0] or at.dtype != np.int64):
                raise ValueError(f"rows {self.A.shape} at {at.shape} do not fit layer {self.shape}")
            if at.size and (at.min() < 0 or at.max() >= self.shape[0] or np.unique(at).size != at.size):
                raise ValueError(f"put positions must be distinct rows of a layer of {self.shape[0]} rows")
            return
        if self.appends:
            if self.A is None or self.E is not None or self.dense is not None or self.gamma != 1.0:
                raise ValueError("an append delta has rows A alone, with gamma 1")
            if self.A.ndim != 2 or self.A.shape[1] != self.shape[1] or self.A.shape[0] > self.shape[0]:
                raise ValueError(f"appended rows {self.A.shape} do not fit layer {self.shape}")
            return
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

    @classmethod
    def append(cls, A: np.ndarray, rows_after: int) -> LayerDelta:
        """Rows ``A`` (n, d_k) appended to a layer that has ``rows_after − n`` rows."""
        return cls(shape=(int(rows_after), int(A.shape[1])), A=A, appends=True)

    @classmethod
    def put(cls, A: np.ndarray, at: np.ndarray, rows_after: int) -> LayerDelta:
        """Rows ``A`` (n, d_k) written at rows ``at`` (n,) of a layer of ``rows_after`` rows."""
        return cls(shape=(int(rows_after), int(A.shape[1])), A=A,
                   at=np.asarray(at, dtype=np.int64).reshape(-1))

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
        if self.appends or self.at is not None:
            return False
        if self.A is None or self.E is None:
            return True
        d_v, d_k = self.shape
        per_row = d_k if factor_form(self.A, self.E) != "factors" else d_k + d_v
        return self.rank * per_row > d_k * d_v

    def to_dense(self) -> np.ndarray:
        if self.dense is not None:
            return self.dense
        if self.appends or self.at is not None:
            raise ValueError("appended or put rows have no dense form")
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
        if self.appends:
            assert self.A is not None
            return LayerDelta.append(np.ascontiguousarray(self.A, dtype=dt), self.shape[0])
        if self.at is not None:
            assert self.A is not None
            return LayerDelta.put(np.ascontiguousarray(self.A, dtype=dt), self.at, self.shape[0])
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
        if self.appends or self.at is not None:  # the rows added or put
            return float(np.linalg.norm(np.asarray(self.A, dtype=np.float64)))
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
        if self.appends or self.at is not None:
            assert self.A is not None
            return int(self.A.nbytes) + (int(self.at.nbytes) if self.at is not None else 0)
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
    (:mod:`agent.memory.rls.pending`) empty that way when they are folded into ``P``. Appended rows
    (``ld.appends``) are copied below the layer as they are.
    """
    if ld.appends:
        assert ld.A is not None
        if S.shape != (ld.shape[0] - ld.A.shape[0], ld.shape[1]):
            raise ValueError(f"a layer of shape {S.shape} cannot take {ld.A.shape[0]} rows "
                             f"to become {ld.shape}")
        return np.concatenate([S, np.asarray(ld.A, dtype=S.dtype)], axis=0)
    if ld.at is not None:
        assert ld.A is not None
        rows = ld.shape[0]
        if S.shape[1] != ld.shape[1] or S.shape[0] > rows or not np.isin(
                np.arange(S.shape[0], rows), ld.at).all():
            raise ValueError(f"a layer of shape {S.shape} cannot take rows at {ld.at.tolist()[:8]} "
                             f"to become {ld.shape}")
        out = pad_rows(S, rows).copy() if rows == S.shape[0] else pad_rows(S, rows)  # a new array
        out[ld.at] = np.asarray(ld.A, dtype=S.dtype)
        return out
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
