"""Group commit: concurrent callers' requests merged into one unit of work.

Callers (the ingest actor's request threads) queue their request and wait. The first waiting
caller that finds no commit running becomes the leader: it takes every queued request (up to
``max_requests`` / ``max_events``, oldest first), runs ``commit`` on them at once, hands each
caller its own answer, and steps down; callers that arrived meanwhile form the next group. So
one request alone is committed at once (no timer, no added latency), and under load each
commit (and its fsync) carries everything that arrived while the previous one ran. An answer
is handed back only after ``commit`` returned, i.e. after the transaction committed.
:class:`LoopGroupCommitter` does the same for callers on one asyncio event loop (the HTTP
process's requests, :mod:`workers.ingest_edge`): no thread waits, the commit is awaited.

>>> g = GroupCommitter(lambda reqs: [sum(x) for x in reqs])
>>> g.submit([1, 2]), g.stats()["groups"]
(3, 1)
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any


class _Request:
    __slots__ = ("item", "size", "done", "result", "error", "future")

    def __init__(self, item: Any, size: int) -> None:
        self.item = item
        self.size = size
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.future: asyncio.Future[Any] | None = None  # LoopGroupCommitter's callers


class _Counts:
    """Groups committed, requests they carried, the largest group."""

    def __init__(self) -> None:
        self.groups = self.requests = self.largest = 0

    def add(self, n: int) -> None:
        self.groups += 1
        self.requests += n
        self.largest = max(self.largest, n)

    def stats(self) -> dict[str, int]:
        return {"groups": self.groups, "requests": self.requests, "largest": self.largest}


def _take(queue: deque[_Request], max_requests: int, max_events: int) -> list[_Request]:
    """The oldest queued requests that fit one group (at least one)."""
    group = [queue.popleft()]
    events = group[0].size
    while queue and len(group) < max_requests and events + queue[0].size <= max_events:
        events += queue[0].size
        group.append(queue.popleft())
    return group


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
        self._counts = _Counts()

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
                group = _take(self._queue, self.max_requests, self.max_events)
                self._cv.release()
                try:
                    self._run(group)
                finally:
                    self._cv.acquire()
                    self._leading = False
                    self._cv.notify_all()

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
            self._counts.add(len(group))

    def stats(self) -> dict[str, int]:
        """Groups committed, requests they carried, the largest group."""
        return self._counts.stats()


class LoopGroupCommitter:
    """:class:`GroupCommitter` for callers on one asyncio event loop: ``await submit(item,
    size)``; ``commit(items)`` is a coroutine function returning one result per item.

    The first caller that finds no commit running starts a task that commits everything
    queued (within the bounds), then what queued meanwhile, until the queue is empty. A caller
    that is cancelled stops waiting; its item is still committed with its group.

    >>> async def commit(items): return [sum(x) for x in items]
    >>> g = LoopGroupCommitter(commit)
    >>> asyncio.run(g.submit([1, 2])), g.stats()["groups"]
    (3, 1)
    """

    def __init__(self, commit: Callable[[list[Any]], Awaitable[Sequence[Any]]],
                 max_requests: int = 256, max_events: int = 20_000) -> None:
        self._commit = commit
        self.max_requests = max_requests
        self.max_events = max_events
        self._queue: deque[_Request] = deque()
        self._task: asyncio.Task[None] | None = None  # the running committer (a strong ref)
        self._counts = _Counts()

    async def submit(self, item: Any, size: int = 1) -> Any:
        """``item``'s result (or its error, raised), once the group holding it is committed."""
        loop = asyncio.get_running_loop()
        req = _Request(item, size)
        req.future = loop.create_future()
        self._queue.append(req)
        if self._task is None:
            self._task = loop.create_task(self._run())
        return await req.future

    async def _run(self) -> None:
        try:
            while self._queue:
                group = _take(self._queue, self.max_requests, self.max_events)
                try:
                    results = list(await self._commit([r.item for r in group]))
                    if len(results) != len(group):
                        raise RuntimeError(f"commit returned {len(results)} results for "
                                           f"{len(group)}")
                except asyncio.CancelledError:  # the loop is closing: no caller waits on
                    for r in group:             # a future that will never be set
                        r.future.cancel()  # type: ignore[union-attr]
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to every caller of the group
                    results = [exc] * len(group)
                for r, res in zip(group, results, strict=True):
                    fut = r.future
                    assert fut is not None
                    if fut.done():  # its caller was cancelled
                        continue
                    if isinstance(res, BaseException):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)
                self._counts.add(len(group))
        finally:
            self._task = None
            for r in self._queue:  # only when cancelled: nothing commits them now
                if r.future is not None and not r.future.done():
                    r.future.cancel()
            self._queue.clear()

    def stats(self) -> dict[str, int]:
        """Groups committed, requests they carried, the largest group."""
        return self._counts.stats()
