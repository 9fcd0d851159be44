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

SQLite: no table is rebuilt (with foreign keys on, rebuilding ``agents`` or ``versions`` would
cascade-delete their events, deltas and snapshots): columns are added and dropped in place, the
status CHECK's text is replaced in the schema, and the counts CHECK is PostgreSQL's only.

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


def _sqlite_check(table: str, old: str, new: str) -> None:
    """Replace a CHECK's text in SQLite's schema in place. Rebuilding the table (Alembic's
    batch mode) is not an option here: with foreign keys on, dropping ``versions`` or
    ``agents`` would cascade-delete every delta, snapshot and event. The new text only widens
    (or, down, narrows to what the rows already satisfy), so no row needs checking."""
    conn = op.get_bind()
    sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND "
                               "name = ?", (table,)).scalar_one()
    if old not in sql:
        raise RuntimeError(f"{table}: expected {old!r} in its schema")
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    conn.exec_driver_sql("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                         (sql.replace(old, new), table))
    conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("events", sa.Column("rejected", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.add_column("events", sa.Column("reject_reason", sa.Text(), nullable=True))
    op.create_index("ix_events_agent_rejected", "events", ["agent_id", "rejected", "seq"])
    op.add_column("agents", sa.Column("events_rejected", sa.BigInteger(), nullable=False,
                                      server_default="0"))
    if sqlite:  # (the counts check is kept by PostgreSQL; SQLite would need a rebuild)
        _sqlite_check("versions", STATUS_OLD, STATUS_NEW)
    else:
        op.create_check_constraint(op.f("ck_agents_counts_le_received"), "agents", COUNTS)
        op.drop_constraint(op.f("ck_versions_status_known"), "versions", type_="check")
        op.create_check_constraint(op.f("ck_versions_status_known"), "versions", STATUS_NEW)
    _version_types(sa.BigInteger(), sa.Integer())


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
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
    op.drop_index("ix_events_agent_rejected", "events")
    if sqlite:  # SQLite >= 3.35 drops a column in place (no rebuild, no cascade)
        _sqlite_check("versions", STATUS_NEW, STATUS_OLD)
        for table, column in (("agents", "events_rejected"), ("events", "reject_reason"),
                              ("events", "rejected")):
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        return
    op.drop_constraint(op.f("ck_versions_status_known"), "versions", type_="check")
    op.create_check_constraint(op.f("ck_versions_status_known"), "versions", STATUS_OLD)
    op.drop_constraint(op.f("ck_agents_counts_le_received"), "agents", type_="check")
    op.drop_column("agents", "events_rejected")
    op.drop_column("events", "reject_reason")
    op.drop_column("events", "rejected")
