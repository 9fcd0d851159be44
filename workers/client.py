"""A synchronous Python client for the deltamem HTTP API (DESIGN §7).

Every method returns a typed result (dataclasses below) and raises :class:`DeltamemError` for
an error answer (its ``status``, ``code``, ``message``, ``field`` and the whole ``body``) or
when the service cannot be reached (``status`` 0, code ``unreachable``).

Examples
--------
>>> with Client("http://127.0.0.1:8000", admin_key="admin") as admin:  # doctest: +SKIP
...     key = admin.create_tenant("acme").api_key
>>> with Client("http://127.0.0.1:8000", api_key=key) as c:  # doctest: +SKIP
...     agent = c.create_agent("intents", kind="classifier", encoder="minilm")
...     c.ingest(agent.id, [{"id": "e1", "input": "hi there", "target": "greet"}])
...     c.predict(agent.id, ["hello"], min_version=1).predictions[0].label
'greet'
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
T = TypeVar("T")


class DeltamemError(Exception):
    """An error answer from the service (or no answer: ``status`` 0)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body

    @classmethod
    def from_response(cls, resp: httpx.Response) -> DeltamemError:
        """Map an error response (the ``{"error": {...}}`` body, or anything else) to an error."""
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return cls(resp.status_code, str(err.get("code", "error")),
                       str(err.get("message", "")), err.get("field"), body)
        text = body if isinstance(body, str) else json.dumps(body)
        return cls(resp.status_code, f"http_{resp.status_code}",
                   (text or resp.reason_phrase)[:500], None, body)


