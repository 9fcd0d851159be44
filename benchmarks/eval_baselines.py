"""Every method the harness compares, behind one small verb API on the same embeddings.

``learn_many(X (n, d) float, y list[str])`` and ``predict_many(X) -> list[str]``; learners keep
their state in underscored attributes. :class:`DeltaMem` wraps the real
:class:`agent.model.MemoryAgent` (the service's learner), the others are the online-learning
peers (Vowpal Wabbit, River), simple memories (nearest class mean, vector store) and the batch
"full retraining" reference (scikit-learn LogisticRegression refitted on everything seen).

Examples
--------
>>> import numpy as np
>>> X = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1]])
>>> m = VectorStore(); m.learn_many(X[:2], ["a", "b"]); m.predict_many(X[2:])
['a']
>>> m.learn_many(X[:1], ["c"]); m.predict_many(X[2:])        # the most recent pair wins
['c']
>>> n = NearestClassMean(); n.learn_many(X, ["a", "b", "a"]); n.predict_many(np.array([[0.0, 2.0]]))
['b']
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agent.config import AgentConfig
from agent.model import MemoryAgent


def _unit(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


class DeltaMem:
    """The service's learner on precomputed embeddings (``encoder`` ``minilm`` or ``none``)."""

    def __init__(self, memory: dict[str, Any], dim: int = 384, encoder: str = "minilm",
                 kind: str = "classifier", name: str | None = None):
        cfg: dict[str, Any] = {"kind": kind, "encoder": encoder, "memory": memory}
        if encoder == "none":
            cfg["dim"] = dim
        self.config = AgentConfig.from_dict(cfg)
        self.name = name or "deltamem " + " ".join(f"{k}={v}" for k, v in memory.items())
        self._agent = MemoryAgent(self.config, encoder=_NoTexts() if encoder == "minilm" else None)

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        self._agent.learn_many(np.asarray(X, dtype=np.float64), list(y))

    def predict_many(self, X: np.ndarray) -> list[str]:
        if not self._agent.labels:
            return [""] * len(X)
        S = self._agent.scores(np.asarray(X, dtype=np.float64))  # (n, m)
        labels = self._agent.labels
        return [labels[j] for j in np.argmax(S, axis=1)]


class _NoTexts:
    """An encoder for harness agents fed embeddings only (texts would be a harness bug)."""

    dim = 384

    def encode(self, texts: list[str]) -> np.ndarray:
        raise RuntimeError("the harness feeds embeddings, not texts")


class NearestClassMean:
    """Running mean of the unit embeddings per class; predict the nearest mean (cosine)."""

    name = "nearest class mean"

    def __init__(self) -> None:
        self._labels: list[str] = []
        self._index: dict[str, int] = {}
        self._sums: np.ndarray | None = None  # (m, d)

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        U = _unit(X)
        if self._sums is None:
            self._sums = np.zeros((0, U.shape[1]))
        for t in y:
            if t not in self._index:
                self._index[t] = len(self._labels)
                self._labels.append(t)
        if len(self._labels) > self._sums.shape[0]:
            self._sums = np.vstack([self._sums, np.zeros((len(self._labels) - self._sums.shape[0], U.shape[1]))])
        np.add.at(self._sums, [self._index[t] for t in y], U)

    def predict_many(self, X: np.ndarray) -> list[str]:
        if self._sums is None:
            return [""] * len(X)
        M = _unit(self._sums)
        return [self._labels[j] for j in np.argmax(_unit(X) @ M.T, axis=1)]


class VectorStore:
    """Every (embedding, label) pair kept; the nearest neighbour answers, the most recent on ties."""

    name = "vector store (1-NN)"

    def __init__(self) -> None:
        self._X: list[np.ndarray] = []
        self._y: list[str] = []

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        self._X.append(_unit(X))
        self._y.extend(y)

    def scores(self, X: np.ndarray) -> np.ndarray:
        M = np.concatenate(self._X, axis=0)  # (N, d)
        return _unit(X) @ M.T  # (n, N)

    def predict_many(self, X: np.ndarray) -> list[str]:
        if not self._y:
            return [""] * len(X)
        S = self.scores(X)
        # most recent wins among equal similarities: argmax over the reversed order
        j = S.shape[1] - 1 - np.argmax(S[:, ::-1] >= S.max(axis=1, keepdims=True) - 1e-9, axis=1)
        return [self._y[i] for i in j]


