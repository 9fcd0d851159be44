"""Agents: create (version 0 = the initial state, stored as a snapshot), look up (a tenant
mismatch is "not found"), list, and fork (a new agent whose version 0 is another agent's
version, inheriting that version's event history as copied rows)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import undefer_group

from agent.memory.delta import state_checksum
from storage import jsoncodec
from storage.errors import (
    AgentNotFound,
    ForgottenEvents,
    InputError,
    NotFound,
    VersionThinned,
)
from storage.models import Agent, Event, Tenant, Version, agent_key_of
from storage.repository._base import Core, check_checksum, chunks, new_agent_key
from storage.repository.event_inputs import copy_for_fork
from storage.repository.events import Events
from storage.repository.graph import VersionGraph
from storage.repository.state import States, check_state
from storage.repository.tenants import check_name
from storage.repository.versions import Versions


def new_agent_id() -> str:
    return "ag_" + uuid.uuid4().hex


def _check_config(config: Any) -> dict[str, Any]:
    """``config`` when the store's JSON encoder takes it (no NaN, no lone surrogate)."""
    if not isinstance(config, dict):
        raise InputError("config", "expected an object")
    try:
        jsoncodec.dumps(config)
    except (TypeError, ValueError) as exc:
        raise InputError("config", f"not storable as JSON: {exc}") from exc
    return config


