"""Concurrent ingest requests of one HTTP process merged into one call of an ingest actor.

Each request thread of the HTTP app hands its checked events to the :class:`IngestEdge` of the
ingest actor it picked and waits. As in the ingest actor's group commit
(:mod:`workers.actors.group_commit`, the same class), the first waiting thread that finds no
call in flight sends every queued request at once (``IngestActor.ingest_many``) and hands each
thread its own answer or error; requests that arrive meanwhile go in the next call. One request
alone is sent at once, as a plain ``ingest`` call: no timer, no added latency. Under load a Ray
call (its submission here, its task and thread in the actor) carries many requests instead of
one, which is most of a one-event request's CPU (``benchmarks.ingest_paths --only single``).

Every request is still admitted (backpressure), stored and answered on its own, after its
transaction committed; the actor puts a call's requests in one group commit.

Requests on the HTTP app's event loop (:meth:`IngestEdge.submit_async`, vector events whose
agent the process knows) wait there, not in a worker thread: the same merging
(:class:`workers.actors.group_commit.LoopGroupCommitter`), the actor's answer awaited.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ray import ObjectRef

from storage.repository.event_groups import EventsIn
from workers.actors.group_commit import GroupCommitter, LoopGroupCommitter
from workers.contract import ActorRef


class IngestEdge:
    """``submit(agent_id, events)`` (in a thread) or ``await submit_async(agent_id, events)``
    (on the event loop) → the ingest actor's answer for that request.

    ``call(ref)`` waits for an actor call's result, raising its error (``actor_result``);
    ``await wait(ref)`` does so on the loop (``actor_result_async``).
    """

    def __init__(self, actor: ActorRef, call: Callable[[ObjectRef[Any]], Any],
                 wait: Callable[[ObjectRef[Any]], Awaitable[Any]],
                 max_requests: int = 256, max_events: int = 20_000) -> None:
        self._actor = actor
        self._call = call
        self._wait = wait
        self._groups = GroupCommitter(self._send, max_requests=max_requests, max_events=max_events)
        self._loop_groups = LoopGroupCommitter(self._send_async, max_requests=max_requests,
                                               max_events=max_events)

    def submit(self, agent_id: str, events: EventsIn) -> dict[str, Any]:
        return self._groups.submit((agent_id, events), len(events))  # type: ignore[no-any-return]

    async def submit_async(self, agent_id: str, events: EventsIn) -> dict[str, Any]:
        return await self._loop_groups.submit((agent_id, events), len(events))  # type: ignore[no-any-return]

    def _remote(self, requests: list[tuple[str, EventsIn]]) -> tuple[ObjectRef[Any], bool]:
        """The actor call for a group: ``ingest`` for one request (True), else ``ingest_many``."""
        if len(requests) == 1:
            return self._actor.ingest.remote(*requests[0]), True
        return self._actor.ingest_many.remote(requests), False

    def _send(self, requests: list[tuple[str, EventsIn]]) -> list[Any]:
        ref, one = self._remote(requests)
        got = self._call(ref)
        return [got] if one else list(got)

    async def _send_async(self, requests: list[tuple[str, EventsIn]]) -> list[Any]:
        ref, one = self._remote(requests)
        got = await self._wait(ref)
        return [got] if one else list(got)

    def stats(self) -> dict[str, int]:
        """Actor calls made (``groups``), requests they carried, the largest call (from
        threads and from the loop together), and the requests that waited on the loop."""
        a, b = self._groups.stats(), self._loop_groups.stats()
        return {"groups": a["groups"] + b["groups"], "requests": a["requests"] + b["requests"],
                "largest": max(a["largest"], b["largest"]), "on_loop": b["requests"]}
