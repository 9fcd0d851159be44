"""The names the store, the chat learner, benchmarks and tests import from here, by concept:

* :mod:`agent.memory.deltas`: ``LayerDelta``, ``Delta``, ``apply_layer``, ``apply_delta``,
  ``pad_rows`` (what one commit adds to a state, and the one operation that applies it);
* :mod:`agent.memory.forms`: ``factor_form``, ``shift_selector`` (the stored forms of factors);
* :mod:`agent.memory.checksum`: ``state_checksum``, ``PrefixHasher``;
* :mod:`agent.memory.rows`: ``RowRoom`` (in-place row storage of append-only layers);
* :mod:`agent.learner`: ``StateView`` (the state side every learner shares).
"""

from agent.learner import StateView
from agent.memory.checksum import APPEND_ONLY, ROW_BLOCK, PrefixHasher, state_checksum
from agent.memory.deltas import Delta, LayerDelta, apply_delta, apply_layer, pad_rows
from agent.memory.forms import factor_form, same_bits, shift_selector
from agent.memory.rows import RowRoom

__all__ = [
    "LayerDelta",
    "Delta",
    "apply_layer",
    "apply_delta",
    "pad_rows",
    "state_checksum",
    "StateView",
    "PrefixHasher",
    "factor_form",
    "same_bits",
    "shift_selector",
    "RowRoom",
    "APPEND_ONLY",
    "ROW_BLOCK",
]
