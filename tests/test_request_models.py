"""The request models (workers.http.request_models) are the validation of bodies and query
strings: what they accept, the field each refusal names, and the answer the edge makes of it
(workers.http.errors: 422 invalid_input naming the field, 413 for too many inputs)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workers.http.errors import error_answer
from workers.http.request_models import (
    EventsQuery,
    ForgetRequest,
    ForkRequest,
    IngestBatch,
    IngestQuery,
    PredictRequest,
    QualityQuery,
    ReleaseRequest,
    RollbackRequest,
    TenantCreate,
    VersionsQuery,
)
from workers.settings import Settings
from workers.validation import MAX_VERSION

S = Settings(max_predict_inputs=2, max_wait_ms=300, max_events_per_request=3)


def answer_of(model, data, settings=S) -> tuple[int, str, str]:
    with pytest.raises(ValidationError) as e:
        model.model_validate(data, context={"settings": settings})
    err = error_answer(e.value)
    assert err is not None and err.message
    return err.status, err.code, err.field


def field_of(model, data) -> str:
    status, code, field = answer_of(model, data)
    assert (status, code) == (422, "invalid_input"), (status, code)
    return field


def test_small_bodies():
    assert RollbackRequest.model_validate({"version": 0}).version == 0
    assert field_of(RollbackRequest, {"version": "1"}) == "version"
    assert field_of(RollbackRequest, {}) == "version"
    assert ForgetRequest.model_validate({"event_ids": ["a", "b", "a"]}).event_ids == ["a", "b"]
    assert field_of(ForgetRequest, {"event_ids": []}) == "event_ids"
    assert field_of(ForgetRequest, {"event_ids": ["a", 1]}) == "event_ids[1]"
    assert ForkRequest.model_validate({"name": "f"}).version is None
    assert ForkRequest.model_validate({"name": "f", "version": 3}).version == 3
    assert field_of(ForkRequest, {"name": ""}) == "name"
    assert field_of(ForkRequest, {"name": "f", "version": -2}) == "version"
    assert field_of(TenantCreate, {"name": " \t"}) == "name"
    assert field_of(TenantCreate, {"name": "x" * 201}) == "name"
    assert field_of(TenantCreate, []) == "body"
    assert ReleaseRequest.model_validate({}).event_ids is None
    assert field_of(ReleaseRequest, {"event_ids": []}) == "event_ids"


@pytest.mark.parametrize("model, body, name", [
    (RollbackRequest, {"version": 1.0}, "version"), (ForkRequest, {"name": "f", "version": 2.0}, "version"),
    (PredictRequest, {"inputs": ["a"], "top_k": 3.0}, "top_k"),
    (PredictRequest, {"inputs": ["a"], "wait_ms": 10.0}, "wait_ms")])
def test_integral_floats_are_integers(model, body, name):
    assert getattr(model.model_validate(body, context={"settings": S}), name) == int(body[name])


@pytest.mark.parametrize("value", [True, "3", 1.5, -1, MAX_VERSION + 1, None, [1], float("nan"),
                                   float("inf")])
def test_versions_take_only_integers_in_range(value):
    assert field_of(RollbackRequest, {"version": value}) == "version"


@pytest.mark.parametrize("text, ok", [("a", True), (" a ", True), ("", False), ("  ", False),
                                      ("a\ud800", False), ("\udfff", False), ("a\x00b", False)])
def test_strings_are_non_blank_unicode_text(text, ok):
    if ok:
        assert ForkRequest.model_validate({"name": text}).name == text
        assert ForgetRequest.model_validate({"event_ids": [text]}).event_ids == [text]
    else:
        assert field_of(ForkRequest, {"name": text}) == "name"
        assert field_of(ForgetRequest, {"event_ids": ["e", text]}) == "event_ids[1]"


def test_predict_body():
    out = PredictRequest.model_validate({"inputs": ["a", "b"], "min_version": 2, "top_k": 3,
                                         "as_of": "2024-01-01T00:00:00+02:00"},
                                        context={"settings": S})
    assert out.inputs == ["a", "b"] and out.min_version == 2 and out.top_k == 3
    assert out.wait_ms is None and out.as_of.isoformat() == "2023-12-31T22:00:00+00:00"
    for body, field in [({}, "inputs"), ({"inputs": []}, "inputs"), ({"inputs": "a"}, "inputs"),
                        ({"inputs": ["a"], "topk": 3}, "topk"),  # unknown: named, not dropped
                        ({"inputs": ["a"], "version": -1}, "version"),
                        ({"inputs": ["a"], "version": 1.5}, "version"),
                        ({"inputs": ["a"], "min_version": "3"}, "min_version"),
                        ({"inputs": ["a"], "top_k": 0}, "top_k"),
                        ({"inputs": ["a"], "wait_ms": -1}, "wait_ms"),
                        ({"inputs": ["a"], "wait_ms": 301}, "wait_ms"),  # the setting's bound
                        ({"inputs": ["a"], "as_of": "soon"}, "as_of"),
                        ({"inputs": ["a"], "as_of": "9999-12-31T23:59:59-05:00"}, "as_of")]:
        assert field_of(PredictRequest, body) == field, body
    assert answer_of(PredictRequest, {"inputs": ["a", "b", "c"], "version": -1}) == (
        413, "too_many_inputs", "inputs")


def test_query_parsing():
    assert VersionsQuery.model_validate({"limit": "5"}).limit == 5
    assert VersionsQuery.model_validate({"limit": "10.0", "before": "1e2"}).before == 100
    assert VersionsQuery.model_validate({}).limit is None
    for q in ({"limit": "x"}, {"limit": "0"}, {"limit": ""}, {"limit": "1.5"}, {"limit": "nan"}):
        assert field_of(VersionsQuery, q) == "limit", q
    assert IngestQuery.model_validate({"partial": "true"}).partial
    assert not IngestQuery.model_validate({"partial": "0"}).partial
    assert not IngestQuery.model_validate({}).partial
    assert field_of(IngestQuery, {"partial": "maybe"}) == "partial"
    assert field_of(IngestQuery, {"partial": ""}) == "partial"
    assert EventsQuery.model_validate({"status": "pending", "after_seq": "3"}).after_seq == 3
    assert field_of(EventsQuery, {}) == "status"
    assert field_of(EventsQuery, {"status": "lost"}) == "status"
    q = QualityQuery.model_validate({})
    assert (q.window, q.limit, q.before) == (500, 100, None)
    assert field_of(QualityQuery, {"window": "0"}) == "window"


def test_events_list_shape_and_count():
    assert IngestBatch.model_validate({"events": [1, 2]}, context={"settings": S}).events == [1, 2]
    assert field_of(IngestBatch, {"events": []}) == "events"
    assert field_of(IngestBatch, {}) == "events"
    assert field_of(IngestBatch, {"events": {"a": 1}}) == "events"
    assert field_of(IngestBatch, []) == "body"
    assert answer_of(IngestBatch, {"events": [1, 2, 3, 4]}) == (413, "too_many_events", "events")
