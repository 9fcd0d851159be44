"""The create-agent body (``POST /v1/agents``) as the OpenAPI document states it.

``agent.config.AgentConfig.from_dict`` is the rule; these models say the same thing in JSON
Schema, so that a body the document accepts is a body the service accepts and the other way
round (the schemathesis run in ``tests/test_schemathesis.py`` checks both directions):

- ``kind`` defaults to ``classifier``; ``encoder`` to ``none`` (``minilm`` for chat agents);
  ``dim`` is required with ``none`` and is 384 (or absent) with ``minilm``. Hence one variant
  per (kind, encoder) pair, joined by ``anyOf``.
- ``memory.rule`` defaults to ``softmax`` for classifiers and ``delta`` otherwise; ``softmax``
  is for classifiers only and is the only rule taking ``replay`` and ``reservoir``; chat agents
  take no ``dtype`` other than the ``float64`` their JSON shows. Hence one memory variant per
  rule (plus the default) and per kind. Unknown memory settings are refused.
- rule ``rls`` keeps a d_k × d_k matrix, d_k (``lift_dim``, else ``dim``) at most
  ``agent.model.MAX_RLS_KEY_DIM``: vector agents wider than that take ``rls`` only with a lift.
- ``prompt`` (``top_k``, ``recent``, ``hits_last``) is for chat agents only.
- ``standardize: true`` and ``input_scale`` are for vector (``none``) classifiers and recall
  agents; ``input_scale`` must hold ``dim`` numbers, a relation JSON Schema cannot state (the
  description says it).

Every bound is the constant ``agent.config`` checks against.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from agent import config as C
from agent.model import MAX_RLS_KEY_DIM

# "not blank, no NUL" as the service means it (str.strip(), so str.isspace()): a character outside
# Python's whitespace, spelled out literally (JSON Schema's ECMA \s is another set: it lacks
# U+001C-U+001F and U+0085, and has U+FEFF)
_SPACE = "".join(chr(i) for i in range(0x3001) if chr(i).isspace())
NONBLANK = f"^[^\x00]*[^{_SPACE}\x00][^\x00]*$"  # (and no NUL: agent.errors.check_text)


def text_field(default: Any = ..., max_length: int = 200, **kw: Any) -> Any:
    """A pydantic ``Field`` for a non-blank string of at most ``max_length`` characters."""
    return Field(default, min_length=1, max_length=max_length, pattern=NONBLANK, **kw)


class _Memory(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the service refuses unknown settings

    beta: float | None = Field(None, gt=0, le=1, description="write strength β")
    decay: float | None = Field(None, gt=0, le=1, description="decay α")
    ridge: float | None = Field(None, ge=C.MIN_RIDGE, le=C.MAX_RIDGE, description="λ_ridge (rls)")
    forget: float | None = Field(None, ge=C.MIN_FORGET, le=1,
                                 description="forgetting factor ρ (rls)")
    lift_dim: int | None = Field(None, ge=1, le=C.MAX_LIFT_DIM,
                                 description="random-feature lift of the key")


class _Dtype(_Memory):
    dtype: Literal["float64", "float32"] | None = Field(None, description="the state's float type")


class _Rehearsal(_Dtype):
    replay: int | None = Field(None, ge=0, le=C.MAX_REPLAY,
                               description="earlier events rehearsed per write")
    reservoir: int | None = Field(None, ge=1, le=C.MAX_RESERVOIR,
                                  description="events kept per label (null: every event)")


class MemoryDelta(_Dtype):
    rule: Literal["delta"]


class MemoryRls(_Dtype):
    rule: Literal["rls"]
    lift_dim: int | None = Field(None, ge=1, le=MAX_RLS_KEY_DIM, description="random-feature "
                                 "lift of the key (rls keeps a d_k × d_k matrix: d_k at most "
                                 f"{MAX_RLS_KEY_DIM})")


class MemoryRlsLifted(MemoryRls):
    lift_dim: int = Field(ge=1, le=MAX_RLS_KEY_DIM, description="required when dim is over "
                          f"{MAX_RLS_KEY_DIM}: rls keeps a d_k × d_k matrix")


class MemorySoftmax(_Rehearsal):
    rule: Literal["softmax"] = Field(description="classifiers only")


class MemoryClassifierDefault(_Rehearsal):
    rule: None = Field(None, description="absent or null: softmax (the classifiers' default)")


class MemoryDeltaDefault(_Dtype):
    rule: None = Field(None, description="absent or null: delta (recall agents' default)")


class _ChatDtype(_Memory):
    dtype: Literal["float64"] | None = Field(None, description="chat agents keep the language "
                                             "model's float32; only the shown value is accepted")


class ChatMemoryDelta(_ChatDtype):
    rule: Literal["delta"]


class ChatMemoryRls(_ChatDtype):
    rule: Literal["rls"]


class ChatMemoryDefault(_ChatDtype):
    rule: None = Field(None, description="absent or null: delta")


ClassifierMemory = MemoryDelta | MemoryRls | MemorySoftmax | MemoryClassifierDefault | None
RecallMemory = MemoryDelta | MemoryRls | MemoryDeltaDefault | None
# wide vectors (dim over MAX_RLS_KEY_DIM): rls only with a lift to at most that many
WideClassifierMemory = (MemoryDelta | MemoryRlsLifted | MemorySoftmax | MemoryClassifierDefault
                        | None)
WideRecallMemory = MemoryDelta | MemoryRlsLifted | MemoryDeltaDefault | None
ChatMemory = ChatMemoryDelta | ChatMemoryRls | ChatMemoryDefault | None


class Guard(BaseModel):
    """The quality guard (classifier and recall agents; ``agent.config.GuardPolicy``)."""

    model_config = ConfigDict(extra="forbid")

    window: int = Field(500, ge=10, le=C.MAX_GUARD_WINDOW, description="events per window")
    drop: float | None = Field(None, gt=0, le=1, description="accuracy drop that trips it "
                               "(null: 0.1)")
    action: Literal["rollback", "quarantine", "alert"] = "alert"
    sample: int | None = Field(None, ge=0, le=C.MAX_GUARD_SAMPLE, description="events read back to "
                               "tell an attack from learnable drift before a rollback or quarantine "
                               "(null: 2 × window; 0: no check)")
    z: float | None = Field(None, ge=0, le=10, description="a rollback or quarantine needs a fall "
                            "beyond z standard deviations of the stream's own window-to-window "
                            "variation; within it, an alert (null: 3; 0: no such gate)")


class Prompt(BaseModel):
    """A chat agent's prompt (``agent.config.PromptConfig``)."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(C.DEFAULT_PROMPT_TOP_K, ge=0, le=C.MAX_PROMPT_TURNS,
                       description="turns retrieved by MiniLM, nearest the question")
    recent: int = Field(C.DEFAULT_PROMPT_RECENT, ge=0, le=C.MAX_PROMPT_TURNS,
                        description="last turns always in the prompt")
    hits_last: bool = Field(False, description="the recent turns first, then the retrieved "
                            "ones (nearest the question), instead of conversation order")


