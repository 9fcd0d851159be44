"""Storage figures: bytes stored per event, rebuild time, commit rate (SQLite, PostgreSQL).

    .venv/bin/python -m benchmarks.storage [--pg URL] [--versions 1000] [--commits 200]
    .venv/bin/python -m benchmarks.storage --append [...]   # event append, old vs new path

``--append`` hands the remaining arguments to :mod:`benchmarks.storage_append`.

PostgreSQL is measured when ``--pg`` or ``DELTAMEM_TEST_POSTGRES_URL`` is given (a scratch
database is created in it and dropped). Correctness of what is measured is proved by
tests/test_storage_properties.py (rebuilds are bit-identical) and test_storage_repository.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from agent.memory.delta import Delta, LayerDelta, apply_delta, state_checksum
from benchmarks.storage_dbs import LABELS, D, new_agent, scratch_databases
from storage import deltaform
from storage.codec import encode
from storage.engine import Database
from storage.repository import unit_of_work

BATCH = 64


def _deltas(rule: str, rng: np.random.Generator) -> dict[str, LayerDelta]:
    """One 64-event micro-batch's delta at d = 384 (factor form)."""
    A = rng.standard_normal((BATCH, D))
    out = {"S": LayerDelta.factors(A, rng.standard_normal((BATCH, LABELS)))}
    if rule == "rls":  # P ← P − BᵀB: factors (B, −B), stored as B alone (form "neg")
        B = rng.standard_normal((BATCH, D))
        out["P"] = LayerDelta.factors(B, -B)
    return out


def bytes_per_event() -> list[tuple[str, str, str, float]]:
    rng = np.random.default_rng(0)
    rows = []
    for rule in ("delta", "rls"):
        lds = _deltas(rule, rng)
        for form in ("factors", "dense"):
            for dtype in ("float16", "float32", "float64"):
                total = 0
                for ld in lds.values():
                    ld = (LayerDelta.of_dense(ld.to_dense()) if form == "dense" else ld)
                    total += encode(deltaform.pack(ld.astype(dtype))[1]).nbytes
                rows.append((rule, form, dtype, total / BATCH))
    return rows


def agent_bytes_per_event(lift_dim: int, batch: int, pending: bool, compact: bool,
                          events: int = 1280, dtype: str = "float32") -> float:
    """Stored array bytes per event of a real ``rls`` agent (384-d unit inputs, 150 labels,
    ``lift_dim``-d keys) learning ``events`` in micro-batches of ``batch``: as the repository
    stores its deltas (``compact``: :mod:`storage.deltaform`), or every factor delta as A and E.
    ``pending=False``: the agent without pending rows (a state stored before they existed)."""
    from benchmarks.rls_agent import unit_inputs, wide_rls_agent

    X = unit_inputs(np.random.default_rng(0), 150 + events)  # (N, 384)
    y = [f"c{i % 150}" for i in range(150 + events)]
    agent = wide_rls_agent(lift_dim, dtype, pending)
    agent.learn_many(X[:150], y[:150])  # every label seen
    total = 0
    for s in range(150, 150 + events, batch):
        for ld in agent.learn_many(X[s:s + batch], y[s:s + batch]).layers.values():
            arrays = deltaform.pack(ld)[1] if compact else (
                [ld.dense] if ld.dense is not None else [ld.A, ld.E])
            total += encode(arrays).nbytes  # type: ignore[arg-type]
    return total / events


def softmax_bytes_per_event(batch: int, events: int = 1280, replay: int = 7,
                            reservoir: int | None = None) -> float:
    """Stored array bytes per event of a real ``softmax`` agent (384-d MiniLM-like unit inputs,
    150 labels, float32 state, rehearsing ``replay`` events per write), as the repository stores
    its deltas: S (factors or dense, the smaller) and the appended keys and labels (form ``rows``);
    with ``reservoir`` (events kept per label) the bounded memory's slots put in place instead."""
    from agent.config import AgentConfig
    from agent.model import MemoryAgent
    from benchmarks.rls_agent import unit_inputs

    X = unit_inputs(np.random.default_rng(0), 150 + events)  # (N, 384)
    y = [f"c{i % 150}" for i in range(150 + events)]
    agent = MemoryAgent(AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": D, "memory": {
        "rule": "softmax", "replay": replay, "dtype": "float32", "reservoir": reservoir}}))
    agent.learn_many(X[:150], y[:150])  # every label seen
    total = 0
    for s in range(150, 150 + events, batch):
        for ld in agent.learn_many(X[s:s + batch], y[s:s + batch]).layers.values():
            total += encode(deltaform.pack(ld)[1]).nbytes
    return total / events


