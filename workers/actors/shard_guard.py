"""A learner shard's side of the guard (workers/actors/guard.py): what it watches, the actions it
takes, the agents it holds back, and the release of their held events.

:class:`ShardGuard` is composed into :class:`workers.actors.learner.LearnerActor`, which keeps
the heads, the locks and the backlog; the guard reaches them through the callables it is given.
Its state is the shard's alone (Ray actors share nothing):

- the detectors of guarded agents (:class:`Guard`) and the agents muted while an operator's
  release is applied (their events are accepted as they are: no action on them);
- decisions found at a commit, taken before the agent's next micro-batch (:meth:`held_back`):
  settling one may fit learners, which never happens under the write lock;
- each agent's quarantine flag, read from the store once (dropped with the head);
- the held events already taken out of the shard's backlog, so that a quarantined agent does
  not throttle the others, and so they count again on release.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from agent.learner import Learner
from workers.actors.guard import Decision, Guard, check_release, record_action, set_quarantined
from workers.store import Store

log = logging.getLogger("deltamem.learner")


class ShardGuard:
    """The guard of one learner shard.

    Parameters
    ----------
    store : the shard's store.
    shard : the shard's number (in log lines).
    adjust_backlog : ``adjust_backlog(n)`` moves the shard's backlog by ``n`` events (at least 0).
    reset : ``reset(agent_id)`` reloads the agent's head and tells the replicas (after an action
        that moved or froze it).
    """

    def __init__(self, store: Store, shard: int, adjust_backlog: Callable[[int], None],
                 reset: Callable[[str], None]) -> None:
        self._store = store
        self._shard = shard
        self._adjust_backlog = adjust_backlog
        self._reset = reset
        self.detectors = Guard()  # detectors of guarded agents
        self._muted: set[str] = set()  # agents whose released events are being applied
        self._quarantined: dict[str, bool] = {}  # the store's flag, read once per agent
        self._decisions: dict[str, tuple[int, Decision]] = {}  # actions to take
        self._held_seen: dict[str, int] = {}  # held events taken out of the backlog, by agent

    @property
    def counts(self) -> dict[str, int]:
        """Actions taken, by kind (``ping``'s and the metrics' ``guard``)."""
        return dict(self.detectors.counts)

    def observe(self, repo: Any, row: Any, learner: Learner, hits: list[bool]) -> None:
        """In the commit's transaction, after version ``row`` was written with its quality
        totals: feed the batch's test-then-train ``hits`` to the agent's detector; a decision
        is taken before the agent's next micro-batch (:meth:`held_back`)."""
        policy = learner.config.guard
        if policy is None or not hits or row.agent_id in self._muted:
            return
        decision = self.detectors.observe(repo, row.agent_id, policy, row.version, hits,
                                          row.tested_total)
        if decision is not None:
            self._decisions[row.agent_id] = (row.version, decision)

    def discard(self, agent_id: str) -> None:
        """A commit failed: a decision found in its transaction is about a version not made."""
        self._decisions.pop(agent_id, None)

    def drop(self, agent_id: str) -> None:
        """The head was dropped: read the quarantine flag from the store when next needed."""
        self._quarantined.pop(agent_id, None)

    def held_back(self, agent_id: str) -> bool:
        """Take a pending decision; then whether the agent is quarantined (its events held)."""
        pending = self._decisions.pop(agent_id, None)
        if pending is not None:
            try:
                self._act(agent_id, *pending)
            except Exception:  # noqa: BLE001 - a failed action never stops the agent
                log.exception("learner %s: guard action for %s failed", self._shard, agent_id)
        q = self._quarantined.get(agent_id)
        if q is None:
            with self._store.read() as repo:
                q = self._quarantined[agent_id] = bool(repo.get_agent(agent_id).quarantined)
        if q:  # held events leave the shard's backlog: they must not throttle other agents
            with self._store.read() as repo:
                held = repo.get_agent(agent_id).pending
            self._adjust_backlog(-(held - self._held_seen.get(agent_id, 0)))
            self._held_seen[agent_id] = held
        return q

    def _act(self, agent_id: str, version: int, d: Decision) -> None:
        """Settle the decision (its check fits learners on a read transaction, never under the
        write lock); record the action; quarantine, or roll back and quarantine."""
        if d.check is not None:
            with self._store.read() as repo:
                d = self.detectors.settle(repo, agent_id, d)
        with self._store.tx() as repo:
            if d.action == "alert":
                record_action(repo, agent_id, "alert", version, d.reason)
            elif d.action == "rollback" and d.good_version is not None \
                    and repo.version_status(agent_id, d.good_version) == "ok":
                row = repo.rollback(agent_id, d.good_version)
                record_action(repo, agent_id, "rollback", row.version,
                              f"{d.reason}; rolled back to version {d.good_version}, new events held")
                set_quarantined(repo, agent_id, True)
            else:  # a quarantine, or a rollback whose target retention or a forget took since
                if d.action == "rollback" and d.good_version is not None:
                    d = Decision("quarantine", f"{d.reason}; version {d.good_version} can no "
                                 "longer be loaded (retention or a forget): no rollback", None)
                record_action(repo, agent_id, "quarantine", version, f"{d.reason}; new events held")
                set_quarantined(repo, agent_id, True)
        self.detectors.counts[d.action] = self.detectors.counts.get(d.action, 0) + 1
        self.detectors.reset(agent_id)
        if d.action != "alert":
            self._quarantined.pop(agent_id, None)
            self._reset(agent_id)  # reload the head (moved by a rollback)

    def release(self, agent_id: str, event_ids: list[str] | None,
                drain: Callable[[], None]) -> int:
        """Lift the quarantine and apply the held events (``drain``, with the guard muted for
        them); the caller holds the agent's lock. Returns how many were applied (forgotten
        held events are not)."""
        with self._store.tx() as repo:
            a = repo.get_agent(agent_id)
            held = a.pending
            check_release(repo, agent_id, event_ids, held)
            set_quarantined(repo, agent_id, False)
            record_action(repo, agent_id, "release", a.head_version,
                          f"an operator released {held} held events")
            applied_before = a.events_applied
        self._quarantined[agent_id] = False
        self._adjust_backlog(self._held_seen.pop(agent_id, 0))  # they count again until applied
        self._muted.add(agent_id)  # the operator accepted these: no action on them
        try:
            drain()
        finally:
            self._muted.discard(agent_id)
            self.detectors.reset(agent_id)  # watching starts again after them
            self._decisions.pop(agent_id, None)
        with self._store.read() as repo:
            return int(repo.get_agent(agent_id).events_applied - applied_before)
