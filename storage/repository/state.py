"""States: writing and reading snapshots and deltas, and rebuilding the state at a version
(nearest snapshot on its path + deltas, applied with :func:`agent.memory.delta.apply_delta`,
the learner's own operation, so the result is bit-identical; the checksum is verified)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from agent.errors import check_text
from agent.memory.backend import one_blas_thread
from agent.memory.delta import Delta, LayerDelta, apply_delta, state_checksum
from storage import deltaform
from storage.codec import Blob, decode, encode
from storage.errors import (
    ChecksumMismatch,
    CorruptData,
    ForgottenEvents,
    InputError,
    VersionThinned,
)
from storage.models import LAYER_LEN, DeltaRow, Snapshot, SnapshotLayer, Version
from storage.repository._base import Core, chunks
from storage.repository.graph import VersionGraph, VInfo

State = tuple[dict[str, np.ndarray], list[str]]


def check_labels(labels: Any, field: str) -> list[str]:
    """A list of label (answer) texts, each valid Unicode text; else :class:`InputError`."""
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise InputError(field, "expected a list of strings")
    for i, x in enumerate(labels):
        check_text(x, f"{field}[{i}]")
    return labels


def check_state(layers: Any, labels: Any, field: str = "snapshot") -> State:
    if not isinstance(layers, dict) or not layers:
        raise InputError(f"{field}.layers", "expected a non-empty dict of layer name → array")
    for name, arr in layers.items():
        if not isinstance(name, str) or not 0 < len(name) <= LAYER_LEN:
            raise InputError(f"{field}.layers", f"layer names are 1..{LAYER_LEN} characters")
        if not isinstance(arr, np.ndarray) or arr.ndim != 2:
            raise InputError(f"{field}.layers.{name}", "expected a 2-d numpy array")
    if len(set(check_labels(labels, f"{field}.labels"))) != len(labels):
        raise InputError(f"{field}.labels", "labels must be distinct")
    return layers, labels


def encode_layer_delta(name: str, ld: LayerDelta) -> tuple[str, LayerDelta, str, Blob]:
    """``(name, delta, stored form, blob)`` (:mod:`storage.deltaform`), validated."""
    field = f"delta.layers.{name}"
    if not isinstance(name, str) or not 0 < len(name) <= LAYER_LEN:
        raise InputError("delta.layers", f"layer names are 1..{LAYER_LEN} characters")
    if not isinstance(ld, LayerDelta):
        raise InputError(field, "expected a LayerDelta")
    if not np.isfinite(ld.gamma):
        raise InputError(f"{field}.gamma", "expected a finite number")
    form, arrays = deltaform.pack(ld)
    return name, ld, form, encode(arrays, field)


class States:
    """Stored states: snapshots and deltas written, and the state at a version rebuilt."""

    def __init__(self, core: Core, graph: VersionGraph) -> None:
        self.core = core
        self.graph = graph
        self.session = core.session

    # -- writing -----------------------------------------------------------------------
    def put_deltas(self, agent_id: str, version: int,
                   encoded: list[tuple[str, LayerDelta, str, Blob]]) -> None:
        for name, ld, form, blob in encoded:
            d_v, d_k = ld.shape
            self.session.add(DeltaRow(
                agent_id=agent_id, version=version, layer=name,
                form=form, gamma=float(ld.gamma), d_v=d_v,
                d_k=d_k, rank=None if ld.is_dense else ld.rank, dtype=blob.dtype,
                data=blob.data, sha256=blob.sha256))

    def put_snapshot(self, agent_id: str, version: int, layers: dict[str, np.ndarray],
                     labels: list[str]) -> Snapshot:
        blobs = {name: encode([arr], f"snapshot.layers.{name}") for name, arr in layers.items()}
        snap = Snapshot(agent_id=agent_id, version=version, labels=list(labels))
        self.session.add(snap)
        self.session.flush()
        for name, blob in blobs.items():
            d_v, d_k = blob.shapes[0]
            self.session.add(SnapshotLayer(snapshot_id=snap.id, layer=name, dtype=blob.dtype,
                                           d_v=d_v, d_k=d_k, data=blob.data, sha256=blob.sha256))
        return snap

    def write_snapshot(self, agent_id: str, version: int, layers: dict[str, np.ndarray],
                       labels: list[str]) -> Version:
        """Store the full state of an existing version (a start point for rebuilds).

        The state must match the version's checksum (else :class:`InputError`); writing a
        snapshot that exists already is a no-op; an erased version's is refused
        (:class:`ForgottenEvents`).
        """
        check_state(layers, labels)
        row = self.get_version(agent_id, version)
        if row.status == "erased":  # it held a forgotten event: nothing of it is stored again
            raise ForgottenEvents(agent_id, version, [])
        got = state_checksum(layers, labels)
        if got != row.checksum:
            raise InputError("snapshot", f"state checksum {got[:16]}… does not match version "
                                         f"{version}'s {row.checksum[:16]}…")
        if not row.has_snapshot:
            self.put_snapshot(agent_id, version, layers, labels)
            row.has_snapshot = True
            row.status = "ok"
            self.session.flush()
        return row

    def get_version(self, agent_id: str, version: int) -> Version:
        self.core.agent(agent_id)
        row = None
        if isinstance(version, int) and not isinstance(version, bool):
            row = self.session.execute(select(Version).where(
                Version.agent_id == agent_id, Version.version == version)).scalar_one_or_none()
        if row is None:
            raise self.graph.missing(agent_id, version)
        return row

    # -- reading -----------------------------------------------------------------------
    def _read_snapshot(self, agent_id: str, version: int) -> State:
        what = f"agent {agent_id!r} snapshot of version {version}"
        snap = self.session.execute(select(Snapshot).where(
            Snapshot.agent_id == agent_id, Snapshot.version == version)).scalar_one_or_none()
        if snap is None:
            raise CorruptData(what, "the snapshot is missing")
        layers: dict[str, np.ndarray] = {}
        for row in self.session.scalars(select(SnapshotLayer).where(
                SnapshotLayer.snapshot_id == snap.id)):
            layers[row.layer] = decode(row.data, row.dtype, [(row.d_v, row.d_k)], row.sha256,
                                       f"{what}, layer {row.layer!r}")[0]
        if not isinstance(snap.labels, list):
            raise CorruptData(what, "labels are not a list")
        return layers, list(snap.labels)

    def _read_deltas(self, agent_id: str, versions: list[int]) -> dict[int, dict[str, LayerDelta]]:
        out: dict[int, dict[str, LayerDelta]] = {v: {} for v in versions}
        for part in chunks(versions):
            for r in self.session.scalars(select(DeltaRow).where(
                    DeltaRow.agent_id == agent_id, DeltaRow.version.in_(part))
                    .order_by(DeltaRow.version, DeltaRow.layer)):
                what = f"agent {agent_id!r} version {r.version} delta {r.layer!r}"
                try:
                    shapes = deltaform.shapes(r.form, r.d_v, r.d_k, r.rank)
                except ValueError as exc:
                    raise CorruptData(what, str(exc)) from None
                arrays = decode(r.data, r.dtype, shapes, r.sha256, what)
                try:
                    ld = deltaform.unpack(r.form, arrays, r.gamma, (r.d_v, r.d_k))
                except ValueError as exc:
                    raise CorruptData(what, str(exc)) from None
                out[r.version][r.layer] = ld
        return out

    def plan(self, agent_id: str, vmap: dict[int, VInfo], version: int) -> tuple[int, list[int]]:
        """(snapshot version to start from, delta versions to apply in order)."""
        if vmap[version].status == "thinned":
            raise VersionThinned(agent_id, version)
        if vmap[version].status == "erased":  # its state held a forgotten event (erase.py)
            raise ForgottenEvents(agent_id, version, [])
        chain: list[int] = []
        cur = vmap[version]
        while not cur.has_snapshot:
            if cur.kind == "delta":
                chain.append(cur.version)
            elif cur.kind not in ("rollback", "snapshot"):
                raise CorruptData(f"agent {agent_id!r} version {cur.version}",
                                  f"a {cur.kind} version without its snapshot")
            src = cur.source
            if src is None or src not in vmap or src >= cur.version:
                raise CorruptData(f"agent {agent_id!r} version {cur.version}",
                                  f"bad source version {src!r}")
            cur = vmap[src]
        chain.reverse()
        return cur.version, chain

    def load_state(self, agent_id: str, version: int) -> State:
        """The state ``(layers, labels)`` at ``version``, checksum verified.

        Raises :class:`VersionNotFound`, :class:`VersionThinned`, :class:`CorruptData`
        (bad bytes) or :class:`ChecksumMismatch` (the rebuilt state differs from the one
        committed) — never returns a wrong state.
        """
        self.core.agent(agent_id)
        vmap = self.graph.vmap_path(agent_id, version)
        info = self.graph.vinfo(agent_id, version, vmap)
        start, chain = self.plan(agent_id, vmap, version)
        layers, labels = self._read_snapshot(agent_id, start)
        got = state_checksum(layers, labels)
        if got != vmap[start].checksum:
            raise ChecksumMismatch(agent_id, start, vmap[start].checksum, got)
        if chain:
            added = self.labels_added(agent_id, chain)
            deltas = self._read_deltas(agent_id, chain)
            with one_blas_thread():  # the thread count the learner used (DESIGN §2 contract)
                for v in chain:
                    layers = apply_delta(layers, Delta(deltas[v], list(added.get(v) or [])))
                    labels.extend(added.get(v) or [])
        got = state_checksum(layers, labels)
        if got != info.checksum:
            raise ChecksumMismatch(agent_id, version, info.checksum, got)
        return layers, labels

    def labels_added(self, agent_id: str, versions: list[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for part in chunks(versions):
            out.update(self.session.execute(select(Version.version, Version.labels_added).where(
                Version.agent_id == agent_id, Version.version.in_(part))).all())
        return out
