"""Finishing touches that make ``/openapi.json`` state what the running service does.

:func:`finish` is applied once to the generated document (``workers.http.schemas.install_schemas``):

- **statuses**: every error status an operation can answer is listed (a schemathesis run
  with ``status_code_conformance`` fails on any other): the body limit (400 for a bad
  ``Content-Length``, 413) on every route, 401 on authenticated ones, 404 on ``{agent_id}``
  routes, 415/422 where a body or query is read, 409/410 where a version is named, 429 on
  ingest, 503 where the database is used;
- **limits** that are settings (events per request, inputs per predict, text length, the
  longest ``wait_ms``) are filled in from the deployment's settings;
- **chat agents** are documented only where the optional causal LM is installed (elsewhere
  the service refuses them, so the document must not offer them);
- **links** (OpenAPI 3 links) from the agent an operation creates (``POST /v1/agents``,
  ``/fork``) to the operations on it, so stateful clients and fuzzers can follow them.
"""

from __future__ import annotations

from typing import Any

from workers.http.agent_schema import NONBLANK

ERROR = {"description": "error", "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
READY = {"type": "object", "required": ["ready"], "properties": {
    "ready": {"type": "boolean"}, "reason": {"type": "string"},
    "database_error": {"type": "string"}}, "additionalProperties": {}}

# operations (method, path suffix) naming a version: 409 forgotten_events / min_version not
# reached, 410 version_thinned
_VERSIONED = ("/predict", "/rollback", "/fork", "/forget", "/release")


def _statuses(method: str, path: str, op: dict[str, Any]) -> set[int]:
    out = {400, 413}  # BodyLimit: any request (a bad or too large Content-Length)
    if not path.startswith("/v1/"):
        return out | {503} if path != "/metrics" else out
    out |= {401, 503}
    if path == "/v1/tenants":
        out |= {403}
    if "{agent_id}" in path:
        out |= {404}
    if method == "post" or op.get("parameters"):
        out |= {422}
    if method == "post":
        out |= {415}
    if method == "post" and path.endswith(_VERSIONED):
        out |= {409, 410}
    if path.endswith("/events") and method == "post":
        out |= {429}
    return out


def _fill_limits(schemas: dict[str, Any], settings: Any) -> None:
    if settings is None:
        return
    text = {"type": "string", "minLength": 1, "maxLength": settings.max_input_chars,
            "pattern": NONBLANK}
    vector = {"type": "array", "items": {"type": "number"}, "minItems": 1}
    one_input = {"anyOf": [text, vector], "description": 'text (encoder "minilm") or a vector '
                 'of dim finite numbers, not all zero (encoder "none")'}
    ev = schemas["Event"]["properties"]
    ev["input"] = one_input
    schemas["EventBatch"]["properties"]["events"]["maxItems"] = settings.max_events_per_request
    pr = schemas["PredictRequest"]["properties"]
    pr["inputs"] = {"type": "array", "items": one_input, "minItems": 1,
                    "maxItems": settings.max_predict_inputs}
    wait = getattr(settings, "max_wait_ms", None)
    if wait is not None:
        for alt in pr["wait_ms"].get("anyOf", [pr["wait_ms"]]):
            if alt.get("type") == "integer":
                alt["maximum"] = wait


def _op_ids(paths: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(m, p): op["operationId"] for p, item in paths.items() for m, op in item.items()
            if isinstance(op, dict) and "operationId" in op}


def _links(paths: dict[str, Any]) -> dict[str, Any]:
    ids = _op_ids(paths)
    agent = "$response.body#/id"
    want = {"GetAgent": ("get", "/v1/agents/{agent_id}", None),
            "IngestEvents": ("post", "/v1/agents/{agent_id}/events", None),
            "Predict": ("post", "/v1/agents/{agent_id}/predict", None),
            "ListVersions": ("get", "/v1/agents/{agent_id}/versions", None),
            # a new agent has one version, its head: the links name it, so they succeed
            "RollbackToHead": ("post", "/v1/agents/{agent_id}/rollback",
                               {"version": "$response.body#/head_version"}),
            "ForkAtHead": ("post", "/v1/agents/{agent_id}/fork",
                           {"name": "fork", "version": "$response.body#/head_version"})}
    out: dict[str, Any] = {}
    for name, (method, path, body) in want.items():
        if (method, path) not in ids:
            continue
        link: dict[str, Any] = {"operationId": ids[(method, path)],
                                "parameters": {"agent_id": agent}}
        if body is not None:
            link["requestBody"] = body
        out[name] = link
    return out


def chat_available() -> bool:
    """Whether this deployment can run chat agents (the optional causal LM is installed)."""
    from workers.contract import ServiceError
    from workers.service import _check_chat_backbone

    try:
        _check_chat_backbone()
    except ServiceError:
        return False
    return True


def _drop_chat(schemas: dict[str, Any]) -> None:
    """Without the causal LM a chat agent is refused (422 backbone_unavailable): say so."""
    body = schemas.get("AgentCreate", {})
    body["anyOf"] = [v for v in body.get("anyOf", []) if not v["$ref"].endswith(("/ChatText",
                                                                                  "/ChatVector"))]
    body["description"] = (body.get("description", "") + " Chat agents are not available in "
                           "this deployment (the optional causal LM is not installed).")
    for name in ("ChatText", "ChatVector", "ChatMemoryDelta", "ChatMemoryRls",
                 "ChatMemoryDefault", "Prompt"):
        schemas.pop(name, None)


def finish(openapi: dict[str, Any], settings: Any = None) -> dict[str, Any]:
    """Statuses, setting-dependent limits and links (see the module doc), in place."""
    paths = openapi.get("paths", {})
    if not chat_available():
        _drop_chat(openapi.get("components", {}).get("schemas", {}))
    for path, item in paths.items():
        for method, op in item.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            for status in sorted(_statuses(method, path, op)):
                op["responses"].setdefault(str(status), ERROR)
    for path in ("/readyz", "/healthz"):
        for code in ("200", "503"):
            resp = paths.get(path, {}).get("get", {}).get("responses", {}).get(code)
            if resp is not None:
                resp["content"] = {"application/json": {"schema": READY if path == "/readyz"
                                   else {"type": "object", "required": ["status"]}}}
                resp.setdefault("description", "status")
    _fill_limits(openapi.get("components", {}).get("schemas", {}), settings)
    links = _links(paths)
    for method, path in (("post", "/v1/agents"), ("post", "/v1/agents/{agent_id}/fork")):
        resp = paths.get(path, {}).get(method, {}).get("responses", {}).get("201")
        if resp is not None:
            resp["links"] = links
    return openapi