class _Base(BaseModel):
    name: str = text_field()
    guard: Guard | None = None


class _Vector(_Base):
    encoder: Literal["none"] = Field("none", description="raw vectors of dim numbers")
    dim: int = Field(ge=1, le=MAX_RLS_KEY_DIM, description='required with encoder "none"')
    standardize: bool = Field(False, description="standardise inputs online")
    input_scale: list[Annotated[float, Field(gt=0, le=1e6)]] | None = Field(
        None, min_length=1, max_length=C.MAX_DIM,
        description="per-feature scale: exactly dim numbers in (0, 1e6]")
    prompt: None = Field(None, description="chat agents only")


class _Text(_Base):
    encoder: Literal["minilm"] = Field(description="text through MiniLM (384 dimensions)")
    dim: Literal[384] | None = Field(None, description="absent, or the encoder's 384")
    standardize: Literal[False] = Field(False, description="vector agents only")
    input_scale: None = Field(None, description="vector agents only")
    prompt: None = Field(None, description="chat agents only")


class ClassifierVector(_Vector):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"name": "support-intents", "kind": "classifier", "encoder": "none", "dim": 3}]})

    kind: Literal["classifier"] = "classifier"
    memory: ClassifierMemory = None


class _WideVector(_Vector):
    dim: int = Field(ge=MAX_RLS_KEY_DIM + 1, le=C.MAX_DIM, description='required with encoder '
                     f'"none"; over {MAX_RLS_KEY_DIM}, rule rls needs a lift')


class ClassifierWideVector(_WideVector):
    kind: Literal["classifier"] = "classifier"
    memory: WideClassifierMemory = None


class RecallWideVector(_WideVector):
    kind: Literal["recall"]
    memory: WideRecallMemory = None


class ClassifierText(_Text):
    kind: Literal["classifier"] = "classifier"
    memory: ClassifierMemory = None


class RecallVector(_Vector):
    kind: Literal["recall"]
    memory: RecallMemory = None


class RecallText(_Text):
    kind: Literal["recall"]
    memory: RecallMemory = None


class ChatText(_Base):
    kind: Literal["chat"]
    guard: None = Field(None, description="chat agents have no targets to test")
    encoder: Literal["minilm"] = Field("minilm", description="chat agents read text")
    dim: Literal[384] | None = None
    memory: ChatMemory = None
    prompt: Prompt | None = None
    standardize: Literal[False] = False
    input_scale: None = None


class ChatVector(_Base):
    kind: Literal["chat"]
    guard: None = None
    encoder: Literal["none"]
    dim: int = Field(ge=1, le=C.MAX_DIM)
    memory: ChatMemory = None
    prompt: Prompt | None = None
    standardize: Literal[False] = False
    input_scale: None = None


class AgentCreate(RootModel[ClassifierVector | ClassifierWideVector | ClassifierText
                            | RecallVector | RecallWideVector | RecallText | ChatText
                            | ChatVector]):
    """A classifier, recall or chat agent; omitted settings take the documented defaults."""
