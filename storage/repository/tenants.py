"""Tenants and API keys. A key is ``dm_`` + 43 URL-safe characters (256 random bits),
shown once; the store keeps its SHA-256 (a slow hash adds nothing for random keys)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from agent.errors import check_text
from storage.errors import InputError, NotFound
from storage.models import NAME_LEN, ApiKey, Tenant, utcnow

KEY_PREFIX = "dm_"


def hash_key(api_key: str) -> str:
    # surrogatepass: a key holding a lone surrogate hashes (to no stored key) instead of raising
    return hashlib.sha256(api_key.encode("utf-8", "surrogatepass")).hexdigest()


def check_name(name: object, field: str = "name") -> str:
    """A tenant's or agent's name: non-empty valid Unicode text of at most ``NAME_LEN``
    characters; else :class:`InputError` naming ``field``."""
    if not isinstance(name, str) or not name.strip():
        raise InputError(field, "expected a non-empty string")
    if len(name) > NAME_LEN:
        raise InputError(field, f"at most {NAME_LEN} characters, got {len(name)}")
    return check_text(name, field)


class Tenants:
    """Tenants and their API keys."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def create_tenant(self, name: str) -> tuple[Tenant, str]:
        """A new tenant and its first API key (the only time the key is returned)."""
        tenant = Tenant(id="tn_" + uuid.uuid4().hex, name=check_name(name))
        self.session.add(tenant)
        self.session.flush()
        return tenant, self.create_key(tenant.id)

    def create_key(self, tenant_id: str) -> str:
        """Another API key for the tenant."""
        if self.session.get(Tenant, tenant_id) is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.session.add(ApiKey(tenant_id=tenant_id, key_hash=hash_key(key), prefix=key[:10]))
        self.session.flush()
        return key

    def revoke_key(self, api_key: str, when: datetime | None = None) -> bool:
        """Revoke a key; False when it is unknown or already revoked."""
        row = self.session.execute(select(ApiKey).where(
            ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None))).scalar_one_or_none()
        if row is None:
            return False
        row.revoked_at = when or utcnow()
        self.session.flush()
        return True

    def tenant_for_key(self, api_key: str) -> Tenant | None:
        """The tenant owning a valid (unrevoked) key, else None."""
        if not isinstance(api_key, str) or not api_key.startswith(KEY_PREFIX) or len(api_key) > 200:
            return None
        return self.session.execute(
            select(Tenant).join(ApiKey, ApiKey.tenant_id == Tenant.id).where(
                ApiKey.key_hash == hash_key(api_key), ApiKey.revoked_at.is_(None))
        ).scalar_one_or_none()

    def get_tenant(self, tenant_id: str) -> Tenant:
        tenant = self.session.get(Tenant, tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id!r} not found")
        return tenant

    def list_tenants(self) -> list[Tenant]:
        return list(self.session.scalars(select(Tenant).order_by(Tenant.created_at, Tenant.id)))
