"""The HTTP socket is bound before Ray starts (Ray's processes open ports of their own)."""

from __future__ import annotations

import socket

import pytest

from workers.http_server import HttpServer
from workers.runtime import start
from workers.settings import Settings


def test_a_taken_port_is_refused_before_anything_starts(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        s = Settings(database_url=f"sqlite:///{tmp_path / 'a.db'}", port=port, admin_key="adm")
        with pytest.raises(RuntimeError, match="port taken"):
            start(s)


def test_the_bound_socket_listens_on_the_asked_port_and_is_not_inherited():
    sock = HttpServer.bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0 and not sock.get_inheritable()
        with pytest.raises(RuntimeError, match="port taken"):
            HttpServer.bind("127.0.0.1", port)
    finally:
        sock.close()
