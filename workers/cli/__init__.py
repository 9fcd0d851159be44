"""The ``deltamem`` command line: ``main`` (parsing, error policy), ``commands``, ``files`` (event
files), ``tables``, ``demo``."""
