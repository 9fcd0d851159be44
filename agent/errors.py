"""Errors raised for bad input: each names the field and what was expected."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input. ``field`` names the offending field (dotted path, e.g. ``events[3].input``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
