"""The array codec: exact round trips (float16/32/64, empty, big-endian input), and
corrupted or truncated bytes giving a clear error instead of a wrong array."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from storage.codec import decode, encode
from storage.errors import CorruptData, InputError

DTYPES = ["<f2", "<f4", "<f8"]


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(DTYPES).flatmap(lambda dt: st.lists(
    hnp.arrays(np.dtype(dt), hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=6),
               elements=st.floats(width=np.dtype(dt).itemsize * 8, allow_nan=False,
                                  allow_infinity=False)), min_size=1, max_size=3)))
def test_round_trip_is_exact(arrays):
    blob = encode(arrays)
    out = decode(blob.data, blob.dtype, blob.shapes, blob.sha256, "test")
    assert len(out) == len(arrays)
    for a, b in zip(arrays, out, strict=True):
        assert b.dtype == a.dtype and b.shape == a.shape
        assert b.tobytes() == np.ascontiguousarray(a).tobytes()
        assert b.flags.writeable and b.flags.owndata


def test_float16_is_half_the_bytes_of_float32():
    a = np.random.default_rng(0).standard_normal((8, 384))
    assert encode([a.astype(np.float16)]).nbytes * 2 == encode([a.astype(np.float32)]).nbytes
    assert encode([a.astype(np.float16)]).dtype == "<f2"


def test_big_endian_and_noncontiguous_input_decode_to_the_same_values():
    a = np.arange(12, dtype=">f8").reshape(3, 4).T
    blob = encode([a])
    assert blob.dtype == "<f8"
    (b,) = decode(blob.data, blob.dtype, blob.shapes, blob.sha256, "x")
    assert np.array_equal(a, b)


def test_mixed_dtypes_are_promoted_losslessly():
    a16 = np.array([[0.1, 0.2]], dtype=np.float16)
    blob = encode([a16, np.zeros((1, 2), np.float32)])
    assert blob.dtype == "<f4"
    a, _ = decode(blob.data, blob.dtype, blob.shapes, blob.sha256, "x")
    assert np.array_equal(a.astype(np.float16), a16)


@pytest.mark.parametrize("flip", [0, 7, -1])
def test_a_flipped_byte_is_detected(flip):
    blob = encode([np.ones((3, 3), np.float32)])
    data = bytearray(blob.data)
    data[flip] ^= 0x01
    with pytest.raises(CorruptData, match="SHA-256"):
        decode(bytes(data), blob.dtype, blob.shapes, blob.sha256, "agent a version 3 delta S")


def test_truncated_bytes_and_wrong_shape_are_detected():
    blob = encode([np.ones((3, 3), np.float64)])
    with pytest.raises(CorruptData, match="bytes stored"):
        decode(blob.data[:-8], blob.dtype, blob.shapes, blob.sha256, "x")
    with pytest.raises(CorruptData, match="bytes stored"):
        decode(blob.data, blob.dtype, [(3, 4)], blob.sha256, "x")
    with pytest.raises(CorruptData, match="dtype"):
        decode(blob.data, "|O", blob.shapes, blob.sha256, "x")


@pytest.mark.parametrize("bad", [np.array([[np.nan]]), np.array([[np.inf, 0.0]])])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(InputError, match="NaN or Inf"):
        encode([bad], "delta.layers.S")


@pytest.mark.parametrize("arr", [np.zeros((2, 2), np.int64), np.array([["a"]]),
                                 np.array([[object()]])])
def test_non_float_dtypes_are_refused(arr):
    with pytest.raises(InputError, match="float16/float32/float64|dtype"):
        encode([arr], "x")


def test_state_checksum_is_sha256_of_names_dtypes_shapes_and_bytes():
    """The digest stored with every version, against its definition written out with tobytes()."""
    import hashlib

    from agent.memory.delta import state_checksum

    rng = np.random.default_rng(5)
    layers = {"S": rng.standard_normal((3, 7)).astype(np.float32),
              "P": np.asfortranarray(rng.standard_normal((7, 7))),  # not C-ordered
              "Z": np.zeros((0, 4))}
    labels = ["a", "b ü"]
    h = hashlib.sha256()
    for name in sorted(layers):
        arr = np.ascontiguousarray(layers[name])
        h.update(name.encode() + b"\0" + arr.dtype.str.encode() + repr(arr.shape).encode())
        h.update(arr.tobytes())
    for label in labels:
        h.update(b"\x1f" + label.encode("utf-8"))
    assert state_checksum(layers, labels) == h.hexdigest()
