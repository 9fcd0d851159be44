"""GroupCommitter (workers/actors/group_commit.py), used by the ingest actor's group commit and
by the HTTP process's merged calls (workers/ingest_edge.py), on random concurrent callers.

The reference is obvious: every item is committed exactly once, its caller gets the result
the commit function computed for it (or the error of its item, or of its whole group), each
caller's items are committed in the order it gave them, and no group breaks the bounds.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from workers.actors.group_commit import GroupCommitter, LoopGroupCommitter


class Boom(Exception):
    pass


def _outcomes(items: list[tuple[int, int, int]]) -> list[object]:
    """The commit's answers: the whole group fails now and then, an item fails now and then."""
    if any(i == 13 for _, i, _ in items) and len(items) % 2 == 0:
        raise Boom(f"group of {len(items)}")
    return [ValueError(f"bad {c}/{i}") if i % 7 == 3 else (c, i, s * 10) for c, i, s in items]


def _check(groups: list[list[tuple[int, int, int]]], got: dict[int, list[tuple[int, object]]],
           max_requests: int, max_events: int, stats: dict[str, int]) -> None:
    """Every item committed once, in its caller's order, its caller given its own answer (or
    its group's error); no group over the bounds; the counters add up."""
    seen = [(c, i) for grp in groups for c, i, _ in grp]
    assert len(seen) == len(set(seen)) == sum(len(v) for v in got.values())  # once each
    failed = {id(grp): any(i == 13 for _, i, _ in grp) and len(grp) % 2 == 0 for grp in groups}
    where = {(c, i): grp for grp in groups for c, i, _ in grp}
    for c, answers in got.items():
        order = [seen.index((c, i)) for i in range(len(answers))]
        assert order == sorted(order)  # a caller's items in the order it gave them
        for i, (size, ans) in enumerate(answers):
            if failed[id(where[(c, i)])]:
                assert isinstance(ans, Boom)
            elif i % 7 == 3:
                assert isinstance(ans, ValueError) and str(ans) == f"bad {c}/{i}"
            else:
                assert ans == (c, i, size * 10)
    for grp in groups:
        assert len(grp) <= max_requests
        assert len(grp) == 1 or sum(s for _, _, s in grp) <= max_events
    assert stats["groups"] == len(groups) and stats["requests"] == len(seen)
    assert stats["largest"] == max(len(grp) for grp in groups)


