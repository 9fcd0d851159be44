"""The Arrow IPC stream body of an ingest (the compact form for vectors)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any


def arrow_body(events: Iterable[dict[str, Any]] | Any) -> bytes:
    """Events (dicts of DESIGN §7) or a ``pyarrow.Table`` → an Arrow IPC stream body.

    Vector inputs of one length become ``fixed_size_list<float32>`` when they are float32
    arrays, else ``fixed_size_list<float64>`` (Python floats are doubles: the numbers sent are
    the numbers given); lists of different lengths are sent as ``list<float64>`` (the service
    names the rows that are wrong); texts become a ``string`` column. Columns other than
    ``id, input, target, beta, ts, speaker`` are not sent. A vector input holding anything but
    numbers raises ``ValueError`` (JSON would name it; Arrow would read ``True`` as 1.0).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc

    if isinstance(events, pa.Table):
        table = events
    else:
        evs = list(events)
        cols: dict[str, Any] = {}
        xs = [e.get("input") for e in evs]
        if xs and all(isinstance(x, (list, tuple, np.ndarray)) for x in xs):
            for i, x in enumerate(xs):  # NumPy would read True or "1" as 1.0: JSON does not
                if not isinstance(x, np.ndarray) and not {int, float}.issuperset(map(type, x)):
                    raise ValueError(f"events[{i}].input: not all numbers (send it as JSON)")
            f32 = all(isinstance(x, np.ndarray) and x.dtype == np.float32 for x in xs)
            dt = np.float32 if f32 else np.float64
            sizes = {len(x) for x in xs}
            if len(sizes) == 1:
                flat = np.concatenate([np.asarray(x, dtype=dt).ravel() for x in xs])  # (n*dim,)
                cols["input"] = pa.FixedSizeListArray.from_arrays(pa.array(flat), sizes.pop())
            else:
                cols["input"] = pa.array([np.asarray(x, dtype=dt) for x in xs],
                                         pa.list_(pa.from_numpy_dtype(dt)))
        else:
            cols["input"] = pa.array(xs, pa.string())
        for name in ("id", "target", "speaker"):
            if any(name in e for e in evs):
                cols[name] = pa.array([e.get(name) for e in evs], pa.string())
        if any("beta" in e for e in evs):
            cols["beta"] = pa.array([e.get("beta") for e in evs], pa.float64())
        if any("ts" in e for e in evs):
            ts = [e.get("ts") for e in evs]
            cols["ts"] = pa.array([t.isoformat() if isinstance(t, datetime) else t for t in ts],
                                  pa.string())
        table = pa.table(cols)
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())
