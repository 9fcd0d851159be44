"""State checksums: a deterministic SHA-256 over a state's layers and labels
(:func:`state_checksum`, what a version stores), and :class:`PrefixHasher`, the same digest
computed again only over what changed since the last call."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

__all__ = ["state_checksum", "PrefixHasher", "APPEND_ONLY", "ROW_BLOCK"]


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


def _hash_layer(h: Any, name: str, arr: np.ndarray, known: list[bytes] | None = None) -> list[bytes]:
    """Hash one layer into ``h``: name, dtype, shape, then its raw bytes — or, for the
    append-only layers (:data:`APPEND_ONLY`), the SHA-256 digest of each block of
    :data:`ROW_BLOCK` rows, so that a layer grown by appended rows rehashes only its last block.
    ``known``: digests of leading full blocks the caller knows to be unchanged. Returns the
    digests of every full block (empty for other layers)."""
    arr = np.ascontiguousarray(arr)
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    h.update(name.encode())
    h.update(b"\0")
    h.update(arr.dtype.str.encode())
    h.update(repr(tuple(arr.shape)).encode())
    if name not in APPEND_ONLY:
        h.update(arr.reshape(-1).data.cast("B"))  # the raw bytes, without a copy
        return []
    full = list(known or [])[: arr.shape[0] // ROW_BLOCK]
    for b in range(len(full), -(-arr.shape[0] // ROW_BLOCK)):
        block = arr[b * ROW_BLOCK:(b + 1) * ROW_BLOCK]  # (≤ ROW_BLOCK, d)
        digest = hashlib.sha256(block.reshape(-1).data.cast("B")).digest()
        if block.shape[0] == ROW_BLOCK:
            full.append(digest)
        else:
            h.update(b"".join(full))
            h.update(digest)
            return full
    h.update(b"".join(full))
    return full


def _same_prefix(old: np.ndarray, new: np.ndarray) -> bool:
    """Whether ``new``'s first rows are ``old``'s memory: both C-contiguous views starting at the
    same address (``old`` is held alive by the caller, so the address is still its own) with the
    same row layout. Layers are never changed in place; rows are only appended past the end."""
    return (old.dtype == new.dtype and old.shape[1:] == new.shape[1:] and new.shape[0] >= old.shape[0]
            and old.flags.c_contiguous and new.flags.c_contiguous
            and old.ctypes.data == new.ctypes.data)


def _hash_labels(h: Any, labels: list[str] | None) -> str:
    for label in labels or []:
        h.update(b"\x1f")
        h.update(label.encode("utf-8"))
    return str(h.hexdigest())


# Append-only layers (rows are only ever added below: the softmax rule's keys and labels) are
# hashed by blocks of rows, so a checksum after an append rehashes the last block only.
APPEND_ONLY = ("X", "Y")
ROW_BLOCK = 4096


class PrefixHasher:
    """:func:`state_checksum` that keeps the SHA-256 state after each layer, in sorted order,
    and starts from the longest prefix of layers that are still the same array objects.

    A learner's arrays are replaced, never changed in place, so an unchanged object has
    unchanged bytes: an ``rls`` state with pending rows hashes its ``P`` (d_k², sorted first)
    only when a fold replaced it, not at every commit (37.7 MB at d_k = 3072 float32). An append-only layer (:data:`APPEND_ONLY`) that starts at the same address as the
    one hashed before (it grew in a :class:`RowRoom`) reuses the digests of its full row blocks.
    The digest is :func:`state_checksum`'s, bit for bit (tested).

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
        self._blocks: dict[str, tuple[np.ndarray, list[bytes]]] = {}  # append-only layers
        self.reused = 0  # layers taken from the cache by the last call
        self.reused_blocks = 0  # row blocks of append-only layers not hashed again

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
        self.reused_blocks = 0
        for name in names[k:]:
            arr = layers[name]
            known = None
            if name in APPEND_ONLY and name in self._blocks and _same_prefix(self._blocks[name][0], arr):
                known = self._blocks[name][1]
                self.reused_blocks += min(len(known), arr.shape[0] // ROW_BLOCK)
            full = _hash_layer(h, name, arr, known)
            if name in APPEND_ONLY:
                self._blocks[name] = (arr, full)  # holds the array: its address stays its own
            self._done.append((name, arr, h.copy()))  # holds the array: its id stays its own
        self.reused = k
        return _hash_labels(h, labels)
