"""Errors raised for bad input: each names the field and what was expected.

Examples
--------
>>> check_text("café", "name")
'café'
>>> check_text("a\\ud800", "name")
Traceback (most recent call last):
...
agent.errors.InputError: name: not valid Unicode text: a lone UTF-16 surrogate '\\ud800' at character 1
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def rebuild_error(cls: type[BaseException], args: tuple[Any, ...],
                  state: dict[str, Any]) -> BaseException:
    """The exception ``cls`` with ``args`` and attributes ``state``, without calling its
    ``__init__`` (whose signature differs from ``args``): how errors cross Ray and pickle."""
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class PicklableError(Exception):
    """An exception that pickles with its attributes whatever its constructor takes, so it
    crosses Ray as itself and the caller catches the real type."""

    def __reduce__(self) -> tuple[Any, ...]:
        return rebuild_error, (type(self), self.args, dict(self.__dict__))


class InputError(PicklableError, ValueError):
    """Bad input. ``field`` names the offending field (dotted path, e.g. ``events[3].input``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def check_text(value: str, field: str, what: str = "text") -> str:
    """``value`` when it is valid Unicode text, else :class:`InputError` naming ``field``.

    JSON can spell a lone UTF-16 surrogate (``"\\ud800"``) and Python parses it into a
    ``str`` that no UTF-8 encoder accepts, so a database, a log line or a JSON answer holding
    it fails. A NUL character (U+0000) is refused too: PostgreSQL text cannot hold it, so a
    string with one would be accepted on SQLite and fail on PostgreSQL. Every user-supplied
    string that is kept or echoed goes through this check.

    Parameters
    ----------
    value : str
        The string to check (callers have checked it is a ``str``).
    field : str
        The field the error names.
    what : str, optional
        What ``value`` is, for the message (e.g. ``"key"`` for an object's key).

    Returns
    -------
    str
        ``value`` itself.
    """
    nul = value.find("\x00")  # PostgreSQL text cannot hold U+0000: no database stores it
    if nul >= 0:
        raise InputError(field, f"not storable {what}: a NUL character (U+0000) at character "
                         f"{nul}")
    if not value.isascii():  # the common case costs one C-level scan
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:  # UTF-8 encodes every code point but surrogates
            raise InputError(field, f"not valid Unicode {what}: a lone UTF-16 surrogate "
                             f"{value[exc.start]!r} at character {exc.start}") from None
    return value


def texts_ok(values: Sequence[Any], max_chars: int, required: bool = False) -> bool:
    """Whether every value is a non-blank ``str`` of at most ``max_chars`` characters that
    :func:`check_text` accepts (None allowed unless ``required``), checked at once: one scan
    of them all joined finds a NUL or a lone surrogate anywhere. False says only that some
    value fails; checking them one by one names it.

    >>> texts_ok(["a", None, "b c"], 10), texts_ok(["a", " "], 10), texts_ok(["a\\x00"], 10)
    (True, False, False)
    """
    given = [v for v in values if v is not None]
    if required and len(given) < len(values):
        return False
    if not given:
        return True
    if set(map(type, given)) != {str} or any(map(str.isspace, given)):
        return False
    lengths = list(map(len, given))
    if min(lengths) < 1 or max(lengths) > max_chars:
        return False
    try:
        check_text("".join(given), "values")
    except InputError:
        return False
    return True