def _run(seed: int, max_requests: int, max_events: int) -> None:
    rng = random.Random(seed)
    groups: list[list[tuple[int, int, int]]] = []  # per commit: (caller, index, size)
    lock = threading.Lock()

    def commit(items: list[tuple[int, int, int]]) -> list[object]:
        time.sleep(rng.random() * 0.002)  # a commit takes a while: callers pile up
        with lock:
            groups.append(list(items))
        return _outcomes(items)

    g = GroupCommitter(commit, max_requests=max_requests, max_events=max_events)
    callers = 8
    got: dict[int, list[tuple[int, object]]] = {c: [] for c in range(callers)}

    def caller(c: int) -> None:
        crng = random.Random(seed * 100 + c)
        i = 0
        while i < 40:
            if crng.random() < 0.5:  # one item, raised errors
                size = crng.randint(1, 9)
                try:
                    got[c].append((size, g.submit((c, i, size), size)))
                except (ValueError, Boom) as e:
                    got[c].append((size, e))
                i += 1
            else:  # several at once, errors returned
                sizes = [crng.randint(1, 9) for _ in range(crng.randint(1, 5))]
                out = g.submit_many([((c, i + k, s), s) for k, s in enumerate(sizes)])
                got[c].extend(zip(sizes, out, strict=True))
                i += len(sizes)

    threads = [threading.Thread(target=caller, args=(c,)) for c in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    _check(groups, got, max_requests, max_events, g.stats())

@pytest.mark.parametrize("seed,max_requests,max_events", [(0, 256, 20_000), (1, 3, 20_000),
                                                          (2, 256, 12), (3, 1, 1), (4, 5, 15)])
def test_concurrent_callers_get_their_own_answers(seed, max_requests, max_events):
    _run(seed, max_requests, max_events)


def test_items_of_one_call_share_a_group_and_callers_merge():
    groups: list[int] = []
    g = GroupCommitter(lambda items: groups.append(len(items)) or items)
    assert g.submit_many([(x, 1) for x in "abc"]) == ["a", "b", "c"]
    assert groups == [3]
    assert g.submit_many([]) == []
    release = threading.Event()

    def slow(items):
        release.wait(10)
        groups.append(len(items))
        return items

    g = GroupCommitter(slow)
    first = threading.Thread(target=g.submit, args=("x",))
    first.start()
    while not g._leading:  # the first caller leads; the others queue behind it
        time.sleep(0.001)
    rest = [threading.Thread(target=g.submit, args=(k,)) for k in range(5)]
    for t in rest:
        t.start()
    while len(g._queue) < 5:
        time.sleep(0.001)
    release.set()
    for t in [first, *rest]:
        t.join()
    assert groups[1:] == [1, 5]


# ---- LoopGroupCommitter: the same rules for callers on one asyncio event loop -----------------

def _run_loop(seed: int, max_requests: int, max_events: int) -> None:
    rng = random.Random(seed)
    groups: list[list[tuple[int, int, int]]] = []

    async def commit(items: list[tuple[int, int, int]]) -> list[object]:
        await asyncio.sleep(rng.random() * 0.002)  # a commit takes a while: callers pile up
        groups.append(list(items))
        return _outcomes(items)

    g = LoopGroupCommitter(commit, max_requests=max_requests, max_events=max_events)
    got: dict[int, list[tuple[int, object]]] = {c: [] for c in range(8)}

    async def caller(c: int) -> None:
        crng = random.Random(seed * 100 + c)
        for i in range(40):
            size = crng.randint(1, 9)
            if crng.random() < 0.3:
                await asyncio.sleep(crng.random() * 0.001)
            try:
                got[c].append((size, await g.submit((c, i, size), size)))
            except (ValueError, Boom) as e:
                got[c].append((size, e))

    async def main() -> None:
        await asyncio.gather(*(caller(c) for c in range(8)))

    asyncio.run(main())
    assert sum(len(v) for v in got.values()) == 8 * 40
    assert max(len(grp) for grp in groups) > 1  # callers that waited together were merged
    _check(groups, got, max_requests, max_events, g.stats())

@pytest.mark.parametrize("seed,max_requests,max_events", [(0, 256, 20_000), (1, 3, 20_000),
                                                          (2, 256, 12), (4, 5, 15)])
def test_loop_callers_get_their_own_answers(seed, max_requests, max_events):
    _run_loop(seed, max_requests, max_events)


def test_loop_caller_alone_goes_at_once_and_a_cancelled_one_is_still_committed():
    committed: list[list[str]] = []
    async def main() -> None:
        release = asyncio.Event()

        async def commit(items: list[str]) -> list[str]:
            if items != ["first"]:
                await release.wait()
            committed.append(list(items))
            return [x.upper() for x in items]

        g = LoopGroupCommitter(commit)
        assert await g.submit("first") == "FIRST"  # alone: no timer, committed at once
        waiting = [asyncio.create_task(g.submit("a"))]
        await asyncio.sleep(0.01)  # "a" is being committed; "b" and "c" queue behind it
        waiting += [asyncio.create_task(g.submit(x)) for x in ("b", "c")]
        await asyncio.sleep(0.01)
        waiting[1].cancel()
        release.set()
        assert await waiting[0] == "A" and await waiting[2] == "C"
        with pytest.raises(asyncio.CancelledError):
            await waiting[1]
        assert g._task is None and not g._queue  # the committer stopped with the queue empty

    asyncio.run(main())
    assert committed == [["first"], ["a"], ["b", "c"]]  # "b" committed though its caller left
