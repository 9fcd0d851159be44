"""Group commit: concurrent callers' requests merged into one unit of work.

Callers (the ingest actor's request threads) queue their request and wait. The first waiting
caller that finds no commit running becomes the leader: it takes every queued request (up to
``max_requests`` / ``max_events``, oldest first), runs ``commit`` on them at once, hands each
caller its own answer, and steps down; callers that arrived meanwhile form the next group. So
one request alone is committed at once (no timer, no added latency), and under load each
commit (and its fsync) carries everything that arrived while the previous one ran. An answer
is handed back only after ``commit`` returned, i.e. after the transaction committed.

>>> g = GroupCommitter(lambda reqs: [sum(x) for x in reqs])
>>> g.submit([1, 2]), g.stats()["groups"]
(3, 1)
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


class _Request:
    __slots__ = ("item", "size", "done", "result", "error")

    def __init__(self, item: Any, size: int) -> None:
        self.item = item
        self.size = size
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommitter:
    """Merges concurrent :meth:`submit` calls into calls of ``commit(items) -> results``.

    ``commit`` gets the items in arrival order and returns one result per item; a result that
    is an exception is raised to that item's caller only. If ``commit`` raises, every caller
    of that group gets the exception (nothing of the group was committed).
    """

    def __init__(self, commit: Callable[[list[Any]], Sequence[Any]], max_requests: int = 256,
                 max_events: int = 20_000) -> None:
        self._commit = commit
        self.max_requests = max_requests
        self.max_events = max_events
        self._queue: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._leading = False
        self._groups = 0
        self._requests = 0
        self._largest = 0

    def submit(self, item: Any, size: int = 1) -> Any:
        """``item``'s result, once the group holding it is committed (``size``: its events)."""
        req = _Request(item, size)
        self._wait([req])
        if req.error is not None:
            raise req.error
        return req.result

    def submit_many(self, items: Sequence[tuple[Any, int]]) -> list[Any]:
        """Each ``(item, size)``'s result or its error (returned, not raised), in order, once
        every one is committed; they join the queue together, so one group holds them unless
        the group's bounds split them."""
        reqs = [_Request(item, size) for item, size in items]
        if reqs:
            self._wait(reqs)
        return [r.error if r.error is not None else r.result for r in reqs]

    def _wait(self, reqs: list[_Request]) -> None:
        with self._cv:
            self._queue.extend(reqs)
            while not all(r.done for r in reqs):
                if self._leading:
                    self._cv.wait()
                    continue
                self._leading = True
                group = self._take()
                self._cv.release()
                try:
                    self._run(group)
                finally:
                    self._cv.acquire()
                    self._leading = False
                    self._cv.notify_all()

    def _take(self) -> list[_Request]:
        group = [self._queue.popleft()]
        events = group[0].size
        while self._queue and len(group) < self.max_requests and \
                events + self._queue[0].size <= self.max_events:
            events += self._queue[0].size
            group.append(self._queue.popleft())
        return group

    def _run(self, group: list[_Request]) -> None:
        try:
            results = list(self._commit([r.item for r in group]))
            if len(results) != len(group):
                raise RuntimeError(f"commit returned {len(results)} results for {len(group)}")
            for r, res in zip(group, results, strict=True):
                if isinstance(res, BaseException):
                    r.error = res
                else:
                    r.result = res
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the group
            for r in group:
                r.error = exc
        finally:
            for r in group:
                r.done = True
            self._groups += 1
            self._requests += len(group)
            self._largest = max(self._largest, len(group))

    def stats(self) -> dict[str, int]:
        """Groups committed, requests they carried, the largest group."""
        return {"groups": self._groups, "requests": self._requests, "largest": self._largest}
