"""Unit tests of the request checks that need the agent (workers.validation) and strict
JSON/NDJSON parsing; the request models: tests/test_request_models.py."""

from __future__ import annotations

import math
import sys
from datetime import UTC, datetime

import numpy as np
import pytest

from agent.errors import InputError
from workers.http.ndjson import MalformedJSON, is_json, is_ndjson, loads_strict, parse_ndjson
from workers.settings import Settings
from workers.validation import (
    check_agent_body,
    check_event,
    check_inputs,
    check_vector,
)

S = Settings(max_input_chars=50, max_events_per_request=3, max_predict_inputs=2,
             default_wait_ms=123)
VEC = {"kind": "classifier", "encoder": "none", "dim": 3}
TEXT = {"kind": "recall", "encoder": "minilm", "dim": 384}
CHAT = {"kind": "chat", "encoder": "minilm", "dim": 384}


def field_of(fn, *args) -> str:
    with pytest.raises(InputError) as e:
        fn(*args)
    return e.value.field


def test_valid_vector_event_is_normalized():
    ev = check_event({"id": "e1", "input": [1, 0, 2.5], "target": "a", "beta": 1,
                      "ts": "2024-01-02T03:04:05", "meta": {"k": 1}, "extra": "ignored"}, VEC, S)
    x = ev.pop("input")
    assert isinstance(x, np.ndarray) and x.dtype == np.float32  # every number a float32 exactly
    assert x.tolist() == [1.0, 0.0, 2.5]
    assert ev == {"id": "e1", "target": "a", "beta": 1.0,
                  "ts": datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "meta": {"k": 1}}


def _vector_reference(v, dim, field):
    """The check as it was, one float at a time: the slow, obviously correct reference."""
    if not isinstance(v, list):
        raise InputError(field, "expected a list")
    if len(v) != dim:
        raise InputError(field, f"expected {dim} numbers")
    out = []
    for i, x in enumerate(v):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or abs(x) > sys.float_info.max \
                or not math.isfinite(x):
            raise InputError(f"{field}[{i}]", "expected a finite number")
        out.append(float(x))
    if not any(out):
        raise InputError(field, "all zeros")
    return out


def test_check_vector_equals_the_per_float_reference_on_random_inputs():
    rng = np.random.default_rng(7)
    odd = [True, False, "1", None, float("nan"), float("inf"), -float("inf"), 10**400, [1.0],
           0, 0.0, -0.0, 3, 2**70, 1e-320, 0.1, np.float32(0.1).item(),
           np.float64(0.25), np.int64(2), np.float32(0.5)]
    for trial in range(3000):
        dim = int(rng.integers(1, 6))
        n = dim if rng.random() < 0.9 else int(rng.integers(0, 8))
        v = [float(x) for x in rng.normal(size=n) * 10.0 ** rng.integers(-3, 4)]
        if rng.random() < 0.3:
            v = [float(np.float32(x)) for x in v]
        for _ in range(int(rng.integers(0, 3))):
            if v:
                v[int(rng.integers(0, len(v)))] = odd[int(rng.integers(0, len(odd)))]
        try:
            want = _vector_reference(v, dim, "input")
        except InputError as e:
            with pytest.raises(InputError) as got:
                check_vector(v, dim, "input")
            assert got.value.field == e.field, (trial, v)
            continue
        got_v = check_vector(v, dim, "input")
        assert np.asarray(got_v, dtype=np.float64).tolist() == want, (trial, v)
        assert got_v.dtype in (np.float32, np.float64)


@pytest.mark.parametrize("value, field", [
    ([1, 2], "input"),                       # wrong dimension
    ([1, 2, 3, 4], "input"),
    ([0, 0, 0], "input"),                    # zero vector
    ([1, float("nan"), 0], "input[1]"),
    ([1, 0, float("inf")], "input[2]"),
    ([1, True, 0], "input[1]"),              # booleans are not numbers
    ([1, "2", 0], "input[1]"),
    ("text", "input"),                       # text for a vector agent
    (None, "input"),
])
def test_bad_vector_inputs_name_the_field(value, field):
    assert field_of(check_event, {"input": value, "target": "a"}, VEC, S) == field


