"""CLINC150 intent classification streamed through every method, in two orders.

* ``random``: the 15,000 training utterances shuffled (seeded);
* ``class-incremental``: domain after domain (the 10 domains of ``clinc150_domains.json``, in
  file order), shuffled inside a domain: a method that forgets loses the first domain.

Each method sees micro-batches of ``batch`` events. Reported per order and method: final test
accuracy (4,500 test utterances, out-of-scope excluded), first-domain test accuracy at the end
(forgetting), prequential accuracy (each micro-batch predicted before it is learnt), learning
time and throughput; plotted: test accuracy at checkpoints over the stream. The batch logistic
regression is refitted at each checkpoint; the cost of retraining after *every* micro-batch is
estimated from those fit times (linear in the data seen) for the compute comparison.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.eval_baselines import (
    BatchLogistic,
    DeltaMem,
    NearestClassMean,
    River,
    VectorStore,
    VowpalWabbit,
)
from benchmarks.eval_common import Timer, data_dir, embed_texts, md_table, plot_curves

FILES = ("clinc150_data_full.json", "clinc150_domains.json")


def load(quick: bool, seed: int = 0) -> dict[str, Any]:
    d = json.loads((data_dir() / FILES[0]).read_text())
    domains = json.loads((data_dir() / FILES[1]).read_text())
    train, test = d["train"], d["test"]
    if quick:  # 20 train and 6 test utterances per intent
        rng = np.random.default_rng(seed)
        train = _per_class(train, 20, rng)
        test = _per_class(test, 6, rng)
    Xtr = embed_texts([t for t, _ in d["train"]], tag="clinc-train")
    Xte = embed_texts([t for t, _ in d["test"]], tag="clinc-test")
    pos_tr = {id(r): i for i, r in enumerate(d["train"])}
    pos_te = {id(r): i for i, r in enumerate(d["test"])}
    intent_domain = {i: dom for dom, intents in domains.items() for i in intents}
    return {
        "Xtr": Xtr[[pos_tr[id(r)] for r in train]], "ytr": [r[1] for r in train],
        "Xte": Xte[[pos_te[id(r)] for r in test]], "yte": [r[1] for r in test],
        "domain_order": list(domains), "intent_domain": intent_domain,
    }


def _per_class(rows: list, k: int, rng: np.random.Generator) -> list:
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(r[1], []).append(r)
    out: list[Any] = []
    for lab in sorted(by):
        idx = rng.permutation(len(by[lab]))[:k]
        out.extend(by[lab][i] for i in sorted(idx))
    return out


def order(data: dict[str, Any], kind: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = len(data["ytr"])
    if kind == "random":
        return rng.permutation(n)
    dom_rank = {d: i for i, d in enumerate(data["domain_order"])}
    rank = np.array([dom_rank[data["intent_domain"][y]] for y in data["ytr"]])
    return np.lexsort((rng.random(n), rank))  # by domain, random inside a domain


def deltamem_methods(quick: bool, big: bool = False) -> list[DeltaMem]:
    """The deltamem learners of the table (also the ones :func:`compute_sweep` streams)."""
    m = [
        # the softmax rule (rehearsing 7 earlier events per write): about 1 CPU s a stream
        DeltaMem({"rule": "softmax", "dtype": "float64", "reservoir": None}),  # every key kept
        DeltaMem({"rule": "softmax", "dtype": "float32", "reservoir": None}),
        DeltaMem({}, name="deltamem default (softmax float32, reservoir 32)"),  # bounded memory
        DeltaMem({"rule": "softmax", "replay": 0}),  # without rehearsal: forgets old classes
        DeltaMem({"rule": "delta", "beta": 0.1}),
        DeltaMem({"rule": "delta", "beta": 0.5, "lift_dim": 8192}),
        DeltaMem({"rule": "rls", "ridge": 0.1}),
        DeltaMem({"rule": "rls", "ridge": 0.01, "lift_dim": 2048}),
    ]
    if big or not quick:  # P is 4096 × 4096 (128 MiB): about 30 s of one core for the stream
        m.append(DeltaMem({"rule": "rls", "ridge": 0.01, "lift_dim": 4096}))
        # a float32 state: half the memory and about half the time of a write
        m.append(DeltaMem({"rule": "rls", "ridge": 0.01, "lift_dim": 3072, "dtype": "float32"}))
        m.append(DeltaMem({"rule": "rls", "ridge": 0.01, "lift_dim": 4096, "dtype": "float32"}))
    return m


def default_methods(quick: bool, big: bool = False) -> list[Any]:
    m: list[Any] = list(deltamem_methods(quick, big))
    m += [
        VowpalWabbit("-l 0.5", n_classes=150),
        NearestClassMean(),
        VectorStore(),
        BatchLogistic(C=10.0),
    ]
    if not quick:  # pure Python, about 50 events/s with 150 classes
        from river import linear_model

        river = River(linear_model.SoftmaxRegression(), "river SoftmaxRegression")
        river.checkpoint_eval = False  # type: ignore[attr-defined]  # the test set only at the end: 4,500 slow predictions
        m.append(river)
    return m


def stream(method: Any, data: dict[str, Any], idx: np.ndarray, batch: int, n_checkpoints: int,
           first_domain: str) -> dict[str, Any]:
    Xtr, ytr, Xte, yte = data["Xtr"], data["ytr"], data["Xte"], data["yte"]
    first = np.array([data["intent_domain"][y] == first_domain for y in yte])
    yte_a = np.array(yte)
    batches = [idx[s : s + batch] for s in range(0, len(idx), batch)]
    cps = set(np.unique(np.linspace(1, len(batches), n_checkpoints).round().astype(int)).tolist())
    learn = Timer()
    hits: list[Any] = []
    curve: list[Any] = []
    is_batch = isinstance(method, BatchLogistic)
    for b, ix in enumerate(batches, start=1):
        Xb, yb = Xtr[ix], [ytr[i] for i in ix]
        if not is_batch:
            hits.extend(p == t for p, t in zip(method.predict_many(Xb), yb, strict=True))
        with learn:
            method.learn_many(Xb, yb)
        if b in cps and (getattr(method, "checkpoint_eval", True) or b == len(batches)):
            if is_batch:
                method.refit()
            pred = np.array(method.predict_many(Xte))
            curve.append((b * batch, float(np.mean(pred == yte_a))))
    pred = np.array(method.predict_many(Xte))
    return {
        "test_acc": float(np.mean(pred == yte_a)),
        "first_acc": float(np.mean(pred[first] == yte_a[first])),
        "preq_acc": float(np.mean(hits)) if hits else float("nan"),
        "learn_s": learn.total + (sum(s for _, s in method.fit_seconds) if is_batch else 0.0),
        "learn_cpu_s": learn.cpu + (sum(s for _, s in method.fit_cpu) if is_batch else 0.0),
        "curve": curve,
        "fit_seconds": list(getattr(method, "fit_seconds", [])),
        "fit_cpu": list(getattr(method, "fit_cpu", [])),
        "n_batches": len(batches),
    }


def learn_cpu(method: Any, data: dict[str, Any], idx: np.ndarray, batch: int) -> float:
    """CPU seconds of ``method`` learning the training events ``idx`` in micro-batches of
    ``batch`` (the learning calls only)."""
    t = Timer()
    for s in range(0, len(idx), batch):
        ix = idx[s : s + batch]
        with t:
            method.learn_many(data["Xtr"][ix], [data["ytr"][i] for i in ix])
    return t.cpu


def retrain_every_batch_seconds(fit_seconds: list[tuple[int, float]], n_batches: int, batch: int) -> float:
    """Estimated cost of refitting after every micro-batch, from fits measured at checkpoints."""
    if not fit_seconds:
        return float("nan")
    ns, ts = np.array([n for n, _ in fit_seconds], float), np.array([t for _, t in fit_seconds])
    sizes = np.arange(1, n_batches + 1) * batch
    return float(np.sum(np.interp(sizes, ns, ts)))


def run(out: Path, quick: bool = False, batch: int = 100, methods: Any = None,
        orders: tuple[str, ...] = ("random", "class-incremental"), big: bool = False,
        sweep: tuple[int, ...] | None = None) -> dict[str, Any]:
    """Stream every method in every order; ``sweep``: micro-batch sizes for :func:`compute_sweep`
    (default ``(10, 25, 64, 100, 500)`` on the full data, none with ``quick``)."""
    data = load(quick)
    first_domain = data["domain_order"][0]
    if sweep is None:
        sweep = () if quick else (10, 25, 64, 100, 500)
    rows, results = [], {}
    fits: dict[str, list[tuple[int, float]]] = {}
    plots = []
    for kind in orders:
        idx = order(data, kind)
        curves, part = {}, []
        for method in (default_methods(quick, big) if methods is None else methods()):
            r = stream(method, data, idx, batch, 5 if quick else 10, first_domain)
            results[(kind, method.name)] = r
            curves[method.name] = (np.array([c[0] for c in r["curve"]]), np.array([c[1] for c in r["curve"]]))
            if isinstance(method, BatchLogistic):
                r["retrain_every_batch_cpu_s"] = retrain_every_batch_seconds(r["fit_cpu"], r["n_batches"], batch)
                fits[kind] = r["fit_cpu"]
            part.append((method, r))
            print(f"  clinc {kind:18s} {method.name:45s} test {r['test_acc']:.3f} "
                  f"first {r['first_acc']:.3f} preq {r['preq_acc']:.3f} {r['learn_s']:.1f}s "
                  f"({r['learn_cpu_s']:.1f} CPU s)", flush=True)
        every = [r["retrain_every_batch_cpu_s"] for m, r in part if isinstance(m, BatchLogistic)]
        every_s = every[0] if every else float("nan")
        for method, r in part:
            if isinstance(method, BatchLogistic):
                extra = (f"{np.mean([t for _, t in r['fit_cpu']]):.2f} CPU s/fit; "
                         f"after every batch ≈ {every_s:.0f} CPU s")
            else:
                extra = f"{every_s / max(r['learn_cpu_s'], 1e-9):.0f}×"
            rows.append([kind, method.name, r["test_acc"], r["first_acc"], r["preq_acc"],
                         f"{r['learn_s']:.2f}", f"{r['learn_cpu_s']:.2f}",
                         f"{len(idx) / max(r['learn_s'], 1e-9):.0f}", extra])
        plots.append(plot_curves(out / f"clinc_{kind}.png", f"CLINC150, {kind} order: test accuracy",
                                 curves))
    md = md_table(["order", "method", "test acc", "first-domain acc", "prequential acc",
                   "learn wall s", "learn CPU s", "events/s",
                   "compute: retraining after every batch ÷ this (CPU s)"], rows)
    if sweep and "random" in fits:
        md += "\n\n" + compute_sweep(data, fits["random"], sweep, quick, big)
    return {"name": "clinc", "markdown": md, "plots": plots, "results": results}


def compute_sweep(data: dict[str, Any], fit_cpu: list[tuple[int, float]], sizes: tuple[int, ...],
                  quick: bool, big: bool) -> str:
    """Compute against retraining, per micro-batch size (random order, CPU seconds).

    Retraining after every micro-batch of b events costs Σ_j fit(j·b): the fit times measured at
    the checkpoints (``fit_cpu``), interpolated. Each deltamem learner is streamed again at every
    size and its learning CPU time measured; its cost per event barely depends on b, so the ratio
    grows as micro-batches shrink. The service commits what is pending as one micro-batch (up to
    ``DELTAMEM_BATCH_MAX_EVENTS`` = 64 events, 512 under a backlog).
    """
    idx = order(data, "random")
    rows = []
    for b in sizes:
        n_batches = -(-len(idx) // b)
        retrain = retrain_every_batch_seconds(fit_cpu, n_batches, b)
        for method in deltamem_methods(quick, big):
            cpu = learn_cpu(method, data, idx, b)
            rows.append([b, method.name, f"{retrain:.0f}", f"{cpu:.2f}", f"{retrain / max(cpu, 1e-9):.0f}×"])
            print(f"  clinc sweep b={b:4d} {method.name:45s} {cpu:.1f} CPU s; retrain {retrain:.0f} CPU s",
                  flush=True)
    return ("Compute per micro-batch size (random order; CPU seconds of learning the whole stream):\n\n"
            + md_table(["micro-batch", "method", "retraining after every batch (CPU s)", "learn CPU s",
                        "retraining ÷ this"], rows))
