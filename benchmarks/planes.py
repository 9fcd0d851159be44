"""Byte-plane coding of event inputs (storage/planes.py) on synthetic and real vectors.

    .venv/bin/python -m benchmarks.planes [--rows 682] [--blocks 3] [--repeat 20]

Prints, per source and coding of the top plane (``split-zstd``, written; ``split-huff``,
read), the bytes a 384-d float32 row takes raw and coded (blocks of ``--rows``, the 1 MiB
blocks of the store), and the µs per row to code and to decode (median of ``--repeat``): the vectors ``benchmarks.ingest_paths`` and ``benchmarks.storage_breakdown``
send, unit-norm Gaussian rows, and MiniLM embeddings of CLINC150 training texts when
``../shared/data`` and the model are there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from storage.planes import CODERS, PLANES, pack, unpack

CLINC = Path(__file__).resolve().parents[2] / "shared" / "data" / "clinc150_data_full.json"


def sources(n: int) -> dict[str, np.ndarray]:
    """``{name: (n, 384) float32}``."""
    from benchmarks.ingest_paths import vectors

    rng = np.random.default_rng(0)
    X, _ = vectors(rng, n)
    unit = rng.standard_normal((n, 384))
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    out = {"ingest_paths vectors": np.asarray(X, dtype=np.float32),
           "unit-norm Gaussian": unit.astype(np.float32)}
    if CLINC.exists():
        from agent.backbones.minilm import get_minilm

        texts = [t for t, _ in json.loads(CLINC.read_text())["train"][:n]]
        out["MiniLM, CLINC150 texts"] = np.asarray(get_minilm().encode(texts), dtype=np.float32)
    return out


def measure(X: np.ndarray, rows: int, repeat: int, coding: str = PLANES
            ) -> tuple[float, float, float, float]:
    """(raw B per row, coded B per row, µs to code a row, µs to decode a row)."""
    blocks = [np.ascontiguousarray(X[i:i + rows]) for i in range(0, len(X), rows)]
    coded = [pack(b, coding) for b in blocks]
    for b, (data, codec) in zip(blocks, coded, strict=True):
        assert unpack(data, codec, "<f4", b.size, "bench") == b.tobytes()
    enc, dec = [], []
    for _ in range(repeat):
        t = time.perf_counter()
        for b in blocks:
            pack(b, coding)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        for b, (data, codec) in zip(blocks, coded, strict=True):
            unpack(data, codec, "<f4", b.size, "bench")
        dec.append(time.perf_counter() - t)
    n = len(X)
    return (X.nbytes / n, sum(len(d) for d, _ in coded) / n,
            float(np.median(enc)) * 1e6 / n, float(np.median(dec)) * 1e6 / n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=682)
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()
    print(f"byte-plane coding, 384-d float32, blocks of {args.rows} rows\n")
    print("| source | coding | raw B per row | coded B per row | saved | code µs per row | "
          "decode µs per row |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, X in sources(args.rows * args.blocks).items():
        for coding in sorted(CODERS, reverse=True):  # the written one first
            raw, coded, enc, dec = measure(X, args.rows, args.repeat, coding)
            print(f"| {name} | {coding} | {raw:,.0f} | {coded:,.0f} | {raw - coded:,.0f} B "
                  f"({(raw - coded) / raw:.1%}) | {enc:.1f} | {dec:.1f} |")


if __name__ == "__main__":
    main()
