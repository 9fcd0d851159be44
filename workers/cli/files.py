"""Reading event files for ``deltamem ingest``: JSONL, CSV, Parquet or Arrow, with stable ids.

Re-running an ingest is safe and resumes where it stopped: every event carries an id, and the
service reports an id it has already seen as a duplicate instead of applying it again. An event
without an ``id`` gets ``<file basename>:<line number>`` (``stdin:<n>`` when reading ``-``), so
the same file gives the same ids on every run.

JSONL: one event object a line (blank lines skipped). CSV: a header row naming the columns
``id``, ``input``, ``target``, ``beta``, ``ts``, ``speaker`` (empty cells are absent); for an
agent with ``encoder: "none"`` the vector is either a JSON list in the ``input`` column or the
columns ``x0, x1, ... xN``. Parquet and Arrow IPC files (``.parquet``; ``.arrow``, ``.arrows``,
``.feather``, ``.ipc``): the columns of an Arrow ingest body (:mod:`workers.http.arrow`), one
event a row; ``line`` is then the row number from 1.

Examples
--------
>>> import io
>>> rows = list(read_events(io.StringIO('{"input": "hi", "target": "greet"}\\n'), "a.jsonl"))
>>> rows
[(1, {'input': 'hi', 'target': 'greet', 'id': 'a.jsonl:1'})]
>>> csv_text = "x0,x1,target\\n1,0,a\\n0,2.5,b\\n"
>>> [ev for _, ev in read_events(io.StringIO(csv_text), "v.csv", fmt="csv", vector=True)]
[{'target': 'a', 'input': [1.0, 0.0], 'id': 'v.csv:2'}, {'target': 'b', 'input': [0.0, 2.5], 'id': 'v.csv:3'}]
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from typing import Any, TextIO

CSV_FIELDS = ("id", "input", "target", "beta", "ts", "speaker")
_XCOL = re.compile(r"^x(\d+)$")


class FileError(ValueError):
    """A problem at a place in an input file; ``str()`` is ``FILE:LINE: message``."""

    def __init__(self, name: str, line: int, message: str) -> None:
        super().__init__(f"{name}:{line}: {message}")
        self.name = name
        self.line = line
        self.message = message


FORMATS = ("jsonl", "csv", "parquet", "arrow")
ARROW_SUFFIXES = (".arrow", ".arrows", ".feather", ".ipc")


def detect_format(path: str, explicit: str | None = None) -> str:
    """``jsonl``, ``csv``, ``parquet`` or ``arrow`` (an Arrow IPC file or stream): the explicit
    choice, else by file extension (default jsonl)."""
    if explicit:
        return explicit
    low = path.lower()
    if low.endswith(".parquet"):
        return "parquet"
    if low.endswith(ARROW_SUFFIXES):
        return "arrow"
    return "csv" if low.endswith((".csv", ".tsv")) else "jsonl"


def read_table_file(path: str, fmt: str) -> Any:
    """A Parquet file or an Arrow IPC file/stream as a ``pyarrow.Table``."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        try:
            with pa.memory_map(path) as src:
                return ipc.open_file(src).read_all()
        except pa.ArrowInvalid:  # not the file format: the stream format
            with pa.memory_map(path) as src:
                return ipc.open_stream(src).read_all()
    except (pa.ArrowException, OSError) as e:
        if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError)):
            raise
        raise FileError(source_name(path), 0, f"not a readable {fmt} file: {e}") from None


def table_events(table: Any, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row number from 1, event)`` per row of a table with the columns of DESIGN §7 (nulls
    are absent fields); a vector column gives NumPy rows (its own float type)."""
    import numpy as np
    import pyarrow as pa

    if "input" not in table.column_names:
        raise FileError(name, 0, "the table needs an 'input' column")
    col = table.column("input").combine_chunks()
    X = None
    if pa.types.is_fixed_size_list(col.type) and col.null_count == 0:
        X = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), col.type.list_size)
    cols = {k: table.column(k).to_pylist() for k in CSV_FIELDS
            if k in table.column_names and not (k == "input" and X is not None)}
    for i in range(table.num_rows):
        ev = {k: v[i] for k, v in cols.items() if v[i] is not None}
        if X is not None:
            ev["input"] = np.array(X[i])
        yield i + 1, _with_id(ev, name, i + 1)


def source_name(path: str) -> str:
    """The name used in generated ids: the file's basename, or ``stdin`` for ``-``."""
    return "stdin" if path == "-" else os.path.basename(path)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use a finite number)")