@pytest.mark.parametrize("event, field", [
    ({"input": "", "target": "a"}, "input"),
    ({"input": "   ", "target": "a"}, "input"),
    ({"input": "x" * 51, "target": "a"}, "input"),
    ({"input": [1.0, 2.0], "target": "a"}, "input"),
    ({"input": 5, "target": "a"}, "input"),
    ({"input": "q"}, "target"),
    ({"input": "q", "target": ""}, "target"),
    ({"input": "q", "target": 3}, "target"),
    ({"input": "q", "target": "t" * 1001}, "target"),
    ({"input": "q", "target": "a", "beta": 0}, "beta"),
    ({"input": "q", "target": "a", "beta": 1.5}, "beta"),
    ({"input": "q", "target": "a", "beta": True}, "beta"),
    ({"input": "q", "target": "a", "ts": "yesterday"}, "ts"),
    ({"input": "q", "target": "a", "ts": 17}, "ts"),
    ({"input": "q", "target": "a", "id": 7}, "id"),
    ({"input": "q", "target": "a", "id": ""}, "id"),
    ({"input": "q", "target": "a", "id": "i" * 201}, "id"),
    ({"input": "q", "target": "a", "meta": [1]}, "meta"),
    (["not", "an", "object"], "event"),
])
def test_bad_text_events_name_the_field(event, field):
    assert field_of(check_event, event, TEXT, S) == field


def test_field_prefix_for_batches():
    assert field_of(check_event, {"input": "q"}, TEXT, S, "events[4]") == "events[4].target"


def test_chat_turns_need_no_target_and_keep_the_speaker():
    ev = check_event({"input": "hello", "speaker": "ann", "target": "ignored"}, CHAT, S)
    assert ev == {"input": "hello", "speaker": "ann"}
    assert field_of(check_event, {"input": "hi", "speaker": 3}, CHAT, S) == "speaker"


def test_predict_inputs_are_checked_for_the_agent():
    assert check_inputs(["a", "b"], TEXT, S) == ["a", "b"]
    out = check_inputs([[1, 0, 0], [0, 2, 0]], VEC, S)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    assert field_of(check_inputs, [""], TEXT, S) == "inputs[0]"
    assert field_of(check_inputs, ["a", [1, 0]], VEC, S) == "inputs[0]"
    assert field_of(check_inputs, [[1, 0, 0], [1, 0]], VEC, S) == "inputs[1]"
    assert field_of(check_inputs, ["a", "x" * 51], TEXT, S) == "inputs[1]"  # max_input_chars


def test_agent_body_uses_agent_config():
    name, cfg = check_agent_body({"name": "a", "kind": "classifier", "encoder": "none", "dim": 4})
    assert name == "a" and cfg["dim"] == 4 and cfg["memory"]["rule"] == "softmax"
    assert field_of(check_agent_body, {"name": "a", "encoder": "none"}) == "dim"
    assert field_of(check_agent_body, {"kind": "classifier"}) == "name"
    assert field_of(check_agent_body, {"name": "a", "kind": "nope"}) == "kind"
    assert field_of(check_agent_body, {"name": "a", "encoder": "minilm", "memory": {"beta": 2}}) == "memory.beta"


@pytest.mark.parametrize("body", [b"", b"   ", b"{", b'{"a": NaN}', b'{"a": Infinity}',
                                  b'[-Infinity]', b"\xff\xfe", b"{'a': 1}"])
def test_strict_json_rejects(body):
    with pytest.raises(MalformedJSON):
        loads_strict(body)


def test_strict_json_accepts_bom_and_big_numbers():
    assert loads_strict(b'\xef\xbb\xbf{"a": 1e308}') == {"a": 1e308}


def test_ndjson_lines_are_numbered_from_one_and_blank_lines_skipped():
    lines = parse_ndjson(b'{"a": 1}\r\n\n  \n{"b": NaN}\n[1\n"str"\n')
    assert [(ln.line, ln.value) for ln in lines] == [(1, {"a": 1}), (4, None), (5, None), (6, "str")]
    assert "line 4" in lines[1].error and "NaN" in lines[1].error
    assert "line 5" in lines[2].error


def test_content_types():
    assert is_ndjson("application/x-ndjson") and is_ndjson("application/jsonl; charset=utf-8")
    assert not is_ndjson(None) and not is_ndjson("application/json")
    assert is_json(None) and is_json("application/json; charset=utf-8")
    assert is_json("application/merge-patch+json") and not is_json("text/plain")
