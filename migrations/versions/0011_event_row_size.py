"""Smaller event rows (issue 16: ≤ 2 KB per event at 384-d): an integer agent key, the input's
SHA-256 as 32 bytes, and on SQLite the receipt time as integer microseconds.

- ``agents.key``: an internal integer surrogate of the public id ``agents.id`` (unique index
  ``uq_agents_key``; new agents take ``agents_key_seq`` on PostgreSQL, the largest key + 1 on
  SQLite). ``events.agent_key`` replaces ``events.agent_id`` (a 35-character id in every event
  row and in both unique indexes): FK to ``agents.key`` (ON DELETE CASCADE), unique
  ``(agent_key, client_id)`` and ``(agent_key, seq)``, the partial pending and rejected
  indexes on ``(agent_key, seq)``.
- ``events.input_sha256``: the digest's 32 bytes (BLOB / bytea) instead of 64 hex digits.
- ``events.received_at`` on SQLite: integer microseconds since 1970 UTC (``BIGINT``, 8 bytes)
  instead of 26 characters of text (``storage.models.UTCMicros``); PostgreSQL keeps its
  ``timestamptz`` (8 bytes already).

SQLite: ``agents`` gets its column in place (rebuilding it would cascade-delete everything that
references it); ``events`` is rebuilt: renamed aside, created in the new shape, the rows copied
in id order (a fork's row points at an older row) with the values converted, the old table
dropped. PostgreSQL: columns altered in place. Downgrade restores the 0010 shape and values
(the same text, digits and ids), both backends.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("applied_version IS NULL")
REJECTED_SQLITE = sa.text("rejected IS 1")
REJECTED_PG = sa.text("rejected IS true")
ORIGIN = sa.text("origin_event_id IS NOT NULL")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# the columns both shapes share, in table order, after ``id`` and the agent column
SHARED = ("client_id", "seq", "payload", "received_at", "applied_version", "forgotten_version",
          "origin_event_id", "rejected", "reject_reason", "input_data", "input_dtype",
          "input_dim", "input_sha256")


def _micros(value: str | None) -> int | None:
    """A 0010 SQLite ``received_at`` (naive UTC text) as integer microseconds since 1970."""
    if value is None:
        return None
    return (datetime.fromisoformat(value).replace(tzinfo=UTC) - EPOCH) // timedelta(
        microseconds=1)


def _text(value: int | None) -> str | None:
    """Integer microseconds as the text a 0010 SQLite ``received_at`` holds."""
    if value is None:
        return None
    d = EPOCH + timedelta(microseconds=value)
    return (f"{d.year:04d}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}:"
            f"{d.second:02d}.{d.microsecond:06d}")


def _unhex(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _events_table(new: bool) -> sa.Table:
    """The SQLite ``events`` table of 0011 (``new``) or 0010, for ``CREATE TABLE``."""
    md = sa.MetaData()
    sa.Table("agents", md, sa.Column("id", sa.String(40)), sa.Column("key", sa.BigInteger()))
    agent = ([sa.Column("agent_key", sa.BigInteger(), nullable=False)] if new else
             [sa.Column("agent_id", sa.String(40), nullable=False)])
    agent_col = "agent_key" if new else "agent_id"
    return sa.Table(
        "events", md,
        sa.Column("id", sa.Integer(), nullable=False), *agent,
        sa.Column("client_id", sa.String(200), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("received_at", sa.BigInteger() if new else sa.DateTime(timezone=True),
                  nullable=False),
        sa.Column("applied_version", sa.Integer(), nullable=True),
        sa.Column("forgotten_version", sa.Integer(), nullable=True),
        sa.Column("origin_event_id", sa.Integer(), nullable=True),
        sa.Column("rejected", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("reject_reason", sa.Text(), nullable=True),
        sa.Column("input_data", sa.LargeBinary(), nullable=True),
        sa.Column("input_dtype", sa.String(8), nullable=True),
        sa.Column("input_dim", sa.Integer(), nullable=True),
        sa.Column("input_sha256", sa.LargeBinary() if new else sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.CheckConstraint("seq >= 1", name="ck_events_seq_pos"),
        sa.ForeignKeyConstraint([agent_col], [f"agents.{'key' if new else 'id'}"],
                                name=f"fk_events_{agent_col}_agents", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["origin_event_id"], ["events.id"],
                                name="fk_events_origin_event_id_events"),
        sa.UniqueConstraint(agent_col, "client_id", name="uq_events_agent_client_id"),
        sa.UniqueConstraint(agent_col, "seq", name="uq_events_agent_seq"))


def _drop_indexes() -> None:
    for name in ("ix_events_pending", "ix_events_rejected", "ix_events_origin_event_id"):
        op.drop_index(name, table_name="events")


def _create_indexes(agent_col: str, sqlite: bool) -> None:
    op.create_index("ix_events_pending", "events", [agent_col, "seq"],
                    sqlite_where=PENDING, postgresql_where=PENDING)
    op.create_index("ix_events_rejected", "events", [agent_col, "seq"],
                    sqlite_where=REJECTED_SQLITE, postgresql_where=REJECTED_PG)
    if sqlite:  # (PostgreSQL's stays: its table is altered in place)
        op.create_index("ix_events_origin_event_id", "events", ["origin_event_id"],
                        sqlite_where=ORIGIN)


def _sqlite_rebuild(new: bool) -> None:
    """Rename ``events`` aside, create it in the other shape, copy the rows converted."""
    conn = op.get_bind()
    raw: Any = conn.connection.dbapi_connection
    for name, fn in (("dm_micros", _micros), ("dm_text", _text), ("dm_unhex", _unhex)):
        raw.create_function(name, 1, fn, deterministic=True)
    _drop_indexes()
    op.execute("ALTER TABLE events RENAME TO _events_old")
    _events_table(new).create(conn)
    rest = [c for c in SHARED if c not in ("received_at", "input_sha256")]
    if new:
        agent, join, at, sha = "agent_key", "a.id = o.agent_id", "dm_micros", "dm_unhex"
        key = "a.key"
    else:
        agent, join, at, sha = "agent_id", "a.key = o.agent_key", "dm_text", "lower(hex"
        key = "a.id"
    sha_expr = f"{sha}(o.input_sha256)" + (")" if not new else "")
    op.execute(
        f"INSERT INTO events (id, {agent}, {', '.join(rest)}, received_at, input_sha256) "
        f"SELECT o.id, {key}, {', '.join('o.' + c for c in rest)}, {at}(o.received_at), "
        f"{sha_expr} FROM _events_old o JOIN agents a ON {join} ORDER BY o.id")
    op.execute("DROP TABLE _events_old")
    _create_indexes(agent, sqlite=True)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute("ALTER TABLE agents ADD COLUMN key BIGINT NOT NULL DEFAULT 0")
        op.execute("UPDATE agents SET key = rowid")
        op.create_index("uq_agents_key", "agents", ["key"], unique=True)
        _sqlite_rebuild(new=True)
        return
    op.add_column("agents", sa.Column("key", sa.BigInteger(), nullable=True))
    op.execute(sa.schema.CreateSequence(sa.Sequence("agents_key_seq")))
    op.execute("UPDATE agents SET key = nextval('agents_key_seq')")
    op.alter_column("agents", "key", nullable=False, existing_type=sa.BigInteger())
    op.create_index("uq_agents_key", "agents", ["key"], unique=True)
    op.add_column("events", sa.Column("agent_key", sa.BigInteger(), nullable=True))
    op.execute("UPDATE events SET agent_key = agents.key FROM agents "
               "WHERE agents.id = events.agent_id")
    op.alter_column("events", "agent_key", nullable=False, existing_type=sa.BigInteger())
    _swap_pg_agent_column("agent_id", "agent_key")
    op.alter_column("events", "input_sha256", type_=sa.LargeBinary(),
                    existing_type=sa.String(64), postgresql_using="decode(input_sha256, 'hex')")


def _swap_pg_agent_column(old: str, new: str) -> None:
    """PostgreSQL: the FK, unique constraints and partial indexes move from ``old`` (filled
    ``new`` already) to ``new``; ``old`` goes."""
    op.drop_index("ix_events_pending", table_name="events")
    op.drop_index("ix_events_rejected", table_name="events")
    op.drop_constraint("uq_events_agent_client_id", "events", type_="unique")
    op.drop_constraint("uq_events_agent_seq", "events", type_="unique")
    op.drop_constraint(f"fk_events_{old}_agents", "events", type_="foreignkey")
    op.drop_column("events", old)
    op.create_foreign_key(f"fk_events_{new}_agents", "events", "agents", [new],
                          ["key" if new == "agent_key" else "id"], ondelete="CASCADE")
    op.create_unique_constraint("uq_events_agent_client_id", "events", [new, "client_id"])
    op.create_unique_constraint("uq_events_agent_seq", "events", [new, "seq"])
    _create_indexes(new, sqlite=False)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        _sqlite_rebuild(new=False)
        op.drop_index("uq_agents_key", table_name="agents")
        op.execute("ALTER TABLE agents DROP COLUMN key")
        return
    op.alter_column("events", "input_sha256", type_=sa.String(64),
                    existing_type=sa.LargeBinary(), postgresql_using="encode(input_sha256, 'hex')")
    op.add_column("events", sa.Column("agent_id", sa.String(40), nullable=True))
    op.execute("UPDATE events SET agent_id = agents.id FROM agents "
               "WHERE agents.key = events.agent_key")
    op.alter_column("events", "agent_id", nullable=False, existing_type=sa.String(40))
    _swap_pg_agent_column("agent_key", "agent_id")
    op.drop_index("uq_agents_key", table_name="agents")
    op.drop_column("agents", "key")
    op.execute(sa.schema.DropSequence(sa.Sequence("agents_key_seq")))
