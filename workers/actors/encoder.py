"""The text encoder as one Ray actor per deployment: texts are encoded once, where CPUs are
reserved for it, and every process asks it.

:class:`EncoderActor` reserves ``encoder_cpus`` CPUs (Ray ``num_cpus``), runs torch on as many
threads, loads MiniLM when it starts (not on the first event), and batches across callers:
requests that arrive while a forward pass runs are encoded together in the next one, whatever
agent or process they come from (ingest, learner shards, serving replicas).

:class:`RemoteEncoder` is the :class:`agent.backbones.minilm.Encoder` the actors give their
learners (:func:`workers.actors.factory.use_encoder`): the same bits as the in-process encoder (the same
model, float32 rows), without a second copy of the model per process. Text events are encoded
when they are accepted (:mod:`workers.event_arrays`) and the embedding is stored with the event,
so learning, forget and rebuild read it instead of encoding again.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import ray

from agent.backbones.minilm import MINILM_DIM
from workers.contract import ActorRef

NAME = "encoder"
log = logging.getLogger("deltamem.encoder")


class _Request:
    __slots__ = ("texts", "out", "error", "done")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.out: np.ndarray | None = None
        self.error: BaseException | None = None
        self.done = False


@ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1, max_concurrency=64)
class EncoderActor:
    def __init__(self, threads: int, max_batch: int = 512) -> None:
        import torch

        from agent.backbones.minilm import MiniLMEncoder

        torch.set_num_threads(max(1, int(threads)))
        self._threads = max(1, int(threads))
        self._max_batch = int(max_batch)
        self._enc = MiniLMEncoder()
        self._enc.encode(["warm up"])  # the first forward pass allocates: not on a request
        self._cv = threading.Condition()
        self._queue: list[_Request] = []
        self._stats = {"calls": 0, "texts": 0, "forwards": 0, "forward_texts": 0}
        threading.Thread(target=self._loop, name="encoder", daemon=True).start()

    def encode(self, texts: list[str]) -> np.ndarray:
        """``(n, 384)`` float32 unit rows for ``texts``, in order."""
        req = _Request(list(texts))
        with self._cv:
            self._stats["calls"] += 1
            self._stats["texts"] += len(req.texts)
            self._queue.append(req)
            self._cv.notify_all()
            while not req.done:
                self._cv.wait()
        if req.error is not None:
            raise req.error
        assert req.out is not None
        return req.out

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                take: list[_Request] = []
                n = 0
                while self._queue and (not take or n + len(self._queue[0].texts) <= self._max_batch):
                    take.append(self._queue.pop(0))
                    n += len(take[-1].texts)
            try:
                X = self._enc.encode([t for r in take for t in r.texts])  # (n, 384)
                err = None
            except BaseException as e:  # handed to every caller of this batch
                X, err = None, e
            with self._cv:
                self._stats["forwards"] += 1
                self._stats["forward_texts"] += n
                at = 0
                for r in take:
                    r.error = err
                    if X is not None:
                        r.out = X[at : at + len(r.texts)]
                    at += len(r.texts)
                    r.done = True
                self._cv.notify_all()

    def stats(self) -> dict[str, Any]:
        """Calls and texts asked for; forward passes run (batched across callers)."""
        with self._cv:
            return {"threads": self._threads, **self._stats}

    def ping(self) -> bool:
        return True


def start_encoder(namespace: str, cpus: float) -> ActorRef:
    """The deployment's encoder actor (started, and its model loaded, if it is not running).

    It reserves ``cpus`` CPUs when the cluster has them free; otherwise (a small machine that
    several deployments share) it starts without a reservation rather than wait for one,
    still on ``cpus`` torch threads."""
    try:
        return ray.get_actor(NAME, namespace=namespace)
    except ValueError:
        pass
    free = float(ray.available_resources().get("CPU", 0.0))
    if free < cpus:
        log.warning("encoder: %s CPU(s) asked, %.2f free: starting without a reservation",
                    cpus, free)
    return EncoderActor.options(name=NAME, namespace=namespace, get_if_exists=True,
                                num_cpus=cpus if free >= cpus else 0,
                                lifetime=None).remote(max(1, int(cpus)))


class RemoteEncoder:
    """An :class:`~agent.backbones.minilm.Encoder` that asks the deployment's encoder actor
    (looked up by name on first use; started if it is not running)."""

    dim = MINILM_DIM

    def __init__(self, namespace: str, cpus: float) -> None:
        self._ns, self._cpus = namespace, cpus
        self._handle: ActorRef | None = None

    @property
    def handle(self) -> ActorRef | None:
        """The actor's handle once looked up (None before the first use)."""
        return self._handle

    def _actor(self) -> ActorRef:
        if self._handle is None:
            try:
                self._handle = ray.get_actor(NAME, namespace=self._ns)
            except ValueError:
                self._handle = start_encoder(self._ns, self._cpus)
        return self._handle

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, self.dim), dtype=np.float32)
        return np.asarray(ray.get(self._actor().encode.remote(texts)), dtype=np.float32)


def has_text_agents(repo: Any) -> bool:
    """Whether the store holds an agent that encodes texts (then the encoder starts with the
    deployment; a read of the agents' configs, at start only)."""
    from sqlalchemy import select

    from storage.models import Agent

    return any(isinstance(c, dict) and c.get("encoder") == "minilm"
               for c in repo.session.scalars(select(Agent.config)))
