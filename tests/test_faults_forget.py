"""Issue 15, class 7: forget erases (real service over HTTP, SQLite and PostgreSQL).

Before the change a forgotten event's input, target and meta stayed in the event table and the
SQLite files, and versions committed while it was in the state still answered predictions
pinned to them. Now its payload is deleted (id and seq stay), the versions whose state held it
answer 409 ``forgotten_events`` to predict (``version`` or ``as_of``), rollback and fork, their
deltas and snapshots are gone, and on SQLite the bytes leave the database file and its WAL.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from agent.memory.lift import unit_rows
from storage.engine import Database
from storage.models import (
    Answer,
    DeltaRow,
    Event,
    EventInputs,
    Snapshot,
    SnapshotLayer,
    Version,
    agent_key_of,
)
from storage.repository import unit_of_work
from tests.faults_http import Svc, fault_service  # noqa: F401 - the fixture `svc`

SECRET = [0.375, -1.25, 2.5, 0.8125]  # exact in float32: the store may keep either width
TARGET = "secret-label-7Qz"
NOTE = "meta-secret-9Kx"


def _needles() -> dict[str, bytes]:
    x = np.asarray(SECRET)
    k = unit_rows(x[None, :])[0]
    return {"target": TARGET.encode(), "meta": NOTE.encode(),
            "input64": x.tobytes(), "input32": x.astype(np.float32).tobytes(),
            "key64": k.tobytes(), "key32": k.astype(np.float32).tobytes()}


ARRAYS = ("input64", "input32", "key64", "key32")


def _sqlite_files(url: str) -> bytes:
    path = Path(url.split("sqlite:///", 1)[1])
    out = path.read_bytes()
    wal = Path(str(path) + "-wal")
    return out + (wal.read_bytes() if wal.exists() else b"")


def _stored_arrays(url: str) -> bytes:
    """Every stored array's bytes (deltas, snapshot layers, event inputs where kept)."""
    db = Database(url)
    try:
        with unit_of_work(db, write=False) as repo:
            s = repo.session
            blobs = list(s.scalars(select(DeltaRow.data))) + \
                list(s.scalars(select(SnapshotLayer.data)))
            blobs += [b for b in s.scalars(select(Event.input_data)) if b is not None]
            blobs += [b.matrix("block").tobytes() for b in s.scalars(select(EventInputs))]
        return b"\0".join(bytes(b) for b in blobs)
    finally:
        db.dispose()


@pytest.mark.parametrize("rule", ["softmax", "delta"])
def test_forget_erases_the_event(svc: Svc, rule: str) -> None:
    a = svc.agent(memory={"rule": rule})
    aid = a["id"]
    svc.send(aid, [{"id": "e0", "input": [1.0, 0.0, 0.0, 0.0], "target": "A"},
                   {"id": "e1", "input": [0.0, 1.0, 0.0, 0.0], "target": "B"}])
    svc.settled(aid, 2)
    svc.send(aid, [{"id": "s", "input": SECRET, "target": TARGET, "meta": {"note": NOTE}}])
    held = svc.settled(aid, 3)["head_version"]
    svc.send(aid, [{"id": "e2", "input": [0.0, 0.0, 1.0, 0.0], "target": "A"},
                   {"id": "e3", "input": [0.0, 0.0, 0.0, 1.0], "target": "B"}])
    after = svc.settled(aid, 5)["head_version"]
    assert after > held > 1
    versions = {v["version"]: v for v in svc.http.get(f"/v1/agents/{aid}/versions").json()
                ["versions"]}
    assert svc.predict(aid, [SECRET], version=held).status_code == 200
    needles = _needles()
    arrays = _stored_arrays(svc.url)
    assert any(needles[n] in arrays for n in ARRAYS)  # the check below can see the event
    if svc.backend == "sqlite":
        assert needles["target"] in _sqlite_files(svc.url)

    r = svc.http.post(f"/v1/agents/{aid}/forget", json={"event_ids": ["s"]})
    assert r.status_code == 200, r.text
    new = r.json()["version"]

    # the versions that held it are refused; the others answer
    for v in range(held, after + 1):
        r = svc.predict(aid, [SECRET], version=v)
        assert r.status_code == 409 and r.json()["error"]["code"] == "forgotten_events", r.text
        r = svc.http.post(f"/v1/agents/{aid}/rollback", json={"version": v})
        assert r.status_code == 409, r.text
        r = svc.http.post(f"/v1/agents/{aid}/fork", json={"name": "f", "version": v})
        assert r.status_code == 409, r.text
    r = svc.predict(aid, [SECRET], as_of=versions[after]["created_at"])
    assert r.status_code == 409 and r.json()["error"]["code"] == "forgotten_events", r.text
    assert svc.predict(aid, [SECRET], version=held - 1).status_code == 200
    r = svc.predict(aid, [SECRET])
    assert r.status_code == 200 and r.json()["version"] == new
    assert r.json()["predictions"][0]["label"] != TARGET

    # nothing stored encodes it any more
    db = Database(svc.url)
    try:
        with unit_of_work(db, write=False) as repo:
            s = repo.session
            ev = s.scalars(select(Event).where(Event.agent_key == agent_key_of(aid),
                                               Event.client_id == "s")).one()
            assert ev.payload == {} and ev.forgotten_version == new and ev.seq == 3
            assert ev.input_data is None and ev.input_block_id is None
            erased = dict(s.execute(select(Version.version, Version.status).where(
                Version.agent_id == aid, Version.version >= held,
                Version.version <= after)).all())
            assert set(erased.values()) == {"erased"}
            assert not s.scalars(select(DeltaRow.id).where(
                DeltaRow.agent_id == aid, DeltaRow.version.in_(list(erased)))).all()
            assert not s.scalars(select(Snapshot.id).where(
                Snapshot.agent_id == aid, Snapshot.version.in_(list(erased)))).all()
            assert TARGET not in s.scalars(select(Answer.text).where(
                Answer.agent_id == aid)).all()
    finally:
        db.dispose()
    arrays = _stored_arrays(svc.url)
    assert not [n for n in ARRAYS if needles[n] in arrays]
    if svc.backend == "sqlite":  # the raw bytes of the files: database and WAL
        raw = _sqlite_files(svc.url)
        assert not [n for n, b in needles.items() if b in raw]

    # the agent goes on learning; forget again (no event is replayed twice)
    svc.send(aid, [{"id": "e4", "input": [1.0, 1.0, 0.0, 0.0], "target": "A"}])
    got = svc.settled(aid, 6)
    assert got["head_version"] == new + 1
    r = svc.http.post(f"/v1/agents/{aid}/forget", json={"event_ids": ["e0"]})
    assert r.status_code == 200, r.text
