"""The CLI's argument parsing, help texts, file reading and one-line error policy."""

from __future__ import annotations

import io
import socket

import pytest

from workers.cli.files import FileError, batches, detect_format, read_events, source_name
from workers.cli.main import build_parser, main

SUBCOMMANDS = [["serve"], ["demo"], ["ingest"], ["predict"], ["versions"], ["rollback"],
               ["forget"], ["fork"], ["agents", "list"], ["agents", "create"], ["agents", "show"],
               ["tenants", "create"], ["tenants", "list"], ["keys", "create"], ["keys", "revoke"], ["db", "upgrade"], ["db", "downgrade"],
               ["db", "current"], ["bench"], ["eval"], ["train-adapter"]]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help_with_an_example(words, capsys):
    with pytest.raises(SystemExit) as e:  # train-adapter hands every word to its own parser
        (main if words == ["train-adapter"] else build_parser().parse_args)([*words, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and "deltamem " in out.split("example:")[1]


def test_parse_client_commands():
    p = build_parser()
    a = p.parse_args(["ingest", "ag", "-", "--batch-size", "7", "--partial", "--url", "http://x:1"])
    assert (a.agent, a.file, a.batch_size, a.partial, a.url) == ("ag", "-", 7, True, "http://x:1")
    a = p.parse_args(["predict", "ag", "one", "two", "--version", "3", "--as-of", "2024-01-01"])
    assert a.inputs == ["one", "two"] and a.version == 3 and a.as_of == "2024-01-01"
    a = p.parse_args(["forget", "ag", "e1", "e2"])
    assert a.event_ids == ["e1", "e2"]
    a = p.parse_args(["serve", "--host", "0.0.0.0", "--port", "9000", "--db", "sqlite:///x.db"])
    assert (a.host, a.port, a.db) == ("0.0.0.0", 9000, "sqlite:///x.db")
    a = p.parse_args(["db", "downgrade", "base", "--db", "sqlite:///y.db"])
    assert (a.action, a.revision, a.db) == ("downgrade", "base", "sqlite:///y.db")
    a = p.parse_args(["bench", "kernels", "--sizes", "64"])
    assert a.suite == "kernels" and a.rest == ["--sizes", "64"]


def test_benchmark_commands_come_from_the_entry_points():
    """``bench``, ``eval`` and ``train-adapter`` are registered by the benchmarks package (group
    ``deltamem.commands``), not imported by the CLI: the parser runs what the entry point gives."""
    from importlib.metadata import entry_points

    from benchmarks import commands
    from workers.cli import commands as cli_commands

    eps = {ep.name: ep.load() for ep in entry_points(group="deltamem.commands")}
    assert eps == {"bench": commands.BENCH, "eval": commands.EVAL,
                   "train-adapter": commands.TRAIN_ADAPTER}
    assert not {"bench", "eval", "train-adapter"} & set(cli_commands.HANDLERS)
    p = build_parser()
    a = p.parse_args(["eval", "lm", "--quick"])
    assert a.plugin_run is commands.EVAL.run and a.rest == ["lm", "--quick"]
    a = p.parse_args(["train-adapter"])
    assert a.plugin_run is commands.TRAIN_ADAPTER.run and a.rest == []
    a = p.parse_args(["train-adapter", "--out", "a.safetensors", "--help"])  # flags first
    assert a.plugin_run is commands.TRAIN_ADAPTER.run and a.rest == ["--out", "a.safetensors", "--help"]


def test_bad_flags_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["rollback", "ag", "not-a-number"])
    assert e.value.code == 2


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_user_errors_are_one_line_without_traceback(capsys, monkeypatch):
    monkeypatch.delenv("DELTAMEM_API_KEY", raising=False)
    assert main(["versions", "ag", "--url", "http://127.0.0.1:1"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: api_key:")
    url = f"http://127.0.0.1:{_closed_port()}"
    assert main(["versions", "ag", "--url", url, "--key", "k", "--timeout", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach" in err and "Traceback" not in err


def test_bad_settings_env_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("DELTAMEM_PORT", "not-a-port")
    assert main(["serve"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: port:") and err.count("\n") == 1


def test_jsonl_ids_are_stable_and_from_line_numbers():
    text = '{"input": "a", "target": "x"}\n\n{"id": "own", "input": "b", "target": "y"}\n'
    first = list(read_events(io.StringIO(text), "f.jsonl"))
    again = list(read_events(io.StringIO(text), "f.jsonl"))
    assert first == again
    assert [(n, ev["id"]) for n, ev in first] == [(1, "f.jsonl:1"), (3, "own")]


@pytest.mark.parametrize("text, line", [('{"input": "a"}\n{bad\n', 2), ('[1, 2]\n', 1),
                                        ('{"input": [NaN]}\n', 1)])
def test_jsonl_errors_name_the_line(text, line):
    with pytest.raises(FileError) as e:
        list(read_events(io.StringIO(text), "f.jsonl"))
    assert e.value.line == line and str(e.value).startswith(f"f.jsonl:{line}:")


def test_csv_text_and_vector_columns():
    text = "id,input,target,beta,ts\n,hello,greet,0.5,2024-01-01\nx9,bye,leave,,\n"
    evs = list(read_events(io.StringIO(text), "t.csv", "csv"))
    assert evs == [(2, {"id": "t.csv:2", "input": "hello", "target": "greet", "beta": 0.5,
                        "ts": "2024-01-01"}),
                   (3, {"id": "x9", "input": "bye", "target": "leave"})]
    vec = list(read_events(io.StringIO('input,target\n"[1, 2]",a\n'), "v.csv", "csv", vector=True))
    assert vec[0][1]["input"] == [1, 2]


@pytest.mark.parametrize("text", ["x0,x2,target\n1,2,a\n", "target\na\n", "x0,target\nzz,a\n",
                                  "x0,target\ninf,a\n", "input,target\nonly-one-cell\n"])
def test_csv_errors(text):
    with pytest.raises(FileError):
        list(read_events(io.StringIO(text), "bad.csv", "csv"))


def test_helpers():
    assert detect_format("a.CSV") == "csv" and detect_format("a.jsonl") == "jsonl"
    assert detect_format("a.txt", "csv") == "csv"
    assert source_name("-") == "stdin" and source_name("/x/y/e.jsonl") == "e.jsonl"
    assert [len(b) for b in batches(iter([(i, {}) for i in range(7)]), 3)] == [3, 3, 1]
