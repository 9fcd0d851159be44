"""``deltamem bench all [--quick] [--json]``: one table, each figure beside a reference measured
in the same run (so the ratio, not the raw figure, is what carries from machine to machine).

=====================  ==================================  ======================================
figure                 measured                            reference (same run)
=====================  ==================================  ======================================
kernel                 delta-rule step (delta + apply),    a float32 GEMM of the same FLOPs
                       d_k = 384, 150 labels, chunk 64     (``benchmarks.kernels``)
ingest vector          events/s through the HTTP API to    the kernel alone at the same shapes
                       committed versions (SQLite)
ingest text            the same with MiniLM-encoded text   MiniLM's own sentences/s (the ceiling)
predict                p50/p99/p99.9 per request over      the same prediction computed in this
                       100 agents, single and 64 inputs    process (``MemoryAgent.predict_many``)
storage                delta + snapshot bytes per event,   the event itself (float32 key + value)
                       before and after retention
rebuild                ``load_state`` k versions past      reading the snapshot alone (k = 0) and
                       the last snapshot                   applying the k deltas in memory
=====================  ==================================  ======================================

The service runs in this process (``workers.runtime.start``: local Ray, uvicorn on loopback, a
temporary SQLite file); the client is httpx. ``--json`` prints one JSON object last (every row,
keyed by figure), so two commits can be compared. ``--quick`` (about a minute plus the service
start) uses fewer events and requests; the p99.9 of a quick run rests on few samples.
Correctness of what is timed: tests/test_workers_stream.py (the service equals a reference
learner), tests/test_kernels_*.py, tests/test_storage_properties.py (rebuilds are exact).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_service import (
    Deployment,
    minilm_sentences_per_s,
    predict_latency,
    rebuild_rows,
    storage_rows,
)
from benchmarks.kernels import bench_rule

D, LABELS, CHUNK = 384, 150, 64


def _row(figure: str, value: float, unit: str, ref_name: str, ref: float | None,
         ratio: float | None = None, note: str = "") -> dict[str, Any]:
    if ratio is None and ref:
        ratio = value / ref
    return {"figure": figure, "value": value, "unit": unit, "reference": ref_name,
            "ref_value": ref, "ratio": ratio, "note": note}


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def print_table(rows: list[dict[str, Any]]) -> None:
    head = f"{'figure':34} {'measured':>12} {'unit':10} {'reference':38} {'ref':>12} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['figure']:34} {_fmt(r['value']):>12} {r['unit']:10} {r['reference']:38} "
              f"{_fmt(r['ref_value']):>12} {_fmt(r['ratio']):>7}"
              + (f"  {r['note']}" if r["note"] else ""))


def run(quick: bool) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    budget = 0.1 if quick else 0.4
    k = bench_rule("delta", D, LABELS, CHUNK, budget)
    rows.append(_row(f"kernel delta d={D} L={LABELS} n={CHUNK}", k["events_per_s"], "events/s",
                     "GEMM of the same FLOPs (ratio = t_gemm/t)", k["events_per_s"] / k["gemm_ratio"],
                     ratio=k["gemm_ratio"], note=f"rel err {k['max_rel_err']:.1e}"))
    n_vec = 2_000 if quick else 20_000
    n_text = 256 if quick else 2_000
    n_single, n_batched = (300, 60) if quick else (3_000, 400)
    with tempfile.TemporaryDirectory(prefix="deltamem-bench.") as tmp:
        with Deployment(f"sqlite:///{Path(tmp) / 'bench.db'}", f"bench-{uuid.uuid4().hex[:8]}") \
                as dep:
            ev_s, agents = dep.ingest_vectors(n_vec, n_agents=4, dim=D, labels=LABELS)
            rows.append(_row("ingest vector, HTTP -> committed", ev_s, "events/s",
                             "kernel alone, same shapes", k["events_per_s"],
                             note=f"{n_vec} events, 4 agents, SQLite"))
            pv = dep.per_version
            rows.append(_row("  learner per version: learn+commit", (pv["learn_s"] + pv["commit_s"])
                             * 1000, "ms", "kernel alone, same events", pv["events"]
                             / k["events_per_s"] * 1000, note=f"{pv['events']:.0f} events/version, "
                             f"commit {pv['commit_s'] * 1000:.1f} ms"))
            text_s = dep.ingest_text(n_text)
            ceiling = minilm_sentences_per_s(n_text)
            rows.append(_row("ingest text (MiniLM), HTTP -> comm.", text_s, "events/s",
                             "MiniLM encode alone, 1 thread", ceiling,
                             note=f"{n_text} unique sentences"))
            lat = predict_latency(dep, n_agents=100, dim=D, single=n_single, batched=n_batched)
            for kind, ref_ms in (("single", lat["ref_single_ms"]), ("batched", lat["ref_batched_ms"])):
                for q in ("p50", "p99", "p99.9"):
                    rows.append(_row(f"predict {kind} {q} (100 agents)", lat[kind][q], "ms",
                                     f"in-process predict_many, {'1' if kind == 'single' else '64'}"
                                     " input(s)", ref_ms, note=f"{lat[kind]['n']} requests"
                                     if q == "p50" else ""))
            rows.extend(_row(**r) for r in storage_rows(dep, agents, D, LABELS))
        rows.extend(_row(**r) for r in rebuild_rows(Path(tmp), quick, D, LABELS, CHUNK))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="deltamem bench all", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer events and requests (CI)")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"deltamem bench all{' --quick' if args.quick else ''}: each figure beside a reference "
          "measured in this run; ratio = measured / reference (kernel: t_gemm / t_kernel)")
    rows = run(args.quick)
    print()
    print_table(rows)
    total = time.perf_counter() - t0
    print(f"\ntotal {total:.1f} s")
    if args.json:
        print(json.dumps({"quick": args.quick, "seconds": total,
                          "rows": {r["figure"]: r for r in rows}}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
