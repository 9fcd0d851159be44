"""Event retention: an index on ``events.origin_event_id`` (only the rows that have one, the
events forks inherited), so deleting a pruned event checks its foreign key with an index
lookup, not a scan of the whole events table (SQLite with ``foreign_keys=ON`` and PostgreSQL
both look for referencing rows on every delete).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHERE = sa.text("origin_event_id IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_events_origin_event_id", "events", ["origin_event_id"],
                    sqlite_where=WHERE, postgresql_where=WHERE)


def downgrade() -> None:
    op.drop_index("ix_events_origin_event_id", table_name="events")
