"""The one exception of the client: an error answer of the service, or no answer."""

from __future__ import annotations

import json
from typing import Any

import httpx


class DeltamemError(Exception):
    """An error answer from the service (or no answer: ``status`` 0)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 body: Any = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.body = body

    @classmethod
    def from_response(cls, resp: httpx.Response) -> DeltamemError:
        """Map an error response (the ``{"error": {...}}`` body, or anything else) to an error."""
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        err = body.get("error") if isinstance(body, dict) else None
        if isinstance(err, dict):
            return cls(resp.status_code, str(err.get("code", "error")),
                       str(err.get("message", "")), err.get("field"), body)
        text = body if isinstance(body, str) else json.dumps(body)
        return cls(resp.status_code, f"http_{resp.status_code}",
                   (text or resp.reason_phrase)[:500], None, body)
