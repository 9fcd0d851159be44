"""``python -m benchmarks.ingest_paths --quick`` runs end to end on the real service, prints a
rate and a ratio for every vector row, and leaves no database behind in the temp directory
(it used to leave ~6 MB a run). Slow: starts Ray and the HTTP service."""

from __future__ import annotations

import re
import tempfile

import pytest

from benchmarks.ingest_paths import main


@pytest.mark.slow
def test_ingest_paths_quick_prints_every_vector_row_and_cleans_up(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert main(["--quick", "--only", "json,arrow,single"]) == 0
    out = capsys.readouterr().out
    for row in ("vector e2e, JSON", "vector e2e, Arrow", "vector e2e, 1 event/request",
                "learn_many on (64, 384) arrays", "storage per event at 384-d"):
        line = next((x for x in out.splitlines() if x.startswith(f"| {row}")), None)
        assert line is not None, (row, out)
        assert re.search(r"\| [\d,]+ (events/s|B )", line), line
    assert list(tmp_path.glob("deltamem-ingest-*")) == []
