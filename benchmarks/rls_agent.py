"""``python -m benchmarks.rls_agent [--dims 2048,4096] [--sizes 1,10,100] [--events 1000]``:
the cost of an ``rls`` write with a wide lift, per event, through the agent's own ``learn_many``.

For each lifted width d_k, state dtype and micro-batch size n it streams unit MiniLM-sized
inputs (384-d, 150 labels) into a :class:`agent.model.MemoryAgent` (rule ``rls``, λ = 0.01, the
``lift_dim`` set to d_k, ``memory.dtype`` as given) and prints CPU ms per event, beside the time
per event of the one GEMM ``K P`` ((n × d_k) @ (d_k × d_k)) in the same dtype, measured in the
same run: the ratio says how far the write is from a single read of P. Beside it, the same
agent without pending rows (``agent/memory/rls/pending.py``), timed in the same run. One BLAS thread.
The table in ``agent/memory/README.md`` ("Where the time goes") comes from this script.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from agent.config import AgentConfig
from agent.memory.backend import set_blas_threads
from agent.memory.delta import state_checksum
from agent.model import MemoryAgent


class _NoTexts:
    dim = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("this benchmark feeds embeddings")


def unit_inputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 384) random unit rows: stand-ins for MiniLM embeddings."""
    X = rng.standard_normal((n, 384))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def wide_rls_agent(d_k: int, dtype: str, pending: bool = True) -> MemoryAgent:
    """An ``rls`` classifier on 384-d embeddings with a ``d_k``-d lift (λ = 0.01).

    ``pending=False``: the agent without pending rows (a state with no ``Q``, as one stored
    before they existed loads), i.e. every micro-batch applies its rank-n update to ``P``."""
    cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "minilm", "memory": {
        "rule": "rls", "ridge": 0.01, "lift_dim": d_k, "dtype": dtype}})
    agent = MemoryAgent(cfg, encoder=_NoTexts())
    if not pending:
        layers, labels = agent.state
        layers.pop("Q", None)
        agent.load_state(layers, labels)
    return agent


def per_event_ms(d_k: int, dtype: str, n: int, events: int, seed: int = 0,
                 pending: bool = True) -> tuple[float, float]:
    """(CPU ms per event of ``learn_many``, CPU ms per event of the GEMM ``K P`` alone)."""
    rng = np.random.default_rng(seed)
    warm = 150
    X = unit_inputs(rng, warm + events)  # (N, 384)
    y = [f"c{i}" for i in rng.integers(0, 150, warm + events)]
    agent = wide_rls_agent(d_k, dtype, pending)
    agent.learn_many(X[:warm], y[:warm])  # every label seen: S has its final shape
    t0 = time.process_time()
    for s in range(warm, warm + events, n):
        agent.learn_many(X[s : s + n], y[s : s + n])
    t_write = (time.process_time() - t0) / events
    P = agent.state[0]["P"]  # (d_k, d_k)
    K = rng.standard_normal((n, d_k)).astype(P.dtype)  # (n, d_k)
    reps = max(3, min(50, events // n))
    t0 = time.process_time()
    for _ in range(reps):
        K @ P
    t_gemm = (time.process_time() - t0) / (reps * n)
    return t_write * 1e3, t_gemm * 1e3


def checksum_ms(d_k: int, dtype: str, reps: int = 5) -> tuple[float, float]:
    """(ms of hashing the whole state, ms of ``MemoryAgent.checksum`` after a batch that only
    appended pending rows, which reuses the hash state of the unchanged ``P``): the learner's
    cost per commit besides the write."""
    X = unit_inputs(np.random.default_rng(1), 150 + 10 * reps)  # (N, 384)
    y = [f"c{i % 150}" for i in range(len(X))]
    agent = wide_rls_agent(d_k, dtype)
    agent.learn_many(X[:150], y[:150])  # folds (150 + … rows); later batches of 10 append
    agent.checksum()
    full = cached = 0.0
    for r in range(reps):
        agent.learn_many(X[150 + 10 * r : 160 + 10 * r], y[150 + 10 * r : 160 + 10 * r])
        t0 = time.perf_counter()
        agent.checksum()
        cached += time.perf_counter() - t0
        t0 = time.perf_counter()
        state_checksum(*agent.state)
        full += time.perf_counter() - t0
    return full / reps * 1e3, cached / reps * 1e3


def serving_cost(d_k: int, dtype: str, n: int = 64, events: int = 640) -> tuple[float, float, int, int]:
    """A serving replica following one agent: (CPU ms per event applying the learner's deltas
    to the whole state, the same to a reads-only view, bytes cached whole, bytes as a view)."""
    X = unit_inputs(np.random.default_rng(2), events)  # (N, 384)
    y = [f"c{i % 150}" for i in range(events)]
    learner, whole, view = (wide_rls_agent(d_k, dtype) for _ in range(3))
    view.keep_reads_only()
    t_whole = t_view = 0.0
    for s in range(0, events, n):
        delta = learner.learn_many(X[s : s + n], y[s : s + n])
        t0 = time.process_time()
        whole.apply(delta)
        t1 = time.process_time()
        view.apply(delta)
        t_view += time.process_time() - t1
        t_whole += t1 - t0
    size = [sum(a.nbytes for a in m.state[0].values()) for m in (whole, view)]
    return t_whole / events * 1e3, t_view / events * 1e3, size[0], size[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.rls_agent", description=__doc__.split("\n\n")[0])
    ap.add_argument("--dims", default="2048,4096", help="lifted widths d_k (comma-separated)")
    ap.add_argument("--sizes", default="1,10,100", help="micro-batch sizes n")
    ap.add_argument("--dtypes", default="float64,float32", help="state dtypes")
    ap.add_argument("--events", type=int, default=1000, help="events timed per row (n=1: a tenth)")
    args = ap.parse_args(argv)
    set_blas_threads(1)
    print("rls write through MemoryAgent.learn_many, 1 BLAS thread, CPU ms per event")
    print("| d_k | state | n | write ms/event | without pending rows | speed-up | K·P GEMM alone "
          "ms/event | write ÷ GEMM |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    states = [(int(d), t) for d in args.dims.split(",") for t in args.dtypes.split(",")]
    for d_k, dtype in states:
        for n in (int(v) for v in args.sizes.split(",")):
            events = max(n * 3, args.events // 10 if n == 1 else args.events)
            w, g = per_event_ms(d_k, dtype, n, events)
            w0, _ = per_event_ms(d_k, dtype, n, events, pending=False)
            print(f"| {d_k} | {dtype} | {n} | {w:.3f} | {w0:.3f} | {w0 / w:.1f}× | {g:.3f} | "
                  f"{w / g:.1f} |", flush=True)
    print("\nState checksum per commit (wall ms): the whole state hashed vs the learner's, which "
          "reuses the hash of an unchanged P")
    print("| d_k | state | full | learner | ratio |")
    print("| --- | --- | --- | --- | --- |")
    for d_k, dtype in states:
        full, cached = checksum_ms(d_k, dtype)
        print(f"| {d_k} | {dtype} | {full:.1f} | {cached:.1f} | {full / cached:.0f}× |", flush=True)
    print("\nA serving replica following the agent (micro-batches of 64): CPU ms per event "
          "applying the deltas, and bytes cached")
    print("| d_k | state | whole state ms/event | reads-only view ms/event | whole MB | view MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for d_k, dtype in states:
        tw, tv, bw, bv = serving_cost(d_k, dtype)
        print(f"| {d_k} | {dtype} | {tw:.3f} | {tv:.3f} | {bw / 2**20:.1f} | {bv / 2**20:.1f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
