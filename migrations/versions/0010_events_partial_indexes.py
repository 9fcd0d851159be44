"""Smaller events indexes: the pending and rejected lookups get partial indexes over the few
rows they find, in place of indexes holding every event.

``ix_events_agent_applied (agent_id, applied_version)`` and ``ix_events_agent_rejected
(agent_id, rejected, seq)`` held one entry per event (about 50 bytes each, a tenth of what an
event costs beyond its input array), yet each is read for one thing only: the agent's pending
events (``applied_version IS NULL``, storage/repository/events.py ``_pending``) and its rejected
ones (``GET /v1/agents/{id}/events?status=rejected``). ``ix_events_pending (agent_id, seq) WHERE
applied_version IS NULL`` and ``ix_events_rejected (agent_id, seq) WHERE rejected`` hold just
those rows (each WHERE is written as the queries write the term, so that SQLite, which matches a
partial index's WHERE term for term, uses them). Every other read of the events table goes
through ``(agent_id, seq)`` or ``(agent_id, client_id)`` as before.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("applied_version IS NULL")
# SQLAlchemy writes ``rejected.is_(True)`` as ``IS 1`` on SQLite and ``IS true`` on PostgreSQL
REJECTED_SQLITE = sa.text("rejected IS 1")
REJECTED_PG = sa.text("rejected IS true")


def upgrade() -> None:
    op.create_index("ix_events_pending", "events", ["agent_id", "seq"],
                    sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index("ix_events_rejected", "events", ["agent_id", "seq"],
                    sqlite_where=REJECTED_SQLITE, postgresql_where=REJECTED_PG)
    op.drop_index("ix_events_agent_applied", table_name="events")
    op.drop_index("ix_events_agent_rejected", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_agent_applied", "events", ["agent_id", "applied_version"])
    op.create_index("ix_events_agent_rejected", "events", ["agent_id", "rejected", "seq"])
    op.drop_index("ix_events_rejected", table_name="events")
    op.drop_index("ix_events_pending", table_name="events")
