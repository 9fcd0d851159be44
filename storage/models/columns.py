"""Column types, sizes and the declarative base of the schema: UTC datetimes (as text, or
as integer microseconds on SQLite: :class:`UTCMicros`), 64-bit ids and version numbers,
the constraint naming convention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, MetaData, TypeDecorator
from sqlalchemy.orm import DeclarativeBase

from storage.deltaform import FORMS

ID_LEN = 40  # "ag_" / "tn_" + 32 hex digits
NAME_LEN = 200
EVENT_ID_LEN = 200
LAYER_LEN = 100
SHA_LEN = 64
KIND_LEN = 16
DTYPE_LEN = 8
CODEC_LEN = 16

VERSION_KINDS = ("create", "delta", "snapshot", "rollback", "forget", "fork")
VERSION_STATUSES = ("ok", "thinned", "erased")  # erased: its state held a forgotten event
DELTA_FORMS = FORMS  # how a delta is stored: storage/deltaform.py

# BIGINT primary keys autoincrement everywhere (SQLite needs INTEGER for its rowid alias).
BigId = BigInteger().with_variant(Integer, "sqlite")
# Version numbers: the API takes up to 2**53, so BIGINT (SQLite's INTEGER is 64-bit already).
VersionNum = BigInteger().with_variant(Integer, "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime, field: str = "timestamp", shown: str | None = None) -> datetime:
    """``value`` as an aware UTC datetime (naive = UTC); :class:`InputError` naming ``field``
    when that UTC time is outside what a ``datetime`` holds (e.g. year 9999 at -05:00).
    ``shown``: how the message quotes the value (default: its ISO form)."""
    from agent.errors import InputError

    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InputError(field, f"the timestamp {shown or value.isoformat()} is outside the "
                         "range of UTC times (0001-01-01 to 9999-12-31)") from None


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps naive UTC text).

    Naive datetimes given to the store are taken as UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        value = as_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class UTCMicros(TypeDecorator[datetime]):
    """Like :class:`UTCDateTime`, but kept on SQLite as integer microseconds since 1970 UTC
    (8 bytes instead of 26 characters of text); ``timestamptz`` on PostgreSQL (8 bytes)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Any) -> Any:
        if value is None:
            return None
        value = as_utc(value)
        return (value - _EPOCH) // _MICROSECOND if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return _EPOCH + timedelta(microseconds=int(value))
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}
