"""Issue 16: the head's labels kept with the agent (``agents.labels``), so no request reads an
agent's version history (constant cost per request however long the history grows).

Upgrade adds the column and fills it, agent by agent, with the labels of the head's state: the
labels of the nearest snapshot on the head's path plus those the ``delta`` versions after it
added (what ``labels_at`` computes; one indexed read per version walked, bounded by the
snapshot interval). Downgrade drops the column (the versions still hold everything it said).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_agents = sa.table("agents", sa.column("id", sa.String), sa.column("head_version", sa.Integer),
                   sa.column("labels", sa.JSON))
_versions = sa.table("versions", sa.column("agent_id", sa.String),
                     sa.column("version", sa.Integer), sa.column("parent", sa.Integer),
                     sa.column("kind", sa.String), sa.column("state_of", sa.Integer),
                     sa.column("has_snapshot", sa.Boolean), sa.column("labels_added", sa.JSON))
_snapshots = sa.table("snapshots", sa.column("agent_id", sa.String),
                      sa.column("version", sa.Integer), sa.column("labels", sa.JSON))


def head_labels(conn: Any, agent_id: str, head: int) -> list[str]:
    """The labels of ``agent_id``'s state at ``head``, from its version rows."""
    added: list[list[str]] = []
    v: int | None = head
    while v is not None:
        row = conn.execute(sa.select(
            _versions.c.parent, _versions.c.kind, _versions.c.state_of, _versions.c.has_snapshot,
            _versions.c.labels_added).where(_versions.c.agent_id == agent_id,
                                            _versions.c.version == v)).one()
        if row.has_snapshot:
            labels = conn.execute(sa.select(_snapshots.c.labels).where(
                _snapshots.c.agent_id == agent_id, _snapshots.c.version == v)).scalar_one()
            out = list(labels)
            for more in reversed(added):
                out.extend(more)
            return out
        if row.kind == "delta":
            added.append(list(row.labels_added or []))
        v = row.state_of if row.kind == "rollback" else row.parent
    raise RuntimeError(f"agent {agent_id!r}: version {head} has no snapshot on its path")


def upgrade() -> None:
    op.add_column("agents", sa.Column("labels", sa.JSON(), nullable=False,
                                      server_default=sa.text("'[]'")))
    conn = op.get_bind()
    for agent_id, head in conn.execute(sa.select(_agents.c.id, _agents.c.head_version)).all():
        conn.execute(sa.update(_agents).where(_agents.c.id == agent_id).values(
            labels=head_labels(conn, agent_id, head)))


def downgrade() -> None:
    op.execute("ALTER TABLE agents DROP COLUMN labels")
