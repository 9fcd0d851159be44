"""AllowedMethods matches the routes only for OPTIONS and 405 answers (issue 16: no per-request
route scan), and still lists every method of a path there.

A real Starlette app behind the middleware, served by uvicorn on loopback; the middleware's
route scan (``allowed``) is counted. The DESIGN §7 app's OPTIONS/405 answers are checked over
the running service by tests/test_faults_edges.py.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from workers.http.middleware import AllowedMethods


class CountingAllowed(AllowedMethods):
    scans = 0

    def allowed(self, scope: dict[str, Any]) -> set[str] | None:
        CountingAllowed.scans += 1
        return super().allowed(scope)


async def ok(request: Any) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    app = Starlette(routes=[Route("/things", ok, methods=["GET"]),
                            Route("/things", ok, methods=["POST"]),
                            Route("/other", ok, methods=["PUT"])])
    wrapped = CountingAllowed(app, routes=app.router.routes)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(wrapped, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def test_matched_requests_are_not_scanned(url: str) -> None:
    CountingAllowed.scans = 0
    with httpx.Client(base_url=url) as c:
        for _ in range(5):
            assert c.get("/things").text == "ok"
            assert c.post("/things").text == "ok"
        assert c.get("/nowhere").status_code == 404
    assert CountingAllowed.scans == 0


def test_405_and_options_list_every_method_of_the_path(url: str) -> None:
    with httpx.Client(base_url=url) as c:
        r = c.delete("/things")
        assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
        assert r.json()["error"]["code"] == "method_not_allowed"
        assert r.json()["error"]["field"] == "method"
        r = c.options("/things")
        assert r.status_code == 204 and r.headers["allow"] == "GET, HEAD, OPTIONS, POST"
        r = c.get("/other")
        assert r.status_code == 405 and r.headers["allow"] == "OPTIONS, PUT"
