"""Lone UTF-16 surrogates in the repository, on SQLite and PostgreSQL.

JSON can spell a lone surrogate (``"\\ud800"``) and Python parses it into a ``str`` that no
UTF-8 encoder accepts. Every string the repository stores — tenant and agent names, a fork's
name, an agent's config, the ids given to forget, labels — is refused with an
:class:`InputError` naming the field, before anything is written; an API key holding one is
simply unknown. (Event ids and payloads: ``test_storage_append.py``.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from agent.memory.delta import Delta, LayerDelta
from storage.errors import InputError
from storage.models import Agent, Answer, ApiKey, Event, Snapshot, Tenant, Version
from storage.repository import Repository, unit_of_work
from tests.db_fixtures import *  # noqa: F401,F403
from tests.storage_helpers import D_K, checksum, empty_state, replay

FAKE_SHA = "0" * 64  # well-formed; the text check comes before any checksum comparison


def _setup(db) -> tuple[str, str]:
    """A tenant and an agent with one event, ``e0``; returns their ids."""
    with unit_of_work(db) as repo:
        tenant, _ = repo.create_tenant("acme")
        layers, labels = empty_state()
        agent = repo.create_agent(tenant.id, "a", {"kind": "classifier"}, layers, labels,
                                  checksum((layers, labels)))
        repo.append_events(agent.id, [{"id": "e0", "input": [1.0, 0, 0, 0], "target": "x"}])
        return tenant.id, agent.id


def _rows(db) -> dict[str, Any]:
    """Everything a rejected call must leave as it was."""
    with unit_of_work(db, write=False) as repo:
        s = repo.session
        counts = {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                  for m in (Tenant, ApiKey, Agent, Event, Version, Snapshot, Answer)}
        agents = s.execute(select(Agent.id, Agent.name, Agent.head_version,
                                  Agent.events_received).order_by(Agent.id)).all()
        return {**counts, "agents": agents}


def _delta(labels_added: list[str]) -> Delta:
    A, E = np.eye(1, D_K), np.ones((1, len(labels_added)))
    return Delta({"S": LayerDelta.factors(A, E, 1.0)}, labels_added)


Call = Callable[[Repository, str, str], Any]
CASES: list[tuple[str, Call, str]] = [  # (id, call(repo, tenant_id, agent_id), field)
    ("tenant-name", lambda repo, t, a: repo.create_tenant("t\ud800"), "name"),
    ("agent-name", lambda repo, t, a: repo.create_agent(
        t, "\udfffa", {"kind": "classifier"}, *empty_state(), checksum(empty_state())), "name"),
    ("config-value", lambda repo, t, a: repo.create_agent(
        t, "b", {"kind": "c\ud800"}, *empty_state(), checksum(empty_state())), "config"),
    ("config-key", lambda repo, t, a: repo.create_agent(
        t, "b", {"\ud800": 1}, *empty_state(), checksum(empty_state())), "config"),
    ("initial-labels", lambda repo, t, a: repo.create_agent(
        t, "b", {}, empty_state()[0], ["ok", "\ud800"], FAKE_SHA), "state.labels[1]"),
    ("fork-name", lambda repo, t, a: repo.fork(a, None, "f\ud800", t), "name"),
    ("forget-id", lambda repo, t, a: repo.forget(a, ["e0", "\udc00"], replay), "event_ids[1]"),
    ("labels-added", lambda repo, t, a: repo.commit_version(
        a, 0, "delta", delta=_delta(["\ud800"]), event_seqs=[1], checksum=FAKE_SHA),
     "delta.labels_added[0]"),
    ("snapshot-labels", lambda repo, t, a: repo.commit_version(
        a, 0, "snapshot", snapshot=({"S": empty_state()[0]["S"]}, ["\ud800"]), checksum=FAKE_SHA),
     "snapshot.labels[0]"),
]


@pytest.mark.parametrize("call, field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_lone_surrogate_is_input_error_naming_the_field_and_changes_nothing(db, call, field):
    tenant_id, agent_id = _setup(db)
    before = _rows(db)
    with pytest.raises(InputError) as err, unit_of_work(db) as repo:
        call(repo, tenant_id, agent_id)
    assert err.value.field == field
    assert "surrogate" in err.value.message
    assert _rows(db) == before


def test_api_key_with_lone_surrogate_is_unknown(db):
    with unit_of_work(db) as repo:
        tenant, key = repo.create_tenant("acme")
    bad = key + "\ud800"
    with unit_of_work(db) as repo:
        assert repo.tenant_for_key(bad) is None and repo.revoke_key(bad) is False
        assert repo.tenant_for_key(key).id == tenant.id  # the real key still works
