"""Delta form ``rows``: rows appended below a layer, stored as they are (``storage/deltaform.py``;
the keys and labels the ``softmax`` rule keeps for rehearsal).

Upgrade widens the ``deltas.form`` check. Downgrade rewrites ``rows`` deltas as ``factors``
``(A, [0 | I])``, the form an older release applies as ``0·old + 1·A`` below the layer: the same
numbers, but an older release has no ``softmax`` rule to read those agents with anyway.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = "form IN ('factors', 'dense', 'neg', 'shift', 'rows')"
OLD = "form IN ('factors', 'dense', 'neg', 'shift')"


def _set_check(sql: str) -> None:
    with op.batch_alter_table("deltas") as batch:
        batch.drop_constraint(op.f("ck_deltas_form_known"), type_="check")
        batch.create_check_constraint(op.f("ck_deltas_form_known"), sql)


def upgrade() -> None:
    _set_check(NEW)


def downgrade() -> None:
    deltas = sa.table("deltas", sa.column("id", sa.Integer), sa.column("form", sa.String),
                      sa.column("d_v", sa.Integer), sa.column("rank", sa.Integer),
                      sa.column("dtype", sa.String), sa.column("data", sa.LargeBinary),
                      sa.column("sha256", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(deltas.c.id, deltas.c.d_v, deltas.c.rank, deltas.c.dtype,
                                  deltas.c.data).where(deltas.c.form == "rows")).all()
    for rid, d_v, rank, dtype, data in rows:
        A = np.frombuffer(bytes(data), dtype=np.dtype(dtype)).reshape(rank, -1)  # (rank, d_k)
        E = np.zeros((rank, d_v), dtype=A.dtype)  # (rank, d_v) = [0 | I]
        E[:, d_v - rank:] = np.eye(rank, dtype=A.dtype)
        blob = A.tobytes() + np.ascontiguousarray(E).tobytes()
        conn.execute(sa.update(deltas).where(deltas.c.id == rid).values(
            form="factors", data=blob, sha256=hashlib.sha256(blob).hexdigest()))
    _set_check(OLD)
