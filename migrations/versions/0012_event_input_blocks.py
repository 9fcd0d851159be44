"""Event inputs stored together (issue 16: ≤ 2 KB per event at 384-d on PostgreSQL too): the
inputs of an agent's events of one group commit as one block (``event_inputs``, one
``(rows, dim)`` array of raw bytes), each event row referring to its row of it
(``events.input_block_id``, ``events.input_row``) instead of holding its own 1.5 KB.

Rows written before keep their inputs in ``events.input_*`` (both forms are read). Downgrade
writes every referred row back into its event's ``input_*`` columns, then drops the block
table and the two columns.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "event_inputs",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("agent_key", sa.BigInteger(), nullable=False),
        sa.Column("first_seq", sa.BigInteger(), nullable=False),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("dtype", sa.String(8), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["agent_key"], ["agents.key"], ondelete="CASCADE",
                                name="fk_event_inputs_agent_key_agents"),
        sa.PrimaryKeyConstraint("id", name="pk_event_inputs"),
    )
    op.create_index("ix_event_inputs_agent_seq", "event_inputs", ["agent_key", "first_seq"])
    op.add_column("events", sa.Column("input_block_id", BIG_ID, nullable=True))
    op.add_column("events", sa.Column("input_row", sa.Integer(), nullable=True))


def downgrade() -> None:
    conn = op.get_bind()
    # one read of the references (events.input_block_id has no index), then each block once
    refs: dict[int, list[tuple[int, int]]] = {}
    for eid, bid, row in conn.execute(sa.text(
            "SELECT id, input_block_id, input_row FROM events "
            "WHERE input_block_id IS NOT NULL")):
        refs.setdefault(bid, []).append((eid, row))
    for bid, rows_of in refs.items():
        b = conn.execute(sa.text("SELECT rows, dtype, dim, data FROM event_inputs WHERE id = :b"),
                         {"b": bid}).one()
        m = np.frombuffer(bytes(b.data), dtype=np.dtype(b.dtype)).reshape(b.rows, b.dim)
        params = []
        for eid, row in rows_of:
            raw = m[row].tobytes()
            params.append({"i": eid, "d": raw, "t": b.dtype, "n": b.dim,
                           "h": hashlib.sha256(raw).digest()})
        conn.execute(sa.text(
            "UPDATE events SET input_data = :d, input_dtype = :t, input_dim = :n, "
            "input_sha256 = :h WHERE id = :i"), params)
    op.drop_column("events", "input_row")  # SQLite ≥ 3.35: ALTER TABLE DROP COLUMN, no copy
    op.drop_column("events", "input_block_id")
    op.drop_index("ix_event_inputs_agent_seq", table_name="event_inputs")
    op.drop_table("event_inputs")
