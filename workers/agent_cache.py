"""A bounded cache of what the request path needs of an agent: its tenant and its config.

Both are fixed when the agent is created (DESIGN §7 has no route that changes them) and agents
are never deleted, so an entry never goes stale: the only invalidation is eviction, least
recently used first, past ``max_entries``. Counters and the head are not cached (the API shows
them fresh); they are read with the agent row.

>>> c = ConfigCache(max_entries=1)
>>> c.put("ag_1", "tn_1", {"kind": "classifier"}); c.get("ag_1")
('tn_1', {'kind': 'classifier'})
>>> c.put("ag_2", "tn_1", {}); c.get("ag_1") is None, len(c)
(True, 1)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class ConfigCache:
    """agent id → (tenant id, config), LRU-bounded, safe across threads."""

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, agent_id: str) -> tuple[str, dict[str, Any]] | None:
        with self._lock:
            item = self._items.get(agent_id)
            if item is not None:
                self._items.move_to_end(agent_id)
            return item

    def put(self, agent_id: str, tenant_id: str, config: dict[str, Any]) -> None:
        with self._lock:
            self._items[agent_id] = (tenant_id, config)
            self._items.move_to_end(agent_id)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)