class Agents:
    """Agents: create, look up, list and fork."""

    def __init__(self, core: Core, graph: VersionGraph, states: States, versions: Versions,
                 events: Events) -> None:
        self.core = core
        self.graph = graph
        self.states = states
        self.versions = versions
        self.events = events
        self.session = core.session

    def create_agent(self, tenant_id: str, name: str, config: dict[str, Any],
                     layers: dict[str, np.ndarray], labels: list[str], checksum: str, *,
                     created_at: datetime | None = None) -> Agent:
        """A new agent at version 0 (kind ``create``) whose state is ``(layers, labels)``
        (its empty state, or a base fitted offline); replays after a forget start here."""
        check_name(name)
        _check_config(config)
        check_state(layers, labels, "state")
        check_checksum(checksum)
        if state_checksum(layers, labels) != checksum:
            raise InputError("checksum", "does not match the initial state")
        if self.session.get(Tenant, tenant_id) is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        agent = Agent(id=new_agent_id(), key=new_agent_key(self.session), tenant_id=tenant_id,
                      name=name, config=dict(config),
                      head_version=0, events_received=0, events_applied=0, next_seq=1,
                      labels=list(labels), **({"created_at": created_at} if created_at else {}))
        self.session.add(agent)
        self.session.flush()
        v0 = self.versions.insert_version(agent.id, 0, None, "create", checksum=checksum,
                                          labels_added=list(labels), created_at=created_at)
        self.states.put_snapshot(agent.id, 0, layers, labels)
        v0.has_snapshot = True
        self.versions.record_answers(agent.id, 0, labels)
        self.session.flush()
        return agent

    def get_agent(self, agent_id: str, tenant_id: str | None = None) -> Agent:
        """The agent; :class:`AgentNotFound` if unknown or owned by another tenant."""
        return self.core.agent(agent_id, tenant_id)

    def agent_identity(self, agent_id: str) -> tuple[str, dict[str, Any]]:
        """``(tenant id, config)`` of the agent (one primary-key read of two columns; both
        are fixed at creation); :class:`AgentNotFound` if unknown."""
        row = self.session.execute(select(Agent.tenant_id, Agent.config).where(
            Agent.id == agent_id)).first() if isinstance(agent_id, str) else None
        if row is None:
            raise AgentNotFound(repr(agent_id) if not isinstance(agent_id, str) else agent_id)
        return row[0], row[1]

    def head_version(self, agent_id: str) -> int:
        """The agent's head (one primary-key read of one column); :class:`AgentNotFound`."""
        head = self.session.scalar(select(Agent.head_version).where(Agent.id == agent_id)) \
            if isinstance(agent_id, str) else None
        if head is None:
            raise AgentNotFound(repr(agent_id) if not isinstance(agent_id, str) else agent_id)
        return int(head)

    def agents_by_ids(self, ids: list[str], tenant_id: str | None = None) -> dict[str, Agent]:
        """The agents with these ids (and of ``tenant_id`` when given), by id, in one query per
        500 ids, not one per agent; unknown ids are left out."""
        out: dict[str, Agent] = {}
        uniq = sorted(set(ids))
        for part in chunks(uniq):
            q = select(Agent).where(Agent.id.in_(part))
            if tenant_id is not None:
                q = q.where(Agent.tenant_id == tenant_id)
            out.update((a.id, a) for a in self.session.scalars(q))
        return out

    def list_agents(self, tenant_id: str) -> list[Agent]:
        return list(self.session.scalars(select(Agent).options(undefer_group("agent_json"))
                                         .where(Agent.tenant_id == tenant_id)
                                         .order_by(Agent.created_at, Agent.id)))

    def fork(self, agent_id: str, version: int | None, name: str, tenant_id: str, *,
             created_at: datetime | None = None) -> Agent:
        """A new agent (same tenant, same config) whose version 0 (kind ``fork``) has the
        state of ``agent_id`` at ``version`` (None: the head) and a copy of the events in
        that version's history (same client ids and order, marked applied at 0). The source
        is untouched. Replays on the fork start from the source's root (empty) state."""
        check_name(name)
        src = self.core.agent(agent_id, tenant_id)
        vmap = self.graph.vmap(agent_id)
        if version is None:
            version = src.head_version
        info = self.graph.vinfo(agent_id, version, vmap)
        if info.status == "thinned":
            raise VersionThinned(agent_id, version)
        gone = self.graph.forgotten_in(agent_id, vmap, version)
        if gone:
            raise ForgottenEvents(agent_id, version, gone)
        layers, labels = self.states.load_state(agent_id, version)
        history = self.events.events_by_seqs(agent_id, self.graph.history(agent_id, vmap, version))
        n = len(history)
        # the events in that state, pruned ones included (event retention): a version's
        # event_count is what it applied, a forget's what it removed
        counts = dict(self.session.execute(select(Version.version, Version.event_count).where(
            Version.agent_id == agent_id)).all())
        held = sum(-counts[v] if vmap[v].kind == "forget" else counts[v]
                   for v in self.graph.path(agent_id, vmap, version) if vmap[v].kind != "rollback")
        fork = Agent(id=new_agent_id(), key=new_agent_key(self.session),
                     tenant_id=src.tenant_id, name=name,
                     config=dict(src.config), head_version=0, events_received=n,
                     events_applied=n, next_seq=n + 1, applied_seq=n, base_agent_id=src.id,
                     base_version=version, root_agent_id=src.root_agent_id or src.id,
                     labels=list(labels),
                     **({"created_at": created_at} if created_at else {}))
        self.session.add(fork)
        self.session.flush()
        v0 = self.versions.insert_version(fork.id, 0, None, "fork", checksum=info.checksum,
                                          event_count=max(n, held), labels_added=list(labels),
                                          created_at=created_at)
        self.states.put_snapshot(fork.id, 0, layers, labels)
        v0.has_snapshot = True
        refs = copy_for_fork(self.session, fork.key, history,
                             list(range(1, len(history) + 1)))
        self.session.add_all([
            Event(agent_key=fork.key, client_id=e.client_id, seq=i + 1, payload=dict(e.payload),
                  received_at=e.received_at, applied_version=0, origin_event_id=e.id,
                  input_data=e.input_data, input_dtype=e.input_dtype, input_dim=e.input_dim,
                  input_sha256=e.input_sha256, input_block_id=bid, input_row=row)
            for i, (e, (bid, row)) in enumerate(zip(history, refs, strict=True))])
        answers = [a.text for a in self.versions.answers(agent_id)]
        self.versions.record_answers(fork.id, 0, answers + labels)
        self.session.flush()
        return fork

    def events_of(self, agent_id: str) -> list[Event]:
        """All of the agent's events, by seq (for inspection and tests)."""
        return list(self.session.scalars(select(Event).where(Event.agent_key == agent_key_of(agent_id))
                                         .order_by(Event.seq)))
