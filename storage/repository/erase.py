"""Erasure after a forget: nothing stored may still encode a forgotten event.

- The events' payloads (input, target, meta, and the raw input columns where present) are
  emptied and their rows of input blocks zeroed (a block no event refers to any more is
  deleted: :mod:`.event_inputs`); ``client_id`` and ``seq`` stay as tombstones (ids stay known
  to ``forget`` and duplicate detection, the order stays exact).
- Every version whose state holds a forgotten event is marked ``erased``: its deltas and its
  snapshot are deleted (a delta after the event is computed from a state that held it, and a
  ``softmax`` agent's ``rows`` deltas hold the key itself), its ``labels_added`` cleared.
  Loading it raises :class:`~storage.errors.ForgottenEvents` (409 ``forgotten_events`` to
  predict, rollback and fork). No other version needs them: a version's rebuild plan walks
  sources whose histories are subsets of its own, and the forget version is a snapshot.
- Answer texts (explicit memory) that no remaining version holds are deleted.

Which versions hold a forgotten event is one pass over the version graph in version order
(a source always precedes its version), carrying the set of forgotten seqs each holds.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from storage.models import Answer, Base, Event, Snapshot, Version, agent_key_of
from storage.repository._base import Core, chunks, delete_arrays
from storage.repository.event_inputs import drop_unreferenced, zero_rows
from storage.repository.graph import VersionGraph, VInfo

_EVENTS = Base.metadata.tables[Event.__tablename__]
# the input columns (issue 16: inline before 0012, a block's row since) where the schema has them
_INPUT_COLUMNS = [c for c in ("input_data", "input_dtype", "input_dim", "input_sha256",
                              "input_block_id", "input_row") if c in _EVENTS.c]


class Erasure:
    """What a forget leaves behind, erased (module doc)."""

    def __init__(self, core: Core, graph: VersionGraph) -> None:
        self.core = core
        self.graph = graph
        self.session = core.session

    def _erase_payloads(self, agent_id: str, seqs: list[int]) -> None:
        values: dict[str, Any] = {"payload": {}, **{c: None for c in _INPUT_COLUMNS}}
        key = agent_key_of(agent_id)
        refs: list[tuple[int, int]] = []
        for part in chunks(sorted(seqs)):
            refs.extend((int(b), int(r)) for b, r in self.session.execute(select(
                _EVENTS.c.input_block_id, _EVENTS.c.input_row).where(
                _EVENTS.c.agent_key == key, _EVENTS.c.seq.in_(part),
                _EVENTS.c.input_block_id.is_not(None))))
            self.session.execute(update(_EVENTS).where(
                _EVENTS.c.agent_key == key, _EVENTS.c.seq.in_(part)).values(**values))
        drop_unreferenced(self.session, zero_rows(self.session, refs))

    def _holding_forgotten(self, agent_id: str, vmap: dict[int, VInfo]) -> list[int]:
        """Versions (not yet erased) whose state holds a forgotten event."""
        applied, forgotten = self.graph.event_marks(agent_id)
        gone = set().union(*forgotten.values()) if forgotten else set()
        holds: dict[int, frozenset[int]] = {}
        for v in sorted(vmap):
            info = vmap[v]
            mine = frozenset(s for s in applied.get(v, ()) if s in gone)
            src = info.source
            if info.is_root or src is None:
                holds[v] = mine
            elif info.kind == "forget":
                holds[v] = (holds.get(src, frozenset()) - forgotten.get(v, set())) | mine
            elif info.kind == "rollback":
                holds[v] = holds.get(src, frozenset())
            else:
                holds[v] = holds.get(src, frozenset()) | mine
        return [v for v in sorted(vmap) if holds[v] and vmap[v].status != "erased"]

    def erase_forgotten(self, agent_id: str, seqs: list[int]) -> list[int]:
        """Erase what the events ``seqs`` (just forgotten) left behind (module doc); returns
        the versions erased now."""
        self._erase_payloads(agent_id, seqs)
        self.session.flush()
        vmap = self.graph.vmap(agent_id)
        erased = self._holding_forgotten(agent_id, vmap)
        for part in chunks(erased):
            delete_arrays(self.session, agent_id, part)
            self.session.execute(update(Version).where(
                Version.agent_id == agent_id, Version.version.in_(part)).values(
                status="erased", has_snapshot=False, labels_added=[]))
        self.session.flush()
        self.session.expire_all()
        self._drop_unheld_answers(agent_id)
        return erased

    def _drop_unheld_answers(self, agent_id: str) -> None:
        """Delete answer texts that no remaining (not erased) version's state holds: a label
        is in a state when some version on its path added it, or a snapshot holds it."""
        held: set[str] = set()
        for (added,) in self.session.execute(select(Version.labels_added).where(
                Version.agent_id == agent_id, Version.status != "erased")):
            held.update(added or [])
        for (labels,) in self.session.execute(select(Snapshot.labels).where(
                Snapshot.agent_id == agent_id)):
            held.update(labels or [])
        stale = [i for i, t in self.session.execute(select(Answer.id, Answer.text).where(
            Answer.agent_id == agent_id)) if t not in held]
        for part in chunks(stale):
            self.session.execute(delete(Answer).where(Answer.id.in_(part)))
        self.session.flush()
