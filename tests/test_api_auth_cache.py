"""The bearer-key cache of the HTTP app (``workers.http.auth.KeyCache``): bounded, keyed by the
key's SHA-256 (never the key), entries expire after ``auth_cache_s``; a key revoked in the store
is refused over HTTP once its entry expired; unknown keys are never cached."""

from __future__ import annotations

import time

import httpx

from tests.service_fixtures import ADMIN_KEY
from tests.workers_helpers import wait_for
from workers.http.auth import KeyCache


def test_key_cache_bounds_and_expiry():
    c = KeyCache(ttl_s=0.2, max_entries=2)
    d = [KeyCache.digest(f"dm_key{i}") for i in range(3)]
    assert all(len(x) == 64 and "dm_key" not in x for x in d)
    for i, x in enumerate(d):
        c.put(x, f"tn_{i}")
    assert c.get(d[0]) is None and c.get(d[1]) == "tn_1" and c.get(d[2]) == "tn_2"  # LRU bound
    time.sleep(0.25)
    assert c.get(d[1]) is None and c.get(d[2]) is None  # expired
    off = KeyCache(ttl_s=0.0, max_entries=2)
    off.put(d[0], "tn_0")
    assert off.get(d[0]) is None


def test_revoked_key_is_refused_after_the_ttl(api):
    r = httpx.post(f"{api.url}/v1/tenants", json={"name": "revoke-me"},
                   headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=60)
    key = r.json()["api_key"]
    head = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{api.url}/v1/agents", headers=head, timeout=60).status_code == 200
    with api.service.store.tx() as repo:
        assert repo.revoke_key(key)
    t0 = time.monotonic()
    wait_for(lambda: httpx.get(f"{api.url}/v1/agents", headers=head, timeout=60).status_code == 401,
             timeout=api.settings.auth_cache_s + 5, what="revoked key refused")
    assert time.monotonic() - t0 <= api.settings.auth_cache_s + 5
    # an unknown key is refused at once, every time (never cached)
    bad = {"Authorization": "Bearer dm_" + "x" * 43}
    assert [httpx.get(f"{api.url}/v1/agents", headers=bad, timeout=60).status_code
            for _ in range(2)] == [401, 401]
