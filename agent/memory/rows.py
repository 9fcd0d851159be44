"""Row storage for the append-only layers (the ``softmax`` rule's keys ``X`` and label positions
``Y``): rows appended in place past the end of a buffer, the same bits as
:func:`~agent.memory.deltas.apply_layer`'s copy."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.memory.deltas import LayerDelta

__all__ = ["RowRoom"]


class RowRoom:
    """Room to append rows in place, for the append-only layers of one learner.

    :func:`apply_layer` appends by copying the layer (O(rows) per commit). A learner instead
    keeps each such layer as a view of a buffer with spare rows, writes new rows past the end
    of its current view and returns a longer view. No other view covers those rows (a view of
    fewer rows keeps its bytes), so arrays are still never changed under anyone who holds them;
    a layer that is not the last view handed out (a state loaded or rolled back) is copied into a
    new buffer first. The result equals :func:`apply_layer`'s bit for bit: both copy the rows.

    >>> import numpy as np
    >>> room, X = RowRoom(), np.zeros((0, 2))
    >>> X1 = room.append("X", X, LayerDelta.append(np.ones((1, 2)), 1))
    >>> X2 = room.append("X", X1, LayerDelta.append(np.full((2, 2), 2.0), 3))
    >>> X2.tolist(), X1.tolist(), np.shares_memory(X1, X2)
    ([[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]], [[1.0, 1.0]], True)
    """

    MIN_ROWS = 1024

    def __init__(self) -> None:
        self._bufs: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (buffer, last view)

    def __getstate__(self) -> dict[str, Any]:  # a copy starts without spare room
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def spare_nbytes(self) -> int:
        """Bytes held beyond the rows of the last views."""
        return sum(buf.nbytes - tip.nbytes for buf, tip in self._bufs.values())

    def append(self, name: str, layer: np.ndarray, ld: LayerDelta) -> np.ndarray:
        """``layer`` with ``ld``'s rows appended (``ld.appends``), as a view of this room."""
        assert ld.appends and ld.A is not None
        n0, n = layer.shape[0], ld.A.shape[0]
        if layer.shape != (ld.shape[0] - n, ld.shape[1]):
            raise ValueError(f"a layer of shape {layer.shape} cannot take {n} rows to become {ld.shape}")
        buf, tip = self._bufs.get(name, (None, None))
        if buf is None or tip is not layer or buf.shape[0] < n0 + n:
            buf = np.empty((max(2 * (n0 + n), self.MIN_ROWS), layer.shape[1]), dtype=layer.dtype)
            buf[:n0] = layer
        buf[n0:n0 + n] = np.asarray(ld.A, dtype=layer.dtype)
        tip = buf[: n0 + n]
        self._bufs[name] = (buf, tip)
        return tip
