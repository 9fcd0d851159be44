"""uvicorn in a thread of this process, serving the FastAPI app on a socket bound beforehand
(``deltamem serve``'s own HTTP server and each of its HTTP workers, workers/http_workers.py)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class HttpServer:
    """uvicorn in a thread of this process, serving the FastAPI app."""

    def __init__(self, app: Any, sock: socket.socket) -> None:
        import uvicorn

        from workers.http.protocol import protocol_class

        cfg = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                             timeout_graceful_shutdown=5,
                             http=protocol_class())  # unparseable requests: JSON 4xx
        self.server = uvicorn.Server(cfg)
        self.sock = sock
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       name="http", daemon=True)

    @staticmethod
    def bind(host: str, port: int) -> socket.socket:
        """The listening socket, bound before Ray starts: Ray's processes open ports of their
        own, so a port chosen free earlier may be taken by the time uvicorn would bind it."""
        import uvicorn

        try:
            sock = uvicorn.Config("deltamem", host=host, port=port,
                                  log_level="warning").bind_socket()
        except SystemExit as e:  # uvicorn exits when the address is in use
            raise RuntimeError(f"cannot listen on {host}:{port} (port taken?)") from e
        sock.set_inheritable(False)  # not into the processes Ray starts
        sock.listen(2048)  # holds the port from now on, whoever else binds with SO_REUSEADDR
        return sock

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start (port taken?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()
