"""The table :mod:`benchmarks.ingest_paths` prints: rates, their ratios to the references
measured beside them, stored bytes, and CPU per event of each process role."""

from __future__ import annotations

import os
from typing import Any

DIM, LABELS = 384, 20


def report(args: Any, s: Any, out: dict[str, Any]) -> None:
    from benchmarks.eval_common import md_table

    ref = out["learn_many"]
    rate: dict[str, float] = {k: out[k]["events"] / out[k]["wall"]
                              for k in ("json", "arrow", "single", "text") if k in out}
    load = os.getloadavg()[0]
    print(f"deltamem ingest paths: d = {DIM}, {LABELS} labels, rule delta, SQLite, HTTP, "
          f"{os.cpu_count()} CPUs (1-min load {load:.1f}), encoder_cpus {s.encoder_cpus}, "
          f"{args.client} clients for the vector rows, {args.http_workers} HTTP process(es)\n")
    rows: list[list[str]] = []
    for fmt, name in (("json", "JSON"), ("arrow", "Arrow")):
        if fmt in out:
            rows.append([f"vector e2e, {name}, {args.agents} agents x {args.per_agent}, "
                         f"{args.request}/request, {args.vector_clients} clients",
                         f"{rate[fmt]:,.0f} events/s",
                         f"{100 * rate[fmt] / out[fmt]['ref']:.1f} % of learn_many "
                         f"({out[fmt]['ref']:,.0f}/s around it)",
                         f"{out[fmt]['body_bytes'] / out[fmt]['events']:,.0f} B/event sent"])
    if "single" in out:
        rows.append([f"vector e2e, 1 event/request, {args.clients} clients",
                     f"{rate['single']:,.0f} events/s",
                     f"{100 * rate['single'] / ref:.2f} % of learn_many",
                     f"{args.single} requests" + _versions_and_lag(out["single"])])
    if out.get("idle_lag", {}).get("p50_s") is not None:
        lag = out["idle_lag"]
        rows.append(["apply lag at an idle learner, 1 event/request every 150 ms",
                     f"p50 {1e3 * lag['p50_s']:.1f} ms", f"p99 {1e3 * lag['p99_s']:.1f} ms",
                     f"{lag['recent']} requests"])
    if "text" in out:
        for k, clients in (("text", 1), ("text_clients", args.text_clients)):
            r = out[k]["events"] / out[k]["wall"]
            rows.append([f"text e2e (MiniLM classifier), {args.texts} texts, 100/request, "
                         f"{clients} client{'s' if clients > 1 else ''}", f"{r:,.0f} events/s",
                         f"{100 * r / out['encoder']:.0f} % of the raw encoder", ""])
        rows.append([f"raw encoder, {max(1, s.encoder_cpus)} torch thread(s), batches of 64",
                     f"{out['encoder']:,.0f} texts/s", "in-process, no cache", ""])
    lo, hi = out["learn_many_range"]
    rows.append(["learn_many on (64, 384) arrays (reference)", f"{ref:,.0f} events/s",
                 "in-process, mean of every measurement", f"{lo:,.0f} to {hi:,.0f}"])
    if "storage" in out:
        st = out["storage"]
        rows.append(["storage per event at 384-d (after the vector runs)",
                     f"{st['file']:,.0f} B (SQLite file)",
                     f"input {st['input']:,.0f} B, payload {st['payload']:,.0f} B",
                     f"deltas {st['deltas']:,.0f} B, {st['per_version']:,.0f} events a version"])
    print(md_table(["path", "rate", "against", "note"], rows))
    vec = [(fmt, name) for fmt, name in (("json", "JSON"), ("arrow", "Arrow"),
                                         ("single", "1 event/request")) if fmt in out]
    if vec:  # CPU per event of each process role during the vector rows (/proc)
        roles = sorted({r for fmt, _ in vec for r in out[fmt]["cpu"]},
                       key=lambda r: -max(out[f]["cpu"].get(r, 0.0) for f, _ in vec))
        print("\nCPU µs per event during the vector rows (the client process is not counted; "
              "\"this process\" is the HTTP app):\n")
        print(md_table(["process", *[name for _, name in vec]],
                       [[r, *[f"{1e6 * out[f]['cpu'].get(r, 0.0) / out[f]['events']:.1f}"
                              for f, _ in vec]] for r in roles]
                       + [["all", *[f"{1e6 * sum(out[f]['cpu'].values()) / out[f]['events']:.1f}"
                                    for f, _ in vec]]]))


def _versions_and_lag(row: dict[str, Any]) -> str:
    """``; E events a version; apply lag p50 / p99 A / B ms`` where the row measured them."""
    if not row.get("versions"):
        return ""
    lag = row.get("lag") or {}
    text = f"; {row['events'] / row['versions']:.1f} events a version"
    if lag.get("p50_s") is not None:
        text += f"; apply lag p50 / p99 {1e3 * lag['p50_s']:.0f} / {1e3 * lag['p99_s']:.0f} ms"
    return text
