"""Text agents answered at the head in the HTTP process (issue 16): the text is encoded here,
then the agent's warm head state (:mod:`workers.head_cache`) answers, without the two actor
hops (HTTP → serving actor → encoder actor) of a text predict before.

Which encoder (setting ``text_head_encoder``):

* ``"local"`` (default): this process's own warm MiniLM, one copy per process (the shared
  :func:`agent.backbones.minilm.get_minilm`, whatever number of deployments the process runs),
  loaded once (at start when the store holds a text agent, else in a thread when the first
  text classifier is created), on ``encoder_cpus`` torch threads as the encoder actor runs.
  It encodes in the requests' worker threads, never on the event loop (the predict route runs
  text predicts in a thread), and batches across callers as the encoder actor does: texts
  that arrive while a forward pass runs are encoded together in the next one, run by one of
  the waiting callers (:class:`Batching`; a lone caller runs its own, no thread hop).
* ``"actor"``: the deployment's encoder actor (one hop; no model in this process).
* ``"off"``: text predicts go to the serving actor, as before.

Exactness: the same model, the same code (:class:`agent.backbones.minilm.MiniLMEncoder`),
float32 unit rows, the same torch threads: a text encoded alone (or a list encoded as one
forward pass) gives the same bits here as in the encoder actor, so the answer is the serving
actor's for that version (``tests/test_text_head.py``). Under concurrency both merge callers
into padded forward passes, and both caches keep rows computed in such passes; those rows
differ from a lone encode in the last float32 bits (padding changes the kernels' shapes; at
most ~2e-7 per coordinate seen), so the serving actor's own answers already vary that much
with the traffic, and so may this path's against them.

What it serves: classifier agents with ``encoder: "minilm"``. Recall agents with MiniLM embed
their answers (labels) too, rows the serving actor computed in batches of its own history;
they keep going to the serving actor. Staleness: the learner is the head cache's, which
answers only for the exact head version read with the request (rollback and forget make a
new head), so a text head answer is never computed from an old state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from agent.backbones.minilm import MINILM_DIM, Encoder

MODES = ("local", "actor", "off")


class TextHead:
    """The HTTP process's text encoder for head answers (``mode``: one of :data:`MODES`)."""

    def __init__(self, mode: str, threads: int, remote: Callable[[], Encoder]) -> None:
        if mode not in MODES:
            raise ValueError(f"text_head_encoder must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.threads = max(1, int(threads))
        self._remote = remote
        self._local: Encoder | None = None
        self._lock = threading.Lock()

    def serves(self, config: dict[str, Any]) -> bool:
        """Whether a predict at this agent's head can be answered here."""
        return (self.mode != "off" and config.get("encoder") == "minilm"
                and config.get("kind") == "classifier")

    @property
    def loaded(self) -> bool:
        """Whether this process holds its MiniLM copy (``"local"`` once loaded)."""
        return self._local is not None

    def encoder(self) -> Encoder:
        """The encoder head learners of text agents use (the local copy loads on first need;
        callers run in worker threads, never on the event loop)."""
        if self.mode == "actor":
            return self._remote()
        if self._local is None:
            with self._lock:
                if self._local is None:
                    self._local = _load(self.threads)
        return self._local

    def load_in_background(self) -> None:
        """Load the local copy (``"local"``) in a thread, so no request waits for all of it
        (a text predict that needs it meanwhile waits for the load to end)."""
        if self.mode == "local" and self._local is None:
            threading.Thread(target=self.encoder, name="text-head-load", daemon=True).start()


class _Request:
    __slots__ = ("texts", "out", "error", "done")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.out: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


class Batching:
    """An :class:`Encoder` over ``inner`` that merges concurrent callers' texts into forward
    passes of at most ``max_batch`` texts (a request's texts are never split; one longer than
    that has a pass of its own). The first caller to find no pass running leads: it encodes
    what is queued, oldest first, hands each caller its rows and goes on until its own request
    is done; then a waiting caller leads."""

    dim = MINILM_DIM

    def __init__(self, inner: Encoder, max_batch: int = 64) -> None:
        self.inner = inner
        self.max_batch = max(1, int(max_batch))
        self._cv = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False
        self.stats = {"calls": 0, "forwards": 0}

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(n, 384)`` float32 rows for ``texts``, in order (the inner encoder's)."""
        req = _Request(list(texts))
        with self._cv:
            self.stats["calls"] += 1
            self._queue.append(req)
            while self._busy and not req.done:
                self._cv.wait()
            lead = not req.done
            self._busy = self._busy or lead
        if lead:
            try:
                while not req.done:
                    self._forward()
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()
        if req.error is not None:
            raise req.error
        assert req.out is not None
        return req.out

    def _forward(self) -> None:
        with self._cv:
            take: list[_Request] = []
            n = 0
            while self._queue and (not take or n + len(self._queue[0].texts) <= self.max_batch):
                take.append(self._queue.pop(0))
                n += len(take[-1].texts)
        try:
            X, err = self.inner.encode([t for r in take for t in r.texts]), None  # (n, 384)
        except BaseException as e:  # handed to every caller of this pass
            X, err = None, e
        with self._cv:
            self.stats["forwards"] += 1
            at = 0
            for r in take:
                r.error = err
                if X is not None:
                    r.out = X[at : at + len(r.texts)]
                at += len(r.texts)
                r.done = True
            self._cv.notify_all()


def _load(threads: int) -> Encoder:
    """The process's MiniLM, warm, on ``threads`` torch threads (as the encoder actor sets
    them); the first forward pass allocates, so it runs here rather than on a request."""
    import torch

    from agent.backbones.minilm import get_minilm

    torch.set_num_threads(threads)
    enc = get_minilm()
    enc.encode(["warm up"])
    return Batching(enc)
