"""The stored forms of a factor delta: when ``E`` follows from ``A`` bit for bit, the store keeps
``A`` alone (``storage/deltaform.py``) and :class:`~agent.memory.deltas.LayerDelta` counts its
size that way.

* ``"neg"``: ``E = −A`` (every ``rls`` update of ``P``: ``P ← P − BᵀB``);
* ``"shift"``: ``E = [0 | I]`` (rows written into the last rows of a layer: pending rows ``Q``);
* ``"factors"``: anything else, ``A`` and ``E`` both kept.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["factor_form", "shift_selector", "same_bits"]


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
