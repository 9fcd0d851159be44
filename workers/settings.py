"""The one typed settings object of a deployment.

Values come from keyword arguments (CLI flags), then ``DELTAMEM_*`` environment variables,
then an optional ``.env``-style file named by ``DELTAMEM_SETTINGS_FILE``, then the defaults
below (the embedded defaults: SQLite in the working directory, local Ray on 127.0.0.1,
HTTP on 127.0.0.1:8000).

Examples
--------
>>> s = Settings(port=9001, database_url="sqlite:///x.db")
>>> s.port, s.host
(9001, '127.0.0.1')
"""

from __future__ import annotations

import os

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DELTAMEM_",
        env_file=os.environ.get("DELTAMEM_SETTINGS_FILE"),
        extra="ignore",
    )

    # where things live
    database_url: str = "sqlite:///deltamem.db"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_key: SecretStr | None = None  # creates tenants; never logged

    # client side (the CLI's client commands and the client package)
    url: str = "http://127.0.0.1:8000"  # DELTAMEM_URL: where a client finds the service
    api_key: SecretStr | None = None  # DELTAMEM_API_KEY: a tenant's key; never logged

    # Ray (DESIGN §5: loopback, small)
    ray_address: str | None = None  # None: start a local cluster; "auto" or an address: join
    ray_num_cpus: int = Field(2, ge=1)
    ray_object_store_mb: int = Field(512, ge=64)
    # a task's argument or result up to this size travels inside the task's message, not
    # through the object store (Ray's max_direct_call_object_size, 100 KiB by default): a
    # request's 1.5 MB block then costs the raylet nothing (benchmarks/EVAL.md, "Ray inline")
    ray_inline_kb: int = Field(4096, ge=0, le=8192)
    # Ray's task events (the dashboard's task list, ``ray.timeline()``) for the service's
    # actors. Off, as Ray Serve has them for its replicas: otherwise every actor call leaves an
    # event in the GCS, whose memory then grows with the calls up to Ray's cap of 100,000
    # tasks (~4 MB a minute in the soak; benchmarks/EVAL.md, "Task events")
    ray_task_events: bool = False
    ray_namespace: str = "deltamem"
    learner_shards: int = Field(1, ge=1, le=64)
    serving_replicas: int = Field(1, ge=1, le=64)
    http_backend: str = Field("uvicorn", pattern="^(uvicorn|serve)$")
    # HTTP server processes of the uvicorn backend, on one socket (workers/http_workers.py)
    http_workers: int = Field(1, ge=1, le=64)

    # learner micro-batching and backpressure
    batch_max_events: int = Field(64, ge=1, le=100_000)  # a batch this full commits at once
    # under a backlog, everything already pending (up to this many) goes into one commit:
    # it adds no latency (those events are waiting anyway) and amortises the SQL commit
    batch_burst_events: int = Field(512, ge=1, le=100_000)
    batch_max_ms: float = Field(50.0, ge=0.0)  # least time from one round's end to the next's start
    queue_max_events: int = Field(100_000, ge=1)  # per learner shard; beyond: 429
    delta_dtype: str = Field("float64", pattern="^(float64|float32|float16)$")
    # the text encoder actor: CPUs reserved for it (Ray num_cpus) and torch threads it runs
    encoder_cpus: int = Field(1, ge=0, le=64)

    # agents whose tenant and config the HTTP process keeps (fixed at creation, so never stale)
    agent_cache_entries: int = Field(10_000, ge=1)
    # valid tenant keys remembered this long (a revoked key is refused after at most this)
    auth_cache_s: float = Field(1.0, ge=0.0)
    auth_cache_entries: int = Field(10_000, ge=1)

    # serving cache
    cache_max_bytes: int = Field(512 * 1024 * 1024, ge=1024)
    # head states the HTTP process keeps to answer predicts at the head itself
    # (workers/head_cache.py; 0 turns it off: every predict goes to a serving actor)
    head_cache_bytes: int = Field(64 * 1024 * 1024, ge=0)
    # how the HTTP process encodes a text predict it answers at the head (workers/text_head.py):
    # "local" its own warm MiniLM copy, "actor" the encoder actor, "off" the serving actor answers
    text_head_encoder: str = Field("local", pattern="^(local|actor|off)$")
    # head states a learner shard keeps in memory (least recently used go first, reloaded
    # from the store on their next event); an rls agent with a 3072-d float32 lift is 40 MB
    learner_cache_bytes: int = Field(1024 * 1024 * 1024, ge=1024)

    # request limits (DESIGN §7)
    max_body_bytes: int = Field(16 * 1024 * 1024, ge=1024)
    max_events_per_request: int = Field(10_000, ge=1)
    max_input_chars: int = Field(10_000, ge=1)
    max_predict_inputs: int = Field(1_000, ge=1)
    default_wait_ms: int = Field(5000, ge=0)
    max_wait_ms: int = Field(60_000, ge=0)  # the longest wait_ms a predict may ask for

    # scheduled jobs
    snapshot_every_versions: int = Field(100, ge=1)
    snapshot_every_s: float = Field(300.0, gt=0)
    retention_window_s: float = Field(7 * 24 * 3600.0, ge=0)  # every version kept this long
    retention_interval_s: float = Field(600.0, gt=0)  # how often the retention job runs
    # snapshots older than the window are thinned to one per this many seconds (keeping those
    # kept versions build on); None: every snapshot is kept (storage/repository/retention.py)
    retention_snapshot_spacing_s: float | None = Field(None, gt=0)
    # events older than this that a kept snapshot covers are deleted by the retention job
    # (None: every event is kept forever; storage/repository/event_retention.py)
    event_retention_s: float | None = Field(None, ge=0)
    # versions older than this are deleted, rows and all, once a snapshot on the head's path
    # covers them (None: every version's row is kept; storage/repository/horizon.py)
    version_history_s: float | None = Field(None, ge=0)
    health_interval_s: float = Field(30.0, gt=0)  # how often the health probe job runs

    # timeouts and retries of the workers (one place; DESIGN asks for one settings object)
    actor_call_timeout_s: float = Field(300.0, gt=0)  # a call into an actor (a predict: + wait)
    startup_timeout_s: float = Field(120.0, gt=0)  # the actors' first answers at start
    probe_timeout_s: float = Field(5.0, gt=0)  # readiness, /metrics and stop probes
    learner_backoff_s: float = Field(0.1, gt=0)  # a failed micro-batch is retried after this,
    learner_backoff_max_s: float = Field(5.0, gt=0)  # doubling up to this
    retry_after_ms: int = Field(200, ge=0)  # the hint of a 429 backpressure answer
    scheduler_enabled: bool = True

    def public_dict(self) -> dict[str, object]:
        """Settings without secrets, for logs and ``/readyz``."""
        d = self.model_dump()
        d["admin_key"] = "***" if self.admin_key else None
        d["api_key"] = "***" if self.api_key else None
        return d
