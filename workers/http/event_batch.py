"""Splitting an ingest batch into valid events and ``rejected`` entries (DESIGN §7).

``index`` counts events from 0 in the order of the request; ``line`` (NDJSON only) counts lines
from 1. The service sees only the valid events; its own ``rejected`` indices point into that
subset and are mapped back with :func:`remap_rejected`.
"""

from __future__ import annotations

from typing import Any

from agent.errors import InputError
from workers.settings import Settings
from workers.validation import check_event


def rejected_entry(index: int, line: int | None, error: str) -> dict[str, Any]:
    """One ``rejected`` entry: ``{"index", "line"?, "error"}``."""
    entry: dict[str, Any] = {"index": index}
    if line is not None:
        entry["line"] = line
    entry["error"] = error
    return entry


def split_events(items: list[tuple[int | None, Any, str | None]], agent: dict[str, Any],
                 settings: Settings) -> tuple[list[tuple[int, dict[str, Any]]],
                                              list[dict[str, Any]], str | None]:
    """Check each ``(line, raw event, parse error)``; return valid ``(index, event)`` pairs,
    ``rejected`` entries and the field of the first problem.

    >>> from workers.settings import Settings
    >>> a = {"kind": "classifier", "encoder": "none", "dim": 1}
    >>> ok, bad, field = split_events([(1, {"input": [1], "target": "x"}, None),
    ...                                (3, {"input": [0], "target": "x"}, None)], a, Settings())
    >>> [i for i, _ in ok], bad, field
    ([0], [{'index': 1, 'line': 3, 'error': 'line 3: events[1].input: the vector is all zeros; it has no direction to use as a key'}], 'events[1].input')
    """
    valid: list[tuple[int, dict[str, Any]]] = []
    rejected: list[dict[str, Any]] = []
    first: str | None = None
    for i, (line, raw, err) in enumerate(items):
        if err is not None:
            rejected.append(rejected_entry(i, line, err))
            first = first or f"events[{i}]"
            continue
        try:
            valid.append((i, check_event(raw, agent, settings, f"events[{i}]")))
        except InputError as e:
            where = f"line {line}: " if line is not None else ""
            rejected.append(rejected_entry(i, line, where + str(e)))
            first = first or e.field
    return valid, rejected, first


def remap_rejected(entries: list[dict[str, Any]], index_of: list[int],
                   lines: list[int | None]) -> list[dict[str, Any]]:
    """Map the service's ``rejected`` indices (into the valid subset) back to request indices."""
    out = []
    for r in entries:
        j = r.get("index", 0)
        j = index_of[j] if isinstance(j, int) and 0 <= j < len(index_of) else j
        line = lines[j] if isinstance(j, int) and 0 <= j < len(lines) else None
        out.append(rejected_entry(j, line, str(r.get("error", "invalid event"))))
    return out
