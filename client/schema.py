"""The answers of DESIGN §7 as Pydantic models: THE shape of each, for every side.

The client parses the service's JSON with them (:func:`build`: fields the service adds later
are ignored); the service builds the agent JSON with :class:`Agent` (``workers.service``); the
OpenAPI document states them (``workers.http.schemas``). Imports nothing of the server (the
import graph test checks it), only Pydantic.

Examples
--------
>>> build(Rejected, {"index": 2, "error": "bad", "later": 1})
Rejected(index=2, error='bad', line=None)
>>> build(PredictResult, {"version": 3, "predictions": [{"label": "a", "score": 0.5,
...                                                       "top": [["a", 0.5]]}]}).predictions[0].top
[('a', 0.5)]
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_URL = "http://127.0.0.1:8000"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_COLUMNS = ("id", "input", "target", "beta", "ts", "speaker")
M = TypeVar("M", bound="Answer")


class Answer(BaseModel):
    """An answer of the service: immutable; unknown fields ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")


def build(cls: type[M], d: dict[str, Any]) -> M:
    """``cls`` from an answer's dict, keeping only the fields ``cls`` has."""
    return cls.model_validate(d)


class Tenant(Answer):
    id: str
    name: str
    api_key: str = Field(repr=False, description="shown once; stored hashed")


class AgentBase(Answer):
    agent_id: str
    version: int


class Agent(Answer):
    id: str
    name: str
    kind: str
    encoder: str
    dim: int
    memory: dict[str, Any]
    head_version: int
    events_received: int
    events_applied: int
    events_rejected: int = Field(description="accepted events the learner could not apply "
                                 "(GET /v1/agents/{id}/events?status=rejected lists them)")
    events_held: int = Field(0, description="accepted events a quarantine holds (POST /release)")
    labels: list[str]
    created_at: str | None = Field(None, description="ISO-8601, UTC")
    base: AgentBase | None = Field(None, description="a fork's source agent and version")
    guard: dict[str, Any] | None = Field(None, description="the guard policy in force (null: none)")
    standardize: bool | None = Field(None, description="vector agents: inputs standardised online")
    input_scale: list[float] | None = Field(None, description="vector agents: per-feature scale")
    prompt: dict[str, Any] | None = Field(None, description="chat agents: what the prompt holds "
                                          "(top_k retrieved turns, recent turns, hits_last)")


class AgentList(Answer):
    agents: list[Agent]


class Rejected(Answer):
    index: int
    error: str
    line: int | None = None


class IngestResult(Answer):
    accepted: int
    duplicates: int
    rejected: list[Rejected]


class Prediction(Answer):
    label: str | None = None
    score: float | None = None
    top: list[tuple[str, float]] | None = None
    text: str | None = Field(None, description="chat agents: the reply")


class PredictResult(Answer):
    version: int
    predictions: list[Prediction]


class VersionInfo(Answer):
    version: int
    parent: int | None
    kind: str
    created_at: str
    events: int
    checksum: str
    delta_norm: float | None
    hits: int | None = Field(None, description="events of this version predicted right before "
                             "they were learnt (null: not tested)")
    accuracy: float | None = Field(None, description="running prequential accuracy up to it")


class VersionList(Answer):
    head: int
    versions: list[VersionInfo]


class RollbackResult(Answer):
    version: int
    kind: Literal["rollback"]
    state_of: int
    checksum: str


class ForgetResult(Answer):
    version: int
    kind: Literal["forget"]
    events_removed: int


def ingest_result(out: dict[str, Any]) -> IngestResult:
    return IngestResult.model_validate(out)