def _build(cls: type[T], d: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    api_key: str = field(repr=False)


@dataclass(frozen=True)
class Agent:
    id: str
    name: str
    kind: str
    encoder: str
    dim: int
    memory: dict[str, Any]
    head_version: int
    events_received: int
    events_applied: int
    labels: list[str] = field(default_factory=list)
    events_rejected: int = 0


@dataclass(frozen=True)
class Rejected:
    index: int
    error: str
    line: int | None = None


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    rejected: list[Rejected]


@dataclass(frozen=True)
class Prediction:
    label: str | None = None
    score: float | None = None
    top: list[tuple[str, float]] | None = None
    text: str | None = None  # chat agents


@dataclass(frozen=True)
class PredictResult:
    version: int
    predictions: list[Prediction]


@dataclass(frozen=True)
class VersionInfo:
    version: int
    parent: int | None
    kind: str
    created_at: str
    events: int
    checksum: str
    delta_norm: float | None = None


@dataclass(frozen=True)
class VersionList:
    head: int
    versions: list[VersionInfo]


@dataclass(frozen=True)
class RollbackResult:
    version: int
    kind: str
    state_of: int
    checksum: str


@dataclass(frozen=True)
class ForgetResult:
    version: int
    kind: str
    events_removed: int


def _jsonable_event(ev: dict[str, Any]) -> dict[str, Any]:
    out = dict(ev)
    if isinstance(out.get("ts"), datetime):
        out["ts"] = out["ts"].isoformat()
    if hasattr(out.get("input"), "tolist"):  # a NumPy vector
        out["input"] = out["input"].tolist()
    return out


ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_COLUMNS = ("id", "input", "target", "beta", "ts", "speaker")


def arrow_body(events: Iterable[dict[str, Any]] | Any) -> bytes:
    """Events (dicts of DESIGN §7) or a ``pyarrow.Table`` → an Arrow IPC stream body.

    Vector inputs of one length become ``fixed_size_list<float32>`` when they are float32
    arrays, else ``fixed_size_list<float64>`` (Python floats are doubles: the numbers sent are
    the numbers given); lists of different lengths are sent as ``list<float64>`` (the service
    names the rows that are wrong); texts become a ``string`` column. Columns other than
    ``id, input, target, beta, ts, speaker`` are not sent. A vector input holding anything but
    numbers raises ``ValueError`` (JSON would name it; Arrow would read ``True`` as 1.0).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    if isinstance(events, pa.Table):
        table = events
    else:
        evs = list(events)
        cols: dict[str, Any] = {}
        xs = [e.get("input") for e in evs]
        if xs and all(isinstance(x, (list, tuple, np.ndarray)) for x in xs):
            for i, x in enumerate(xs):  # NumPy would read True or "1" as 1.0: JSON does not
                if not isinstance(x, np.ndarray) and not {int, float}.issuperset(map(type, x)):
                    raise ValueError(f"events[{i}].input: not all numbers (send it as JSON)")
            f32 = all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in xs)
            dt = np.float32 if f32 else np.float64
            sizes = {len(x) for x in xs}
            if len(sizes) == 1:
                flat = np.concatenate([np.asarray(x, dtype=dt).ravel() for x in xs])  # (n*dim,)
                cols["input"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), sizes.pop())
            else:
                cols["input"] = pa.array([np.asarray(x, dtype=dt) for x in xs],
                                         pa.list_(pa.from_numpy_dtype(dt)))
        else:
            cols["input"] = pa.array(xs, pa.string())
        for name in ("id", "target", "speaker"):
            if any(name in e for e in evs):
                cols[name] = pa.array([e.get(name) for e in evs], pa.string())
        if any("beta" in e for e in evs):
            cols["beta"] = pa.array([e.get("beta") for e in evs], pa.float64())
        if any("ts" in e for e in evs):
            ts = [e.get("ts") for e in evs]
            cols["ts"] = pa.array([t.isoformat() if isinstance(t, datetime) else t for t in ts],
                                  pa.string())
        table = pa.table(cols)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


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

    def _agent_path(self, agent_id: str, tail: str = "") -> str:
        return f"/v1/agents/{quote(agent_id, safe='')}{tail}"

    # ---- tenants and agents ---------------------------------------------------------------

    def create_tenant(self, name: str) -> Tenant:
        """Create a tenant with the admin key; the result holds its API key (shown once)."""
        if not self.admin_key:
            raise DeltamemError(0, "no_admin_key", "the admin key is needed (DELTAMEM_ADMIN_KEY)",
                                "admin_key")
        return _build(Tenant, self._request("POST", "/v1/tenants", key=self.admin_key,
                                            json_body={"name": name}))

    def create_agent(self, name: str, kind: str = "classifier", encoder: str = "minilm",
                     dim: int | None = None, memory: dict[str, Any] | None = None) -> Agent:
        body: dict[str, Any] = {"name": name, "kind": kind, "encoder": encoder}
        if dim is not None:
            body["dim"] = dim
        if memory is not None:
            body["memory"] = memory
        return _build(Agent, self._request("POST", "/v1/agents", key=self._tenant_key(), json_body=body))

    def list_agents(self) -> list[Agent]:
        out = self._request("GET", "/v1/agents", key=self._tenant_key())
        return [_build(Agent, a) for a in out["agents"]]

    def get_agent(self, agent_id: str) -> Agent:
        return _build(Agent, self._request("GET", self._agent_path(agent_id), key=self._tenant_key()))

    # ---- events and predictions -----------------------------------------------------------

    def ingest(self, agent_id: str, events: Iterable[dict[str, Any]], partial: bool = False) -> IngestResult:
        """Send events as one JSON batch (rejected whole on any invalid event unless partial)."""
        body = {"events": [_jsonable_event(e) for e in events]}
        out = self._request("POST", self._agent_path(agent_id, "/events"), key=self._tenant_key(),
                            json_body=body, params={"partial": "true" if partial else None})
        return _ingest_result(out)

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
        return _ingest_result(out)

    def ingest_arrow(self, agent_id: str, events: Iterable[dict[str, Any]] | Any,
                     partial: bool = False) -> IngestResult:
        """Send events as one Arrow IPC stream (:func:`arrow_body`; the compact, fast form for
        vectors): event dicts, a ``pyarrow.Table`` of the same columns, or the stream's bytes."""
        data = events if isinstance(events, bytes) else arrow_body(events)
        out = self._request("POST", self._agent_path(agent_id, "/events"), key=self._tenant_key(),
                            content=data, content_type=ARROW_STREAM,
                            params={"partial": "true" if partial else None})
        return _ingest_result(out)

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
        preds = [Prediction(label=p.get("label"), score=p.get("score"),
                            top=[(str(a), float(b)) for a, b in p["top"]] if p.get("top") else None,
                            text=p.get("text")) for p in out["predictions"]]
        return PredictResult(version=out["version"], predictions=preds)

    # ---- versions -------------------------------------------------------------------------

    def versions(self, agent_id: str, limit: int | None = None, before: int | None = None) -> VersionList:
        out = self._request("GET", self._agent_path(agent_id, "/versions"), key=self._tenant_key(),
                            params={"limit": limit, "before": before})
        return VersionList(head=out["head"], versions=[_build(VersionInfo, v) for v in out["versions"]])

    def rollback(self, agent_id: str, version: int) -> RollbackResult:
        return _build(RollbackResult, self._request(
            "POST", self._agent_path(agent_id, "/rollback"), key=self._tenant_key(),
            json_body={"version": version}))

    def forget(self, agent_id: str, event_ids: list[str]) -> ForgetResult:
        return _build(ForgetResult, self._request(
            "POST", self._agent_path(agent_id, "/forget"), key=self._tenant_key(),
            json_body={"event_ids": list(event_ids)}))

    def fork(self, agent_id: str, name: str, version: int | None = None) -> Agent:
        body: dict[str, Any] = {"name": name}
        if version is not None:
            body["version"] = version
        return _build(Agent, self._request("POST", self._agent_path(agent_id, "/fork"),
                                           key=self._tenant_key(), json_body=body))

    # ---- operations -----------------------------------------------------------------------

    def healthz(self) -> dict[str, Any]:
        return self._request("GET", "/healthz")

    def readyz(self) -> dict[str, Any]:
        """The readiness document (raises ``DeltamemError`` with status 503 when not ready)."""
        return self._request("GET", "/readyz")

    def metrics(self) -> str:
        return self._request("GET", "/metrics", expect_json=False)


def _ingest_result(out: dict[str, Any]) -> IngestResult:
    rej = [Rejected(index=r["index"], error=r.get("error", ""), line=r.get("line"))
           for r in out.get("rejected", [])]
    return IngestResult(accepted=out["accepted"], duplicates=out["duplicates"], rejected=rej)
