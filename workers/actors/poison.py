"""Poison isolation: an accepted event the learner cannot apply never stops its agent.

A micro-batch is learnt with :func:`learn_checked`: the learner's own ``learn_many`` and then a
check that what will be committed is finite (every array of the delta, and the state layers
when the delta's entries are large enough to overflow them), one pass over the delta's arrays. When that fails, :func:`find_poison`
bisects the batch on copies of the head learner: a part that learns cleanly is kept (its state
is the start of the next part), a failing part is split, and a failing single event is poison.
Only an event whose batch of one fails is rejected, so the cause is reproducible on the event
itself; a failure that says nothing about the events (:func:`is_transient`: memory, I/O, a
Ray actor, the database) is never bisected but raised, and the learner loop retries the batch.

The learner then marks the poison ``rejected`` (with the reason) and learns the remaining
events afresh from the head, in one batch: exactly what a learner that never saw the poison
computes. When no single event fails but the whole batch does (a combination), the caller
commits the first clean part alone and goes on from there.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from agent.config import AgentConfig
from agent.learner import Inputs, Learner
from agent.memory.delta import Delta
from workers.actors.factory import learn_events, make_learner

# above this |entry| of a delta (or |γ|), check the whole new state for overflow; below it,
# γ·S + EᵀA of a finite state stays finite (entries ≤ 1e100, ranks ≤ 1e8)
STATE_CHECK = 1e100
MAX_REASON = 500


class NonFinite(ArithmeticError):
    """The learnt delta or state is not finite."""


def _arrays(delta: Delta) -> list[tuple[str, np.ndarray]]:
    out = []
    for name, ld in delta.layers.items():
        for arr in (ld.A, ld.E, ld.dense):
            if arr is not None:
                out.append((name, arr))
    return out


def learn_checked(learner: Learner, payloads: Sequence[dict[str, Any]],
                  delta_dtype: str | None, inputs: Inputs | None = None,
                  keys: np.ndarray | None = None) -> Delta:
    """``learn_events`` and a finiteness check of what it produced; raises :class:`NonFinite`."""
    delta = learn_events(learner, payloads, delta_dtype, inputs, keys)
    big = 0.0  # the largest |entry| of the delta's arrays (NaN propagates)
    for name, arr in _arrays(delta):
        if arr.dtype.kind in "fc" and arr.size:
            m = float(np.max(np.abs(arr)))
            if not np.isfinite(m):
                raise NonFinite(f"the delta of layer {name!r} is not finite")
            big = max(big, m)
    for name, ld in delta.layers.items():
        if not np.isfinite(ld.gamma):
            raise NonFinite(f"the decay of layer {name!r} is not finite")
        big = max(big, abs(float(ld.gamma)))
    if big > STATE_CHECK:  # large enough that γ·S + EᵀA may overflow: check the state
        layers, _ = learner.state
        for name, arr in layers.items():
            if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
                raise NonFinite(f"the state of layer {name!r} is not finite")
    return delta


def is_transient(exc: BaseException) -> bool:
    """A failure that says nothing about the events: memory, I/O, a remote actor (Ray: the
    encoder of a text agent) or the database. Such a batch is retried, never bisected."""
    if isinstance(exc, (MemoryError, OSError, TimeoutError, ConnectionError)):
        return True
    cause = getattr(exc, "cause", None)  # a remote task's own error (RayTaskError) decides
    if isinstance(cause, BaseException) and cause is not exc:
        return is_transient(cause)
    return any(t.__module__.split(".")[0] in ("ray", "sqlalchemy", "psycopg", "sqlite3")
               for t in type(exc).__mro__)


def reason_of(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= MAX_REASON else text[:MAX_REASON - 1] + "…"


def copy_learner(config: dict[str, Any] | AgentConfig, learner: Learner) -> Learner:
    """A new learner holding a copy of ``learner``'s state."""
    layers, labels = learner.state
    out = make_learner(config)
    out.load_state({k: np.array(v, copy=True) for k, v in layers.items()}, list(labels))
    return out


def find_poison(start: Learner, payloads: Sequence[dict[str, Any]],
                attempt: Callable[[Learner, Sequence[dict[str, Any]]], object],
                copy: Callable[[Learner], Learner]) -> tuple[list[tuple[int, str]], int]:
    """Bisect ``payloads`` (learnt on copies of ``start``; ``start`` itself is untouched).

    ``attempt(learner, events)`` learns ``events`` into ``learner`` or raises.
    Returns ``(poison, clean)``: the indices of the events whose batch of one fails, with
    the reason, in order; and the length of the first part that learnt cleanly (0 when the
    first event is poison), which the caller may commit alone when there is no poison.
    """
    poison: list[tuple[int, str]] = []
    parts: list[tuple[int, int]] = []

    def go(learner: Learner, lo: int, hi: int) -> Learner:
        trial = copy(learner)
        try:
            attempt(trial, payloads[lo:hi])
        except Exception as exc:  # noqa: BLE001 - any failure of the computation
            if is_transient(exc):
                raise
            if hi - lo == 1:
                poison.append((lo, reason_of(exc)))
                return learner
            mid = (lo + hi) // 2
            return go(go(learner, lo, mid), mid, hi)
        parts.append((lo, hi))
        return trial

    go(start, 0, len(payloads))
    clean = parts[0][1] if parts and parts[0][0] == 0 else 0
    return poison, clean
