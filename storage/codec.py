"""Array codec: raw little-endian bytes + dtype + shape + SHA-256. Never pickle.

Several arrays of one dtype can share one blob (a factor delta stores ``A`` then ``E``).
Decoding checks the length and the checksum before anything is built from the bytes, so
corrupted data raises :class:`CorruptData` instead of yielding a wrong state.

Examples
--------
>>> import numpy as np
>>> blob = encode([np.arange(6, dtype=np.float32).reshape(2, 3)])
>>> blob.dtype, blob.shapes
('<f4', ((2, 3),))
>>> decode(blob.data, blob.dtype, blob.shapes, blob.sha256, "x")[0][1].tolist()
[3.0, 4.0, 5.0]
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from storage.errors import CorruptData, InputError

__all__ = ["Blob", "ALLOWED_DTYPES", "encode", "decode", "canonical_dtype"]

#: dtypes a stored array may have (float16 for compact deltas, float32/64 for states).
ALLOWED_DTYPES = ("<f2", "<f4", "<f8")


@dataclass(frozen=True)
class Blob:
    """Encoded arrays: ``data`` holds their bytes back to back, C order, little endian."""

    data: bytes
    dtype: str
    shapes: tuple[tuple[int, ...], ...]
    sha256: str

    @property
    def nbytes(self) -> int:
        return len(self.data)


def canonical_dtype(dtype: np.dtype | str, field: str = "dtype") -> np.dtype:
    """The little-endian form of an allowed float dtype, or :class:`InputError`."""
    try:
        dt = np.dtype(dtype).newbyteorder("<")
    except TypeError as exc:
        raise InputError(field, f"not a dtype: {dtype!r}") from exc
    if dt.str not in ALLOWED_DTYPES:
        raise InputError(field, f"expected one of float16/float32/float64, got {np.dtype(dtype)}")
    return dt


def encode(arrays: Sequence[np.ndarray], field: str = "array", check_finite: bool = True) -> Blob:
    """Encode arrays of one float dtype (mixed dtypes are promoted losslessly)."""
    if not arrays:
        raise InputError(field, "nothing to encode")
    arrs = [np.asarray(a) for a in arrays]
    dt = canonical_dtype(np.result_type(*arrs), field)
    parts = []
    for i, a in enumerate(arrs):
        if check_finite and not np.all(np.isfinite(a)):
            raise InputError(field, f"array {i} has NaN or Inf values")
        parts.append(np.ascontiguousarray(a, dtype=dt).tobytes())
    data = b"".join(parts)
    return Blob(data, dt.str, tuple(tuple(int(s) for s in a.shape) for a in arrs),
                hashlib.sha256(data).hexdigest())


def decode(data: bytes, dtype: str, shapes: Sequence[Sequence[int]], sha256: str,
           what: str) -> list[np.ndarray]:
    """Decode arrays written by :func:`encode`; raise :class:`CorruptData` on any mismatch.

    ``what`` names the stored object in the error (e.g. ``"agent ag_1 version 3 delta S"``).
    The arrays returned are writable and own their memory.
    """
    if dtype not in ALLOWED_DTYPES:
        raise CorruptData(what, f"unknown dtype {dtype!r}")
    data = bytes(data) if not isinstance(data, bytes) else data
    dt = np.dtype(dtype)
    sizes = [int(np.prod(s, dtype=np.int64)) * dt.itemsize for s in shapes]
    if any(int(d) < 0 for s in shapes for d in s):
        raise CorruptData(what, f"negative shape {list(shapes)}")
    if sum(sizes) != len(data):
        raise CorruptData(what, f"{len(data)} bytes stored, {sum(sizes)} expected for "
                                f"{dtype} {[tuple(s) for s in shapes]}")
    if hashlib.sha256(data).hexdigest() != sha256:
        raise CorruptData(what, "SHA-256 of the stored bytes does not match")
    out = []
    offset = 0
    for shape, size in zip(shapes, sizes, strict=True):
        arr = np.frombuffer(data, dtype=dt, count=size // dt.itemsize, offset=offset)
        out.append(arr.reshape(tuple(shape)).astype(dt.newbyteorder("="), copy=True))
        offset += size
    return out
