"""The reference learner: an agent = base (encoder, lift) + delta-rule memory layers.

:class:`MemoryAgent` implements DESIGN §7 exactly; the Ray workers hold one per agent and the
evaluation harness streams data sets through it.

* key ``k = φ(x)/‖φ(x)‖``: ``x`` is the raw vector or the MiniLM embedding of a text, ``φ`` the
  identity or a fixed random-feature lift (``memory.lift_dim``) seeded from the config, so every
  process builds the same φ (:class:`agent.keys.KeyMap`);
* classifier (and recall with ``encoder: "none"``): one row of ``S`` per label, labels in order of
  first appearance (new rows start at zero), value = one-hot of the target;
  recall with the MiniLM encoder: ``S`` is (384, d_k), the value is the unit embedding of the
  answer text, and the answer texts (the labels) are the explicit memory the read-out is matched
  against by cosine;
* the write rule (``memory.rule``) is a :class:`~agent.memory.rule.WriteRule`: ``"delta"``
  (:mod:`agent.memory.delta_rule.rule`), ``"rls"`` (:mod:`agent.memory.rls.rule`) or
  ``"softmax"`` (:mod:`agent.memory.softmax.rule`); it keeps its own layers beside ``S`` and
  computes the deltas of a micro-batch from the keys and values this class builds;
* a micro-batch is one :class:`~agent.memory.deltas.Delta` computed by the chunk kernels; the
  learner applies the delta exactly as stored (after ``compact``/``astype``), so a rebuild from
  stored deltas is bit-identical to the live state.

Examples
--------
>>> from agent.config import AgentConfig
>>> cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 2,
...                              "memory": {"rule": "delta", "beta": 1.0}})
>>> m = MemoryAgent(cfg)
>>> m.predict_many([[1.0, 0.0]])
[{'label': None, 'score': 0.0}]
>>> d = m.learn_many([[1.0, 0.0], [0.0, 2.0]], ["left", "up"])
>>> d.labels_added
['left', 'up']
>>> [p["label"] for p in m.predict_many([[3.0, 0.1], [0.0, 1.0]])]
['left', 'up']
>>> _ = m.learn_many([[1.0, 0.0]], ["right"])       # a newer target for the same key wins
>>> m.predict_many([[1.0, 0.0]], top_k=2)[0]["top"]
[['right', 1.0], ['left', 0.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np

from agent.backbones.minilm import Encoder
from agent.backbones.vector import STATS_LAYER, empty_stats, running_stats, standardize_with
from agent.config import AgentConfig
from agent.errors import InputError
from agent.keys import LIFT_ACTIVATION, KeyMap, lift_seed
from agent.learner import StateView
from agent.memory.deltas import Delta, LayerDelta, apply_delta, pad_rows
from agent.memory.lift import Lift
from agent.memory.rls.rule import MAX_RLS_KEY_DIM
from agent.memory.rows import RowRoom
from agent.memory.rules import RULES, write_rule
from agent.memory.softmax.rule import replay_seed

__all__ = ["MemoryAgent", "MAX_RLS_KEY_DIM", "LIFT_ACTIVATION", "lift_seed", "replay_seed", "decode_row",
           "check_top_k"]


class MemoryAgent(StateView):
    """An agent's learner: keys, writes (as deltas) and reads.

    Parameters
    ----------
    config : what the agent is (kind, encoder, dim, memory settings).
    encoder : the text encoder (default: the shared MiniLM when ``config.encoder == "minilm"``).
    dtype : the state's dtype (float64 or float32); default: ``config.memory.dtype``.

    Learned state: ``_layers`` (``"S"``: (d_v, d_k), the write rule's own layers, e.g. ``"P"``
    of ``rls`` or the rehearsal rows ``"X"``, ``"Y"`` of ``softmax``, and the input statistics
    of a standardising agent) and ``_labels`` (labels or answer texts, in order of first
    appearance).
    """

    is_chat = False  # a LabelLearner (agent.learner): events are (input, target)

    def __init__(self, config: AgentConfig, encoder: Encoder | None = None, dtype: Any = None):
        self.config = config
        self.dtype = np.dtype(dtype if dtype is not None else config.memory.dtype)
        if self.dtype not in (np.float32, np.float64):
            raise InputError("dtype", f"expected float32 or float64, got {self.dtype}")
        self._check_config(config)
        self._rule = write_rule(config, self.dtype)
        self._keymap = KeyMap(config, encoder)  # inputs → unit keys (agent/keys.py)
        self.encoder = self._keymap.encoder
        # answers are embedded (recall + MiniLM): the value is the answer's embedding
        self._embedded_answers = config.kind == "recall" and config.encoder == "minilm"
        self._layers, self._labels = self.initial_state(config, self.dtype)
        self._reads_only = False
        self._room = RowRoom()  # spare rows for the append-only layers X and Y (softmax)
        self._index = {label: i for i, label in enumerate(self._labels)}
        self._answers = np.zeros((0, config.dim), dtype=np.float64)  # (m, 384) unit answer rows

    # ------------------------------------------------------------------ state

    @staticmethod
    def _check_config(config: AgentConfig) -> None:
        if config.kind not in ("classifier", "recall"):
            raise InputError("kind", f'MemoryAgent serves "classifier" and "recall", not {config.kind!r}')
        RULES[config.memory.rule].check_config(config)

    @staticmethod
    def initial_state(config: AgentConfig, dtype: Any = None) -> tuple[dict[str, np.ndarray], list[str]]:
        """The empty state (version 0): ``S`` zeros and the rule's layers (e.g. ``P = I/ridge``
        for ``rls``), no labels; in ``dtype`` (default: ``config.memory.dtype``)."""
        MemoryAgent._check_config(config)
        dtype = np.dtype(dtype if dtype is not None else config.memory.dtype)
        d_k = config.key_dim
        d_v = config.dim if (config.kind == "recall" and config.encoder == "minilm") else 0
        layers = {"S": np.zeros((d_v, d_k), dtype=dtype)}
        layers.update(write_rule(config, dtype).initial_layers(d_k))
        if config.standardize:  # running input statistics, float64 whatever the state's dtype
            layers[STATS_LAYER] = empty_stats(config.dim)
        return layers, []

    def load_state(self, layers: dict[str, np.ndarray], labels: Sequence[str]) -> None:
        """Replace the state (e.g. a snapshot from the store); shapes are checked first."""
        ref, _ = self.initial_state(self.config, self.dtype)
        labels = list(labels)
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        # a state stored by an earlier version may lack some of the rule's layers (rls's "Q")
        if set(layers) != set(ref) and set(layers) != set(ref) - set(self._rule.optional):
            raise ValueError(f"expected layers {sorted(ref)}, got {sorted(layers)}")
        d_v = self.config.dim if self._embedded_answers else len(labels)
        new = {}
        for name, arr in layers.items():
            want = ((d_v, self.config.key_dim) if name == "S"
                    else self._rule.loaded_shape(name, arr, layers, ref))
            if tuple(arr.shape) != tuple(want):
                raise ValueError(f"layer {name}: expected shape {want}, got {arr.shape}")
            new[name] = np.asarray(arr, dtype=ref[name].dtype)
        self._rule.check_loaded(new, labels)
        answers = self._keymap.embed(labels) if self._embedded_answers else self._answers[:0]
        self._layers, self._labels, self._reads_only = new, labels, False
        self._room = RowRoom()  # the loaded arrays are not its views: the next append copies
        self._index = {label: i for i, label in enumerate(labels)}
        self._answers = answers

    def held_nbytes(self) -> int:
        """Bytes this learner holds: its layers, the spare rows of its append-only layers and
        its label texts (what a learner shard's cache counts)."""
        return (sum(int(a.nbytes) for a in self._layers.values()) + self._room.spare_nbytes()
                + sum(len(x) for x in self._labels))

    def keep_reads_only(self) -> None:
        """Drop the layers only writes use (``P``/``Q`` of ``rls``, ``X``/``Y`` of ``softmax``): what a serving
        replica keeps. Their deltas are skipped from then on; learning and :meth:`checksum`
        raise until :meth:`load_state` loads a whole state again."""
        self._layers = {k: v for k, v in self._layers.items() if k not in self._rule.write_only}
        self._reads_only = True
        self._room = RowRoom()

    def for_reads(self, delta: Delta) -> Delta:
        """``delta`` without the layers a reads-only view skips (what serving replicas are sent)."""
        return Delta({k: v for k, v in delta.layers.items() if k not in self._rule.write_only},
                     list(delta.labels_added))

    def checksum(self) -> str:
        if self._reads_only:
            raise RuntimeError("a reads-only view has no P: its checksum is not the state's")
        return super().checksum()

    def apply(self, delta: Delta) -> None:
        """Apply a committed delta (the same operation a rebuild uses) and extend the labels."""
        dup = [label for label in delta.labels_added if label in self._index]
        if dup or len(set(delta.labels_added)) != len(delta.labels_added):
            raise ValueError(f"delta adds labels already present: {dup[:3]}")
        if self._reads_only:
            delta = self.for_reads(delta)
        appended = {k: ld for k, ld in delta.layers.items() if ld.appends}
        layers = apply_delta(self._layers, Delta({k: ld for k, ld in delta.layers.items()
                                                  if not ld.appends}) if appended else delta)
        for name, ld in appended.items():  # in place past the end: the same bits as apply_layer
            layers[name] = self._room.append(name, layers[name], ld)
        answers = self._answers
        if self._embedded_answers and delta.labels_added:
            answers = np.concatenate([answers, self._keymap.embed(delta.labels_added)], axis=0)
        self._layers = layers
        for label in delta.labels_added:
            self._index[label] = len(self._labels)
            self._labels.append(label)
        self._answers = answers

    # ------------------------------------------------------------------ keys

    @property
    def _lift(self) -> Lift | None:
        """The lift φ (None: the identity)."""
        return self._keymap.lift

    def keys(self, inputs: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Unit keys ``(n, d_k)`` float64 for texts (MiniLM agents) or raw vectors of ``dim``.

        Raises :class:`InputError` naming ``inputs[i]`` for a wrong type or dimension, a
        NaN/Inf, an empty text or a zero key.
        """
        X = self._keymap.raw(inputs)  # (n, dim)
        if self.config.standardize:  # reads: the statistics of everything learnt so far
            X = standardize_with(self._layers[STATS_LAYER], X, self._keymap.scale)
        elif self._keymap.scale is not None:
            X = X * self._keymap.scale
        return self._keymap.unit(X)

    # ------------------------------------------------------------------ writes

    def _betas(self, betas: Sequence[float | None] | None, n: int) -> np.ndarray:
        default = self.config.memory.beta
        if betas is None:
            return np.full(n, default)
        if len(betas) != n:
            raise InputError("betas", f"expected {n} values (one per input), got {len(betas)}")
        out = np.empty(n)
        for i, b in enumerate(betas):
            if b is None:
                out[i] = default
            elif isinstance(b, bool) or not isinstance(b, Real) or not (math.isfinite(b) and 0 < b <= 1):
                raise InputError(f"betas[{i}]", f"expected a number in (0, 1], got {b!r}")
            else:
                out[i] = float(b)
        return out

    def write_keys(self, inputs: Sequence[Any] | np.ndarray) -> np.ndarray | None:
        """The unit keys ``(n, d_k)`` that both reading and learning ``inputs`` use now, for
        passing to :meth:`predict_labels` and :meth:`learn_many` as ``keys`` (a test-then-train
        step computes them once); None for a standardising agent, whose writes key each row
        by the running statistics of the rows before it, not the reads' statistics."""
        return None if self.config.standardize else self.keys(inputs)

    def _given_keys(self, keys: np.ndarray | None, n: int) -> np.ndarray | None:
        if keys is not None and (self.config.standardize or keys.shape[0] != n):
            raise ValueError("keys: expected write_keys(inputs) of these inputs")
        return keys

    def compute_delta(self, inputs: Sequence[Any] | np.ndarray, targets: Sequence[str] | None,
                      betas: Sequence[float | None] | None = None, *,
                      keys: np.ndarray | None = None) -> Delta:
        """The delta of learning ``(inputs, targets)`` in order; changes nothing. ``keys``:
        :meth:`write_keys` of ``inputs``, when the caller holds them."""
        if self._reads_only:
            raise RuntimeError("a reads-only view (keep_reads_only) cannot learn")
        n = len(inputs)
        if n == 0:
            raise InputError("inputs", "expected at least one input")
        if targets is None or isinstance(targets, str) or len(targets) != n:
            raise InputError("targets", f"expected {n} targets (one per input)")
        for i, t in enumerate(targets):
            if not isinstance(t, str) or not t:
                raise InputError(f"targets[{i}]", f"expected a non-empty string, got {t!r}")
        b = self._betas(betas, n)
        stats = None
        given = self._given_keys(keys, n)
        if self.config.standardize:  # writes: row i with the statistics of the rows before it
            X, stats = running_stats(self._layers[STATS_LAYER], self._keymap.raw(inputs), self._keymap.scale)
            K = self._keymap.unit(X)  # (n, d_k)
        else:
            K = self.keys(inputs) if given is None else given  # (n, d_k)
        added: list[str] = []
        seen = set(self._index)
        for t in targets:
            if t not in seen:
                seen.add(t)
                added.append(t)
        S = self._layers["S"]
        if self._embedded_answers:
            V = self._keymap.embed(list(targets)).astype(self.dtype)  # (n, 384)
        else:
            index = dict(self._index)
            index.update({t: len(self._labels) + j for j, t in enumerate(added)})
            S = pad_rows(S, len(index))  # (d_v_new, d_k)
            V = np.zeros((n, len(index)), dtype=self.dtype)  # (n, d_v_new) one-hot
            V[np.arange(n), [index[t] for t in targets]] = 1.0
        layers = self._rule.deltas(self._layers, S, K, V, b, len(self._labels))
        if stats is not None:  # the new statistics replace the old (dense, γ = 0)
            layers[STATS_LAYER] = LayerDelta.of_dense(stats, 0.0)
        return Delta(layers, added)

    def learn_many(self, inputs: Sequence[Any] | np.ndarray, targets: Sequence[str] | None,
                   betas: Sequence[float | None] | None = None, delta_dtype: Any = None, *,
                   keys: np.ndarray | None = None) -> Delta:
        """Learn a micro-batch; returns the delta exactly as applied (compact, cast; the input
        statistics of a standardising agent stay float64). ``keys``: :meth:`write_keys` of
        ``inputs`` when the caller holds them (the same delta, bit for bit).

        ``delta_dtype`` (the service's ``DELTAMEM_DELTA_DTYPE``) is the stored deltas' type; it
        never widens a float32 state's deltas (their factors are float32 numbers already)."""
        delta = self.compute_delta(inputs, targets, betas, keys=keys).compact()
        dt = np.dtype(delta_dtype) if delta_dtype is not None else self.dtype
        if dt.itemsize > self.dtype.itemsize:
            dt = self.dtype
        # float64 statistics (and the rule's exact layers, e.g. softmax's positions) stay as held
        keep = (STATS_LAYER, *self._rule.stored_as_is(self._layers))
        cast = Delta({k: v if k in keep else v.astype(dt) for k, v in delta.layers.items()},
                     list(delta.labels_added))
        self.apply(cast)
        return cast

    # ------------------------------------------------------------------ reads

    def scores(self, inputs: Sequence[Any] | np.ndarray, *,
               keys: np.ndarray | None = None) -> np.ndarray:
        """Per-label scores ``(n, m)``: ``S k`` (one-hot agents) or cosine of ``S k`` with each
        answer. ``keys``: :meth:`write_keys` of ``inputs`` when the caller holds them."""
        given = self._given_keys(keys, len(inputs))
        K = self.keys(inputs) if given is None else given  # (n, d_k)
        Y = K @ np.asarray(self._layers["S"], dtype=np.float64).T  # (n, d_v)
        if not self._embedded_answers:
            return Y
        nrm = np.linalg.norm(Y, axis=1, keepdims=True)
        return (Y / np.where(nrm > 0, nrm, 1.0)) @ self._answers.T  # (n, m) cosines

    def predict_many(self, inputs: Sequence[Any] | np.ndarray, top_k: int | None = None) -> list[dict]:
        """``[{"label", "score", "top"?}]`` per input; ``label`` None while nothing is learned."""
        check_top_k(top_k)
        return [decode_row(row, self._labels, top_k) for row in self.scores(inputs)]

    def predict_labels(self, inputs: Sequence[Any] | np.ndarray, *,
                       keys: np.ndarray | None = None) -> list[str | None]:
        """The best label per input (None while nothing is learned): ``predict_many``'s
        labels without its per-row dicts (the learner's test-then-train reads these).
        ``keys``: :meth:`write_keys` of ``inputs`` when the caller holds them."""
        Y = self.scores(inputs, keys=keys)  # (n, m)
        if not self._labels:
            return [None] * len(Y)
        return [self._labels[j] for j in np.argmax(Y, axis=1).tolist()]


def check_top_k(top_k: Any) -> None:
    """``top_k``: None or a positive integer."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InputError("top_k", f"expected a positive integer, got {top_k!r}")


def decode_row(row: np.ndarray, labels: Sequence[str], top_k: int | None) -> dict[str, Any]:
    """One prediction from label scores ``row`` (m,): the best label (None while there is none),
    its score and, with ``top_k``, the ``top_k`` best ``[label, score]`` (ties in label order)."""
    m = len(labels)
    if m == 0:
        p: dict[str, Any] = {"label": None, "score": 0.0}
        if top_k is not None:
            p["top"] = []
        return p
    j = int(np.argmax(row))
    p = {"label": labels[j], "score": float(row[j])}
    if top_k is not None:
        order = np.argsort(-row, kind="stable")[: min(top_k, m)]
        p["top"] = [[labels[i], float(row[i])] for i in order]
    return p
