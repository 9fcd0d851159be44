"""The store's fast JSON codec agrees with the standard library's strict JSON on any input:
same accept/reject decision, same value read back."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from storage import jsoncodec

scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.floats() | st.text(max_size=8)
values = st.recursive(scalars, lambda c: st.lists(c, max_size=6)
                      | st.dictionaries(st.text(max_size=5), c, max_size=4), max_leaves=30)
vectors = st.lists(st.floats(width=64), min_size=1, max_size=400)


def _reference(obj):
    try:
        return json.loads(json.dumps(obj, allow_nan=False))
    except ValueError:
        return ValueError


def _fast(obj):
    try:
        return jsoncodec.loads(jsoncodec.dumps(obj))
    except ValueError:
        return ValueError


@settings(max_examples=300, deadline=None)
@given(values)
def test_codec_matches_strict_stdlib_json(obj):
    assert _fast(obj) == _reference(obj)


@settings(max_examples=300, deadline=None)
@given(vectors)
def test_codec_matches_on_vectors(vec):  # the hot path: long float lists, NaN/Inf anywhere
    assert _fast({"input": vec}) == _reference({"input": vec})
