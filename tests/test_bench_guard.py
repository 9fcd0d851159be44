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


def test_reasons_lists_every_decision_with_the_checks_figures(capsys):
    from benchmarks.guard import main

    assert main(["--events", "800", "--elec2", "0", "--window", "100", "--reasons"]) == 0
    out = capsys.readouterr().out
    table = out.split("Every guard decision")[1]
    rows = [r for r in table.splitlines() if r.startswith("| label flip |")]
    assert rows and "| rollback |" in rows[0] and "fresh learners predict" in rows[0]
