"""Fuzzing the parsers user files and bodies go through (Hypothesis, bounded examples):

- ``workers.cli.files.read_events`` (``deltamem ingest``): on any text, JSONL or CSV, it yields
  ``(line, event)`` pairs with an id, or raises ``FileError`` naming ``file:line``; nothing else;
- ``workers.http.ndjson.parse_ndjson`` / ``loads_strict`` (request bodies): on any bytes, a value, a
  per-line error with its line number, or ``MalformedJSON``; never another exception, never NaN;
- ``deltamem ingest`` end to end against the running service on fuzzed files: exit 0 or 1 with
  one line ``error: FILE:LINE: ...`` (no traceback), and a rejected file changes nothing.
"""

from __future__ import annotations

import io
import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.service_fixtures import counts, vec_events, wait_applied
from workers.cli.files import FileError, read_events
from workers.cli.main import main
from workers.http.ndjson import MalformedJSON, loads_strict, parse_ndjson

FAST = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(max_examples=12, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))

GOOD_LINE = st.builds(lambda i, x, t: json.dumps({"id": f"f{i}", "input": x, "target": t}),
                      st.integers(0, 99), st.lists(st.floats(-5, 5), min_size=4, max_size=4),
                      st.sampled_from(["a", "b"]))
JUNK_LINE = st.one_of(st.text(max_size=30), st.sampled_from(
    ['{"input": NaN, "target": "a"}', '{"input": [1,2', "[1, 2, 3]", '"just a string"', "null",
     '{"input": Infinity}', "\ufeff{}", "{" * 50, '{"a": 1e400}', "\x00", ",,,", "x0,x1"]))
LINES = st.lists(st.one_of(GOOD_LINE, JUNK_LINE), min_size=0, max_size=8)


def _finite(v) -> bool:
    if isinstance(v, float):
        return math.isfinite(v)
    if isinstance(v, list):
        return all(_finite(x) for x in v)
    if isinstance(v, dict):
        return all(_finite(x) for x in v.values())
    return True


@FAST
@given(lines=LINES, fmt=st.sampled_from(["jsonl", "csv"]), vector=st.booleans())
def test_read_events_yields_events_or_a_located_file_error(lines, fmt, vector):
    text = "\n".join(lines)
    try:
        got = list(read_events(io.StringIO(text), "f.txt", fmt=fmt, vector=vector))
    except FileError as e:
        assert str(e).startswith(f"f.txt:{e.line}: ") and 1 <= e.line <= max(1, text.count("\n") + 1)
        return
    seen_lines = [n for n, _ in got]
    assert seen_lines == sorted(set(seen_lines))
    for _, ev in got:
        assert isinstance(ev, dict) and ev["id"] not in (None, "")
        if fmt == "jsonl":
            assert _finite(ev), ev


@FAST
@given(lines=st.lists(GOOD_LINE, min_size=1, max_size=8), blanks=st.lists(st.booleans(), max_size=8))
def test_jsonl_ids_are_stable_and_lines_counted_with_blanks(lines, blanks):
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i < len(blanks) and blanks[i]:
            out.append("   ")
    text = "\n".join(out) + "\n"
    first = list(read_events(io.StringIO(text), "f.jsonl"))
    again = list(read_events(io.StringIO(text), "f.jsonl"))
    assert first == again and len(first) == len(lines)
    for (n, ev), raw in zip(first, lines, strict=True):
        assert out[n - 1] == raw and ev == json.loads(raw)


@FAST
@given(data=st.one_of(st.binary(max_size=200), LINES.map(lambda ls: "\n".join(ls).encode()),
                      st.text(max_size=100).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_ndjson_and_strict_json_never_raise_anything_else(data):
    try:
        lines = parse_ndjson(data)
    except MalformedJSON:
        lines = None
    if lines is not None:
        text_lines = data.decode("utf-8-sig").split("\n")
        assert [ln.line for ln in lines] == sorted({ln.line for ln in lines})
        for ln in lines:
            assert 1 <= ln.line <= len(text_lines) and text_lines[ln.line - 1].strip()
            assert ln.error is None or ln.value is None
            if ln.error is None:
                assert _finite(ln.value)
            else:
                assert ln.error.startswith(f"line {ln.line}: ")
    try:
        assert _finite(loads_strict(data))
    except MalformedJSON as e:
        assert str(e)


@pytest.fixture(scope="module")
def cli_agent(tenant_a):
    a = tenant_a.create_agent("fuzz-cli", kind="classifier", encoder="none", dim=4)
    tenant_a.ingest(a.id, vec_events(4, prefix="seed"))
    wait_applied(tenant_a, a.id, 4)
    return a


def test_cli_ingest_on_fuzzed_files(api, tenant_a, cli_agent, tmp_path_factory, capsys):
    results = []

    @SLOWER
    @given(lines=LINES)
    def run(lines):
        path = tmp_path_factory.mktemp("fz") / "events.jsonl"
        path.write_text("\n".join(lines) + "\n")
        before = counts(tenant_a, cli_agent.id)
        code = main(["ingest", cli_agent.id, str(path), "--url", api.url, "--key",
                     tenant_a.api_key, "--batch-size", "1000", "--no-progress"])
        out, err = capsys.readouterr()
        assert code in (0, 1), (code, err)
        assert "Traceback" not in err and "Traceback" not in out
        if code == 1:
            assert err.count("\n") == 1 and err.startswith("error: "), err
            assert counts(tenant_a, cli_agent.id) == before, "a rejected file changed the agent"
        results.append(code)

    run()
    assert 1 in results  # the junk lines were exercised
