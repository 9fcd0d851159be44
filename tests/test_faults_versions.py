"""Issue 15, class 3: every version number the API takes (0 … 2**53) is valid on both
databases. PostgreSQL kept version numbers in INTEGER columns, so a number between 2**31 and
2**53 was a 500 (``integer out of range``) on predict, rollback, fork and ``versions?before=``
where SQLite answered 404; the columns are BIGINT now (migration 0005)."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from storage.engine import Database
from storage.errors import VersionNotFound
from storage.repository import unit_of_work
from tests.faults_http import Svc, fault_service  # noqa: F401 - the fixture `svc`

BIG = [2**31, 2**31 + 1, 2**40, 2**53]


def test_big_version_numbers_are_404_not_500(svc: Svc) -> None:
    a = svc.agent()
    aid = a["id"]
    svc.send(aid, [{"id": "e0", "input": [1.0, 0.0, 0.0, 0.0], "target": "A"}])
    svc.settled(aid, 1)
    for v in BIG:
        r = svc.predict(aid, [[1.0, 0.0, 0.0, 0.0]], version=v)
        assert r.status_code == 404, (v, r.text)
        assert r.json()["error"]["field"] == "version"
        r = svc.http.post(f"/v1/agents/{aid}/rollback", json={"version": v})
        assert r.status_code == 404, (v, r.text)
        r = svc.http.post(f"/v1/agents/{aid}/fork", json={"name": "f", "version": v})
        assert r.status_code == 404, (v, r.text)
        r = svc.http.get(f"/v1/agents/{aid}/versions", params={"before": v})
        assert r.status_code == 200, (v, r.text)
        assert [x["version"] for x in r.json()["versions"]] == [1, 0]
        r = svc.predict(aid, [[1.0, 0.0, 0.0, 0.0]], min_version=v, wait_ms=0)
        assert r.status_code == 409, (v, r.text)
    assert svc.get(aid)["head_version"] == 1  # nothing changed


def test_version_columns_hold_every_api_version(svc: Svc) -> None:
    a = svc.agent()
    db = Database(svc.url)
    try:
        with unit_of_work(db, write=False) as repo:
            for v in BIG:
                with pytest.raises(VersionNotFound):
                    repo.load_state(a["id"], v)
                assert repo.version_status(a["id"], v) is None
        if svc.backend == "postgres":
            cols = {(t, c["name"]): str(c["type"]) for t in ("agents", "versions", "deltas",
                                                            "snapshots", "events", "answers")
                    for c in inspect(db.engine).get_columns(t)}
            for key in [("agents", "head_version"), ("agents", "base_version"),
                        ("versions", "version"), ("versions", "parent"),
                        ("versions", "state_of"), ("deltas", "version"),
                        ("snapshots", "version"), ("events", "applied_version"),
                        ("events", "forgotten_version"), ("answers", "first_version")]:
                assert cols[key] == "BIGINT", key
    finally:
        db.dispose()
