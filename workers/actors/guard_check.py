"""Attack or learnable drift? The guard's check before a rollback or a quarantine (issue 18 §3).

A fall of prequential accuracy says the head no longer predicts the stream; it does not say why.
Honest drift is a new concept that is consistent with itself: a learner that starts from
nothing and sees only the events after the change learns it, and predicts held-out events of
that stretch about as well as it predicts the stretch before the change. A label-flip burst or
a backdoor trigger makes the labels inconsistent with each other (the same region of inputs
labelled two ways): the same fresh learner predicts the stretch after the change worse than
the stretch before it, whatever it is fed.

The version before the change still predicts the events after an attack about as well as
anything learnt from them alone can; after honest drift, learning the new events alone beats it.

So the guard acts (rollback, quarantine) only when the events after the change are less
consistent than those before it *and* not better learnt than known
(:meth:`Consistency.learnable`, both by more than the policy's ``drop``); else it alerts.
:func:`consistency` measures a stretch: the 5-fold cross-fitted accuracy of fresh learners of
the agent's own configuration (each of five seeded random parts predicted by a learner that
learnt the other four, in micro-batches of :data:`BATCH`). :func:`explain` reads the events back from the
store (``2n`` around the change, at most ``GuardPolicy.sample``: the guard keeps nothing per
event) and compares the ``n`` after the change point with the ``n`` before it. It runs only
at a confirmed alarm (a few per stream), never per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select

from storage.models import Event
from storage.repository.applied import maybe_applied

__all__ = ["Consistency", "consistency", "explain", "needed", "recent_events", "BATCH", "FOLDS",
           "MIN_EVENTS"]

BATCH = 10  # the fresh learners learn in micro-batches of this many events
FOLDS = 5  # cross-fitting: each fresh learner learns 4/5 of a stretch and predicts the rest
MIN_EVENTS = 40  # the check compares at least this many events on either side of the change


def needed(window: int) -> int:
    """Events the check compares on either side of the change: half a window (at least
    :data:`MIN_EVENTS`). The guard waits for as many after the change before it decides."""
    return max(MIN_EVENTS, window // 2)


def recent_events(repo: Any, agent_id: str, m: int, skip: int = 0) -> tuple[np.ndarray, list[Any]] | None:
    """``m`` applied events of the agent (inputs, targets), oldest first, that end ``skip``
    events before its last applied one: one walk down the ``(agent_id, seq)`` index that stops
    after ``skip + m`` rows. None when an input is not a vector (an erased payload, a text with
    no stored embedding)."""
    rows = list(repo.session.scalars(select(Event).where(
        Event.agent_id == agent_id, maybe_applied(agent_id),
        Event.forgotten_version.is_(None))
        .order_by(Event.seq.desc()).offset(skip).limit(m)))
    events = [e.as_replay() for e in reversed(rows)]
    if not events or any("target" not in e or isinstance(e.get("input"), str) for e in events):
        return None
    try:
        X = np.asarray([np.asarray(e["input"], dtype=np.float64) for e in events])
    except (TypeError, ValueError):  # inputs of different lengths, or not numbers
        return None
    return (X, [e["target"] for e in events]) if X.ndim == 2 else None


def consistency(config: Any, X: np.ndarray, y: Sequence[Any]) -> float:
    """Held-out accuracy of fresh learners of ``config`` on ``(X, y)``: each of :data:`FOLDS`
    parts (a seeded random split, not every k-th event: a stream whose labels cycle would put
    whole classes in one part) is predicted by a learner that learnt only the others, in
    stream order."""
    from workers.actors.factory import make_learner

    order = np.random.default_rng(len(y)).permutation(len(y))  # seeded: the same parts each time
    hits = 0
    for f in range(FOLDS):
        test = sorted(order[f::FOLDS].tolist())
        held = set(test)
        train = [i for i in range(len(y)) if i not in held]
        learner: Any = make_learner(config)
        for s in range(0, len(train), BATCH):
            part = train[s:s + BATCH]
            learner.learn_many(X[part], [y[i] for i in part])
        preds = learner.predict_many(X[test])
        hits += sum(p["label"] is not None and p["label"] == y[i] for p, i in zip(preds, test, strict=True))
    return hits / len(y)


@dataclass(frozen=True)
class Consistency:
    before: float  # held-out accuracy of fresh learners on the n events before the change
    after: float  # … on the n events after it
    old: float  # accuracy of the version before the change (the rollback target) on those
    n: int

    def learnable(self, drop: float) -> bool:
        """Learnable drift: the events after the change are about as consistent as those
        before it (fresh learners' accuracy fell by at most ``drop``), or learning them alone
        predicts them better than the version before the change by more than ``drop`` (they
        carry a new concept the old version lacks). Otherwise (less consistent, and no better
        learnt than known) an attack: the guard acts."""
        return self.before - self.after <= drop or self.after - self.old > drop

    def describe(self) -> str:
        return (f"fresh learners predict the {self.n} events after the change at {self.after:.3f} "
                f"(held out), the {self.n} before it at {self.before:.3f}; the version before "
                f"the change predicts those after it at {self.old:.3f}")


def explain(repo: Any, agent_id: str, total: int, change: int, floor: int, n: int,
            cap: int, config: Any, old: Any) -> Consistency | None:
    """Fresh learners on the ``n`` events after ``change`` (the position, in events tested, of
    the first event after the change point) and the ``n`` before it, and ``old`` (a learner
    holding the version before the change) on those after it. ``total``: events tested so far;
    ``floor``: the position the guard's watch began at (no earlier event is read); ``cap``: at
    most this many events are read back (``2n``; those since, up to ``total``, are skipped
    on the index). None when fewer than ``n`` are there on either side (or ``2n > cap``)."""
    if min(total - change, change - floor) < n or 2 * n > cap:
        return None
    got = recent_events(repo, agent_id, 2 * n, skip=total - change - n)
    if got is None or len(got[1]) != 2 * n:
        return None
    X, y = got
    Xb, yb, Xa, ya = X[:n], y[:n], X[n:], y[n:]
    preds = old.predict_many(Xa)
    known = sum(p["label"] is not None and p["label"] == t for p, t in zip(preds, ya, strict=True)) / n
    return Consistency(consistency(config, Xb, yb), consistency(config, Xa, ya), known, n)
