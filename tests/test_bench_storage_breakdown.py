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
        assert facts["input_data"] == 1400 * 384 * 4
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
