"""Delta-rule memory: one folder per write rule (``delta_rule/``, ``rls/``, ``softmax/``: the
naive oracle, the fast forms, the rule class), the delta type, checksums, keys (lift and
normalisation), CuPy kernels and the array-module switch. See README.md here."""

from agent.memory.backend import get_xp, gpu_available, set_blas_threads, to_numpy
from agent.memory.checksum import state_checksum
from agent.memory.chunking import split_chunks
from agent.memory.delta_rule.chunk import delta_rule_chunk, delta_rule_chunk_outputs
from agent.memory.delta_rule.many import batched_read, many_delta_write
from agent.memory.delta_rule.naive import delta_rule_naive
from agent.memory.deltas import Delta, LayerDelta, apply_delta, apply_layer, pad_rows
from agent.memory.lift import Lift, normalize_keys
from agent.memory.rls.chunk import rls_chunk, rls_chunk_outputs
from agent.memory.rls.naive import rls_naive
from agent.memory.rls.pending import pending_rows, rls_pending

__all__ = [
    "Delta",
    "LayerDelta",
    "Lift",
    "apply_delta",
    "apply_layer",
    "batched_read",
    "delta_rule_chunk",
    "delta_rule_chunk_outputs",
    "delta_rule_naive",
    "get_xp",
    "gpu_available",
    "many_delta_write",
    "normalize_keys",
    "pad_rows",
    "pending_rows",
    "rls_chunk",
    "rls_chunk_outputs",
    "rls_naive",
    "rls_pending",
    "set_blas_threads",
    "split_chunks",
    "state_checksum",
    "to_numpy",
]
