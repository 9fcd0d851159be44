"""``deltamem bench kernels [--quick] [--json]``: events/s of the write kernels beside a GEMM.

For each rule (gated delta rule with α = 1, β ∈ [0.05, 1]; RLS with ρ = 1, λ = 1), key width
d_k, value width d_v and chunk (events per micro-batch) it times the live learner's step in
float32 — compute the delta of one micro-batch *and* apply it with ``apply_layer`` — and reports:

- ``ev/s``: events per second of that step;
- ``gemm``: the roofline ratio ``t_gemm / t_kernel``, where ``t_gemm`` is the time, measured in
  the same run, of one float32 GEMM ``(m × n) @ (n × d_k)`` whose FLOP count ``2·m·n·d_k`` equals
  the chunk algorithm's (m = F / (2·n·d_k)). FLOPs counted (n = chunk):
  delta: ``2n²d_k`` (KKᵀ) + ``2n·d_k·d_v`` (KS0ᵀ) + ``n²d_v`` (triangular solve) +
  ``2n·d_k·d_v`` (EᵀK) + ``2d_k·d_v`` (γS + ·);
  rls: ``2n·d_k²`` (KP) + ``2n²d_k`` (KPKᵀ) + ``n³/3`` (Cholesky) + ``2n²d_k`` (two triangular
  solves) + ``4n·d_k·d_v`` (residuals, EᵀA of S) + ``2n·d_k²`` (BᵀB of P) + ``3d_k² + 2d_k·d_v``;
  many (δ-mem, 8×8 states, the recurrent form vectorised over states): ``6·d_k·d_v`` per
  token (read, decay, rank-1 write), compared with a 256×256-inner GEMM of the same FLOPs;
- ``naive ev/s``, ``speedup``: the float64 loop oracle on the same events, and the ratio;
- ``rel err``: ‖S_kernel − S_naive‖/‖S_naive‖ (Frobenius) after the batch, float32 vs float64.

``--json`` prints, last, one JSON object: the headline (delta rule, d_k = d_v = 384, chunk 64:
``events_per_s``, ``gemm_ratio``, ``speedup_vs_naive``, ``max_rel_err``) and every row.
``--quick`` (< 30 s) drops d_k = 1024 and shortens the timing windows.

BLAS runs with one thread (``set_blas_threads(1)``, see ``agent/memory/backend.py``); the
headline row is re-timed with 2 threads when the BLAS pool allows it, to keep that choice honest.

``--backend cupy`` times the same steps on the GPU (:mod:`agent.memory.cupy_kernels`: cuBLAS
products and the RawKernels) against a cuBLAS GEMM of the same FLOPs, every call followed by a
device synchronisation; the oracle stays the float64 NumPy loop on the host. Without CuPy and a
usable GPU it exits with status 2 and one line saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np

from agent.memory.backend import blas_threads, gpu_available, set_blas_threads
from agent.memory.delta import apply_layer
from agent.memory.delta_rule.chunk import delta_rule_chunk
from agent.memory.delta_rule.many import many_delta_write, many_delta_write_naive
from agent.memory.delta_rule.naive import delta_rule_naive
from agent.memory.rls.chunk import rls_chunk
from agent.memory.rls.naive import rls_naive


def _time(fn: Callable[[], object], budget: float) -> float:
    """Seconds per call: best of 3 rounds, each at least ``budget/3`` seconds long."""
    fn()  # warm-up
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, int(budget / 3 / one))
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def _synced(xp: ModuleType, fn: Callable[[], object]) -> Callable[[], object]:
    """``fn`` followed by a device synchronisation on CuPy (kernels launch asynchronously)."""
    if xp is np:
        return fn

    def run() -> object:
        out = fn()
        xp.cuda.Device().synchronize()
        return out

    return run


def _host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def _gemm_time(flops: float, n: int, d_k: int, budget: float, xp: ModuleType = np) -> float:
    m = max(1, round(flops / (2.0 * n * d_k)))
    rng = np.random.default_rng(0)
    X = xp.asarray(rng.standard_normal((m, n)).astype(np.float32))
    Y = xp.asarray(rng.standard_normal((n, d_k)).astype(np.float32))
    return _time(_synced(xp, lambda: X @ Y), budget)


def _flops(rule: str, n: int, d_k: int, d_v: int) -> float:
    if rule == "delta":
        return 2 * n * n * d_k + 4 * n * d_k * d_v + n * n * d_v + 2 * d_k * d_v
    return (4 * n * d_k * d_k + 4 * n * n * d_k + n**3 / 3 + 4 * n * d_k * d_v
            + 3 * d_k * d_k + 2 * d_k * d_v)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - b) / np.linalg.norm(b))


def bench_rule(rule: str, d_k: int, d_v: int, n: int, budget: float, xp: ModuleType = np) -> dict:
    rng = np.random.default_rng(d_k * 7 + d_v + n)
    K = rng.standard_normal((n, d_k))
    K /= np.linalg.norm(K, axis=1, keepdims=True)
    V = rng.standard_normal((n, d_v))
    S64 = 0.1 * rng.standard_normal((d_v, d_k))
    S = xp.asarray(S64.astype(np.float32))
    K32, V32 = xp.asarray(K.astype(np.float32)), xp.asarray(V.astype(np.float32))
    if xp is not np:
        from agent.memory import cupy_kernels as ck
    if rule == "delta":
        beta = rng.uniform(0.05, 1.0, n)
        beta32 = xp.asarray(beta.astype(np.float32))

        def step() -> object:
            if xp is np:
                return apply_layer(S, delta_rule_chunk(S, K32, V32, beta32, 1.0, chunk=n))
            return ck.apply_layer_gpu(S, ck.delta_rule_chunk_gpu(S, K32, V32, beta32, 1.0, chunk=n))

        t_naive = _time(lambda: delta_rule_naive(S64, K, V, beta), budget / 2)
        ref = delta_rule_naive(S64, K, V, beta)[0]
        err = _rel(_host(step()), ref)
    else:
        P64 = np.eye(d_k)
        P = xp.asarray(P64.astype(np.float32))

        def step() -> object:
            if xp is np:
                dS, dP = rls_chunk(S, P, K32, V32, 1.0, chunk=n)
                return apply_layer(S, dS), apply_layer(P, dP)
            gS, gP = ck.rls_chunk_gpu(S, P, K32, V32, 1.0, chunk=n)
            return ck.apply_layer_gpu(S, gS), ck.apply_layer_gpu(P, gP)

        t_naive = _time(lambda: rls_naive(S64, P64, K, V), budget / 2)
        ref = rls_naive(S64, P64, K, V)[0]
        err = _rel(_host(step()[0]), ref)  # type: ignore[index]
    t = _time(_synced(xp, step), budget)
    tg = _gemm_time(_flops(rule, n, d_k, d_v), n, d_k, budget, xp)
    return {"rule": rule, "d_k": d_k, "d_v": d_v, "chunk": n, "events_per_s": n / t,
            "gemm_ratio": tg / t, "naive_events_per_s": n / t_naive,
            "speedup_vs_naive": t_naive / t, "max_rel_err": err}


def bench_many(B: int, T: int, budget: float, xp: ModuleType = np) -> dict:
    """δ-mem: B sequences × T tokens, 8×8 states, decay 1 − β per row, float32."""
    rng = np.random.default_rng(B + T)
    d = 8
    S = (0.1 * rng.standard_normal((B, d, d))).astype(np.float32)
    K = rng.standard_normal((B, T, d)).astype(np.float32)
    K /= np.linalg.norm(K, axis=-1, keepdims=True)
    V = rng.standard_normal((B, T, d)).astype(np.float32)
    beta = (1 / (1 + np.exp(-(rng.standard_normal((B, T, d)) - 2)))).astype(np.float32)
    dec = 1 - beta
    if xp is np:
        t = _time(lambda: many_delta_write(S, K, V, beta, dec), budget)  # recurrent form
    else:
        from agent.memory.cupy_kernels import many_delta_write_gpu

        dev = [xp.asarray(a) for a in (S, K, V, beta, dec)]
        t = _time(_synced(xp, lambda: many_delta_write_gpu(*dev)), budget)
    per_state = T * 6 * d * d  # read 2d², decay d², rank-1 update 3d² per token
    tg = _gemm_time(B * per_state, 256, 256, budget, xp)
    b_small = min(B, 16)  # the oracle is a Python loop over states and tokens
    sl = slice(0, b_small)
    t_naive = _time(lambda: many_delta_write_naive(S[sl], K[sl], V[sl], beta[sl], dec[sl]), budget / 2)
    ref = many_delta_write_naive(S[sl], K[sl], V[sl], beta[sl], dec[sl])[0]
    if xp is np:
        err = _rel(many_delta_write(S[sl], K[sl], V[sl], beta[sl], dec[sl])[0], ref)
    else:
        err = _rel(_host(many_delta_write_gpu(*(xp.asarray(a[sl]) for a in (S, K, V, beta, dec)))[0]), ref)
    ev, ev_naive = B * T / t, b_small * T / t_naive
    return {"rule": "many 8x8", "d_k": d, "d_v": d, "chunk": f"{B}x{T}", "events_per_s": ev,
            "gemm_ratio": tg / t, "naive_events_per_s": ev_naive,
            "speedup_vs_naive": ev / ev_naive, "max_rel_err": err}


def _fmt(r: dict) -> str:
    return (f"{r['rule']:>9} {r['d_k']:>5} {r['d_v']:>5} {str(r['chunk']):>8} "
            f"{r['events_per_s']:>12,.0f} {r['gemm_ratio']:>6.2f} {r['naive_events_per_s']:>11,.0f} "
            f"{r['speedup_vs_naive']:>8.1f} {r['max_rel_err']:>9.1e}")


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="deltamem bench kernels", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a short run (< 30 s): d_k ≤ 384")
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    ap.add_argument("--backend", default="numpy", choices=["numpy", "cupy"],
                    help="cupy: the GPU kernels against a cuBLAS GEMM (needs CuPy and a GPU)")
    return ap


def _print_head(backend: str, xp: ModuleType) -> None:
    where = f"1 BLAS thread, numpy {np.__version__}"
    if xp is not np:
        name = xp.cuda.runtime.getDeviceProperties(0)["name"]
        where = (f"CuPy {xp.__version__} on "
                 f"{name.decode() if isinstance(name, bytes) else name}, GEMM = cuBLAS")
    print(f"deltamem kernel benchmark ({backend}): float32 micro-batch step "
          f"(delta + apply_layer), {where}")
    print("gemm = t(GEMM of the same FLOPs, same run) / t(kernel); speedup = vs the float64 "
          "loop oracle; rel err = Frobenius, state after the batch vs the oracle")
    head = (f"{'rule':>9} {'d_k':>5} {'d_v':>5} {'chunk':>8} {'ev/s':>12} {'gemm':>6} "
            f"{'naive ev/s':>11} {'speedup':>8} {'rel err':>9}")
    print(head)
    print("-" * len(head))


def _bench_rows(d_ks: tuple[int, ...], budget: float, xp: ModuleType) -> list[dict]:
    """Every row of the table, each printed as it is measured."""
    rows = []
    for rule in ("delta", "rls"):
        for d_k in d_ks:
            for d_v in sorted({10, 150, d_k}):
                for n in (16, 64, 256):
                    r = bench_rule(rule, d_k, d_v, n, budget, xp)
                    rows.append(r)
                    print(_fmt(r), flush=True)
    for B, T in ((256, 64), (4096, 64)):
        r = bench_many(B, T, budget, xp)
        rows.append(r)
        print(_fmt(r), flush=True)
    return rows


def _two_threads(headline: dict, budget: float, xp: ModuleType) -> dict | None:
    """The headline step again with 2 BLAS threads (NumPy only), printed; None if not run."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):
        two = blas_threads()
        r2 = bench_rule("delta", 384, 384, 64, budget) if two > 1 and xp is np else None
    if r2 is not None:
        print(f"same step with {two} BLAS threads: {r2['events_per_s']:,.0f} ev/s "
              f"({r2['events_per_s'] / headline['events_per_s']:.2f}x of 1 thread)")
    elif xp is np:  # (host BLAS threads do not apply to the GPU rows)
        print("BLAS pool capped at 1 thread in this process (OPENBLAS_NUM_THREADS): no 2-thread row")
    return r2


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.backend == "cupy" and not gpu_available():
        print("deltamem bench kernels --backend cupy: no usable GPU (CuPy missing, no CUDA device, "
              "or a first allocation failed)", file=sys.stderr)
        return 2
    xp: ModuleType = np
    if args.backend == "cupy":
        import cupy

        xp = cupy
    set_blas_threads(1)
    budget = 0.06 if args.quick else 0.3
    d_ks = (64, 384) if args.quick else (64, 384, 1024)
    t_start = time.perf_counter()
    _print_head(args.backend, xp)
    rows = _bench_rows(d_ks, budget, xp)
    headline = next(r for r in rows if r["rule"] == "delta" and r["d_k"] == 384
                    and r["d_v"] == 384 and r["chunk"] == 64)
    print(f"\nheadline (delta, d_k=d_v=384, chunk 64): {headline['events_per_s']:,.0f} ev/s, "
          f"gemm ratio {headline['gemm_ratio']:.2f}, speedup {headline['speedup_vs_naive']:.1f}x, "
          f"rel err {headline['max_rel_err']:.1e}")
    r2 = _two_threads(headline, budget, xp)
    print(f"total {time.perf_counter() - t_start:.1f} s")
    if args.json:
        out = {k: headline[k] for k in ("events_per_s", "gemm_ratio", "speedup_vs_naive", "max_rel_err")}
        out.update({"backend": args.backend, "rule": "delta", "d_k": 384, "d_v": 384, "chunk": 64,
                    "blas2_events_per_s": r2["events_per_s"] if r2 else None, "rows": rows})
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
