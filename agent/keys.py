"""Keys: ``k = φ(x)/‖φ(x)‖`` for an agent's inputs.

``x`` is the raw vector or the MiniLM embedding of a text, ``φ`` the identity or a fixed
random-feature lift (``memory.lift_dim``) seeded from the config, so every process builds the
same φ. :class:`KeyMap` checks inputs (each bad one named ``inputs[i]``), encodes texts, lifts and
normalises; the running input statistics of a standardising agent are the learner's state and
are applied by :class:`agent.model.MemoryAgent`.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np

from agent.backbones.minilm import Encoder, get_minilm
from agent.config import AgentConfig
from agent.errors import InputError
from agent.memory.lift import Lift, unit_rows
from agent.memory.rules import RULES

__all__ = ["KeyMap", "LIFT_ACTIVATION", "LIFT_SCALE", "lift_seed"]

# The lift φ (when ``memory.lift_dim`` is set), chosen per rule by the evaluation
# (benchmarks/EVAL.md): each rule class says which (``WriteRule.lift_activation``).
# The weight scale sets the kernel bandwidth: MiniLM embeddings are unit vectors (scale 2.0);
# raw vectors use the Lift default 1/sqrt(dim) (entries of order 1).
LIFT_ACTIVATION: dict[str, str] = {name: rule.lift_activation for name, rule in RULES.items()}
LIFT_SCALE: dict[str, float | None] = {"minilm": 2.0, "none": None}


def lift_seed(config: AgentConfig) -> int:
    """The lift's seed: a function of the config alone, so every process builds the same φ."""
    return zlib.crc32(f"deltamem-lift:{config.encoder}:{config.dim}:{config.memory.lift_dim}".encode())


class KeyMap:
    """Inputs → raw rows → unit keys, for one agent's config.

    Parameters
    ----------
    config : the agent's config (``dim``, ``encoder``, ``input_scale``, ``memory.lift_dim``).
    encoder : the text encoder (default: the shared MiniLM when ``config.encoder == "minilm"``).
    """

    def __init__(self, config: AgentConfig, encoder: Encoder | None = None) -> None:
        self.config = config
        self.encoder: Encoder | None = None
        if config.encoder == "minilm":
            self.encoder = encoder if encoder is not None else get_minilm()
        self.scale = None if config.input_scale is None else np.asarray(config.input_scale)  # (dim,)
        self.lift: Lift | None = None
        if config.memory.lift_dim:
            self.lift = Lift(config.dim, config.memory.lift_dim, seed=lift_seed(config),
                             activation=LIFT_ACTIVATION[config.memory.rule],
                             scale=LIFT_SCALE.get(config.encoder))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Unit embeddings ``(m, 384)`` float64 of answer texts."""
        assert self.encoder is not None
        X = np.asarray(self.encoder.encode(list(texts)), dtype=np.float64)  # (m, 384)
        nrm = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(nrm > 0, nrm, 1.0)

    def raw(self, inputs: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Validated raw inputs ``(n, dim)`` float64: texts encoded, vectors checked."""
        dim = self.config.dim
        if isinstance(inputs, np.ndarray) and inputs.ndim == 2 and inputs.dtype.kind == "f":
            if inputs.shape[1] != dim:
                raise InputError("inputs[0]", f"expected {dim} numbers, got {inputs.shape[1]}")
            X = np.array(inputs, dtype=np.float64)  # (n, dim), a copy
        else:
            if isinstance(inputs, (str, bytes)) or not isinstance(inputs, (Sequence, np.ndarray)):
                raise InputError("inputs", "expected a list of inputs")
            X = np.empty((len(inputs), dim), dtype=np.float64)  # (n, dim)
            texts: list[str] = []
            rows: list[int] = []
            for i, x in enumerate(inputs):
                if isinstance(x, str):
                    if self.encoder is None:
                        raise InputError(f"inputs[{i}]", f"expected a list of {dim} numbers "
                                         '(this agent has encoder "none"), got a text')
                    if not x.strip():
                        raise InputError(f"inputs[{i}]", "expected a non-empty text")
                    texts.append(x)
                    rows.append(i)
                else:
                    X[i] = self._vector(x, i)
            if texts:
                assert self.encoder is not None
                X[rows] = np.asarray(self.encoder.encode(texts), dtype=np.float64)
        bad = ~np.isfinite(X).all(axis=1)
        if bad.any():
            raise InputError(f"inputs[{int(np.argmax(bad))}]", "expected finite numbers (no NaN/Inf)")
        return X

    def unit(self, X: np.ndarray) -> np.ndarray:
        """Lift (when set) and normalise: unit keys ``(n, d_k)`` float64."""
        Phi = self.lift(X) if self.lift is not None else X  # (n, d_k)
        # scaled before normalising (norms past float64's range); a standardised input equal
        # to the running mean (e.g. the same vector twice) is the zero key: a no-op write
        return unit_rows(Phi, "inputs", allow_zero=self.config.standardize)

    def _vector(self, x: Any, i: int) -> np.ndarray:
        dim = self.config.dim
        if isinstance(x, np.ndarray):
            if x.ndim != 1 or x.dtype.kind not in "fiu":
                raise InputError(f"inputs[{i}]", f"expected a list of {dim} numbers")
            v = x.astype(np.float64)
        elif isinstance(x, (list, tuple)):
            if not all(isinstance(e, Real) and not isinstance(e, bool) for e in x):
                raise InputError(f"inputs[{i}]", f"expected a list of {dim} numbers")
            v = np.asarray(x, dtype=np.float64)
        else:
            want = "a text or a list of numbers" if self.encoder is not None else f"a list of {dim} numbers"
            raise InputError(f"inputs[{i}]", f"expected {want}, got {type(x).__name__}")
        if v.shape != (dim,):
            raise InputError(f"inputs[{i}]", f"expected {dim} numbers, got {v.size}")
        return v