def rebuild_time(db: Database, n_versions: int, dtype: str) -> tuple[float, float]:
    """(seconds to commit, seconds to rebuild the state n_versions after the snapshot)."""
    rng = np.random.default_rng(1)
    agent_id, layers, labels = new_agent(db)
    t = time.perf_counter()
    for v in range(n_versions):
        d = Delta({"S": LayerDelta.factors(rng.standard_normal((BATCH, D)) * 0.01,
                                           rng.standard_normal((BATCH, LABELS)) * 0.01)})
        d = d.astype(dtype)
        layers = apply_delta(layers, d)
        with unit_of_work(db) as repo:
            repo.commit_version(agent_id, v, delta=d, checksum=state_checksum(layers, labels))
    commit_s = time.perf_counter() - t
    t = time.perf_counter()
    with unit_of_work(db, write=False) as repo:
        got, _ = repo.load_state(agent_id, n_versions)
    rebuild_s = time.perf_counter() - t
    assert got["S"].tobytes() == layers["S"].tobytes()
    return commit_s, rebuild_s


def commit_rate(db: Database, n_commits: int) -> float:
    """Versions/s: each commit applies 64 pending events (delta rule, float32 factors)."""
    rng = np.random.default_rng(2)
    agent_id, layers, labels = new_agent(db)
    with unit_of_work(db) as repo:
        repo.append_events(agent_id, [{"input": [0.0] * 8, "target": "l0"}
                                      for _ in range(BATCH * n_commits)])
    deltas = [Delta({"S": LayerDelta.factors(rng.standard_normal((BATCH, D)),
                                             rng.standard_normal((BATCH, LABELS)))})
              .astype("float32") for _ in range(n_commits)]
    sums = []
    for d in deltas:
        layers = apply_delta(layers, d)
        sums.append(state_checksum(layers, labels))
    t = time.perf_counter()
    for v in range(n_commits):
        with unit_of_work(db) as repo:
            seqs = [e.seq for e in repo.pending_events(agent_id, limit=BATCH)]
            repo.commit_version(agent_id, v, delta=deltas[v], event_seqs=seqs, checksum=sums[v])
    return n_commits / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--append" in argv:
        from benchmarks import storage_append

        return storage_append.main([a for a in argv if a != "--append"])
    ap = argparse.ArgumentParser(prog="deltamem bench storage", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pg", default=os.environ.get("DELTAMEM_TEST_POSTGRES_URL"))
    ap.add_argument("--versions", type=int, default=1000)
    ap.add_argument("--commits", type=int, default=200)
    args = ap.parse_args(argv)

    print(f"bytes stored per event (d = {D}, S {LABELS}x{D}, rls adds P {D}x{D}; "
          f"{BATCH}-event micro-batches; array bytes only)")
    print(f"{'rule':6} {'form':8} {'dtype':8} {'bytes/event':>12}")
    for rule, form, dtype, b in bytes_per_event():
        print(f"{rule:6} {form:8} {dtype:8} {b:12,.0f}")
    print()
    print("bytes stored per event of a real rls agent, float32 state, 150 labels "
          "(A and E for every factor delta / the stored forms)")
    print("| lift_dim | micro-batch | no pending rows, A and E | pending rows, A and E "
          "| pending rows, stored forms |")
    print("| --- | --- | --- | --- | --- |")
    for lift in (1024, 3072):
        for batch in (10, 64):
            b0 = agent_bytes_per_event(lift, batch, pending=False, compact=False)
            b1 = agent_bytes_per_event(lift, batch, pending=True, compact=False)
            b2 = agent_bytes_per_event(lift, batch, pending=True, compact=True)
            print(f"| {lift} | {batch} | {b0:,.0f} | {b1:,.0f} | {b2:,.0f} |", flush=True)
    print()
    print("bytes stored per event of a real softmax agent (rehearsal R = 7, the default), float32 state, "
          "150 labels, 384-d keys")
    print("| micro-batch | bytes/event |")
    print("| --- | --- |")
    for batch in (1, 10, 64):
        print(f"| {batch} | {softmax_bytes_per_event(batch, events=320 if batch == 1 else 1280):,.0f} |",
              flush=True)
    print()
    print(f"{'database':10} {'dtype':8} {'commit v/s':>11} {'rebuild ' + str(args.versions):>14}"
          f" {'64-ev commit v/s':>17}")
    for name, url in scratch_databases(args.pg):
        db = Database(url)
        try:
            for dtype in ("float32", "float16"):
                commit_s, rebuild_s = rebuild_time(db, args.versions, dtype)
                rate = commit_rate(db, args.commits) if dtype == "float32" else float("nan")
                print(f"{name:10} {dtype:8} {args.versions / commit_s:11.1f} "
                      f"{rebuild_s * 1000:12.0f}ms {rate:17.1f}")
        finally:
            db.dispose()
    return 0


if __name__ == "__main__":
    main()
