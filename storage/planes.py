"""Byte-plane coding of the event input blocks (``event_inputs.codec``, migration 0014).

The bytes of a float array are far from uniform in one place: the most significant byte of
each number (little-endian: the last one) holds the sign and the top of the exponent, and the
numbers of an embedding or of a normalised feature vector share a few exponents, so that byte
takes a few dozen values of very unequal frequency. The other bytes are mantissa and look
random. So a block of ``count`` numbers of ``size`` bytes is stored split into byte planes
(plane ``j``: byte ``j`` of every number, in order; Parquet's BYTE_STREAM_SPLIT):

    uint32 n (little-endian) | n bytes: the top plane, entropy-coded | planes 0 .. size-2,
    raw (count bytes each)

which gives back every bit (``unpack(pack(m)) == m``, NaN payloads and signed zeros
included). Two codings of the top plane (the ``codec`` column names which):

* ``split-zstd`` (written): Zstandard level 1 (pyarrow's codec, a dependency already);
* ``split-huff`` (read only, the blocks written before): raw deflate, Huffman only, a third
  of zstd's speed for ~5 % fewer bytes (``python -m benchmarks.planes`` prints both).

A block whose top plane does not shrink is stored raw (codec None), so no input ever costs
more than before. A reader of a codec it does not know raises :class:`CorruptData`.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from storage.codec import ALLOWED_DTYPES, decode
from storage.errors import CorruptData

PLANES = "split-zstd"  # written: byte planes, the top one zstd-coded, the others raw
HUFF = "split-huff"  # read: the top plane Huffman-coded (raw deflate), blocks of before
_ZSTD_LEVEL = 1


def _zstd() -> Any:
    import pyarrow as pa  # (a dependency; imported when the first block is coded)

    return pa.Codec("zstd", compression_level=_ZSTD_LEVEL)


def _huff(top: bytes) -> bytes:
    co = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_HUFFMAN_ONLY)
    return co.compress(top) + co.flush()


CODERS: dict[str, Callable[[bytes], bytes]] = {
    PLANES: lambda top: _zstd().compress(top, asbytes=True), HUFF: _huff}


def _planes(m: np.ndarray) -> np.ndarray:
    """``(size, count)`` uint8: byte ``j`` of every number of ``m`` in row ``j``."""
    return np.ascontiguousarray(m.reshape(-1).view(np.uint8).reshape(m.size, m.dtype.itemsize).T)


def pack(m: np.ndarray, codec: str = PLANES) -> tuple[bytes, str | None]:
    """``(data, codec)`` of a little-endian float array: coded as above (``codec``: one of
    :data:`CODERS`), or its raw bytes with codec None when coding does not make it smaller."""
    m = np.ascontiguousarray(m)
    if m.dtype.byteorder == ">" or m.dtype.itemsize < 2 or m.size == 0:
        return m.tobytes(), None
    p = _planes(m)  # (size, count)
    top = CODERS[codec](p[-1].tobytes())
    if 4 + len(top) >= m.size:
        return m.tobytes(), None
    return struct.pack("<I", len(top)) + top + p[:-1].tobytes(), codec


def _top(data: bytes, codec: str, count: int) -> tuple[bytes, int]:
    """``(the top plane, where the raw planes begin)``; errors of the coding propagate."""
    (n,) = struct.unpack_from("<I", data)
    body = data[4:4 + n]
    if len(body) != n:
        raise ValueError("truncated")
    if codec == HUFF:
        return zlib.decompress(body, -15), 4 + n
    return _zstd().decompress(body, decompressed_size=count, asbytes=True), 4 + n


def unpack(data: bytes, codec: str | None, dtype: str, count: int, what: str) -> bytes:
    """The raw bytes of ``count`` numbers of ``dtype`` stored as ``data`` with ``codec``;
    :class:`CorruptData` naming ``what`` when they do not decode to exactly that."""
    if codec is None:
        return data
    if codec not in CODERS:
        raise CorruptData(what, f"unknown input coding {codec!r}")
    size = np.dtype(dtype).itemsize
    try:
        top, at = _top(data, codec, count)
    except (struct.error, zlib.error, ValueError, OSError) as e:  # (pyarrow's: OSError)
        raise CorruptData(what, f"bad coded input: {e}") from e
    rest = np.frombuffer(data, dtype=np.uint8, offset=at)
    if len(top) != count or rest.size != count * (size - 1):
        raise CorruptData(what, "coded input of the wrong size")
    p = np.empty((size, count), dtype=np.uint8)
    p[:-1] = rest.reshape(size - 1, count)
    p[-1] = np.frombuffer(top, dtype=np.uint8)
    return np.ascontiguousarray(p.T).tobytes()


def decode_block(data: bytes, codec: str | None, dtype: str, rows: int, dim: int,
                 sha256: bytes, what: str) -> np.ndarray:
    """The ``(rows, dim)`` array a block stores (``event_inputs`` columns), its checksum (of
    the stored bytes) verified; :class:`CorruptData` naming ``what`` on any mismatch."""
    if codec is None:
        return decode(data, dtype, [(rows, dim)], bytes(sha256).hex(), what)[0]
    data = bytes(data)
    if hashlib.sha256(data).digest() != bytes(sha256):
        raise CorruptData(what, "checksum mismatch")
    if dtype not in ALLOWED_DTYPES:
        raise CorruptData(what, f"unknown dtype {dtype!r}")
    raw = unpack(data, codec, dtype, rows * dim, what)
    return np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(rows, dim)
