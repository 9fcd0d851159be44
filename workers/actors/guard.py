"""The guard: an agent's policy against regressions of its prequential quality (issue 18 §3).

Policy ``{"window": W, "drop": d, "action": "alert" | "quarantine" | "rollback", "sample": n, "z": z}``
(:class:`agent.config.GuardPolicy`). After each committed micro-batch the learner feeds the
batch's misses (1 = the prediction made before learning was wrong) to a Page-Hinkley test for an
increase of the error rate (:class:`PageHinkley`: River's ``drift.PageHinkley`` in mode ``up``,
the reference it is tested against) with ``min_instances = W``, ``delta = d/2``, ``threshold =
d·W/4``. An alarm is confirmed on the stored totals (:mod:`storage.repository.quality`), at
the alarm or at any commit of the ``2W`` events after it: the accuracy over the last ``W``
events must be more than ``d`` below the accuracy over the ``W`` events up to the test's change
point (where its cumulative sum was lowest: the last event before
the error rate rose; whole versions). Honest drift that moves accuracy less than ``d`` never acts.

Actions, each a record in ``guard_actions`` with its reason (``GET /v1/agents/{id}/guard``):

- ``alert``: the record, and a metric;
- ``quarantine``: new events stay accepted and durable but are not applied ("held": pending,
  counted in ``events_held``) until ``POST /release`` (or ``/forget`` of them);
- ``rollback``: a rollback version to the last version before the regression began (the one that
  ends the reference window, at the change point), then quarantine. The versions after it stay readable, so a rollback to
  one of them undoes it; release resumes learning on the rolled-back state.

A rollback or quarantine is gated first on the stream's own variation
(:mod:`workers.actors.guard_spread`, policy ``z``): a fall within ``z`` standard deviations of
the difference of two windows, measured on the stream's earlier windows, is an ``alert``.
Beyond it, the decision is checked (:mod:`workers.actors.guard_check`, once half a
window of events after the change is in): a regression that fresh learners explain as
learnable drift (the events after the change about as consistent as those before, or learnt
better than the version before the change knows them) is recorded as an ``alert`` with the
figures in its reason; only an attack's signature (less consistent, and no better learnt than
known) acts. Policy ``sample`` (default ``2 × window``; 0: no check) caps the events it reads back.
The learner feeds the detector in its commit (:meth:`Guard.observe`: indexed reads only) and
runs the check after it, on a read transaction (:meth:`Guard.settle`): the fits never hold the
write lock that ingest's group commits wait on.

An operator's release is a decision about those events: the guard takes no action on the events
a release applies, and watches again from the first event after them.

The detector's state lives in the learner shard's memory (bounded: a few numbers per guarded
agent); a restarted or reloaded learner starts a fresh test, which cannot alarm before ``W``
new events. Nothing here scans an agent's history: the check reads at most ``sample`` of the
last events back, at a confirmed alarm only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from storage.errors import InputError
from storage.models import Agent, GuardAction, Version
from workers.actors.guard_check import explain, needed
from workers.actors.guard_spread import spread, window_accuracies

__all__ = ["PageHinkley", "Decision", "Guard", "record_action", "window_drop", "guard_json",
           "check_release", "set_quarantined", "detector"]


class PageHinkley:
    """River's Page-Hinkley test (mode ``up``): an alarm when the faded cumulative deviation of
    the values from their running mean, less ``delta`` a step, rises ``threshold`` above its
    minimum; the test starts again after an alarm."""

    def __init__(self, min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0,
                 alpha: float = 1 - 0.0001) -> None:
        self.min_instances, self.delta, self.threshold, self.alpha = min_instances, delta, threshold, alpha
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.n, self.mean, self.sum, self.min = 0, 0.0, 0.0, float("inf")
        self.min_n = 0  # values seen when the sum was at its minimum: the change-point estimate
        self.drift_detected = False

    def update(self, x: float) -> bool:
        if self.drift_detected:
            self._reset()
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.sum = self.alpha * self.sum + (x - self.mean) - self.delta
        if self.sum < self.min:
            self.min, self.min_n = self.sum, self.n
        self.drift_detected = self.n >= self.min_instances and self.sum - self.min > self.threshold
        return self.drift_detected


def detector(window: int, drop: float) -> PageHinkley:
    return PageHinkley(min_instances=window, delta=drop / 2, threshold=drop * window / 4)


@dataclass(frozen=True)
class Decision:
    action: str
    reason: str
    good_version: int | None  # the last version before the regression (rollback target)
    # a rollback/quarantine still to be checked against learnable drift (Guard.settle), after
    # the commit and outside any write transaction: (events tested, change, floor, n, cap, drop)
    check: tuple[int, int, int, int, int, float] | None = None


def window_drop(repo: Any, agent_id: str, version: int, window: int,
                change: int | None = None) -> tuple[float, float, int, int] | None:
    """``(reference accuracy, recent accuracy, last version of the reference window, events
    tested at its end)``: the
    recent window is the last ``window`` events, the reference the ``window`` events up to the
    change point ``change`` (events tested; default: just before the recent window). None while
    the stream has no whole reference window."""
    row = repo.session.scalars(select(Version).where(
        Version.agent_id == agent_id, Version.version == version)).one()
    if row.tested_total is None or row.hits_total is None:
        return None
    recent = repo.tested_at(agent_id, row.tested_total - window)
    if recent is None:
        return None
    end = recent if change is None else repo.tested_at(agent_id, change)
    if end is None:
        return None
    ref = repo.tested_at(agent_id, end[0] - window)
    t0, h0 = (ref[0], ref[1]) if ref is not None else (0, 0)
    if end[0] - t0 < window:
        return None
    acc_recent = (row.hits_total - recent[1]) / (row.tested_total - recent[0])
    return (end[1] - h0) / (end[0] - t0), acc_recent, end[2], end[0]


@dataclass
class _Test:
    ph: PageHinkley
    offset: int  # events the agent had tested before the test's first value
    floor: int  # events tested when the watch began (the check reads no earlier event)
    suspect: int | None = None  # earliest change point of an alarm not yet confirmed


class Guard:
    """The detectors of one learner shard's guarded agents."""

    def __init__(self) -> None:
        self._tests: dict[str, _Test] = {}
        self._floors: dict[str, int] = {}  # where the watch began, kept across an alert's reset
        self._alerted: set[str] = set()  # agents whose last decision was an alert
        self.counts: dict[str, int] = {}  # actions taken, by kind (metrics)

    def reset(self, agent_id: str, alerted: bool | None = None) -> None:
        """A fresh test for the agent. ``alerted`` (default: whether this guard's last decision
        for it was an alert): the state did not move, so the check may still read the events
        before it; after anything else (a rollback, a quarantine, a release) only those after."""
        st = self._tests.pop(agent_id, None)
        self._floors.pop(agent_id, None)
        last = agent_id in self._alerted
        self._alerted.discard(agent_id)
        if (last if alerted is None else alerted) and st is not None:
            self._floors[agent_id] = st.floor

    def observe(self, repo: Any, agent_id: str, policy: Any, version: int,
                hits: list[bool], row_total: int | None = None) -> Decision | None:
        """Feed a committed batch's outcomes (in the commit's transaction: indexed reads only);
        a decision when the policy must act, which may still carry its check: take it with
        :meth:`settle` outside the write transaction. ``row_total``: the version's
        ``tested_total`` when the caller holds it."""
        decision = self._check(repo, agent_id, policy, version, hits, row_total)
        if decision is not None and decision.check is None:
            (self._alerted.add if decision.action == "alert" else self._alerted.discard)(agent_id)
        return decision

    def check(self, repo: Any, agent_id: str, policy: Any, version: int,
              hits: list[bool], row_total: int | None = None,
              config: Any = None) -> Decision | None:
        """:meth:`observe` then :meth:`settle` in one session (the harness and tests; the
        learner settles outside its commit). ``config``: the agent's (default: its row's)."""
        d = self.observe(repo, agent_id, policy, version, hits, row_total)
        return None if d is None else self.settle(repo, agent_id, d, config)

    def _check(self, repo: Any, agent_id: str, policy: Any, version: int, hits: list[bool],
               row_total: int | None) -> Decision | None:
        if row_total is None:
            row_total = repo.session.scalar(select(Version.tested_total).where(
                Version.agent_id == agent_id, Version.version == version))
        before = int(row_total or len(hits)) - len(hits)
        st = self._tests.get(agent_id)
        if st is None:
            floor = self._floors.pop(agent_id, before)
            st = self._tests[agent_id] = _Test(detector(policy.window, policy.drop), before, floor)
        change = None
        for i, h in enumerate(hits):
            if st.ph.drift_detected:  # the test starts again with this value
                st.offset = before + i
            if st.ph.update(0.0 if h else 1.0):
                change = st.offset + st.ph.min_n
        if change is None:  # no alarm: keep watching an unconfirmed one for 2W events
            if st.suspect is None or before + len(hits) - st.suspect > 2 * policy.window:
                st.suspect = None
                return None
            change = st.suspect
        st.suspect = change if st.suspect is None else min(st.suspect, change)
        got = window_drop(repo, agent_id, version, policy.window, st.suspect)
        if got is not None and got[0] - got[1] <= 0:
            st.suspect = None  # no drop at all: an earlier alarm was noise
        if got is None or got[0] - got[1] <= policy.drop:
            return None
        ref, recent, good, end = got
        at = st.suspect if st.suspect is not None else change
        reason = (f"prequential accuracy fell from {ref:.3f} to {recent:.3f} over the last "
                  f"{policy.window} events (drop > {policy.drop}; Page-Hinkley alarm at version "
                  f"{version}, change after event {at})")
        if policy.action == "alert":
            return Decision(policy.action, reason, good)
        if policy.z > 0:  # the noise gate (workers/actors/guard_spread.py)
            sp = spread(window_accuracies(repo, agent_id, end, policy.window, st.floor),
                        ref, policy.window, policy.z)
            if ref - recent <= sp.need:
                return Decision("alert", f"{reason}; not a {policy.action}: "
                                f"{sp.describe(ref - recent, policy.z)}", None)
        if policy.sample == 0:
            return Decision(policy.action, reason, good)
        need = needed(policy.window)
        if before + len(hits) - at < need:
            return None  # the check waits for enough events after the change (within 2W)
        return Decision(policy.action, reason, good,
                        (before + len(hits), at, st.floor, need, policy.sample, policy.drop))

    def settle(self, repo: Any, agent_id: str, d: Decision, config: Any = None) -> Decision:
        """The decision to take: ``d`` itself, or, when it still has a check, the check's
        verdict (:func:`workers.actors.guard_check.explain`: fresh learners fitted on the events
        around the change). The learner runs this after the commit that raised ``d`` and
        before the agent's next batch, in a read transaction: the fits never hold the write
        lock. ``config``: the agent's (default: read from its row)."""
        if d.check is None:
            return d
        total, at, floor, need, cap, drop = d.check
        if config is None:
            config = repo.session.get(Agent, agent_id).config
        c = None if d.good_version is None else explain(
            repo, agent_id, total, at, floor, need, cap, config,
            _holding(repo, agent_id, d.good_version, config))
        if c is None:
            out = Decision(d.action, f"{d.reason}; too few events before the change (or read "
                           f"back) to check it", d.good_version)
        elif c.learnable(drop):
            out = Decision("alert", f"{d.reason}; not a {d.action}: learnable drift "
                           f"({c.describe()})", None)
        else:
            out = Decision(d.action, f"{d.reason}; an attack, not learnable drift "
                           f"({c.describe()})", d.good_version)
        (self._alerted.add if out.action == "alert" else self._alerted.discard)(agent_id)
        return out


