"""Accepted events carry their key inputs as arrays (what :meth:`ServiceAPI.ingest` does before
the ingest actor stores them).

* vector agents: a vector still given as a list of numbers (a caller of the Python API; the
  HTTP app has made it an array already) becomes the float array
  :func:`workers.validation.check_vector` would make; anything else is left as it is (the
  store keeps it as JSON and the learner rejects what it cannot learn, as before);
* text agents (classifier and recall on MiniLM): the texts of a request are encoded in one call
  to the deployment's encoder actor and each event gets its ``embedding`` (float32), stored
  with it (:mod:`storage.repository.events`), so learning, forget and rebuild never encode the
  text again. Chat turns keep their text only.

Arrays travel to the ingest and learner actors as NumPy arrays, which Ray sends as out-of-band
buffers rather than as pickled floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.errors import InputError
from workers.validation import LABELED_KINDS, check_vector


def as_vector(x: Any, dim: int) -> np.ndarray | None:
    """``x`` as a checked vector array, or None when it is not one (left for later checks)."""
    if isinstance(x, np.ndarray) or not isinstance(x, list):
        return None
    try:
        return check_vector(x, dim, "input")
    except InputError:
        return None


def with_arrays(config: dict[str, Any], events: list[dict[str, Any]],
                encoder: Any) -> list[dict[str, Any]]:
    """``events`` with array inputs (vectors) or embeddings (texts); see the module doc.
    ``encoder``: a callable giving the text encoder (only called for text agents)."""
    if config.get("encoder") == "none":
        dim = int(config["dim"])
        out = []
        for ev in events:
            a = as_vector(ev.get("input"), dim)
            out.append(ev if a is None else {**ev, "input": a})
        return out
    if config.get("encoder") != "minilm" or config.get("kind") not in LABELED_KINDS:
        return events
    todo = [i for i, ev in enumerate(events)
            if isinstance(ev.get("input"), str) and not isinstance(ev.get("embedding"), np.ndarray)]
    if not todo:
        return events
    X = encoder().encode([events[i]["input"] for i in todo])  # (m, 384) float32
    out = list(events)
    for row, i in enumerate(todo):
        out[i] = {**events[i], "embedding": np.asarray(X[row], dtype=np.float32)}
    return out
