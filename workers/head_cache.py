"""Warm copies of agents' head states inside the HTTP process: a predict at the head is answered
here, without a call to the serving actor.

What is cached: per agent, at most one ``(version, reads-only learner)``, the state the serving
actor holds for that version (its layers and labels, copied bit for bit; see
``ServingActor.predict(with_state=True)``). A cached learner is never changed after it is put:
a newer version replaces the entry, so threads may predict with it concurrently.

Invalidation: an entry answers only for the exact version it holds. The service reads the
agent's head from the store on every predict (one primary-key read, as before) and asks
:meth:`HeadCache.get` for that version; any other version — a new delta, a rollback, a forget, a
restarted learner — is a miss, answered by the serving actor as before. A version's state never
changes (version numbers are never reused; a forget makes a new head and only erases older
versions), so a hit is exactly the serving actor's answer for that version. Pinned versions,
``as_of`` and an unreached ``min_version`` always go to the serving actor.

Warming: a miss warms the entry only when the agent's head was already seen at the previous
predict (:meth:`HeadCache.seen_twice`): an agent whose head moves between every two predicts
(heavy ingest) costs nothing extra, one whose head holds is served here from its second
predict at that head.

Bounds: entries are evicted least recently used first past ``max_bytes`` (the learners' state
bytes) or ``max_entries``; the seen-heads table holds at most ``max_entries`` agents.

>>> c = HeadCache(max_bytes=100, max_entries=2)
>>> c.seen_twice("a", 3), c.seen_twice("a", 3), c.seen_twice("a", 4)
(False, True, False)
>>> c.put("a", 3, "learner-a3", 60); c.get("a", 3), c.get("a", 4)
('learner-a3', None)
>>> c.put("b", 1, "learner-b1", 60); c.get("a", 3), len(c)   # over 100 bytes: a goes
(None, 1)
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from agent.learner import Learner


class HeadCache:
    """agent id → (version, learner, bytes), LRU-bounded in bytes and entries; thread-safe."""

    def __init__(self, max_bytes: int, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[int, Learner, int]] = OrderedDict()
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.stats = {"hits": 0, "misses": 0, "warmed": 0}

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def get(self, agent_id: str, version: int) -> Learner | None:
        """The learner of ``agent_id`` at exactly ``version``, or None."""
        with self._lock:
            item = self._items.get(agent_id)
            if item is None or item[0] != version:
                self.stats["misses"] += 1
                return None
            self._items.move_to_end(agent_id)
            self.stats["hits"] += 1
            return item[1]

    def seen_twice(self, agent_id: str, version: int) -> bool:
        """Record that a predict saw ``agent_id``'s head at ``version``; True if the previous
        predict of this agent saw the same head (then warming the entry is worth a copy)."""
        with self._lock:
            before = self._seen.get(agent_id)
            self._seen[agent_id] = version
            self._seen.move_to_end(agent_id)
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
            return before == version

    def put(self, agent_id: str, version: int, learner: Learner, nbytes: int) -> None:
        """Hold ``learner`` as ``agent_id``'s state at ``version`` (replacing an older one;
        never an entry of a newer version). A state over ``max_bytes`` is not held."""
        if nbytes > self.max_bytes:
            return
        with self._lock:
            old = self._items.get(agent_id)
            if old is not None:
                if old[0] > version:
                    return
                self._bytes -= old[2]
            self._items[agent_id] = (version, learner, nbytes)
            self._items.move_to_end(agent_id)
            self._bytes += nbytes
            self.stats["warmed"] += 1
            while self._bytes > self.max_bytes or len(self._items) > self.max_entries:
                _, (_, _, size) = self._items.popitem(last=False)
                self._bytes -= size

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes
