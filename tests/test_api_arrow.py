"""The Arrow IPC ingest body (``application/vnd.apache.arrow.stream``) over real HTTP: bad
bodies get a 4xx naming the row and column and change nothing; ``?partial=true`` works as for
JSON; and the same events sent as JSON, NDJSON and Arrow give bit-identical states, equal to
the in-process learner's (also after a forget, which replays the stored arrays)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest

from agent.config import AgentConfig
from agent.model import MemoryAgent
from client import ARROW_STREAM, arrow_body
from tests.service_fixtures import auth, counts, vec_events, wait_applied

DIM = 4


@pytest.fixture(scope="module")
def agent(tenant_a):
    a = tenant_a.create_agent("arrow-bad", kind="classifier", encoder="none", dim=DIM)
    tenant_a.ingest(a.id, vec_events(6))
    wait_applied(tenant_a, a.id, 6)
    return a


def _stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _fixed(rows, dt=np.float32, size=DIM):
    return pa.FixedSizeListArray.from_arrays(pa.array(np.asarray(rows, dtype=dt).ravel()), size)


GOOD = [[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.5]]


def _post(raw, client, agent_id, content, partial=False):
    return raw.post(f"/v1/agents/{agent_id}/events", content=content,
                    headers={**auth(client), "Content-Type": ARROW_STREAM},
                    params={"partial": "true"} if partial else None)


def _bodies():
    nan = [row[:] for row in GOOD]
    nan[1][2] = float("nan")
    zero = [row[:] for row in GOOD]
    zero[2] = [0.0] * DIM
    holes = pa.FixedSizeListArray.from_arrays(
        pa.array([1.0, 0.0, 0.0, 0.0, 1.0, None, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], pa.float32()), DIM)
    good = _stream(pa.table({"input": _fixed(GOOD), "target": ["a", "b", "c"]}))
    return [
        # (body, status, field, rejected indices)
        (_stream(pa.table({"input": pa.array(["x", "y", "z"]), "target": ["a", "b", "c"]})),
         400, "input", None),                                          # wrong schema
        (_stream(pa.table({"input": _fixed(GOOD)})), 400, "target", None),  # no target column
        (_stream(pa.table({"input": _fixed(GOOD), "target": [1, 2, 3]})), 400, "target", None),
        (_stream(pa.table({"input": _fixed(np.ones((3, 3)), size=3), "target": ["a", "b", "c"]})),
         400, "input", None),                                          # wrong list size
        (_stream(pa.table({"input": pa.array([[1.0, 0, 0, 0], [1.0, 2.0], [0, 0, 1.0, 0]],
                                             pa.list_(pa.float64())),
                           "target": ["a", "b", "c"]})), 422, "events[1].input", [1]),
        (_stream(pa.table({"input": _fixed(nan), "target": ["a", "b", "c"]})),
         422, "events[1].input[2]", [1]),                              # NaN
        (_stream(pa.table({"input": _fixed(zero), "target": ["a", "b", "c"]})),
         422, "events[2].input", [2]),                                 # a zero vector
        (_stream(pa.table({"input": holes, "target": ["a", "b", "c"]})),
         422, "events[1].input[1]", [1]),                              # a null number
        (_stream(pa.table({"input": _fixed(GOOD), "target": ["a", None, "c"]})),
         422, "events[1].target", [1]),                                # null target
        (_stream(pa.table({"input": _fixed(GOOD), "target": ["a", "b", "c"],
                           "beta": [0.5, 1.5, None]})), 422, "events[1].beta", [1]),
        (_stream(pa.table({"input": _fixed(GOOD), "target": ["a", "b", "c"],
                           "ts": ["2024-01-01", "yesterday", None]})), 422, "events[1].ts", [1]),
        (good[: len(good) // 2], 400, "body", None),                   # truncated stream
        (b"", 400, "body", None),
        (b"not arrow at all", 400, "body", None),
    ]


@pytest.mark.parametrize("case", range(len(_bodies())))
def test_bad_arrow_bodies_name_row_and_column_and_change_nothing(raw, tenant_a, agent, case):
    body, status, field, rows = _bodies()[case]
    before = counts(tenant_a, agent.id)
    r = _post(raw, tenant_a, agent.id, body)
    assert r.status_code == status, r.text
    err = r.json()
    assert err["error"]["field"] == field, err
    if rows is not None:
        assert [x["index"] for x in err["rejected"]] == rows
        assert all(x["error"].startswith(f"events[{x['index']}]") for x in err["rejected"])
    assert counts(tenant_a, agent.id) == before


def test_partial_arrow_batch_accepts_the_valid_rows(raw, tenant_a, agent):
    rows = [row[:] for row in GOOD]
    rows[1][0] = float("inf")
    body = _stream(pa.table({"input": _fixed(rows), "target": ["a", "b", "c"],
                             "id": ["p0", "p1", "p2"]}))
    r = _post(raw, tenant_a, agent.id, body, partial=True)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["accepted"] == 2 and out["duplicates"] == 0
    assert [x["index"] for x in out["rejected"]] == [1]
    assert out["rejected"][0]["error"].startswith("events[1].input[0]")
    r = _post(raw, tenant_a, agent.id, body, partial=True)  # again: the two are duplicates
    assert r.json()["duplicates"] == 2


def _reference(agent, events, drop=()):
    cfg = AgentConfig.from_dict({"kind": agent.kind, "encoder": agent.encoder, "dim": agent.dim,
                                 "memory": agent.memory})
    ref = MemoryAgent(cfg)
    keep = [e for e in events if e["id"] not in drop]
    X = np.array([np.asarray(e["input"], dtype=np.float64) for e in keep])  # (n, dim)
    ref.learn_many(X, [e["target"] for e in keep], betas=[e.get("beta") for e in keep],
                   delta_dtype="float64")
    return ref.checksum()


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_json_ndjson_and_arrow_give_bit_identical_states(tenant_a, dt):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, DIM)).astype(dt)
    events = [{"id": f"e{i}", "input": X[i], "target": f"L{int(np.argmax(X[i]))}",
               **({"beta": 0.25 + 0.5 * (i % 2)} if i % 3 == 0 else {})} for i in range(30)]
    as_lists = [{**e, "input": [float(x) for x in e["input"]]} for e in events]
    agents = {fmt: tenant_a.create_agent(f"fmt-{fmt}-{dt.__name__}", kind="classifier",
                                         encoder="none", dim=DIM) for fmt in ("json", "ndjson", "arrow")}
    tenant_a.ingest(agents["json"].id, as_lists)
    tenant_a.ingest_ndjson(agents["ndjson"].id, "".join(json.dumps(e) + "\n" for e in as_lists))
    body = arrow_body(events)
    assert ipc.open_stream(body).schema.field("input").type.value_type == pa.from_numpy_dtype(dt)
    tenant_a.ingest_arrow(agents["arrow"].id, body)
    sums = {}
    for fmt, a in agents.items():
        wait_applied(tenant_a, a.id, 30)
        vs = tenant_a.versions(a.id).versions
        assert [v.version for v in vs] == [1, 0]  # one micro-batch each: the same boundaries
        sums[fmt] = vs[0].checksum
    assert sums["json"] == sums["ndjson"] == sums["arrow"] == _reference(agents["json"], events)
    gone = ["e4", "e17"]
    after = {fmt: tenant_a.versions(a.id).versions[0].checksum if
             tenant_a.forget(a.id, gone).version else None for fmt, a in agents.items()}
    assert len(set(after.values())) == 1
    assert after["arrow"] == _reference(agents["json"], events, drop=gone)


def test_text_agents_take_a_string_input_column(raw, tenant_a):
    a = tenant_a.create_agent("arrow-text", kind="classifier", encoder="minilm",
                              memory={"rule": "delta", "beta": 1.0})
    body = _stream(pa.table({"input": ["book a flight", "play some jazz"],
                             "target": ["travel", "music"], "id": ["t0", "t1"]}))
    r = _post(raw, tenant_a, a.id, body)
    assert r.status_code == 202 and r.json()["accepted"] == 2, r.text
    wait_applied(tenant_a, a.id, 2)
    got = tenant_a.predict(a.id, ["book a flight", "play some jazz"]).predictions
    assert [p.label for p in got] == ["travel", "music"]
    r = _post(raw, tenant_a, a.id, _stream(pa.table({"input": _fixed(GOOD),
                                                     "target": ["a", "b", "c"]})))
    assert r.status_code == 400 and r.json()["error"]["field"] == "input"
    assert tenant_a.get_agent(a.id).events_received == 2
