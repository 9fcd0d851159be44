"""The evaluation harness on subsamples of the shared data (skipped without ../shared/data)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.eval_common import have_data

needs_clinc = pytest.mark.skipif(not have_data("clinc150_data_full.json", "clinc150_domains.json"),
                                 reason="../shared/data (CLINC150) not present")
needs_locomo = pytest.mark.skipif(not have_data("locomo_dev.json"), reason="../shared/data not present")


@needs_clinc
def test_rls_one_pass_equals_batch_ridge_on_clinc():
    from sklearn.linear_model import Ridge

    from benchmarks import eval_clinc
    from benchmarks.eval_baselines import DeltaMem

    data = eval_clinc.load(quick=True)
    idx = eval_clinc.order(data, "class-incremental")[:600]  # first domains only: a few labels
    X, y = data["Xtr"][idx].astype(np.float64), [data["ytr"][i] for i in idx]
    m = DeltaMem({"rule": "rls", "ridge": 0.5})
    for s in range(0, len(y), 64):
        m.learn_many(X[s : s + 64], y[s : s + 64])
    labels = m._agent.labels
    assert labels == list(dict.fromkeys(y))
    K = X / np.linalg.norm(X, axis=1, keepdims=True)
    Y = np.eye(len(labels))[[labels.index(t) for t in y]]
    ridge = Ridge(alpha=0.5, fit_intercept=False, solver="cholesky").fit(K, Y)
    np.testing.assert_allclose(m._agent.state[0]["S"], ridge.coef_, atol=1e-8)
    q = data["Xte"][:300]
    assert m.predict_many(q) == [labels[j] for j in np.argmax(q @ ridge.coef_.T, axis=1)]


@needs_clinc
def test_class_incremental_order_and_first_domain():
    from benchmarks import eval_clinc

    data = eval_clinc.load(quick=True)
    idx = eval_clinc.order(data, "class-incremental")
    doms = [data["intent_domain"][data["ytr"][i]] for i in idx]
    # domains arrive one after the other, in file order
    assert list(dict.fromkeys(doms)) == data["domain_order"]
    assert sorted(idx.tolist()) == list(range(len(data["ytr"])))


@needs_locomo
@pytest.mark.slow
def test_harness_writes_its_table(tmp_path):
    from benchmarks import eval_locomo
    from benchmarks.evaluate import main

    assert main(["locomo", "--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "locomo.md").read_text()
    assert "| vector store (cosine top-5) |" in text and (tmp_path / "README.md").is_file()
    # the vector store's overall recall@5 in the table equals a direct computation
    conv = eval_locomo.load(quick=True)[0]
    ranks = eval_locomo._ranks_store(conv["turns"], [q["question"] for q in conv["qa"]])
    want = np.mean([eval_locomo.recall_at(r, q["evidence"]) for r, q in zip(ranks, conv["qa"], strict=True)])
    row = next(line for line in text.splitlines() if line.startswith("| vector store"))
    assert float(row.strip("| ").split("|")[-1]) == pytest.approx(want, abs=5e-4)


@needs_clinc
def test_the_real_service_and_the_in_process_learner_agree_on_clinc(api, tenant_a, tmp_path):
    """``deltamem eval clinc --service``: MiniLM texts through HTTP, the service's own micro-
    batches and encoder, against the in-process learner on the same events."""
    from benchmarks import eval_service

    configs = [{"rule": "rls", "ridge": 0.1},
               {"rule": "rls", "ridge": 0.01, "lift_dim": 1024, "dtype": "float32"},  # pending rows
               {"rule": "softmax", "dtype": "float32"}]  # rehearsal: the bounded reservoir (put rows)
    res = eval_service.run(tmp_path, api.url, tenant_a.api_key, sizes=(300, 60), configs=configs)
    assert len(res["results"]) == 3
    for name, r in res["results"].items():
        assert r["same"] == 1.0, name
        assert r["max_diff"] < 1e-4, (name, r["max_diff"])
        assert r["service_acc"] == r["local_acc"] > 0.3, name


@needs_clinc
def test_compute_benchmark_times_retraining_and_the_learner_side_by_side():
    from benchmarks.clinc_compute import measure

    rows = measure([{"rule": "rls", "ridge": 0.1}, {"rule": "softmax", "replay": 3}], [25, 100],
                   quick=True)
    assert [(r[0][:20], r[1]) for r in rows] == [('{"rule": "rls", "rid', 25), ('{"rule": "rls", "rid', 100),
                                                 ('{"rule": "softmax", ', 25), ('{"rule": "softmax", ', 100)]
    for (_, _, r25, l25, q25, a25), (_, _, r100, _, _, a100) in (rows[:2], rows[2:]):
        assert r25 > r100 > 0 and l25 > 0 and q25 == r25 / l25  # smaller batches: more refits
        # rls: the same ridge solution whatever the micro-batches; softmax: the same writes
        assert a25 == a100 > 0.5


@needs_clinc
def test_softmax_settings_table_shows_what_rehearsal_keeps(capsys):
    from benchmarks import clinc_softmax

    assert clinc_softmax.main(["--quick", "--betas", "0.5", "--replays", "0,7", "--seeds", "0,1"]) == 0
    rows = [line.split("|")[1:-1] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| 0.5 |")]
    assert [(r[1].strip(), r[2].strip()) for r in rows] == [
        ("0", "random"), ("0", "class-incremental"), ("7", "random"), ("7", "class-incremental")]
    first = {(r[1].strip(), r[2].strip()): float(r[4].split("/")[0]) for r in rows}
    # class-incremental: without rehearsal the first domain is forgotten, with it it is kept
    assert first[("7", "class-incremental")] > first[("0", "class-incremental")] + 0.3
