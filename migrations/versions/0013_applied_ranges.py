"""Events marked applied without rewriting their rows (issue 16: ≤ 2 KB per event on
PostgreSQL): a version records the seq range of the events it applied (``versions.first_seq``,
``versions.last_seq``) and the agent its watermark (``agents.applied_seq``, the last seq
applied), so a commit writes one version row and moves the agent row instead of updating every
event row it applied (on PostgreSQL a second copy of each row and of each index entry).

An event's applied version is ``events.applied_version`` when that is set (rows written
before, fork copies, the version horizon's re-attribution), else the version whose range holds
its seq, unless it is rejected or was forgotten before that version
(storage/repository/applied.py). Pending events are those after the watermark, neither
rejected nor forgotten: the ``(agent_key, seq)`` index finds them, so ``ix_events_pending``
goes. Rows written before keep their ``applied_version``; the watermark starts at the last of
them. Downgrade writes every range back into ``applied_version`` and restores the index.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("applied_version IS NULL")


def upgrade() -> None:
    op.add_column("versions", sa.Column("first_seq", sa.BigInteger(), nullable=True))
    op.add_column("versions", sa.Column("last_seq", sa.BigInteger(), nullable=True))
    op.add_column("agents", sa.Column("applied_seq", sa.BigInteger(), nullable=False,
                                      server_default="0"))
    op.create_index("ix_versions_agent_last_seq", "versions", ["agent_id", "last_seq"])
    op.execute("UPDATE agents SET applied_seq = coalesce((SELECT max(e.seq) FROM events e "
               "WHERE e.agent_key = agents.key AND e.applied_version IS NOT NULL), 0)")
    op.drop_index("ix_events_pending", table_name="events")


def downgrade() -> None:
    op.execute(
        "UPDATE events SET applied_version = (SELECT v.version FROM versions v "
        "JOIN agents a ON a.id = v.agent_id WHERE a.key = events.agent_key "
        "AND v.first_seq <= events.seq AND v.last_seq >= events.seq "
        "AND (events.forgotten_version IS NULL OR events.forgotten_version > v.version)) "
        "WHERE applied_version IS NULL AND rejected IS NOT true")
    op.create_index("ix_events_pending", "events", ["agent_key", "seq"],
                    sqlite_where=PENDING, postgresql_where=PENDING)
    op.drop_index("ix_versions_agent_last_seq", table_name="versions")
    op.drop_column("agents", "applied_seq")
    op.drop_column("versions", "last_seq")
    op.drop_column("versions", "first_seq")
