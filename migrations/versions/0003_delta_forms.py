"""Compact delta forms: ``neg`` (factors with E = −A) and ``shift`` (E = [0 | I]), stored as A
alone (``storage/deltaform.py``).

Upgrade widens the ``deltas.form`` check; existing rows stay as they are (``factors`` is still
read). Downgrade rewrites ``neg`` and ``shift`` rows as ``factors`` (A then the rebuilt E, with
their SHA-256) before narrowing the check again, so no delta is lost either way.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = "form IN ('factors', 'dense', 'neg', 'shift')"
OLD = "form IN ('factors', 'dense')"


def _set_check(sql: str) -> None:
    with op.batch_alter_table("deltas") as batch:
        batch.drop_constraint(op.f("ck_deltas_form_known"), type_="check")
        batch.create_check_constraint(op.f("ck_deltas_form_known"), sql)


def upgrade() -> None:
    _set_check(NEW)


def downgrade() -> None:
    deltas = sa.table("deltas", sa.column("id", sa.Integer), sa.column("form", sa.String),
                      sa.column("d_v", sa.Integer), sa.column("d_k", sa.Integer),
                      sa.column("rank", sa.Integer), sa.column("dtype", sa.String),
                      sa.column("data", sa.LargeBinary), sa.column("sha256", sa.String))
    conn = op.get_bind()
    rows = conn.execute(sa.select(deltas.c.id, deltas.c.form, deltas.c.d_v, deltas.c.rank,
                                  deltas.c.dtype, deltas.c.data)
                        .where(deltas.c.form.in_(("neg", "shift")))).all()
    for rid, form, d_v, rank, dtype, data in rows:
        A = np.frombuffer(bytes(data), dtype=np.dtype(dtype)).reshape(rank, -1)  # (rank, d_k)
        if form == "neg":
            E = np.negative(A)  # (rank, d_k = d_v)
        else:
            E = np.zeros((rank, d_v), dtype=A.dtype)  # (rank, d_v) = [0 | I]
            E[:, d_v - rank:] = np.eye(rank, dtype=A.dtype)
        blob = A.tobytes() + np.ascontiguousarray(E).tobytes()
        conn.execute(sa.update(deltas).where(deltas.c.id == rid).values(
            form="factors", data=blob, sha256=hashlib.sha256(blob).hexdigest()))
    _set_check(OLD)
