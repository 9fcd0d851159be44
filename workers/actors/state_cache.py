"""A serving replica's composed states: ``(agent id, version) → reads-only learner``, an LRU
bounded in bytes, where a state being read is never changed.

Why the readers count: a published delta is applied *in place* onto the exact parent version
it was computed from (``Learner.apply``: new arrays, then the labels), and the entry moves to
the new version. A predict that took the parent's learner a moment before would otherwise read
it half changed (the new rows without their labels: an ``IndexError``, or an answer mixing two
versions under one version number). So :meth:`StateCache.reading` counts its readers, and
:meth:`StateCache.apply` takes the parent out of the cache first (no new reader can find it),
waits for the readers it already has (one predict at most each), and only then changes it.

Invalidation: an entry answers only for its exact ``(agent, version)``; a version's state never
changes (version numbers are never reused). :meth:`drop_agent` (a rollback or a forget)
removes an agent's entries; a reader holding one finishes with the state it resolved.

>>> from types import SimpleNamespace as L
>>> c = StateCache(max_bytes=100, nbytes=lambda learner: 60)
>>> with c.reading(("a", 1), lambda: L(v=1)) as x: x.v
1
>>> with c.reading(("a", 1), lambda: L(v=9)) as x: x.v      # a hit: not loaded again
1
>>> with c.reading(("b", 1), lambda: L(v=2)) as x: x.v      # over 100 bytes: a goes
2
>>> len(c), c.stats["hits"], c.stats["misses"]
(1, 1, 2)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Key = tuple[str, int]  # (agent id, version)


class _Entry:
    __slots__ = ("learner", "nbytes", "readers")

    def __init__(self, learner: Any, nbytes: int) -> None:
        self.learner = learner
        self.nbytes = nbytes
        self.readers = 0  # predicts holding it now (guarded by the cache's lock)


class StateCache:
    """LRU of reads-only learners by ``(agent, version)``; thread-safe (a threaded actor)."""

    def __init__(self, max_bytes: int, nbytes: Callable[[Any], int]) -> None:
        self.max_bytes = max_bytes
        self._nbytes = nbytes
        self._items: OrderedDict[Key, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Condition()
        self.stats = {"hits": 0, "misses": 0, "applied": 0}

    @contextmanager
    def reading(self, key: Key, load: Callable[[], Any]) -> Iterator[Any]:
        """The learner of ``key`` (``load()`` builds it on a miss, outside the lock), held
        unchanged until the block ends."""
        with self._lock:
            entry = self._items.get(key)
            if entry is not None:
                self._items.move_to_end(key)
                self.stats["hits"] += 1
                entry.readers += 1
        if entry is None:
            self.stats["misses"] += 1
            learner = load()
            entry = _Entry(learner, self._nbytes(learner))
            with self._lock:
                entry.readers += 1
                self._put(key, entry)
        try:
            yield entry.learner
        finally:
            with self._lock:
                entry.readers -= 1
                if entry.readers == 0:
                    self._lock.notify_all()

    def apply(self, agent_id: str, parent: int, version: int, apply: Callable[[Any], None]) -> bool:
        """Move ``(agent, parent)`` to ``(agent, version)`` with ``apply(learner)`` (the
        delta, in place), once no predict reads it. False: the parent is not held."""
        with self._lock:
            entry = self._pop((agent_id, parent))
            if entry is None:
                return False
            while entry.readers:  # out of the cache: no new reader finds it
                self._lock.wait()
        apply(entry.learner)  # nobody else holds this entry now
        entry.nbytes = self._nbytes(entry.learner)
        with self._lock:
            self._put((agent_id, version), entry)
            self.stats["applied"] += 1
        return True

    def drop_agent(self, agent_id: str) -> None:
        """Forget every state of ``agent_id`` (after a rollback or a forget)."""
        with self._lock:
            for key in [k for k in self._items if k[0] == agent_id]:
                self._pop(key)

    def _put(self, key: Key, entry: _Entry) -> None:
        self._pop(key)
        self._items[key] = entry
        self._bytes += entry.nbytes
        while self._bytes > self.max_bytes and len(self._items) > 1:
            _, old = self._items.popitem(last=False)  # a reader keeps its learner
            self._bytes -= old.nbytes

    def _pop(self, key: Key) -> _Entry | None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self._bytes -= entry.nbytes
        return entry

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return self._bytes
