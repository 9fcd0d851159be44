"""Delta-rule memory: write rules (naive oracles, chunk forms, many small states, CuPy), the
delta type, keys (lift and normalisation) and the array-module switch. See README.md here."""

from agent.memory.backend import get_xp, gpu_available, set_blas_threads, to_numpy
from agent.memory.checksum import state_checksum
from agent.memory.chunk import (
    delta_rule_chunk,
    delta_rule_chunk_outputs,
    rls_chunk,
    rls_chunk_outputs,
    split_chunks,
)
from agent.memory.deltas import Delta, LayerDelta, apply_delta, apply_layer, pad_rows
from agent.memory.lift import Lift, normalize_keys
from agent.memory.many import batched_read, many_delta_write
from agent.memory.naive import delta_rule_naive, rls_naive
from agent.memory.pending import pending_rows, rls_pending

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
