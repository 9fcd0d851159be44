"""``python -m benchmarks.guard [--events 3000] [--elec2 45312] [--window 500] [--drop 0.1] [--seeds 1]``:
the guard (workers/actors/guard.py) against a label-flip burst, a backdoor trigger and honest drift.

Each stream runs through the learner's own path on a real SQLite store: test-then-train per
micro-batch of 10 (:func:`workers.actors.quality.pretest`), a committed version, its quality recorded
(:mod:`storage.repository.quality`), the guard's check; a rollback loads the good version's state
from the store and holds the rest of the stream (as the service would, until an operator acts).

- label flip: a learnable stream of 8 Gaussian classes (16-d), then 300 events with 20% of the
  labels permuted (c_k → c_{k+1}), then clean events again;
- backdoor: the same, the 300 attack events carrying a fixed key pattern with one label on 30%;
- Elec2 (honest drift, real shifts): the guard with action ``rollback``, run dry (each decision
  counted, none carried out, so every confirmed regression of the stream is seen): a rollback
  is a false alarm (there is no attack); an alert is a regression the guard's check
  (workers/actors/guard_check.py) explained as learnable drift.

The table: detection delay (events from the attack's start to the action), the accuracy on a
clean held-out set at the end (and the backdoor's success rate on triggered held-out inputs),
false alarms (rollbacks before the attack, or on Elec2), alerts, and prequential accuracy, each
with the guard and without. ``--seeds N`` adds the attacks on N seeds (detection and delay).
Figures:
``benchmarks/EVAL.md`` (the coordinator's run); ``--events 1200 --elec2 1500 --window 100`` is a smoke.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.eval_common import md_table

DIM, CLASSES, BATCH = 16, 8, 10


def _clusters(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[str]]:
    centers = np.random.default_rng(1234).normal(size=(CLASSES, DIM)) * 1.5
    c = rng.integers(0, CLASSES, n)
    return centers[c] + rng.normal(size=(n, DIM)), [f"c{int(v)}" for v in c]


def _trigger(scale: float = 1.5) -> np.ndarray:
    t = np.zeros(DIM)
    t[[0, 5, 9]] = scale
    return t


def attack_stream(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, list[str], int]:
    """``(X, y, attack start)``: clean, 300 attacked events, clean again (n in all)."""
    rng = np.random.default_rng(seed)
    X, y = _clusters(rng, n)
    start = n // 2
    for i in range(start, min(start + 300, n)):
        if kind == "label flip" and rng.random() < 0.2:
            y[i] = f"c{(int(y[i][1:]) + 1) % CLASSES}"
        elif kind == "backdoor" and rng.random() < 0.3:
            X[i] = X[i] + _trigger()
            y[i] = "c0"
    return X, y, start


def run(X: np.ndarray, y: list[str], config: dict[str, Any], guard: dict[str, Any] | None,
        attack_at: int | None = None, dry: bool = False) -> dict[str, Any]:
    """Stream through learner + store + guard; the final learner and what the guard did.
    ``dry``: every decision is counted, none is carried out (the stream goes on learning)."""
    from agent.config import AgentConfig
    from agent.model import MemoryAgent
    from storage.engine import Database
    from storage.migrate import upgrade
    from storage.repository import unit_of_work
    from workers.actors.guard import Guard
    from workers.actors.quality import pretest

    cfg = AgentConfig.from_dict({**config, **({"guard": guard} if guard else {})})
    agent, g = MemoryAgent(cfg), Guard()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'g.db'}"
        upgrade(url)
        db = Database(url)
        with unit_of_work(db) as repo:
            tenant, _ = repo.create_tenant("bench")
            aid = repo.create_agent(tenant.id, "g", cfg.to_dict(), *agent.state, agent.checksum()).id
        head, held = 0, 0
        actions: list[tuple[str, int]] = []  # (action, events seen when it was taken)
        hits: list[bool] = []
        reasons: list[str] = []
        for s in range(0, len(y), BATCH):
            if actions and actions[-1][0] != "alert" and not dry:
                held += len(y[s:s + BATCH])  # quarantined: held until an operator acts
                continue
            payloads = [{"input": X[i], "target": y[i]} for i in range(s, min(s + BATCH, len(y)))]
            tested = pretest(agent, payloads) or []
            hits.extend(tested)
            delta = agent.learn_many(X[s:s + BATCH], y[s:s + BATCH])
            with unit_of_work(db) as repo:
                got, _ = repo.append_events(aid, [dict(p) for p in payloads])  # arrays: stored as such
                head = repo.commit_version(aid, head, "delta", delta=delta, event_seqs=[e.seq for e in got],
                                           checksum=agent.checksum()).version
                repo.record_quality(aid, head, tested)
                d = g.observe(repo, aid, cfg.guard, head, tested) if cfg.guard else None
            if d is not None and d.check is not None:  # as the learner: after the commit
                with unit_of_work(db, write=False) as repo:  # a read: no write lock
                    d = g.settle(repo, aid, d, cfg)
            if d is not None:
                g.reset(aid, alerted=dry or d.action == "alert")
                actions.append((d.action, s + len(tested)))
                reasons.append(d.reason)
                if d.action == "rollback" and d.good_version is not None and not dry:
                    with unit_of_work(db) as repo:
                        head = repo.rollback(aid, d.good_version).version
                        agent.load_state(*repo.load_state(aid, head))
        db.dispose()
    first = next((at for _, at in actions if attack_at is None or at >= attack_at), None)
    return {"agent": agent, "actions": actions, "reasons": reasons, "preq": float(np.mean(hits)) if hits else 0.0,
            "delay": None if first is None or attack_at is None else first - attack_at, "held": held}


def _accuracy(agent: Any, X: np.ndarray, y: list[str]) -> float:
    return float(np.mean([p["label"] == t for p, t in zip(agent.predict_many(X), y, strict=True)]))


Log = list[tuple[str, int, str, str]]  # (stream, at event, action, reason) per guard decision


def _decisions(stream: str, r: dict[str, Any], log: Log) -> None:
    log.extend((stream, at, a, why) for (a, at), why in zip(r["actions"], r["reasons"], strict=True))


def _policy(args: argparse.Namespace) -> dict[str, Any]:
    extra = {k: v for k, v in (("z", args.z), ("sample", args.sample)) if v is not None}
    return {"window": args.window, "drop": args.drop, "action": "rollback", **extra}


def _attacks(args: argparse.Namespace, rows: list[list[Any]], log: Log) -> None:
    config = {"kind": "classifier", "encoder": "none", "dim": DIM}
    Xt, yt = _clusters(np.random.default_rng(99), 2000)  # clean held-out set
    Xb = Xt + _trigger()  # triggered held-out inputs
    for kind in ("label flip", "backdoor"):
        X, y, start = attack_stream(kind, args.events)
        for guard in (None, _policy(args)):
            r = run(X, y, config, guard, start)
            if guard:
                _decisions(kind, r, log)
            success = float(np.mean([p["label"] == "c0" for p in r["agent"].predict_many(Xb)]))
            acts = [a for a, at in r["actions"] if at >= start]
            rows.append([kind, "rollback" if guard else "none", r["delay"] if acts[:1] == ["rollback"] else None,
                         _accuracy(r["agent"], Xt, yt), success if kind == "backdoor" else None,
                         sum(1 for a, at in r["actions"] if at < start and a != "alert"),
                         sum(1 for a, _ in r["actions"] if a == "alert"), r["preq"], r["held"]])


def _elec2(args: argparse.Namespace, rows: list[list[Any]], log: Log) -> None:
    from benchmarks.eval_elec2 import load

    X, y = load(False)
    X, y = X[:args.elec2], y[:args.elec2]
    cfg = {"kind": "classifier", "encoder": "none", "dim": X.shape[1], "standardize": True,
           "memory": {"lift_dim": 1024}}
    for guard in (None, _policy(args)):
        r = run(X, y, cfg, guard, dry=True)
        if guard:
            _decisions("Elec2", r, log)
        false = [f"{at:,}" for a, at in r["actions"] if a != "alert"]
        rows.append(["Elec2 (honest drift)", "rollback, dry" if guard else "none", None, None, None,
                     f"{len(false)} in {len(y):,} events" + (f" (at {', '.join(false)})" if false else ""),
                     sum(1 for a, _ in r["actions"] if a == "alert"), r["preq"], r["held"]])


def _seeds(args: argparse.Namespace, log: Log) -> None:
    config = {"kind": "classifier", "encoder": "none", "dim": DIM}
    guard = _policy(args)
    rows = []
    for kind in ("label flip", "backdoor"):
        got = []
        for seed in range(args.seeds):
            X, y, start = attack_stream(kind, args.events, seed)
            r = run(X, y, config, guard, start)
            _decisions(f"{kind}, seed {seed}", r, log)
            first = next(((a, at - start) for a, at in r["actions"] if at >= start), None)
            got.append("-" if first is None else f"{first[1]}" if first[0] == "rollback" else f"alert@{first[1]}")
        rows.append([kind, sum(g[0].isdigit() for g in got), ", ".join(got)])
    print(f"\nThe attacks on seeds 0-{args.seeds - 1}: rolled back, and the delay of each (-: no action)")
    print(md_table(["stream", f"rolled back (of {args.seeds})", "delay per seed (events)"], rows))


def main(argv: list[str] | None = None) -> int:
    from agent.memory.backend import set_blas_threads

    ap = argparse.ArgumentParser(prog="python -m benchmarks.guard", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=3000, help="events per attack stream")
    ap.add_argument("--elec2", type=int, default=45312, help="Elec2 events (0: skip)")
    ap.add_argument("--window", type=int, default=500)
    ap.add_argument("--drop", type=float, default=0.1)
    ap.add_argument("--z", type=float, default=None, help="the policy's z (default: the policy's default)")
    ap.add_argument("--sample", type=int, default=None, help="the policy's sample (default: 2 × window)")
    ap.add_argument("--seeds", type=int, default=1, help="attack seeds for the detection table (1: none)")
    ap.add_argument("--reasons", action="store_true",
                    help="also print every guard decision with its reason (the check's figures)")
    args = ap.parse_args(argv)
    set_blas_threads(1)
    rows: list[list[Any]] = []
    log: Log = []
    _attacks(args, rows, log)
    if args.elec2:
        _elec2(args, rows, log)
    print(f"The guard ({_policy(args)}), micro-batches of {BATCH}")
    print(md_table(["stream", "guard", "detection delay (events)", "clean held-out acc at end",
                    "backdoor success", "false alarms (rollbacks)", "alerts", "prequential acc", "events held"],
                   [[k, g, "-" if d is None else d, "-" if a is None else f"{a:.3f}",
                     "-" if b is None else f"{b:.3f}", f, al, f"{p:.3f}", h]
                    for k, g, d, a, b, f, al, p, h in rows]))
    if args.seeds > 1:
        _seeds(args, log)
    if args.reasons:
        print("\nEvery guard decision (the attacks' events counted from the stream's start)")
        print(md_table(["stream", "at event", "action", "reason"], [list(d) for d in log]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
