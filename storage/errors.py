"""Errors raised by the store.

Every error carries enough to build a clear message (the agent, the version, the ids) and
a ``code`` the HTTP layer can map to a status. Bad *input* (a malformed event, a wrong
argument) raises :class:`agent.errors.InputError`, which names the field.
"""

from __future__ import annotations

from collections.abc import Iterable

from agent.errors import InputError, PicklableError

__all__ = [
    "InputError",
    "StorageError",
    "NotFound",
    "AgentNotFound",
    "VersionNotFound",
    "VersionConflict",
    "StoreBusy",
    "CorruptData",
    "ChecksumMismatch",
    "UnknownEvents",
    "ForgottenEvents",
    "VersionThinned",
]


class StorageError(PicklableError):
    """Base class of store errors. ``code`` is a stable machine-readable name. They pickle
    with their fields, so they cross Ray as themselves."""

    code = "storage_error"


class NotFound(StorageError):
    code = "not_found"


class AgentNotFound(NotFound):
    """No such agent (or it belongs to another tenant: the two are indistinguishable)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id!r} not found")
        self.agent_id = agent_id
        self.field = "agent_id"


class VersionNotFound(NotFound):
    def __init__(self, agent_id: str, version: object, field: str = "version") -> None:
        super().__init__(f"agent {agent_id!r} has no version {version!r}")
        self.agent_id = agent_id
        self.version = version
        self.field = field


class VersionConflict(StorageError):
    """The head moved: the commit's parent is no longer the head (another writer won)."""

    code = "version_conflict"

    def __init__(self, agent_id: str, expected: int | None, actual: int | None) -> None:
        super().__init__(
            f"agent {agent_id!r}: commit on parent version {expected} but the head is {actual}"
        )
        self.agent_id = agent_id
        self.expected = expected
        self.actual = actual


class StoreBusy(StorageError):
    """The database stayed locked longer than the busy timeout; retry later."""

    code = "busy"


class CorruptData(StorageError):
    """Stored bytes do not match their recorded length/checksum, or the stored graph of
    versions is inconsistent. Never returned as a wrong state."""

    code = "corrupt_data"

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"corrupt data in {what}: {reason}")
        self.what = what
        self.reason = reason


class ChecksumMismatch(CorruptData):
    """A rebuilt state's checksum differs from the one recorded when it was committed."""

    code = "checksum_mismatch"

    def __init__(self, agent_id: str, version: int, expected: str, actual: str) -> None:
        super().__init__(
            f"agent {agent_id!r} version {version}",
            f"rebuilt state checksum {actual[:16]}… != recorded {expected[:16]}…",
        )
        self.agent_id = agent_id
        self.version = version
        self.expected = expected
        self.actual = actual


class UnknownEvents(NotFound):
    """Event ids the agent never received (forget changes nothing then)."""

    code = "unknown_events"

    def __init__(self, agent_id: str, ids: Iterable[str]) -> None:
        self.ids = sorted(ids)
        super().__init__(f"agent {agent_id!r} has no events with ids {self.ids}")
        self.agent_id = agent_id
        self.field = "event_ids"


class ForgottenEvents(StorageError):
    """The requested version contains events that were forgotten since: rolling back to it
    or forking from it would bring them back, so it is refused (exact unlearning)."""

    code = "forgotten_events"

    def __init__(self, agent_id: str, version: int, ids: Iterable[str]) -> None:
        self.ids = sorted(ids)
        super().__init__(
            f"agent {agent_id!r} version {version} contains forgotten events {self.ids[:10]}"
            + (" …" if len(self.ids) > 10 else "") if self.ids else
            f"agent {agent_id!r} version {version} held events forgotten since; it was erased"
        )
        self.agent_id = agent_id
        self.version = version
        self.field = "version"


class VersionThinned(StorageError):
    """Retention dropped deltas this version needs; it is listed but can no longer load."""

    code = "version_thinned"

    def __init__(self, agent_id: str, version: int) -> None:
        super().__init__(
            f"agent {agent_id!r} version {version} was thinned by retention "
            "(deltas it needs are gone); it is listed but cannot be loaded"
        )
        self.agent_id = agent_id
        self.version = version
        self.field = "version"
