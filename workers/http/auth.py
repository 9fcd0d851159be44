"""Bearer-key authentication of the HTTP app.

Tenant routes take ``Authorization: Bearer <tenant API key>``; ``POST /v1/tenants`` takes the
admin key (``DELTAMEM_ADMIN_KEY``). A missing or unknown key is 401; a tenant key where the admin
key is needed, or any key while no admin key is configured, is 403. Keys never reach a log or
an error message.

Tenant keys found valid are remembered for ``auth_cache_s`` seconds (default 1; 0 turns it
off), by their SHA-256 (never the key itself), in a bounded LRU (``auth_cache_entries``), so a
stream of requests does not read the key table each time. Invalidation: an entry expires after
``auth_cache_s``, so a key revoked in the store (``deltamem keys revoke``, from any process) is
refused from at most that long after; unknown keys are never cached (a new key works at once).

Examples
--------
>>> bearer_token("Bearer abc"), bearer_token("bearer  abc "), bearer_token("Basic abc")
('abc', 'abc', None)
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import OrderedDict

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from workers.contract import ServiceAPI, ServiceError
from workers.settings import Settings

MAX_KEY_CHARS = 512


def bearer_token(header: str | None) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header, or None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def _unauthorized(message: str) -> ServiceError:
    return ServiceError(401, "unauthorized", message, "authorization")


class KeyCache:
    """SHA-256 of a key → (tenant id, expiry), LRU-bounded; entries live ``ttl_s`` seconds."""

    def __init__(self, ttl_s: float, max_entries: int) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()

    def get(self, digest: str) -> str | None:
        with self._lock:
            item = self._items.get(digest)
            if item is None:
                return None
            if item[1] <= time.monotonic():
                del self._items[digest]
                return None
            self._items.move_to_end(digest)
            return item[0]

    def put(self, digest: str, tenant: str) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[digest] = (tenant, time.monotonic() + self.ttl_s)
            self._items.move_to_end(digest)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)


class Auth:
    """Checks the bearer key of a request against the service (tenants) or the settings (admin)."""

    def __init__(self, service: ServiceAPI, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.keys = KeyCache(settings.auth_cache_s, settings.auth_cache_entries)

    def _token(self, request: Request) -> str:
        header = request.headers.get("authorization")
        token = bearer_token(header)
        if token is None:
            what = "missing" if not header else "malformed"
            raise _unauthorized(f"{what} Authorization header; expected 'Authorization: Bearer <key>'")
        if len(token) > MAX_KEY_CHARS:
            raise _unauthorized("invalid API key")
        return token

    async def tenant(self, request: Request) -> str:
        """The tenant id of the request's key; 401 when missing or unknown."""
        token = self._token(request)
        digest = KeyCache.digest(token)
        cached = self.keys.get(digest)
        if cached is not None:
            return cached
        tenant = await run_in_threadpool(self.service.authenticate, token)
        if not tenant:
            raise _unauthorized("invalid API key")
        self.keys.put(digest, str(tenant))
        return str(tenant)

    def admin(self, request: Request) -> None:
        """Pass only with the admin key; 401 without a key, 403 with another one."""
        token = self._token(request)
        admin = self.settings.admin_key
        if admin is None or not admin.get_secret_value():
            raise ServiceError(403, "forbidden", "creating tenants is disabled: no admin key is "
                               "configured (set DELTAMEM_ADMIN_KEY)", "authorization")
        if not hmac.compare_digest(token.encode(), admin.get_secret_value().encode()):
            raise ServiceError(403, "forbidden", "this route needs the admin key", "authorization")
