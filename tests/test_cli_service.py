"""The ``deltamem`` client commands against the real running service."""

from __future__ import annotations

import json

import pytest

from tests.service_fixtures import ADMIN_KEY, vec_events, wait_applied
from workers.cli.main import main


@pytest.fixture()
def env(api, tenant_a, monkeypatch):
    monkeypatch.setenv("DELTAMEM_URL", api.url)
    monkeypatch.setenv("DELTAMEM_API_KEY", tenant_a.api_key)
    monkeypatch.delenv("DELTAMEM_ADMIN_KEY", raising=False)
    return tenant_a


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_agents_create_list_show(env, capsys):
    code, out, _ = run(capsys, "agents", "create", "cli-agent", "--encoder", "none", "--dim", "4",
                       "--rule", "rls", "--json")
    assert code == 0
    agent = json.loads(out)
    assert agent["memory"]["rule"] == "rls" and agent["dim"] == 4
    code, out, _ = run(capsys, "agents", "list")
    assert code == 0 and agent["id"] in out and "cli-agent" in out
    code, out, _ = run(capsys, "agents", "show", agent["id"])
    assert code == 0 and json.loads(out)["id"] == agent["id"]
    code, _, err = run(capsys, "agents", "create", "bad", "--encoder", "none")
    assert code == 1 and err.strip() == 'error: dim: required (a positive integer) when encoder is "none" (HTTP 422)'


def test_agents_create_takes_more_settings_as_json(env, capsys):
    """``--config``: the settings without flags of their own (guard, standardize, ...)."""
    code, out, _ = run(capsys, "agents", "create", "guarded", "--encoder", "none", "--dim", "4",
                       "--config", '{"guard": {"window": 50, "action": "rollback"}, '
                       '"standardize": true}', "--json")
    assert code == 0, out
    agent = json.loads(out)
    assert agent["guard"]["window"] == 50 and agent["guard"]["action"] == "rollback"
    assert agent["standardize"] is True
    for bad, said in [("{", "error: --config: not JSON"), ("[1]", "error: --config: expected a "
                      "JSON object"), ('{"dim": 3}', "error: --config: 'dim' has its own flag"),
                      ('{"guard": {"window": 2}}', "error: guard.window: expected an integer")]:
        code, _, err = run(capsys, "agents", "create", "bad-config", "--encoder", "none", "--dim",
                           "4", "--config", bad)
        assert code == 1 and err.startswith(said), err
    code, out, _ = run(capsys, "agents", "list")
    assert "guarded" in out and "bad-config" not in out


def test_ingest_is_resumable_and_names_bad_lines(env, capsys, tmp_path):
    agent = env.create_agent("cli-ingest", kind="classifier", encoder="none", dim=4)
    events = [{k: v for k, v in e.items() if k != "id"} for e in vec_events(9)]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events[:6]))
    code, out, _ = run(capsys, "ingest", agent.id, str(path), "--batch-size", "4", "--no-progress")
    assert code == 0 and out.strip() == "6 accepted, 0 duplicates, 0 rejected"
    path.write_text("".join(json.dumps(e) + "\n" for e in events))  # the file grew: a re-run
    code, out, _ = run(capsys, "ingest", agent.id, str(path), "--batch-size", "4", "--no-progress")
    assert code == 0 and out.strip() == "3 accepted, 6 duplicates, 0 rejected"
    a = wait_applied(env, agent.id, 9)
    assert a.events_received == 9

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(events[0]) + "\n" + json.dumps({"input": [0, 0, 0, 0], "target": "x"}) + "\n")
    code, _, err = run(capsys, "ingest", agent.id, str(bad), "--no-progress")
    assert code == 1 and err.startswith("error: bad.jsonl:2: ") and err.count("\n") == 1
    assert env.get_agent(agent.id).events_received == 9
    code, _, err = run(capsys, "ingest", agent.id, str(tmp_path / "missing.jsonl"))
    assert code == 1 and "No such file" in err


def test_ingest_csv_vectors(env, capsys, tmp_path):
    agent = env.create_agent("cli-csv", kind="classifier", encoder="none", dim=4)
    rows = ["x0,x1,x2,x3,target"] + [",".join(map(str, e["input"])) + "," + e["target"]
                                     for e in vec_events(5)]
    path = tmp_path / "v.csv"
    path.write_text("\n".join(rows) + "\n")
    code, out, _ = run(capsys, "ingest", agent.id, str(path), "--no-progress")
    assert code == 0 and out.startswith("5 accepted")
    assert wait_applied(env, agent.id, 5).events_received == 5


