"""benchmarks/http_edge.py runs (tiny sizes) and prints its table: every row timed, positive."""

from __future__ import annotations

from benchmarks.http_edge import main


def test_http_edge_prints_a_row_per_measurement(capsys):
    assert main(["--events", "20", "--dim", "4", "--repeat", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and "ingest 20 events" in lines[1] and "predict" in lines[3]
    for line in lines[1:]:
        lo, med = (float(x) for x in line.split()[-2:])
        assert 0 < lo <= med
