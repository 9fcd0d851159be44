"""``deltamem db``, ``tenants list`` and ``keys`` on a real SQLite database (no service)."""

from __future__ import annotations

import io

from workers.cli.main import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_keys_and_tenants(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    code, out, _ = run(capsys, "db", "upgrade", "--db", url)
    assert code == 0 and out.startswith("database at revision ") and "(empty)" not in out

    from storage.engine import Database
    from storage.repository import unit_of_work

    db = Database(url)
    with unit_of_work(db) as repo:
        tenant, first_key = repo.create_tenant("acme")
        tenant_id = tenant.id

    code, out, _ = run(capsys, "tenants", "list", "--db", url)
    assert code == 0 and tenant_id in out and "acme" in out
    code, out, _ = run(capsys, "keys", "create", tenant_id, "--db", url)
    assert code == 0
    key = out.strip().split()[-1]
    with unit_of_work(db, write=False) as repo:
        assert repo.tenant_for_key(key).id == tenant_id

    monkeypatch.setattr("sys.stdin", io.StringIO(key + "\n"))
    code, out, _ = run(capsys, "keys", "revoke", "-", "--db", url)
    assert code == 0 and out.strip() == "key revoked"
    with unit_of_work(db, write=False) as repo:
        assert repo.tenant_for_key(key) is None and repo.tenant_for_key(first_key).id == tenant_id
    code, _, err = run(capsys, "keys", "revoke", key, "--db", url)
    assert code == 1 and err == "error: key: unknown or already revoked\n"
    code, _, err = run(capsys, "keys", "create", "tn_missing", "--db", url)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    db.dispose()

    code, out, _ = run(capsys, "db", "downgrade", "base", "--db", url)
    assert code == 0 and "base (empty)" in out
