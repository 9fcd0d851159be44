"""The synchronous client: the whole HTTP API over one ``httpx.Client``."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from client.arrow import arrow_body
from client.errors import DeltamemError
from client.schema import (
    ARROW_STREAM,
    DEFAULT_URL,
    Agent,
    ForgetResult,
    IngestResult,
    PredictResult,
    RollbackResult,
    Tenant,
    VersionList,
    build,
    ingest_result,
)


def _jsonable_event(ev: dict[str, Any]) -> dict[str, Any]:
    out = dict(ev)
    if isinstance(out.get("ts"), datetime):
        out["ts"] = out["ts"].isoformat()
    if hasattr(out.get("input"), "tolist"):  # a NumPy vector
        out["input"] = out["input"].tolist()
    return out


def agent_path(agent_id: str, tail: str = "") -> str:
    """``/v1/agents/{id}{tail}`` with the id escaped."""
    return f"/v1/agents/{quote(agent_id, safe='')}{tail}"


class Client:
    """The whole HTTP API, over one ``httpx.Client``; a context manager that closes it."""

    def __init__(self, base_url: str = DEFAULT_URL, api_key: str | None = None,
                 admin_key: str | None = None, timeout: float = 60.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.admin_key = admin_key
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- plumbing -------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, key: str | None = None, json_body: Any = None,
                 content: bytes | None = None, content_type: str | None = None,
                 params: dict[str, Any] | None = None, expect_json: bool = True) -> Any:
        headers: dict[str, str] = {}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        if content_type:
            headers["Content-Type"] = content_type
        params = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, json=json_body, content=content,
                                      params=params or None, headers=headers)
        except httpx.TimeoutException as e:
            raise DeltamemError(0, "timeout", f"no answer from {self.base_url} in time ({e})") from None
        except httpx.TransportError as e:
            raise DeltamemError(0, "unreachable", f"cannot reach {self.base_url}: {e}") from None
        if resp.status_code >= 400:
            raise DeltamemError.from_response(resp)
        if not expect_json:
            return resp.text
        try:
            return resp.json()
        except ValueError:
            raise DeltamemError(resp.status_code, "bad_response",
                                f"the service answered non-JSON: {resp.text[:200]!r}") from None

    def _tenant_key(self) -> str:
        if not self.api_key:
            raise DeltamemError(0, "no_api_key", "an API key is needed (DELTAMEM_API_KEY or --key)",
                                "api_key")
        return self.api_key

    _agent_path = staticmethod(agent_path)

    # ---- tenants and agents ---------------------------------------------------------------

    def create_tenant(self, name: str) -> Tenant:
        """Create a tenant with the admin key; the result holds its API key (shown once)."""
        if not self.admin_key:
            raise DeltamemError(0, "no_admin_key", "the admin key is needed (DELTAMEM_ADMIN_KEY)",
                                "admin_key")
        return build(Tenant, self._request("POST", "/v1/tenants", key=self.admin_key,
                                            json_body={"name": name}))

    def create_agent(self, name: str, kind: str = "classifier", encoder: str = "minilm",
                     dim: int | None = None, memory: dict[str, Any] | None = None,
                     **settings: Any) -> Agent:
        """``settings``: the config's other fields as DESIGN §7 names them (``guard``,
        ``standardize``, ``input_scale``, a chat agent's ``prompt``), sent as given."""
        body: dict[str, Any] = {"name": name, "kind": kind, "encoder": encoder, **settings}
        if dim is not None:
            body["dim"] = dim
        if memory is not None:
            body["memory"] = memory
        return build(Agent, self._request("POST", "/v1/agents", key=self._tenant_key(), json_body=body))

    def list_agents(self) -> list[Agent]:
        out = self._request("GET", "/v1/agents", key=self._tenant_key())
        return [build(Agent, a) for a in out["agents"]]

    def get_agent(self, agent_id: str) -> Agent:
        return build(Agent, self._request("GET", self._agent_path(agent_id), key=self._tenant_key()))

    # ---- events and predictions -----------------------------------------------------------

    def ingest(self, agent_id: str, events: Iterable[dict[str, Any]], partial: bool = False) -> IngestResult:
        """Send events as one JSON batch (rejected whole on any invalid event unless partial)."""
        body = {"events": [_jsonable_event(e) for e in events]}
        out = self._request("POST", self._agent_path(agent_id, "/events"), key=self._tenant_key(),
                            json_body=body, params={"partial": "true" if partial else None})
        return ingest_result(out)

    def ingest_ndjson(self, agent_id: str, lines: bytes | str | Iterable[dict[str, Any]],
                      partial: bool = False) -> IngestResult:
        """Send events as NDJSON: raw bytes/text, or event dicts serialized one a line."""
        if isinstance(lines, str):
            data = lines.encode("utf-8")
        elif isinstance(lines, bytes):
            data = lines
        else:
            data = "".join(json.dumps(_jsonable_event(e), allow_nan=False) + "\n"
                           for e in lines).encode("utf-8")
        out = self._request("POST", self._agent_path(agent_id, "/events"), key=self._tenant_key(),
                            content=data, content_type="application/x-ndjson",
                            params={"partial": "true" if partial else None})
        return ingest_result(out)

    def ingest_arrow(self, agent_id: str, events: Iterable[dict[str, Any]] | Any,
                     partial: bool = False) -> IngestResult:
        """Send events as one Arrow IPC stream (:func:`arrow_body`; the compact, fast form for
        vectors): event dicts, a ``pyarrow.Table`` of the same columns, or the stream's bytes."""
        data = events if isinstance(events, bytes) else arrow_body(events)
        out = self._request("POST", self._agent_path(agent_id, "/events"), key=self._tenant_key(),
                            content=data, content_type=ARROW_STREAM,
                            params={"partial": "true" if partial else None})
        return ingest_result(out)

    def predict(self, agent_id: str, inputs: list[Any], version: int | None = None,
                min_version: int | None = None, as_of: datetime | str | None = None,
                top_k: int | None = None, wait_ms: int | None = None) -> PredictResult:
        body: dict[str, Any] = {"inputs": list(inputs)}
        if isinstance(as_of, datetime):
            as_of = as_of.isoformat()
        for k, v in (("version", version), ("min_version", min_version), ("as_of", as_of),
                     ("top_k", top_k), ("wait_ms", wait_ms)):
            if v is not None:
                body[k] = v
        out = self._request("POST", self._agent_path(agent_id, "/predict"), key=self._tenant_key(),
                            json_body=body)
        return build(PredictResult, out)

    # ---- versions -------------------------------------------------------------------------

    def versions(self, agent_id: str, limit: int | None = None, before: int | None = None) -> VersionList:
        out = self._request("GET", self._agent_path(agent_id, "/versions"), key=self._tenant_key(),
                            params={"limit": limit, "before": before})
        return build(VersionList, out)

    def rollback(self, agent_id: str, version: int) -> RollbackResult:
        return build(RollbackResult, self._request(
            "POST", self._agent_path(agent_id, "/rollback"), key=self._tenant_key(),
            json_body={"version": version}))

    def forget(self, agent_id: str, event_ids: list[str]) -> ForgetResult:
        return build(ForgetResult, self._request(
            "POST", self._agent_path(agent_id, "/forget"), key=self._tenant_key(),
            json_body={"event_ids": list(event_ids)}))

    def fork(self, agent_id: str, name: str, version: int | None = None) -> Agent:
        body: dict[str, Any] = {"name": name}
        if version is not None:
            body["version"] = version
        return build(Agent, self._request("POST", self._agent_path(agent_id, "/fork"),
                                           key=self._tenant_key(), json_body=body))

    # ---- operations -----------------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def readyz(self) -> dict[str, Any]:
        """The readiness document (raises ``DeltamemError`` with status 503 when not ready)."""
        return self._request("GET", "/readyz")

    def metrics(self) -> str:
        return self._request("GET", "/metrics", expect_json=False)
