"""Issue 18: the bounded rehearsal memory (delta form ``put``), settings shown in force,
prequential quality per version, the guard.

- ``deltas.form`` gains ``put``: rows written in place (``LayerDelta.put``, stored as ``[A | at]``),
  the slots of the bounded rehearsal memory of rule ``softmax`` (:mod:`agent.memory.reservoir`).
- Classifiers now default to rule ``softmax`` in float32 with a bounded reservoir; a stored config
  that relied on the old defaults keeps its meaning: every stored ``memory`` gains ``dtype``
  (``float64``, the old default, where absent) and a ``softmax`` one gains ``reservoir: null``
  (every event, the rule as it was) where absent.
- ``versions.hits`` (hits among the version's events, each predicted before it was learnt),
  ``versions.tested_total`` / ``versions.hits_total`` (running totals of the agent's tested
  events and hits up to the version; null on versions no learner tested, e.g. rollbacks), and
  index ``(agent_id, tested_total)`` for windowed accuracy (``GET /quality``).
- ``agents.quarantined``: the guard (or an operator) stopped applying the agent's new events;
  they stay pending ("held") until released. ``guard_actions``: every guard action and release,
  with its reason and the version it made or acted on (``GET /guard``).

Downgrade: the configs lose the keys this revision added (``reservoir: null``, and ``dtype:
"float64"``, which an older release takes as its default); ``put`` deltas cannot be read by an
older release, so a downgrade with any stored refuses with a message naming the agents (forget
them or delete those agents first) rather than leave states an older release would misread.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NEW = "form IN ('factors', 'dense', 'neg', 'shift', 'rows', 'put')"
OLD = "form IN ('factors', 'dense', 'neg', 'shift', 'rows')"
_agents = sa.table("agents", sa.column("id", sa.String), sa.column("config", sa.JSON))


def _set_check(sql: str) -> None:
    with op.batch_alter_table("deltas") as batch:
        batch.drop_constraint(op.f("ck_deltas_form_known"), type_="check")
        batch.create_check_constraint(op.f("ck_deltas_form_known"), sql)


def _rewrite_configs(upgrade: bool) -> None:
    conn = op.get_bind()
    for aid, config in conn.execute(sa.select(_agents.c.id, _agents.c.config)).all():
        if not isinstance(config, dict) or not isinstance(config.get("memory"), dict):
            continue
        mem = dict(config["memory"])
        if upgrade:
            mem.setdefault("dtype", "float64")
            if mem.get("rule") == "softmax":
                mem.setdefault("reservoir", None)
        else:
            if mem.get("dtype") == "float64":
                del mem["dtype"]
            if "reservoir" in mem and mem["reservoir"] is None:
                del mem["reservoir"]
        if mem != config["memory"]:
            conn.execute(sa.update(_agents).where(_agents.c.id == aid)
                         .values(config={**config, "memory": mem}))


def upgrade() -> None:
    _set_check(NEW)
    _rewrite_configs(upgrade=True)
    # plain ALTER TABLE, never a batch copy of ``versions``: on SQLite a batch drops and renames
    # the table, and with foreign keys on that cascades into snapshots and deltas
    op.add_column("versions", sa.Column("hits", sa.Integer(), nullable=True))
    op.add_column("versions", sa.Column("tested_total", sa.BigInteger(), nullable=True))
    op.add_column("versions", sa.Column("hits_total", sa.BigInteger(), nullable=True))
    op.create_index("ix_versions_agent_tested", "versions", ["agent_id", "tested_total"])
    op.add_column("agents", sa.Column("quarantined", sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    op.create_table(
        "guard_actions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("agent_id", sa.String(length=40), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("version", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["agent_id"], ["agents.id"],
                                name=op.f("fk_guard_actions_agent_id_agents"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_guard_actions")),
    )
    op.create_index("ix_guard_actions_agent", "guard_actions", ["agent_id", "id"])


def downgrade() -> None:
    conn = op.get_bind()
    deltas = sa.table("deltas", sa.column("agent_id", sa.String), sa.column("form", sa.String))
    held = conn.execute(sa.select(deltas.c.agent_id).where(deltas.c.form == "put").distinct()
                        .limit(5)).scalars().all()
    if held:
        raise RuntimeError("cannot downgrade below 0006: agents with a bounded rehearsal memory "
                           f"(delta form 'put') exist, e.g. {held}; delete them first")
    op.drop_index("ix_guard_actions_agent", "guard_actions")
    op.drop_table("guard_actions")
    op.drop_column("agents", "quarantined")  # plain ALTER: a batch copy of agents would cascade
    op.drop_index("ix_versions_agent_tested", "versions")
    for column in ("hits_total", "tested_total", "hits"):
        op.drop_column("versions", column)  # SQLite ≥ 3.35: ALTER TABLE DROP COLUMN, no copy
    _rewrite_configs(upgrade=False)
    _set_check(OLD)