def _holding(repo: Any, agent_id: str, version: int, config: Any) -> Any:
    """A learner holding ``version``'s state (read at a confirmed alarm only)."""
    from workers.actors.factory import make_learner

    learner = make_learner(config)
    learner.load_state(*repo.load_state(agent_id, version))
    return learner


def record_action(repo: Any, agent_id: str, action: str, version: int | None, reason: str) -> None:
    repo.session.add(GuardAction(agent_id=agent_id, action=action, version=version, reason=reason))
    repo.session.flush()


def set_quarantined(repo: Any, agent_id: str, on: bool) -> None:
    agent = repo.session.get(Agent, agent_id)
    agent.quarantined = on
    repo.session.flush()


def check_release(repo: Any, agent_id: str, event_ids: list[str] | None, held: int) -> None:
    """``event_ids`` given: they must be every held event (events apply in order, so a release
    cannot skip one: forget those to drop first). :class:`InputError` naming ``event_ids``."""
    if event_ids is None:
        return
    if not isinstance(event_ids, list) or not all(isinstance(e, str) for e in event_ids):
        raise InputError("event_ids", "expected a list of event ids")
    pending = repo.pending_events(agent_id, limit=len(event_ids) + 1)
    if held != len(pending) or {e.client_id for e in pending} != set(event_ids):
        raise InputError("event_ids", f"a release applies the held events in order: list all {held} "
                         "of them (or omit event_ids); forget the ones to drop first")


def guard_json(repo: Any, agent: Any, limit: int = 100) -> dict[str, Any]:
    """``GET /guard``: the policy, whether new events are held, the latest actions first."""
    rows = repo.session.scalars(select(GuardAction).where(GuardAction.agent_id == agent.id)
                                .order_by(GuardAction.id.desc()).limit(limit))
    return {"policy": agent.config.get("guard"), "quarantined": bool(agent.quarantined),
            "actions": [{"id": r.id, "at": r.at.isoformat(), "action": r.action,
                         "version": r.version, "reason": r.reason} for r in rows]}
