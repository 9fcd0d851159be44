"""The schema, as typed SQLAlchemy 2.0 models (Alembic revisions are its only DDL source).

- :mod:`.columns`: column types and sizes, UTC datetimes, the declarative :class:`Base`;
- :mod:`.agents`: tenants, API keys, agents, the guard's actions;
- :mod:`.versions`: versions, their deltas and snapshots, the answers an agent has seen;
- :mod:`.events`: the event log;
- :mod:`.jobs`: the scheduler's job store and lease.

``versions``, ``deltas``, ``snapshots``/``snapshot_layers`` and ``answers`` are append-only,
except that retention deletes ``deltas`` rows and marks the versions it thins, and a forget
deletes the deltas and snapshots of the versions it erases (their states held a forgotten
event). ``events`` rows gain ``forgotten_version``/``rejected`` marks (a commit marks the events
it applied by the seq range on its version row: :mod:`storage.repository.applied`); a
forget erases their payloads and inputs, and the opt-in event retention deletes old rows a
snapshot covers (:mod:`storage.repository.event_retention`).

Arrays are stored as raw bytes (``data``) + ``dtype`` + shape columns + ``sha256``
(see :mod:`storage.codec`).
"""

from storage.models.agents import AGENT_KEYS, Agent, ApiKey, GuardAction, Tenant, agent_key_of
from storage.models.columns import (
    DELTA_FORMS,
    DTYPE_LEN,
    EVENT_ID_LEN,
    ID_LEN,
    KIND_LEN,
    LAYER_LEN,
    NAME_LEN,
    NAMING,
    SHA_LEN,
    VERSION_KINDS,
    VERSION_STATUSES,
    Base,
    BigId,
    UTCDateTime,
    UTCMicros,
    VersionNum,
    as_utc,
    utcnow,
)
from storage.models.events import Event, EventInputs, replay_dict
from storage.models.jobs import SchedulerJob, SchedulerLease
from storage.models.versions import Answer, DeltaRow, Snapshot, SnapshotLayer, Version

__all__ = [
    "AGENT_KEYS", "DELTA_FORMS", "DTYPE_LEN", "EVENT_ID_LEN", "ID_LEN", "KIND_LEN", "LAYER_LEN",
    "NAME_LEN", "NAMING", "SHA_LEN", "VERSION_KINDS", "VERSION_STATUSES", "Agent", "Answer",
    "ApiKey", "Base", "BigId", "DeltaRow", "Event", "EventInputs", "GuardAction", "SchedulerJob",
    "SchedulerLease", "Snapshot", "SnapshotLayer", "Tenant", "UTCDateTime", "UTCMicros",
    "Version", "VersionNum", "agent_key_of", "as_utc", "replay_dict", "utcnow",
]
