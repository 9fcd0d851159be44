"""``python -m workers.cli``."""

from workers.cli.main import entry

entry()
