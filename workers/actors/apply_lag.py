"""How long accepted events wait to be applied: from the notify that hands them to their learner
shard (sent just after their ingest transaction committed, so about when the client was
answered) to the end of the commit of the version holding them. One figure per notify (a
request's events, or a group's for one agent), by its last event.

Each shard keeps a Prometheus histogram (cumulative, ``deltamem_apply_lag_seconds`` in
``/metrics``, merged over shards by :func:`render_lag`) and the last :data:`RECENT` figures,
whose quantiles the benchmarks print (``LearnerActor.apply_lag``; ``ping`` reports the
histogram alone, cheap enough for readiness probes).

>>> lag = ApplyLag()
>>> lag.arrived("a", 3, t=10.0); lag.arrived("a", 5, t=10.5)
>>> lag.applied("a", 4, t=10.6)  # the version holds seqs up to 4: the first notify is done
>>> lag.snapshot()["count"], round(lag.snapshot()["sum"], 3)
(1, 0.6)
>>> lag.applied("a", 5, t=10.7); lag.snapshot()["count"], lag.waiting_agents()
(2, 0)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
RECENT = 10_000  # the last figures kept for quantiles
MAX_WAITING = 4_096  # notifies remembered per agent (the oldest is dropped beyond)
MAX_AGENTS = 10_000  # agents with notifies waiting (the longest waiting one is dropped beyond)


class ApplyLag:
    """``arrived(agent, last_seq, t)`` when a notify hands events; ``applied(agent, seq, t)``
    when a version holding the agent's events up to ``seq`` has committed (``t``: monotonic
    seconds). Bounded: notifies waiting per agent, agents waiting, recent figures."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: dict[str, deque[tuple[int, float]]] = {}
        self._counts = [0] * (len(LAG_BUCKETS) + 1)  # cumulative (le), then +Inf
        self._sum = 0.0
        self._recent: deque[float] = deque(maxlen=RECENT)

    def arrived(self, agent_id: str, last_seq: int, t: float) -> None:
        with self._lock:
            q = self._waiting.get(agent_id)
            if q is None:
                if len(self._waiting) >= MAX_AGENTS:  # e.g. agents deleted with events pending
                    self._waiting.pop(next(iter(self._waiting)))
                q = self._waiting[agent_id] = deque(maxlen=MAX_WAITING)
            q.append((last_seq, t))

    def applied(self, agent_id: str, seq: int, t: float) -> None:
        with self._lock:
            q = self._waiting.get(agent_id)
            while q and q[0][0] <= seq:
                self._observe(t - q.popleft()[1])
            if q is not None and not q:
                del self._waiting[agent_id]

    def _observe(self, s: float) -> None:
        for i, b in enumerate(LAG_BUCKETS):
            if s <= b:
                self._counts[i] += 1
        self._counts[-1] += 1
        self._sum += s
        self._recent.append(s)

    def waiting_agents(self) -> int:
        return len(self._waiting)

    def histogram(self) -> dict[str, Any]:
        """``counts`` per bucket of :data:`LAG_BUCKETS` (cumulative), then +Inf; ``sum``,
        ``count``."""
        with self._lock:
            return {"counts": list(self._counts), "sum": self._sum, "count": self._counts[-1]}

    def snapshot(self, last: int | None = None) -> dict[str, Any]:
        """:meth:`histogram` and the p50 / p99 of the recent figures, or of the ``last`` of
        them (seconds; None before any), computed outside the lock."""
        with self._lock:
            out = {"counts": list(self._counts), "sum": self._sum, "count": self._counts[-1]}
            recent = np.fromiter(self._recent, float, len(self._recent))
        if last is not None:
            recent = recent[max(0, recent.size - last):]
        p50, p99 = np.quantile(recent, [0.5, 0.99]).tolist() if recent.size else (None, None)
        return {**out, "p50_s": p50, "p99_s": p99, "recent": int(recent.size)}


def render_lag(out: list[str], snapshots: Sequence[dict[str, Any]]) -> None:
    """Prometheus lines of the shards' histograms, merged."""
    counts = [0] * (len(LAG_BUCKETS) + 1)
    total = 0.0
    for snap in snapshots:
        for i, v in enumerate(snap.get("counts", [])[:len(counts)]):
            counts[i] += int(v)
        total += float(snap.get("sum", 0.0))
    name = "deltamem_apply_lag_seconds"
    out.append(f"# HELP {name} From the notify handing accepted events to their learner shard "
               "to the commit of the version holding them.")
    out.append(f"# TYPE {name} histogram")
    for b, v in zip(LAG_BUCKETS, counts, strict=False):
        out.append(f'{name}_bucket{{le="{b}"}} {v}')
    out.append(f'{name}_bucket{{le="+Inf"}} {counts[-1]}')
    out.append(f"{name}_sum {round(total, 6)}")
    out.append(f"{name}_count {counts[-1]}")