class VowpalWabbit:
    """Vowpal Wabbit 9.11: ``--oaa K`` for multiclass, logistic loss (+ ``-q``) for binary."""

    def __init__(self, args: str, n_classes: int | None = None, name: str | None = None):
        from vowpalwabbit import Workspace

        self.binary = n_classes is None
        self.args = args
        full = (f"--oaa {n_classes} " if not self.binary else "--loss_function logistic --binary ")
        self._vw = Workspace(full + args + " --quiet")
        self.name = name or f"vowpal wabbit {args}".strip()
        self._ids: dict[str, int] = {}
        self._labels: list[str] = []

    @staticmethod
    def _feats(x: np.ndarray) -> str:
        return " ".join(f"{i}:{v:.6g}" for i, v in enumerate(x) if v != 0.0)

    def _label(self, t: str) -> int:
        if t not in self._ids:
            self._ids[t] = len(self._labels) + 1
            self._labels.append(t)
        return self._ids[t]

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        for x, t in zip(X, y, strict=True):
            if self.binary:
                lab = 1 if t == "1" else -1
            else:
                lab = self._label(t)
            self._vw.learn(f"{lab} |a {self._feats(x)}")

    def predict_many(self, X: np.ndarray) -> list[str]:
        out = []
        for x in X:
            p = self._vw.predict(f"|a {self._feats(x)}")
            if self.binary:
                out.append("1" if p > 0 else "0")
            else:
                out.append(self._labels[int(p) - 1] if 0 < int(p) <= len(self._labels) else "")
        return out


class River:
    """A River classifier (``learn_one``/``predict_one`` on dict features).

    ``binary=True`` for River's binary models (labels ``"1"``/``"0"`` as True/False).
    """

    def __init__(self, model: Any, name: str, binary: bool = False):
        self._model = model
        self.name = name
        self.binary = binary

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        for x, t in zip(X, y, strict=True):
            self._model.learn_one(dict(enumerate(map(float, x))), t == "1" if self.binary else t)

    def predict_many(self, X: np.ndarray) -> list[str]:
        out = []
        for x in X:
            p = self._model.predict_one(dict(enumerate(map(float, x))))
            if self.binary:
                out.append("1" if p else "0")
            else:
                out.append("" if p is None else str(p))
        return out


class BatchLogistic:
    """Full retraining: scikit-learn LogisticRegression refitted on everything seen so far.

    ``refit()`` fits on all data learnt so far and records the fit time in ``fit_seconds`` (wall)
    and ``fit_cpu`` (CPU).
    """

    def __init__(self, C: float = 10.0, name: str | None = None):
        self.C = C
        self.name = name or f"batch logistic regression (C={C}, retrained)"
        self._X: list[np.ndarray] = []
        self._y: list[str] = []
        self._clf: Any = None
        self.fit_seconds: list[tuple[int, float]] = []  # (n seen, wall seconds)
        self.fit_cpu: list[tuple[int, float]] = []  # (n seen, CPU seconds)

    def learn_many(self, X: np.ndarray, y: list[str]) -> None:
        self._X.append(np.asarray(X, dtype=np.float64))
        self._y.extend(y)

    def refit(self) -> None:
        from sklearn.linear_model import LogisticRegression

        X = np.concatenate(self._X, axis=0)
        if len(set(self._y)) < 2:
            return
        t0, c0 = time.perf_counter(), time.process_time()
        self._clf = LogisticRegression(C=self.C, max_iter=300).fit(X, self._y)
        self.fit_seconds.append((len(self._y), time.perf_counter() - t0))
        self.fit_cpu.append((len(self._y), time.process_time() - c0))

    def predict_many(self, X: np.ndarray) -> list[str]:
        if self._clf is None:
            return [self._y[-1] if self._y else ""] * len(X)
        return [str(p) for p in self._clf.predict(np.asarray(X, dtype=np.float64))]
