"""The retention job's work (version retention, event retention, then the version horizon)
for a set of agents.

The scheduled job (workers/actors/scheduler.py) lists the agents and hands each learner shard
the ones it owns (:meth:`LearnerActor.retention`), which runs this in its own process, not in
the serve process that answers HTTP requests. Each agent's work is its own short
transactions, with a pause after each for a waiting writer (``Store.background_tx``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

log = logging.getLogger("deltamem.retention")


def run_retention(store: Any, ids: list[str], window_s: float, spacing_s: float | None,
                  keep_s: float | None, now: datetime,
                  history_s: float | None = None) -> dict[str, int]:
    """Per agent of ``ids``: version retention (one transaction), then event retention when
    ``keep_s`` is set, then the version horizon when ``history_s`` is set; returns the counts
    ``{"dropped", "thinned", "bytes_freed", "events", "versions_deleted"}``. An agent whose
    retention fails is logged and the others still run; the first error is raised at the end
    (the scheduler reports the job as failed)."""
    out = {"dropped": 0, "thinned": 0, "bytes_freed": 0, "events": 0, "versions_deleted": 0}
    failed: list[Exception] = []
    for agent_id in ids:
        try:
            with store.background_tx() as repo:
                report = repo.apply_retention(agent_id, window_s, now, spacing_s)
            out["dropped"] += len(report.dropped)
            out["thinned"] += len(report.thinned)
            out["bytes_freed"] += report.bytes_freed
            if keep_s is not None:
                out["events"] += prune_events(store, [agent_id], keep_s, now)
            if history_s is not None:
                out["versions_deleted"] += fold_history(store, [agent_id], history_s, now)
        except Exception as e:  # noqa: BLE001 - raised below, once every agent had its turn
            log.exception("retention of agent %s failed", agent_id)
            failed.append(e)
    if failed:
        raise failed[0]
    return out


def fold_history(store: Any, ids: list[str], history_s: float, now: datetime) -> int:
    """The version horizon for every agent, a bounded chunk per transaction; returns how many
    versions were deleted (storage/repository/horizon.py)."""
    return _in_chunks(store, ids, lambda repo, a: repo.fold_history(a, history_s, now))


def prune_events(store: Any, ids: list[str], keep_s: float, now: datetime) -> int:
    """Event retention for every agent, a bounded chunk per transaction (the write lock is
    never held long); returns how many events were deleted."""
    return _in_chunks(store, ids, lambda repo, a: repo.prune_events(a, keep_s, now))


def _in_chunks(store: Any, ids: list[str], step: Callable[[Any, str], tuple[int, bool]]) -> int:
    """``step(repo, agent) -> (deleted, more)`` in short transactions until nothing is left,
    for every agent; returns the total deleted."""
    n = 0
    for agent_id in ids:
        more = True
        while more:
            with store.background_tx() as repo:
                k, more = step(repo, agent_id)
            n += k
    return n
