"""Bearer-key authentication of the HTTP app.

Tenant routes take ``Authorization: Bearer <tenant API key>``; ``POST /v1/tenants`` takes the
admin key (``DELTAMEM_ADMIN_KEY``). A missing or unknown key is 401; a tenant key where the admin
key is needed, or any key while no admin key is configured, is 403. Keys never reach a log or
an error message.

Examples
--------
>>> bearer_token("Bearer abc"), bearer_token("bearer  abc "), bearer_token("Basic abc")
('abc', 'abc', None)
"""

from __future__ import annotations

import hmac

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


class Auth:
    """Checks the bearer key of a request against the service (tenants) or the settings (admin)."""

    def __init__(self, service: ServiceAPI, settings: Settings) -> None:
        self.service = service
        self.settings = settings

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
        tenant = await run_in_threadpool(self.service.authenticate, token)
        if not tenant:
            raise _unauthorized("invalid API key")
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
