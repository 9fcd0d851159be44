"""Typed configuration of an agent: what it is (kind, encoder, dims) and how it writes memory.

These are plain frozen dataclasses with validation, so the HTTP layer, the store and the
learner all agree on one definition. ``to_dict``/``from_dict`` give the JSON form that is
stored in the database and returned by the API.

Examples
--------
>>> cfg = AgentConfig.from_dict({"kind": "classifier", "encoder": "none", "dim": 4})
>>> cfg.memory.rule, cfg.memory.dtype, cfg.memory.reservoir, cfg.key_dim
('softmax', 'float32', 64, 4)
>>> AgentConfig.from_dict({"kind": "classifier", "encoder": "none"})
Traceback (most recent call last):
...
agent.errors.InputError: dim: required (a positive integer) when encoder is "none"
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from agent.errors import InputError, check_text

KINDS = ("classifier", "recall", "chat")
ENCODERS = ("minilm", "none")
RULES = ("delta", "rls", "softmax")
MINILM_DIM = 384
MAX_DIM = 65536
MAX_LIFT_DIM = 65536

# Documented defaults, chosen by the evaluation in `deltamem eval` (benchmarks/EVAL.md, "Defaults").
# ridge 0.1: on MiniLM keys ridge 1.0 over-smooths (CLINC150 rls 0.911 at 0.1); forget 1.0 and
# decay 1.0: ρ < 1 winds up P until the Cholesky fails on long streams, α < 1 only lost accuracy.
DEFAULT_RULE = "delta"  # recall agents (and chat); classifiers: DEFAULT_CLASSIFIER_RULE
# classifiers: the softmax rule in float32 with a bounded rehearsal memory (issue 18; CLINC150
# by rule and cap: `python -m benchmarks.clinc_reservoir`, benchmarks/EVAL.md "Defaults")
DEFAULT_CLASSIFIER_RULE = "softmax"
DEFAULT_BETA = 0.5
DEFAULT_RECALL_BETA = 1.0  # recall agents: a correction must win outright (fact overwrite)
DEFAULT_DECAY = 1.0
DEFAULT_RIDGE = 0.1
DEFAULT_FORGET = 1.0
# bounds that keep an rls state finite (issue 15): P starts at I/ridge, so a ridge near the
# smallest float makes it infinite at once, and a tiny ridge leaves float32's Cholesky of
# I + K P Kᵀ no margin on repeated keys; each write divides P by ρ, so a ρ near 0 overflows it
# within a few events. The bounds come from probes, not a proof: a long stream can still wind P
# up with ρ < 1, and the learner then rejects the events it cannot apply.
MIN_RIDGE, MAX_RIDGE = 1e-4, 1e12
MIN_FORGET = 0.9
# rule "softmax" (the delta rule with a softmax read, rehearsing R earlier events per write):
# β 0.8 and R 7 by the CLINC150 evaluation (benchmarks/clinc_softmax.py; benchmarks/EVAL.md):
# as accurate as R 15 (0.951 / 0.949 in the two orders, 3 order seeds) at half the compute
DEFAULT_SOFTMAX_BETA = 0.8
DEFAULT_REPLAY = 7
MAX_REPLAY = 256
# the bounded rehearsal memory (agent/memory/softmax/reservoir.py): at most this many events per label are
# kept to rehearse (null: every event, the unbounded rule); benchmarks/clinc_softmax.py --reservoir
DEFAULT_RESERVOIR = 64
MAX_RESERVOIR = 65536
# the state's float type: float32 halves memory and roughly halves an rls write's time (P is
# d_k × d_k); float64 is the default (benchmarks/EVAL.md, "float32 state")
STATE_DTYPES = ("float64", "float32")
DEFAULT_STATE_DTYPE = "float64"
DEFAULT_SOFTMAX_DTYPE = "float32"  # rule softmax: as accurate as float64 (benchmarks/EVAL.md)
# a chat agent's prompt (PromptConfig): turns retrieved, last turns always in; bounds of both.
# No recent window by default: paired on the same agents and questions, the retrieved turns
# alone answer better after 10k tokens of small talk and on LoCoMo (benchmarks/EVAL.md,
# "Prompt settings"); agents that want the last turns set "prompt": {"recent": n}
DEFAULT_PROMPT_TOP_K = 2
DEFAULT_PROMPT_RECENT = 0
MAX_PROMPT_TURNS = 32


def _number(d: dict[str, Any], name: str, default: float, lo: float, hi: float,
            lo_open: bool = True, field_prefix: str = "memory.") -> float:
    if name not in d or d[name] is None:
        return default
    v = d[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise InputError(f"{field_prefix}{name}", f"expected a finite number, got {v!r}")
    v = float(v)
    ok = (lo < v if lo_open else lo <= v) and v <= hi
    if not ok:
        rng = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise InputError(f"{field_prefix}{name}", f"expected a number in {rng}, got {v}")
    return v


@dataclass(frozen=True)
class MemoryConfig:
    """How an agent writes its memory (DESIGN §2).

    rule: ``"delta"`` (gated delta rule: ``beta`` strength, ``decay`` = α), ``"rls"``
    (preconditioned delta rule: ``ridge`` = λ, ``forget`` = ρ) or ``"softmax"`` (classifiers:
    the delta rule with a softmax read, ``beta``, ``decay``, rehearsing ``replay`` earlier events
    per write; :mod:`agent.memory.softmax.replay`) from a memory of at most ``reservoir`` events per label
    (None: every event; :mod:`agent.memory.softmax.reservoir`).
    lift_dim: optional fixed random-feature lift φ of the key (None: identity).
    dtype: the state's float type, ``"float64"`` or ``"float32"`` (the default of rule softmax).
    """

    rule: str = DEFAULT_RULE
    beta: float = DEFAULT_BETA
    decay: float = DEFAULT_DECAY
    ridge: float = DEFAULT_RIDGE
    forget: float = DEFAULT_FORGET
    lift_dim: int | None = None
    dtype: str = DEFAULT_STATE_DTYPE
    replay: int = 0  # rule "softmax" only (default DEFAULT_REPLAY)
    reservoir: int | None = None  # rule "softmax" only (default DEFAULT_RESERVOIR; None: unbounded)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, kind: str = "classifier") -> MemoryConfig:
        """``kind`` picks the documented defaults: a classifier writes with rule ``softmax``
        (float32, a bounded rehearsal memory), a recall agent with the delta rule and ``beta`` 1.0
        (the newest answer for a question replaces the old one; benchmarks/EVAL.md)."""
        d = dict(d or {})
        if not isinstance(d, dict):
            raise InputError("memory", "expected an object")
        known = {"rule", "beta", "decay", "ridge", "forget", "lift_dim", "dtype", "replay", "reservoir"}
        unknown = sorted(check_text(str(k), "memory", "text in a setting name")
                         for k in set(d) - known)
        if unknown:
            raise InputError(f"memory.{unknown[0]}", f"unknown setting; expected one of {sorted(known)}")
        default_rule = DEFAULT_CLASSIFIER_RULE if kind == "classifier" else DEFAULT_RULE
        rule = d.get("rule")
        rule = default_rule if rule is None else rule  # ("" is not a rule)
        if rule not in RULES:
            raise InputError("memory.rule", f'expected "delta", "rls" or "softmax", got {rule!r}')
        replay = d.get("replay")
        reservoir = d.get("reservoir", DEFAULT_RESERVOIR)
        if rule != "softmax":
            for name in ("replay", "reservoir"):
                if d.get(name) is not None:
                    raise InputError(f"memory.{name}", 'rehearsal is a setting of rule "softmax"')
            replay, reservoir = 0, None
        elif reservoir is not None and (isinstance(reservoir, bool) or not isinstance(reservoir, int)
                                        or not 1 <= reservoir <= MAX_RESERVOIR):
            raise InputError("memory.reservoir", f"expected an integer in [1, {MAX_RESERVOIR}] "
                             f"(events kept per label) or null (every event), got {reservoir!r}")
        elif replay is None:
            replay = DEFAULT_REPLAY
        elif isinstance(replay, bool) or not isinstance(replay, int) or not 0 <= replay <= MAX_REPLAY:
            raise InputError("memory.replay", f"expected an integer in [0, {MAX_REPLAY}], got {replay!r}")
        lift = d.get("lift_dim")
        if lift is not None:
            if isinstance(lift, bool) or not isinstance(lift, int) or not 1 <= lift <= MAX_LIFT_DIM:
                raise InputError("memory.lift_dim", f"expected an integer in [1, {MAX_LIFT_DIM}], got {lift!r}")
        dtype = d.get("dtype")
        if dtype is None:
            dtype = DEFAULT_SOFTMAX_DTYPE if rule == "softmax" else DEFAULT_STATE_DTYPE
        if dtype not in STATE_DTYPES:
            raise InputError("memory.dtype", f'expected "float64" or "float32", got {dtype!r}')
        return cls(
            rule=rule,
            beta=_number(d, "beta", DEFAULT_RECALL_BETA if kind == "recall" else
                         DEFAULT_SOFTMAX_BETA if rule == "softmax" else DEFAULT_BETA, 0.0, 1.0),
            decay=_number(d, "decay", DEFAULT_DECAY, 0.0, 1.0),
            ridge=_number(d, "ridge", DEFAULT_RIDGE, MIN_RIDGE, MAX_RIDGE, lo_open=False),
            forget=_number(d, "forget", DEFAULT_FORGET, MIN_FORGET, 1.0, lo_open=False),
            lift_dim=lift,
            dtype=dtype,
            replay=replay,
            reservoir=reservoir,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: every setting in force; ``replay`` and ``reservoir`` (null: unbounded)
        only with rule ``"softmax"``."""
        out = asdict(self)
        if self.rule != "softmax":
            del out["replay"], out["reservoir"]
        return out


