"""The heads a learner shard holds: each agent's head version and learner, within a byte bound.

A head is loaded from the store on first use (its latest snapshot plus the deltas after it,
``repo.load_state``) and kept while its agent is active. The states held are bounded by
``learner_cache_bytes``: beyond it, the least recently used idle heads are evicted (the
``evict`` callback given by the shard writes a snapshot when one is due and forgets what else
it knows of the agent); an evicted head is reloaded from the store on its next event, so
eviction changes no result, only the next read's cost. A head busy in another thread (its lock
taken) is never evicted.

Invalidation: a head is committed before it is held (:meth:`HeldHeads.hold` after the
version's transaction), so what is held is always a committed version; rollback, forget and
the guard's actions drop it (:meth:`HeldHeads.drop`) and the next use reloads it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

from agent.learner import Learner
from workers.actors.factory import make_learner, state_nbytes
from workers.store import Store


class HeldHeads:
    """Heads of a learner shard, least recently used first, and one lock per agent.

    Parameters
    ----------
    store : the shard's store (heads are loaded from it).
    max_bytes : the bound on the held states' bytes (``learner_cache_bytes``).
    evict : ``evict(agent_id, version, learner)``, called with the agent's lock held when its
        idle head is evicted; it must end with :meth:`drop` of the agent.
    """

    def __init__(self, store: Store, max_bytes: int,
                 evict: Callable[[str, int, Learner], None]) -> None:
        self._store = store
        self._max = max_bytes
        self._evict = evict
        self._heads: dict[str, tuple[int, Learner]] = {}  # agent -> (version, learner)
        # bytes of each held head, least recently used first (guarded by self._mu)
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self.held_bytes = 0  # sum of self._sizes, kept as it changes (guarded by self._mu)
        self._locks: dict[str, threading.RLock] = {}
        self._mu = threading.Lock()

    def __len__(self) -> int:
        return len(self._heads)

    def agents(self) -> list[str]:
        """The agents whose heads are held now."""
        return list(self._heads)

    def peek(self, agent_id: str) -> tuple[int, Learner] | None:
        """The held head, or None (nothing is loaded)."""
        return self._heads.get(agent_id)

    def lock(self, agent_id: str) -> threading.RLock:
        """The agent's lock: whoever changes its head (or learns on it) holds it."""
        with self._mu:
            return self._locks.setdefault(agent_id, threading.RLock())

    def get(self, agent_id: str) -> tuple[int, Learner]:
        """``(head version, learner)``, loaded from the store when not held."""
        held = self._heads.get(agent_id)
        if held is not None:
            with self._mu:
                if agent_id in self._sizes:
                    self._sizes.move_to_end(agent_id)
            return held
        with self._store.read() as repo:
            agent = repo.get_agent(agent_id)
            layers, labels = repo.load_state(agent_id, agent.head_version)
        learner = make_learner(agent.config)
        learner.load_state(layers, labels)
        self.hold(agent_id, agent.head_version, learner)
        return agent.head_version, learner

    def hold(self, agent_id: str, version: int, learner: Learner) -> None:
        """Keep ``learner`` as the agent's head (the caller holds the agent's lock), then evict
        least recently used idle heads while more than ``max_bytes`` are held."""
        self._heads[agent_id] = (version, learner)
        size = state_nbytes(learner)
        with self._mu:
            self.held_bytes += size - self._sizes.get(agent_id, 0)
            self._sizes[agent_id] = size
            self._sizes.move_to_end(agent_id)
            if self.held_bytes <= self._max:  # the usual case: nothing to scan
                return
            older = [a for a in self._sizes if a != agent_id]
        for other in older:
            if self.held_bytes <= self._max:
                break
            lock = self.lock(other)
            if not lock.acquire(blocking=False):  # busy in another thread: keep it
                continue
            try:
                held = self._heads.get(other)
                if held is not None:
                    self._evict(other, *held)
            finally:
                lock.release()

    def drop(self, agent_id: str) -> None:
        """Forget the agent's head (reloaded from the store when next needed)."""
        self._heads.pop(agent_id, None)
        with self._mu:
            self.held_bytes -= self._sizes.pop(agent_id, 0)