def _finite_float(text: str) -> float:
    """A number literal too large for a double (``1e400``) would become ``inf``: reject it."""
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(f"{text} is out of range (use a finite number)")
    return v


def read_events(stream: TextIO, name: str, fmt: str = "jsonl",
                vector: bool = False) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, event)`` for each event of ``stream``; raise :class:`FileError`.
    (Parquet and Arrow files are read by path: :func:`read_table_file`, :func:`table_events`.)"""
    if fmt == "csv":
        yield from _read_csv(stream, name, vector)
    elif fmt == "jsonl":
        yield from _read_jsonl(stream, name)
    else:
        raise ValueError(f"unknown format {fmt!r}; expected jsonl or csv")


def _with_id(ev: dict[str, Any], name: str, line: int) -> dict[str, Any]:
    if ev.get("id") in (None, ""):
        ev["id"] = f"{name}:{line}"
    return ev


def _read_jsonl(stream: TextIO, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, raw in enumerate(stream, start=1):
        if not raw.strip():
            continue
        try:
            ev = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
        except json.JSONDecodeError as e:
            raise FileError(name, n, f"malformed JSON: {e.msg} (column {e.colno})") from None
        except ValueError as e:
            raise FileError(name, n, str(e)) from None
        if not isinstance(ev, dict):
            raise FileError(name, n, "expected one JSON object (an event) on the line")
        yield n, _with_id(ev, name, n)


def _number(text: str, name: str, line: int, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise FileError(name, line, f"{column}: expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise FileError(name, line, f"{column}: expected a finite number, got {text!r}")
    return v


def _csv_rows(reader: Any, name: str) -> Iterator[list[str]]:
    """The reader's rows; a malformed row (e.g. a bare CR in an unquoted cell) → FileError."""
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            raise FileError(name, reader.line_num, f"malformed CSV: {e}") from None
        yield row


def _read_csv(stream: TextIO, name: str, vector: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(stream)
    rows = _csv_rows(reader, name)
    try:
        header = [h.strip() for h in next(rows)]
    except StopIteration:
        return
    xcols = sorted(((int(m.group(1)), i) for i, h in enumerate(header) if (m := _XCOL.match(h))))
    if xcols and [k for k, _ in xcols] != list(range(len(xcols))):
        raise FileError(name, 1, "vector columns must be x0, x1, ... without gaps")
    if "input" not in header and not xcols:
        raise FileError(name, 1, "the header needs an 'input' column (or x0, x1, ... columns)")
    for row in rows:
        n = reader.line_num
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise FileError(name, n, f"expected {len(header)} cells, got {len(row)}")
        cells = dict(zip(header, row, strict=False))
        ev: dict[str, Any] = {k: cells[k] for k in CSV_FIELDS if k in cells and cells[k] != ""}
        if xcols:
            ev["input"] = [_number(row[i], name, n, f"x{k}") for k, i in xcols]
        elif vector and "input" in ev:
            try:
                vec = json.loads(ev["input"], parse_constant=_reject_constant,
                                 parse_float=_finite_float)
            except ValueError:
                raise FileError(name, n, "input: expected a JSON list of numbers") from None
            ev["input"] = vec
        if "beta" in ev:
            ev["beta"] = _number(ev["beta"], name, n, "beta")
        yield n, _with_id(ev, name, n)


def count_lines(path: str) -> int | None:
    """Lines in a file (for the progress bar's total); None for stdin."""
    if path == "-":
        return None
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def batches(items: Iterator[tuple[int, dict[str, Any]]],
            size: int) -> Iterator[list[tuple[int, dict[str, Any]]]]:
    """Group ``(line, event)`` pairs into lists of at most ``size``."""
    batch: list[tuple[int, dict[str, Any]]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