GUARD_ACTIONS = ("rollback", "quarantine", "alert")
MAX_GUARD_WINDOW = 100_000
MAX_GUARD_SAMPLE = 10_000  # events the guard keeps per agent (inputs and targets), at most


@dataclass(frozen=True)
class GuardPolicy:
    """The guard of an agent's quality (workers/actors/guard.py): when prequential accuracy over the last
    ``window`` events falls by more than ``drop`` against the ``window`` events before, confirmed
    by a Page-Hinkley test on the error stream, it takes ``action``. A rollback or quarantine
    is first checked on at most ``sample`` events read back around the change (default
    ``2 × window``; 0: no check): learnable drift only alerts (workers/actors/guard_check.py).
    A fall within ``z`` standard deviations of the stream's own window-to-window variation
    only alerts too (workers/actors/guard_spread.py; 0: no such gate)."""

    window: int = 500
    drop: float = 0.1
    action: str = "alert"
    sample: int = 1000
    z: float = 3.0

    @classmethod
    def from_dict(cls, d: Any) -> GuardPolicy | None:
        if d is None:
            return None
        if not isinstance(d, dict):
            raise InputError("guard", "expected an object or null")
        unknown = sorted(str(k) for k in set(d) - {"window", "drop", "action", "sample", "z"})
        if unknown:
            raise InputError(f"guard.{check_text(unknown[0], 'guard', 'text in a setting name')}",
                             'unknown setting; expected "window", "drop", "action", "sample" or "z"')
        window = d.get("window", cls.window)
        if isinstance(window, bool) or not isinstance(window, int) or not 10 <= window <= MAX_GUARD_WINDOW:
            raise InputError("guard.window", f"expected an integer in [10, {MAX_GUARD_WINDOW}], got {window!r}")
        drop = _number(d, "drop", cls.drop, 0.0, 1.0, field_prefix="guard.")
        action = d.get("action", cls.action)
        if action not in GUARD_ACTIONS:
            raise InputError("guard.action", f'expected "rollback", "quarantine" or "alert", got {action!r}')
        sample = d.get("sample")
        if sample is None:
            sample = min(2 * window, MAX_GUARD_SAMPLE)
        if isinstance(sample, bool) or not isinstance(sample, int) or not 0 <= sample <= MAX_GUARD_SAMPLE:
            raise InputError("guard.sample", f"expected an integer in [0, {MAX_GUARD_SAMPLE}], got {sample!r}")
        z = _number(d, "z", cls.z, 0.0, 10.0, lo_open=False, field_prefix="guard.")
        return cls(window=window, drop=drop, action=action, sample=sample, z=z)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PromptConfig:
    """What a chat agent puts in its prompt before the question (``agent.lm.chat``): the
    ``top_k`` turns that MiniLM finds nearest the question, and the last ``recent`` turns, each
    turn once; in conversation order, or with ``hits_last`` the recent turns first and the
    retrieved ones nearest the question."""

    top_k: int = DEFAULT_PROMPT_TOP_K
    recent: int = DEFAULT_PROMPT_RECENT
    hits_last: bool = False

    @classmethod
    def from_dict(cls, d: Any) -> PromptConfig:
        if d is None:
            return cls()
        if not isinstance(d, dict):
            raise InputError("prompt", "expected an object or null")
        unknown = sorted(str(k) for k in set(d) - {"top_k", "recent", "hits_last"})
        if unknown:
            raise InputError(f"prompt.{check_text(unknown[0], 'prompt', 'text in a setting name')}",
                             'unknown setting; expected "top_k", "recent" or "hits_last"')
        got: dict[str, Any] = {}
        for name in ("top_k", "recent"):
            v = d.get(name, getattr(cls, name))
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_PROMPT_TURNS:
                raise InputError(f"prompt.{name}",
                                 f"expected an integer in [0, {MAX_PROMPT_TURNS}], got {v!r}")
            got[name] = v
        hits_last = d.get("hits_last", False)
        if not isinstance(hits_last, bool):
            raise InputError("prompt.hits_last", f"expected true or false, got {hits_last!r}")
        return cls(hits_last=hits_last, **got)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class AgentConfig:
    """What an agent is. ``dim`` is the input dimension (the encoder's for ``minilm``)."""

    kind: str = "classifier"
    encoder: str = "none"
    dim: int = MINILM_DIM
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    # vector agents only (agent/backbones/vector.py): standardise each input with the running
    # mean/std of the inputs learnt before it (versioned state), then multiply column j by
    # input_scale[j] (the lift's bandwidth per feature)
    standardize: bool = False
    input_scale: tuple[float, ...] | None = None
    guard: GuardPolicy | None = None  # classifier and recall agents (workers/actors/guard.py)
    prompt: PromptConfig = field(default_factory=PromptConfig)  # chat agents only

    @property
    def key_dim(self) -> int:
        """d_k: the lifted dimension when a lift is set, else the input dimension."""
        return self.memory.lift_dim or self.dim

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AgentConfig:
        if not isinstance(d, dict):
            raise InputError("body", "expected a JSON object")
        kind = d.get("kind", "classifier")
        if kind not in KINDS:
            raise InputError("kind", f"expected one of {list(KINDS)}, got {kind!r}")
        encoder = d.get("encoder", "none" if kind != "chat" else "minilm")
        if encoder not in ENCODERS:
            raise InputError("encoder", f'expected "minilm" or "none", got {encoder!r}')
        dim = d.get("dim")
        if encoder == "none":
            if dim is None or isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= MAX_DIM:
                raise InputError("dim", 'required (a positive integer) when encoder is "none"'
                                 if dim is None else f"expected an integer in [1, {MAX_DIM}], got {dim!r}")
        else:
            if dim is not None and dim != MINILM_DIM:
                raise InputError("dim", f"the minilm encoder gives {MINILM_DIM} dimensions, got {dim!r}")
            dim = MINILM_DIM
        memory = d.get("memory")
        if memory is not None and not isinstance(memory, dict):
            raise InputError("memory", "expected an object")
        standardize = d.get("standardize", False)
        if not isinstance(standardize, bool):
            raise InputError("standardize", f"expected true or false, got {standardize!r}")
        scale = d.get("input_scale")
        if (standardize or scale is not None) and (encoder != "none" or kind == "chat"):
            raise InputError("standardize" if standardize else "input_scale",
                             'only vector agents (encoder "none") standardise or scale inputs')
        if scale is not None:
            if not isinstance(scale, list) or len(scale) != dim or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    and 0 < v <= 1e6 for v in scale):
                raise InputError("input_scale", f"expected a list of {dim} numbers in (0, 1e6]")
            scale = tuple(float(v) for v in scale)
        mem = MemoryConfig.from_dict(memory, kind)
        if mem.rule == "softmax" and kind != "classifier":
            raise InputError("memory.rule", 'rule "softmax" reads labels out of a softmax: '
                             f"classifier agents only, not {kind!r}")
        # (the float64 that to_dict shows for a chat agent is accepted back: configs round-trip)
        if kind == "chat" and memory is not None and \
                memory.get("dtype") not in (None, DEFAULT_STATE_DTYPE):
            raise InputError("memory.dtype", "chat agents keep their state in the language "
                             "model's float32; only classifier and recall agents take this setting")
        guard = GuardPolicy.from_dict(d.get("guard"))
        if guard is not None and kind == "chat":
            raise InputError("guard", "chat agents have no targets to be tested against")
        if kind != "chat" and d.get("prompt") is not None:
            raise InputError("prompt", f"only chat agents build prompts, not {kind!r} agents")
        prompt = PromptConfig.from_dict(d.get("prompt"))
        return cls(kind=kind, encoder=encoder, dim=int(dim),
                   memory=mem, standardize=standardize,
                   input_scale=scale, guard=guard, prompt=prompt)

    def to_dict(self) -> dict[str, Any]:
        """The stored config; the vector-input settings appear only when set."""
        out: dict[str, Any] = {"kind": self.kind, "encoder": self.encoder, "dim": self.dim,
                               "memory": self.memory.to_dict()}
        if self.standardize:
            out["standardize"] = True
        if self.input_scale is not None:
            out["input_scale"] = list(self.input_scale)
        if self.guard is not None:
            out["guard"] = self.guard.to_dict()
        if self.kind == "chat":
            out["prompt"] = self.prompt.to_dict()
        return out
