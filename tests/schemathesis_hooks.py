"""Schemathesis hooks for ``tests/test_schemathesis.py`` (loaded through ``SCHEMATHESIS_HOOKS``).

Two rules of the API cannot be written in OpenAPI, so generated cases are fitted to them:

- the create-agent body's ``input_scale`` holds exactly ``dim`` numbers
  (``workers.http.agent_schema``): a generated body whose ``input_scale`` is otherwise valid
  gets its length fitted to ``dim`` (its numbers repeated), or loses the key when ``dim`` is
  large; nothing else is touched, so a negative case stays negative;
- ``POST /v1/agents/{agent_id}/events?partial=true`` accepts a batch and lists each invalid
  event in ``rejected`` (DESIGN §7): a body that breaks the event schema is then answered 202
  by design. A *negative* case (the body breaks the schema) is sent with ``partial=false``,
  where the whole batch must be refused; positive cases keep the generated ``partial``.
"""

from __future__ import annotations

from typing import Any

import schemathesis

MAX_REPEAT = 256


def _fit_scale(body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    scale, dim = body.get("input_scale"), _as_int(body.get("dim"))
    if not isinstance(scale, list) or not scale or dim is None or len(scale) == dim:
        return body
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1e6
               for v in scale):
        return body  # (an invalid scale is what makes this case negative: keep it)
    out = dict(body)
    if dim <= MAX_REPEAT:
        out["input_scale"] = [scale[i % len(scale)] for i in range(dim)]
    else:
        del out["input_scale"]
    return out


def _negative_body(case: Any) -> bool:
    meta = getattr(case, "meta", None)
    components = getattr(meta, "components", None) or {}
    for location, info in components.items():
        if "body" in str(location).lower() and getattr(info.mode, "is_negative", False):
            return True
    return False


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Applied to every request of every phase just before it is sent; schemathesis then
    re-checks whether the edited case is positive or negative."""
    op = case.operation
    if op.method.upper() == "POST" and op.path == "/v1/agents":
        case.body = _fit_scale(_small(case.body))
    if op.method.upper() == "POST" and _stateful(case) and op.path.endswith(VERSIONED) \
            and isinstance(case.body, dict) and _valid_int(case.body.get("version")):
        case.body = {**case.body, "version": 0}
    if op.method.upper() == "POST" and op.path.endswith("/events") \
            and isinstance(case.query, dict) and case.query.get("partial") in PARTIAL_TRUE \
            and _negative_body(case):
        case.query = {**case.query, "partial": "false"}


VERSIONED = ("/fork", "/rollback", "/predict")


def _stateful(case: Any) -> bool:
    """A case of the stateful phase: it follows a link from an agent just created (head 0), so
    a generated ``version`` above 0 is 404 ``unknown_version`` by contract (departure 2 of
    tests/test_schemathesis.py), which the resource check would take for a missing agent; such
    a ``version`` becomes 0 (a valid one stays valid, an invalid one is not touched)."""
    phase = getattr(getattr(case, "meta", None), "phase", None)
    return str(getattr(phase, "name", "")) == "stateful"


def _small(body: Any) -> Any:
    """CI time: a valid ``dim`` or ``memory.lift_dim`` above :data:`SMALL` becomes ``SMALL``.
    An agent at the documented maxima (65,536 lifted features, an rls matrix of 4096²
    float64 = 128 MiB) takes seconds of CPU and that many bytes of storage to create; the
    maxima themselves are tested in ``tests/test_faults_edges.py``."""
    if not isinstance(body, dict):
        return body
    out = dict(body)
    vector = out.get("encoder", "minilm" if out.get("kind") == "chat" else "none") == "none"
    if vector and _valid_int(out.get("dim")) and out["dim"] > SMALL:
        out["dim"] = SMALL
    mem = out.get("memory")
    if isinstance(mem, dict) and _valid_int(mem.get("lift_dim")) and mem["lift_dim"] > SMALL:
        out["memory"] = {**mem, "lift_dim": SMALL}
    return out


def _valid_int(v: Any) -> bool:
    return _as_int(v) is not None


def _as_int(v: Any) -> int | None:
    """``v`` as a positive integer (JSON Schema counts ``26641.0`` as one), else None."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else None


SMALL = 64
PARTIAL_TRUE = ("true", "1", "yes", True)
