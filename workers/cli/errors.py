"""The CLI's user error and exit statuses (shared by the parser, the commands and the demo)."""

from __future__ import annotations

EXIT_USER_ERROR = 1
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user error: printed as one line, exit status 1."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
