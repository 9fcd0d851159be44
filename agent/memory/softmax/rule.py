"""Rule ``"softmax"`` (classifiers): ``S ← α·S + β·Σ_r (v_r − softmax(S k_r)) k_rᵀ`` over the event
and ``memory.replay`` earlier events it rehearses (:mod:`agent.memory.softmax.replay`), drawn from every
event learnt (layers ``X``, ``Y``: keys and label positions, append-only) or, with
``memory.reservoir``, from at most that many per label (slots ``X``, ``Y``, their stream positions
``T`` and the count ``N``: :mod:`agent.memory.softmax.reservoir`)."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from agent.config import AgentConfig
from agent.errors import InputError
from agent.memory.checksum import APPEND_ONLY
from agent.memory.deltas import LayerDelta
from agent.memory.rule import Layers, WriteRule
from agent.memory.softmax.replay import softmax_replay_chunk
from agent.memory.softmax.reservoir import reservoir_chunk

__all__ = ["SoftmaxRule", "replay_seed"]


def replay_seed(config: AgentConfig) -> int:
    """The rehearsal hash seed (:mod:`agent.memory.softmax.replay`): a function of the config alone."""
    return zlib.crc32(f"deltamem-replay:{config.encoder}:{config.dim}:{config.memory.lift_dim}".encode())


class SoftmaxRule(WriteRule):
    """``S``, and with ``replay`` > 0 the rehearsal memory ``X``, ``Y`` (and ``T``, ``N`` when
    bounded; float64 whatever the state's dtype: positions and counts stay whole numbers)."""

    name = "softmax"
    lift_activation = "relu"
    write_only = ("X", "Y", "T", "N")

    def initial_layers(self, d_k: int) -> Layers:
        if self.mem.replay <= 0:
            return {}
        out = {"X": np.zeros((0, d_k), dtype=self.dtype),  # every key learnt, in order
               "Y": np.zeros((0, 1), dtype=self.dtype)}  # its label's position (a whole number)
        if self.mem.reservoir is not None:  # bounded: X, Y are slots (reservoir.py)
            out["T"] = np.zeros((0, 1))  # each slot's position in the stream, float64
            out["N"] = np.zeros((1, 1))  # events learnt, float64
        return out

    def loaded_shape(self, name: str, arr: np.ndarray, layers: Layers, ref: Layers) -> tuple[int, ...]:
        if name in (*APPEND_ONLY, "T") and arr.ndim == 2:  # X, Y (and T): one row a slot
            return (layers["X"].shape[0], ref[name].shape[1])
        return tuple(ref[name].shape)

    def check_loaded(self, layers: Layers, labels: Sequence[str]) -> None:
        if "T" in layers and not (np.array_equal(layers["T"], np.floor(layers["T"]))
                                  and layers["T"].min(initial=0) >= 0
                                  and layers["T"].max(initial=-1) < layers["N"][0, 0]):
            raise ValueError("layer T: expected stream positions below N")
        if "Y" in layers:
            y = layers["Y"][:, 0]
            if y.size and not (np.array_equal(y, np.floor(y)) and y.min() >= 0 and y.max() < len(labels)):
                raise ValueError(f"layer Y: expected label positions in [0, {len(labels)})")

    def stored_as_is(self, layers: Layers) -> tuple[str, ...]:
        # positions, counts and label positions; with the bounded reservoir the keys put in place
        return ("T", "N", "Y") + (("X",) if "T" in layers else ())

    def deltas(self, layers: Layers, S: np.ndarray, K: np.ndarray, V: np.ndarray,
               beta: np.ndarray, labels0: int) -> dict[str, LayerDelta]:
        """S's delta, and the keys and labels kept for rehearsal."""
        mem, d_k, dt = self.mem, self.config.key_dim, self.dtype
        y = np.argmax(V, axis=1)  # (n,) label positions (V is one-hot)
        most = 2 ** (np.finfo(dt).nmant + 1)  # Y keeps positions as exact whole numbers
        if V.shape[1] > most:
            raise InputError("targets", f"a {dt} softmax agent holds at most {most} labels")
        K = np.ascontiguousarray(K, dtype=dt)  # the keys as the state keeps them
        X = layers.get("X", np.zeros((0, d_k), dtype=dt))  # (N0, d_k)
        Y = layers.get("Y", np.zeros((0, 1), dtype=dt))  # (N0, 1)
        if "T" in layers:  # the bounded reservoir
            if mem.reservoir is None:
                raise RuntimeError("a bounded reservoir state needs memory.reservoir")
            if X.shape[0] + len(y) > most:
                raise InputError("targets", f"a {dt} softmax agent keeps at most {most} "
                                 "rehearsal slots")
            return reservoir_chunk(S, X, Y, layers["T"], int(layers["N"][0, 0]), K, y, beta,
                                   replay=mem.replay, cap=mem.reservoir, labels0=labels0,
                                   alpha=mem.decay, seed=replay_seed(self.config))
        out = {"S": softmax_replay_chunk(S, X, Y, K, y, beta, replay=mem.replay, labels0=labels0,
                                         alpha=mem.decay, seed=replay_seed(self.config))}
        if "X" in layers:
            n0 = X.shape[0]
            out["X"] = LayerDelta.append(K, n0 + len(y))
            out["Y"] = LayerDelta.append(y.astype(dt)[:, None], n0 + len(y))
        return out
