"""Test helpers for the storage tests: random deltas, a reference learner, the dyadic
event rule used to check forget exactly."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.memory.delta import Delta, LayerDelta, apply_delta, apply_layer, state_checksum

D_K = 4


def empty_state() -> tuple[dict[str, np.ndarray], list[str]]:
    return {"S": np.zeros((0, D_K)), "P": np.zeros((D_K, D_K))}, []


def same_state(a: tuple[dict[str, np.ndarray], list[str]],
               b: tuple[dict[str, np.ndarray], list[str]]) -> bool:
    """Bit-for-bit equality of two states (dtype, shape, bytes and labels)."""
    la, lb = a[0], b[0]
    return (a[1] == b[1] and la.keys() == lb.keys() and all(
        la[k].dtype == lb[k].dtype and la[k].shape == lb[k].shape
        and la[k].tobytes() == lb[k].tobytes() for k in la))


def random_delta(rng: np.random.Generator, layers: dict[str, np.ndarray], labels: list[str],
                 new_labels: list[str], dtype: str = "float64", dense: bool = False) -> Delta:
    """A random (non-exact, Gaussian) delta for the S and P layers."""
    d_v = len(labels) + len(new_labels)
    n = int(rng.integers(1, 4))
    gamma = float(rng.choice([1.0, 0.9, 0.5]))
    out = {}
    for name, rows in (("S", d_v), ("P", D_K)):
        if dense:
            ld = LayerDelta.of_dense(rng.standard_normal((rows, D_K)), gamma)
        else:
            ld = LayerDelta.factors(rng.standard_normal((n, D_K)),
                                    rng.standard_normal((n, rows)), gamma)
        out[name] = ld.astype(dtype)
    return Delta(out, list(new_labels))


# -- the dyadic event rule: exact in floating point whatever the grouping -------------------
def event_payload(rng: np.random.Generator, labels_pool: list[str]) -> dict[str, Any]:
    return {"input": [float(x) / 8 for x in rng.integers(-4, 5, size=D_K)],
            "target": str(rng.choice(labels_pool)),
            "beta": float(rng.choice([0.25, 0.5, 1.0])),
            "gamma": float(rng.choice([1.0, 1.0, 0.5]))}


def event_delta(labels: list[str], ev: dict[str, Any]) -> tuple[Delta, list[str]]:
    """The rank-1 delta one event writes (new label rows start at zero)."""
    new = [] if ev["target"] in labels else [ev["target"]]
    labs = labels + new
    x = np.asarray(ev["input"], dtype=np.float64)[None, :]
    e = np.zeros((1, len(labs)))
    e[0, labs.index(ev["target"])] = ev["beta"]
    g = ev["gamma"]
    return Delta({"S": LayerDelta.factors(x, e, g),
                  "P": LayerDelta.factors(x, x * ev["beta"], g)}, new), labs


def replay(layers: dict[str, np.ndarray], labels: list[str],
           events: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The reference learner: events one at a time, in order."""
    labels = list(labels)
    for ev in events:
        d, labels = event_delta(labels, ev)
        layers = apply_delta(layers, d)
    return layers, labels


def batch_delta(layers: dict[str, np.ndarray], labels: list[str], events: list[dict[str, Any]],
                dtype: str, dense: bool) -> Delta:
    """One delta equal to applying ``events`` one by one (exact for dyadic payloads)."""
    new_labels: list[str] = []
    for ev in events:
        if ev["target"] not in labels and ev["target"] not in new_labels:
            new_labels.append(ev["target"])
    labs = labels + new_labels
    gammas = [ev["gamma"] for ev in events]
    out = {}
    for name in ("S", "P"):
        rows = len(labs) if name == "S" else D_K
        A = np.zeros((len(events), D_K))
        E = np.zeros((len(events), rows))
        for i, ev in enumerate(events):
            later = float(np.prod(gammas[i + 1:])) if i + 1 < len(gammas) else 1.0
            x = np.asarray(ev["input"])
            A[i] = x
            if name == "S":
                E[i, labs.index(ev["target"])] = ev["beta"] * later
            else:
                E[i] = x * ev["beta"] * later
        ld = LayerDelta.factors(A, E, float(np.prod(gammas)))
        out[name] = (LayerDelta.of_dense(ld.to_dense(), ld.gamma) if dense else ld).astype(dtype)
    return Delta(out, new_labels)


def checksum(state: tuple[dict[str, np.ndarray], list[str]]) -> str:
    return state_checksum(*state)


def event_rows(repo: Any, agent_id: str, inputs: bool = False) -> list[tuple[Any, ...]]:
    """The agent's stored events as ``(client id, seq, payload[, (input dtype, its bytes)])``
    by seq, a generated id (``ev_...``) as ``"gen"``."""
    return [(e.client_id if not e.client_id.startswith("ev_") else "gen", e.seq, e.payload,
             *((_stored_input(e),) if inputs else ())) for e in repo.events_of(agent_id)]


def _stored_input(e: Any) -> tuple[str, bytes] | None:
    x = e.as_replay().get("input")
    return (x.dtype.str, x.tobytes()) if isinstance(x, np.ndarray) else None


def empty_agents(repo: Any, tenant_id: str, prefix: str, n: int) -> list[str]:
    """``n`` new agents of the tenant with the empty state, named ``prefix0``, ``prefix1``..."""
    st0 = empty_state()
    return [repo.create_agent(tenant_id, f"{prefix}{i}", {}, *st0, checksum(st0)).id
            for i in range(n)]


__all__ = ["apply_layer", "D_K", "empty_state", "same_state", "random_delta", "event_payload",
           "event_delta", "replay", "batch_delta", "checksum", "empty_agents", "event_rows"]
