"""Event input blocks coded by byte planes (issue 16: ≤ 2 KB per event at 384-d): the
``event_inputs.codec`` column says how ``data`` holds the block's array (NULL: raw bytes, as
0012 wrote them; ``split-huff``, later ``split-zstd``: storage/planes.py, byte planes, the top
one entropy-coded, the others raw). ``sha256`` stays the checksum of ``data`` as stored.

Blocks written before stay raw (NULL). Downgrade decodes every coded block back to raw bytes
(and their checksum), then drops the column.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("event_inputs", sa.Column("codec", sa.String(16), nullable=True))


def downgrade() -> None:
    from storage.planes import unpack

    conn = op.get_bind()
    coded = conn.execute(sa.text(
        "SELECT id FROM event_inputs WHERE codec IS NOT NULL")).scalars().all()
    for bid in coded:  # one block at a time (each at most 1 MiB decoded)
        b = conn.execute(sa.text("SELECT rows, dim, dtype, data, codec FROM event_inputs "
                                 "WHERE id = :b"), {"b": bid}).one()
        raw = unpack(bytes(b.data), b.codec, b.dtype, b.rows * b.dim, f"input block {bid}")
        conn.execute(sa.text("UPDATE event_inputs SET data = :d, sha256 = :h, codec = NULL "
                             "WHERE id = :b"),
                     {"d": raw, "h": hashlib.sha256(raw).digest(), "b": bid})
    op.drop_column("event_inputs", "codec")
