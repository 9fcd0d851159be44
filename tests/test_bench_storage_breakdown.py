"""benchmarks/storage_breakdown.py, tiny: the database is filled as the service fills it (every
event stored and applied), the SQLite split accounts for every page of the file, and the
command prints its tables (PostgreSQL too when a server is configured)."""

from __future__ import annotations

import os

from benchmarks import storage_breakdown
from storage.engine import Database
from storage.migrate import upgrade


def test_sqlite_breakdown_accounts_for_every_page(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"
    upgrade(url)
    db = Database(url)
    try:
        n = storage_breakdown.build(db, agents=2, per_agent=700, request=300, batch=512)
        rows, facts = storage_breakdown.sqlite_breakdown(db)
        with db.engine.connect() as c:
            applied = c.exec_driver_sql("SELECT sum(events_applied) FROM agents").scalar()
        assert n == facts["events"] == applied == 1400
        # the inputs as stored: byte planes, the top one coded (storage/planes.py), so
        # between the three raw planes and the raw bytes
        assert 1400 * 384 * 3 < facts["input_data"] < 1400 * 384 * 4
        used = sum(size for _, size, _ in rows)
        assert used == (facts["pages"] - facts["free_pages"]) * facts["page_size"]
        assert all(0 <= unused <= size for _, size, unused in rows)
        assert storage_breakdown.point_reads(db, 5) > 0
    finally:
        db.dispose()


def test_the_command_prints_its_tables(capsys):
    args = ["--agents", "2", "--per-agent", "300", "--request", "300", "--reads", "3"]
    if not os.environ.get("DELTAMEM_TEST_POSTGRES_URL"):
        args.append("--sqlite-only")
    assert storage_breakdown.main(args) == 0
    out = capsys.readouterr().out
    assert "SQLite, 600 events" in out and "| events |" in out and "**all**" in out
    if "--sqlite-only" not in args:
        assert "PostgreSQL, 600 events" in out


def test_rounds_fill_again_with_new_ids_and_measure_each(tmp_path):
    """Each round stores and applies ``per_agent`` new events an agent; ``after_round`` sees
    every round, and the bytes used grow by what the round stored."""
    url = f"sqlite:///{tmp_path / 'r.db'}"
    upgrade(url)
    db = Database(url)
    try:
        sizes = [storage_breakdown.used_bytes(db)]
        n = storage_breakdown.build(db, agents=2, per_agent=300, request=200, batch=128, rounds=3,
                                    after_round=lambda r: sizes.append(storage_breakdown.used_bytes(db)))
        with db.engine.connect() as c:
            applied = c.exec_driver_sql("SELECT sum(events_applied) FROM agents").scalar()
            ids = c.exec_driver_sql("SELECT count(DISTINCT client_id) FROM events").scalar()
        assert n == applied == ids == 1800
        assert len(sizes) == 4 and all(b - a >= 600 * 384 * 4 for a, b in zip(sizes, sizes[1:], strict=False))
    finally:
        db.dispose()


def test_the_command_prints_the_growth_of_each_round(capsys):
    args = ["--agents", "2", "--per-agent", "200", "--request", "200", "--reads", "0", "--rounds", "2"]
    if not os.environ.get("DELTAMEM_TEST_POSTGRES_URL"):
        args.append("--sqlite-only")
    assert storage_breakdown.main(args) == 0
    out = capsys.readouterr().out
    assert "sqlite: growth per event of each round of 400 events: " in out
    if "--sqlite-only" not in args:
        assert "postgresql: growth per event of each round of 400 events: " in out
