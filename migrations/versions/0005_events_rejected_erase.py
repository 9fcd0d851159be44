"""Issue 15: rejected events, erased versions, BIGINT version numbers.

- ``events.rejected`` / ``events.reject_reason``: an accepted event the learner could not apply
  (a non-finite result, found by bisecting its micro-batch); never applied or replayed, listed
  by ``GET /v1/agents/{id}/events?status=rejected``. Index ``(agent_id, rejected, seq)``.
- ``agents.events_rejected``: their count (``events_received = events_applied +
  events_rejected + pending``).
- ``versions.status`` gains ``erased``: a version whose state held a forgotten event; its
  deltas and snapshot are deleted by the forget.
- Version-number columns become BIGINT on PostgreSQL (the API takes versions up to 2**53;
  SQLite's INTEGER is 64-bit already, so SQLite keeps its columns).

Downgrade: rejected events are marked forgotten by the head version (an older release must
never apply them), erased versions become ``thinned`` (listed, not loadable), the columns and
index go, and version columns go back to INTEGER on PostgreSQL.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUS_NEW = "status IN ('ok', 'thinned', 'erased')"
STATUS_OLD = "status IN ('ok', 'thinned')"
COUNTS = "events_applied + events_rejected <= events_received"
# (table, column, nullable) of every version number; PostgreSQL only (SQLite's are 64-bit)
VERSION_COLUMNS = [("agents", "head_version", False), ("agents", "base_version", True),
                   ("versions", "version", False), ("versions", "parent", True),
                   ("versions", "state_of", True), ("deltas", "version", False),
                   ("snapshots", "version", False), ("events", "applied_version", True),
                   ("events", "forgotten_version", True), ("answers", "first_version", False)]


def _version_types(new: sa.types.TypeEngine, old: sa.types.TypeEngine) -> None:
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, nullable in VERSION_COLUMNS:
        op.alter_column(table, column, type_=new, existing_type=old, existing_nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("rejected", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("reject_reason", sa.Text(), nullable=True))
        batch.create_index("ix_events_agent_rejected", ["agent_id", "rejected", "seq"])
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("events_rejected", sa.BigInteger(), nullable=False,
                                   server_default="0"))
        batch.create_check_constraint(op.f("ck_agents_counts_le_received"), COUNTS)
    with op.batch_alter_table("versions") as batch:
        batch.drop_constraint(op.f("ck_versions_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_versions_status_known"), STATUS_NEW)
    _version_types(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    _version_types(sa.Integer(), sa.BigInteger())
    events = sa.table("events", sa.column("agent_id", sa.String),
                      sa.column("rejected", sa.Boolean),
                      sa.column("forgotten_version", sa.Integer))
    agents = sa.table("agents", sa.column("id", sa.String), sa.column("head_version", sa.Integer))
    versions = sa.table("versions", sa.column("status", sa.String))
    head = (sa.select(agents.c.head_version).where(agents.c.id == events.c.agent_id)
            .scalar_subquery())
    op.execute(sa.update(events).where(events.c.rejected == sa.true())
               .values(forgotten_version=head))
    op.execute(sa.update(versions).where(versions.c.status == "erased").values(status="thinned"))
    with op.batch_alter_table("versions") as batch:
        batch.drop_constraint(op.f("ck_versions_status_known"), type_="check")
        batch.create_check_constraint(op.f("ck_versions_status_known"), STATUS_OLD)
    with op.batch_alter_table("agents") as batch:
        batch.drop_constraint(op.f("ck_agents_counts_le_received"), type_="check")
        batch.drop_column("events_rejected")
    with op.batch_alter_table("events") as batch:
        batch.drop_index("ix_events_agent_rejected")
        batch.drop_column("reject_reason")
        batch.drop_column("rejected")
