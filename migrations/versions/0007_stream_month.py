"""Issue 16: event inputs as raw bytes (``events.input_data``, ``input_dtype``, ``input_dim``,
``input_sha256``), so the learner, forget and rebuild read arrays instead of JSON floats.

Upgrade adds the columns and moves every stored vector input (``payload["input"]``, a list of
numbers) into them: float32 when every number is a float32 exactly, else float64, so the
numbers read back are the ones stored. Text inputs stay in the payload (their embedding is
stored from now on when an event is accepted). Downgrade puts every vector back into its
payload as a JSON list (``tolist()``: the same numbers) and drops the columns.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK = 2000
COLUMNS = (("input_data", sa.LargeBinary()), ("input_dtype", sa.String(8)),
           ("input_dim", sa.Integer()), ("input_sha256", sa.String(64)))


def _events() -> Any:
    return sa.table("events", sa.column("id", sa.Integer), sa.column("payload", sa.JSON),
                    *(sa.column(name, kind) for name, kind in COLUMNS))


def _vector(x: Any) -> np.ndarray | None:
    """A stored vector input as the narrowest float array holding its numbers exactly."""
    if not isinstance(x, list) or not x or not all(
            isinstance(e, (int, float)) and not isinstance(e, bool) for e in x):
        return None
    a = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        f = a.astype(np.float32)
    return f if np.array_equal(f.astype(np.float64), a) else a


def _batches(conn: Any, ev: Any, query: Any) -> Any:
    """The rows of ``query`` by id, ``CHUNK`` at a time (read before any is rewritten)."""
    last = 0
    while True:
        rows = conn.execute(query.where(ev.c.id > last).order_by(ev.c.id).limit(CHUNK)).all()
        if not rows:
            return
        yield rows
        last = rows[-1][0]


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        for name, kind in COLUMNS:
            batch.add_column(sa.Column(name, kind, nullable=True))
    ev = _events()
    conn = op.get_bind()
    for rows in _batches(conn, ev, sa.select(ev.c.id, ev.c.payload)):
        for rid, payload in rows:
            a = _vector((payload or {}).get("input"))
            if a is None:
                continue
            data = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
            rest = {k: v for k, v in payload.items() if k != "input"}
            conn.execute(sa.update(ev).where(ev.c.id == rid).values(
                payload=rest, input_data=data, input_dtype=a.dtype.newbyteorder("<").str,
                input_dim=int(a.size), input_sha256=hashlib.sha256(data).hexdigest()))


def downgrade() -> None:
    ev = _events()
    conn = op.get_bind()
    query = sa.select(ev.c.id, ev.c.payload, ev.c.input_data, ev.c.input_dtype).where(
        ev.c.input_data.is_not(None))
    for rows in _batches(conn, ev, query):
        for rid, payload, data, dtype in rows:
            payload = dict(payload or {})
            if "input" in payload:  # a text event: its embedding goes, the text stays
                continue
            payload["input"] = np.frombuffer(bytes(data), dtype=np.dtype(dtype)).tolist()
            conn.execute(sa.update(ev).where(ev.c.id == rid).values(payload=payload))
    with op.batch_alter_table("events") as batch:
        for name, _ in reversed(COLUMNS):
            batch.drop_column(name)
