"""Shared pieces of the evaluation harness: data location, the embedding cache, tables, plots.

Data sets are read from ``../shared/data`` next to the project root (or ``DELTAMEM_DATA_DIR``),
never copied into the repository. MiniLM embeddings of a data set are cached on disk as raw
``.npy`` arrays (``allow_pickle=False``) under ``DELTAMEM_CACHE_DIR`` (default
``~/.cache/deltamem/embeddings``), keyed by a hash of the texts, so a second run skips the
minutes of encoding.

Examples
--------
>>> md_table(["method", "acc"], [["a", 0.5], ["b", 0.25]])
'| method | acc |\\n| --- | --- |\\n| a | 0.500 |\\n| b | 0.250 |'
>>> rolling_mean([1, 0, 1, 1], 2).tolist()
[1.0, 0.5, 0.5, 1.0]
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def p50_p99(xs: Sequence[float]) -> tuple[float, float]:
    """The median and 99th percentile of ``xs`` (NaN for none), in the units given."""
    if not len(xs):
        return float("nan"), float("nan")
    p50, p99 = np.percentile(np.asarray(xs, dtype=np.float64), [50, 99])
    return float(p50), float(p99)


def data_dir() -> Path:
    """The shared data folder (``DELTAMEM_DATA_DIR`` or ``<root>/../shared/data``)."""
    env = os.environ.get("DELTAMEM_DATA_DIR")
    return Path(env) if env else (ROOT / ".." / "shared" / "data").resolve()


def have_data(*names: str) -> bool:
    d = data_dir()
    return d.is_dir() and all((d / n).is_file() for n in names)


def cache_dir() -> Path:
    env = os.environ.get("DELTAMEM_CACHE_DIR")
    p = Path(env) if env else Path.home() / ".cache" / "deltamem" / "embeddings"
    p.mkdir(parents=True, exist_ok=True)
    return p


def embed_texts(texts: Sequence[str], tag: str = "texts", verbose: bool = True) -> np.ndarray:
    """MiniLM embeddings ``(n, 384)`` float32 of ``texts``, cached on disk by content hash."""
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode("utf-8"))
        h.update(b"\x1f")
    path = cache_dir() / f"minilm-{tag}-{len(texts)}-{h.hexdigest()[:16]}.npy"
    if path.is_file():
        X = np.load(path, allow_pickle=False)
        if X.shape == (len(texts), 384):
            return X
    from agent.backbones.minilm import get_minilm

    enc = get_minilm()
    t0 = time.perf_counter()
    uniq = list(dict.fromkeys(texts))
    parts = []
    step = 512
    for s in range(0, len(uniq), step):
        parts.append(enc._forward(uniq[s : s + step]))  # bypass the LRU: one pass per text
        if verbose and (s // step) % 8 == 0:
            print(f"  encoding {tag}: {min(s + step, len(uniq))}/{len(uniq)} "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    U = np.concatenate(parts, axis=0) if parts else np.zeros((0, 384), np.float32)
    pos = {t: i for i, t in enumerate(uniq)}
    X = U[[pos[t] for t in texts]] if texts else U
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, X, allow_pickle=False)
    tmp.replace(path)
    return X


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats are written with 3 decimals."""

    def cell(x: object) -> str:
        if isinstance(x, float | np.floating):
            return f"{float(x):.3f}"
        return str(x)

    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(cell(x) for x in r) + " |" for r in rows]
    return "\n".join(lines)


def rolling_mean(hits: Sequence[float] | np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at every position (shorter at the start)."""
    x = np.asarray(hits, dtype=np.float64)
    c = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(1, len(x) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def plot_curves(path: Path, title: str, curves: dict[str, tuple[np.ndarray, np.ndarray]],
                xlabel: str = "events seen", ylabel: str = "accuracy") -> Path:
    """One PNG with one line per method: ``curves[name] = (x, y)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name, linewidth=1.4)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


class Timer:
    """Accumulating timer: ``with t: ...``; ``t.total`` wall seconds, ``t.cpu`` CPU seconds.

    CPU seconds (``time.process_time``: every thread of this process) are the compute measure:
    on a shared machine they move far less with other jobs' load than wall time does.
    """

    def __init__(self) -> None:
        self.total = 0.0
        self.cpu = 0.0
        self._t0 = self._c0 = 0.0

    def __enter__(self) -> Timer:
        self._t0, self._c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.total += time.perf_counter() - self._t0
        self.cpu += time.process_time() - self._c0
