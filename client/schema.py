"""What the client sends and reads: the wire constants and the typed results of DESIGN §7.

Imports nothing of the server (the import graph test checks it): the dataclasses are the
answers' shapes as the service documents them, built leniently (fields the service adds
later are ignored).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

DEFAULT_URL = "http://127.0.0.1:8000"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
ARROW_COLUMNS = ("id", "input", "target", "beta", "ts", "speaker")
T = TypeVar("T")


def build(cls: type[T], d: dict[str, Any]) -> T:
    """``cls`` from an answer's dict, keeping only the fields ``cls`` has."""
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


def ingest_result(out: dict[str, Any]) -> IngestResult:
    rej = [Rejected(index=r["index"], error=r.get("error", ""), line=r.get("line"))
           for r in out.get("rejected", [])]
    return IngestResult(accepted=out["accepted"], duplicates=out["duplicates"], rejected=rej)