@pytest.mark.parametrize("suffix", [".parquet", ".arrow", ".arrows"])
def test_ingest_parquet_and_arrow_files(env, capsys, tmp_path, suffix):
    """A table file is read directly and sent as Arrow; the state equals the JSONL ingest's;
    a bad row is named by its row number and changes nothing."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    def write(table, path):
        if suffix == ".parquet":
            pq.write_table(table, path)
        else:
            with pa.OSFile(str(path), "wb") as sink, \
                    (ipc.new_file if suffix == ".arrow" else ipc.new_stream)(sink, table.schema) as w:
                w.write_table(table)

    events = vec_events(7)
    X = np.array([e["input"] for e in events], dtype=np.float32)  # (7, 4)
    table = pa.table({"input": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 4),
                      "target": [e["target"] for e in events]})
    both = {}
    for how in ("table", "jsonl"):
        agent = env.create_agent(f"cli-{how}{suffix}", kind="classifier", encoder="none", dim=4)
        path = tmp_path / f"ev{suffix}"
        if how == "table":
            write(table, path)
        else:
            path = tmp_path / "ev.jsonl"
            path.write_text("".join(json.dumps({"input": [float(x) for x in X[i]],
                                                "target": e["target"]}) + "\n"
                                    for i, e in enumerate(events)))
        code, out, _ = run(capsys, "ingest", agent.id, str(path), "--no-progress")
        assert code == 0 and out.strip() == "7 accepted, 0 duplicates, 0 rejected"
        wait_applied(env, agent.id, 7)
        both[how] = (agent.id, env.versions(agent.id).versions[0].checksum)
    assert both["table"][1] == both["jsonl"][1]
    code, out, _ = run(capsys, "ingest", both["table"][0], str(tmp_path / f"ev{suffix}"),
                       "--no-progress")
    assert code == 0 and out.strip() == "0 accepted, 7 duplicates, 0 rejected"  # ids: file:row
    X[2, 1] = np.nan
    bad = table.set_column(0, "input", pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), 4))
    write(bad, tmp_path / f"bad{suffix}")
    code, _, err = run(capsys, "ingest", both["table"][0], str(tmp_path / f"bad{suffix}"),
                       "--no-progress")
    assert code == 1 and err.startswith(f"error: bad{suffix}:3: ") and "input[1]" in err
    assert env.get_agent(both["table"][0]).events_received == 7


def test_predict_versions_rollback_forget_fork(env, capsys):
    agent = env.create_agent("cli-story", kind="classifier", encoder="none", dim=4)
    env.ingest(agent.id, [{"id": "a", "input": [1, 0, 0, 0], "target": "first", "beta": 1.0}])
    v1 = wait_applied(env, agent.id, 1).head_version
    env.ingest(agent.id, [{"id": "b", "input": [1, 0, 0, 0], "target": "second", "beta": 1.0}])
    v2 = wait_applied(env, agent.id, 2).head_version

    code, out, _ = run(capsys, "predict", agent.id, "[1, 0, 0, 0]", "--min-version", str(v2),
                       "--top-k", "2")
    assert code == 0 and "second" in out and f"version {v2}" in out
    code, out, _ = run(capsys, "predict", agent.id, "[1, 0, 0, 0]", "--version", str(v1), "--json")
    assert code == 0 and json.loads(out)["predictions"][0]["label"] == "first"

    code, out, _ = run(capsys, "versions", agent.id)
    assert code == 0 and "create" in out and "checksum" in out.splitlines()[1]
    code, out, _ = run(capsys, "rollback", agent.id, str(v1))
    assert code == 0 and f"state of version {v1}" in out
    code, out, _ = run(capsys, "fork", agent.id, "cli-child", "--version", str(v2))
    assert code == 0 and "cli-child" in out
    code, out, _ = run(capsys, "forget", agent.id, "a")
    assert code == 0 and "forgot 1 event" in out
    # v2 holds the forgotten event: forking from it would bring it back, so it is refused
    code, _, err = run(capsys, "fork", agent.id, "cli-child-2", "--version", str(v2))
    assert code == 1 and "(HTTP 409)" in err and err.count("\n") == 1
    code, _, err = run(capsys, "rollback", agent.id, "9999")
    assert code == 1 and err.startswith("error: ") and "(HTTP 404)" in err


def test_tenants_create_needs_admin_key(env, capsys, monkeypatch):
    code, _, err = run(capsys, "tenants", "create", "cli-tenant")
    assert code == 1 and err.startswith("error: admin_key:")
    code, out, _ = run(capsys, "tenants", "create", "cli-tenant", "--admin-key", ADMIN_KEY)
    assert code == 0 and "api key" in out
    key = out.strip().split()[-1]
    monkeypatch.setenv("DELTAMEM_API_KEY", key)
    code, out, _ = run(capsys, "agents", "list")
    assert code == 0 and len(out.strip().splitlines()) == 2  # header and rule: no agents yet
    code, _, err = run(capsys, "tenants", "create", "x", "--admin-key", "wrong")
    assert code == 1 and "(HTTP 403)" in err and "wrong" not in err
