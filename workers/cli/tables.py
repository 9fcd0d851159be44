"""Plain-text tables for the CLI and the demo.

Examples
--------
>>> print(format_table(["version", "kind"], [[0, "create"], [1, "delta"]]))
version  kind
-------  ------
      0  create
      1  delta
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Align columns; numbers to the right, text to the left; ``None`` shows as ``-``."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
                   for row in rows if row[i] is not None) and bool(rows)
               for i in range(len(headers))]

    def line(vals: Sequence[str]) -> str:
        out = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(vals, widths, numeric, strict=False)]
        return "  ".join(out).rstrip()

    head = "  ".join(h.rjust(w) if num else h.ljust(w)
                     for h, w, num in zip(headers, widths, numeric, strict=False)).rstrip()
    return "\n".join([head, "  ".join("-" * w for w in widths)] + [line(r) for r in cells])


def version_table(versions: Sequence[Any]) -> str:
    """An agent's version history as a table (newest first, as the service lists it)."""
    rows = [[v.version, v.parent, v.kind, v.created_at[:19].replace("T", " "), v.events,
             v.checksum[:12], v.delta_norm] for v in versions]
    return format_table(["version", "parent", "kind", "created (UTC)", "events", "checksum",
                         "|delta|"], rows)
