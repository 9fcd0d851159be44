"""Smoke of ``benchmarks/guard.py`` on a short stream (figures: the coordinator's run): the
harness streams through the learner's path on a real store, the guard rolls a label-flip burst
back and holds the rest, and without a guard nothing acts."""

from __future__ import annotations

from benchmarks.guard import DIM, attack_stream, run

CONFIG = {"kind": "classifier", "encoder": "none", "dim": DIM}


def test_label_flip_is_detected_and_rolled_back_only_with_a_guard():
    X, y, start = attack_stream("label flip", 800)
    plain = run(X, y, CONFIG, None, start)
    assert plain["actions"] == [] and plain["held"] == 0 and plain["delay"] is None
    guarded = run(X, y, CONFIG, {"window": 100, "drop": 0.1, "action": "rollback"}, start)
    assert [a for a, _ in guarded["actions"]] == ["rollback"]
    assert 0 < guarded["delay"] <= 300 and guarded["held"] > 0
