"""A minimal HTTP/1.1 keep-alive client for load generators: one socket, requests written as
bytes, answers read by ``Content-Length``.

On this 2-core machine the load generator shares the CPUs with the service it measures, and
httpx spends about as much CPU on a small request as the server does (``benchmarks.request_path``
prints both), so a benchmark of the server's scaling measures the client as much. This one
does only what such a benchmark needs (no redirects, no chunked answers, no TLS); the
benchmarks run with either (``--client raw|httpx``) and say which.

>>> RawClient("http://127.0.0.1:1", {"Authorization": "Bearer k"})._head("POST", "/v1/x", 2)[:22]
b'POST /v1/x HTTP/1.1\\r\\nH'
"""

from __future__ import annotations

import json
import socket
from typing import Any
from urllib.parse import urlsplit


class RawResponse:
    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.content = body

    def json(self) -> Any:
        return json.loads(self.content)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}: {self.content[:200]!r}")


class RawClient:
    """``post(path, json=...)`` / ``get(path)`` over one kept-alive connection."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        u = urlsplit(base_url)
        self._addr = (u.hostname or "127.0.0.1", u.port or 80)
        self._host = f"{self._addr[0]}:{self._addr[1]}"
        self._extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _head(self, method: str, path: str, length: int | None,
              content_type: str = "application/json") -> bytes:
        body = "" if length is None else f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n"
        return (f"{method} {path} HTTP/1.1\r\nHost: {self._host}\r\n{self._extra}{body}"
                "\r\n").encode("latin-1")

    def post(self, path: str, json: Any = None, content: bytes | None = None,
             content_type: str = "application/json") -> RawResponse:
        data = content if content is not None else _dumps(json)
        return self._request(self._head("POST", path, len(data), content_type) + data)

    def get(self, path: str) -> RawResponse:
        return self._request(self._head("GET", path, None))

    def _request(self, raw: bytes) -> RawResponse:
        if self._sock is None:
            self._sock = socket.create_connection(self._addr, timeout=self._timeout)
            self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._buf = b""
        self._sock.sendall(raw)
        while b"\r\n\r\n" not in self._buf:
            self._recv()
        head, _, rest = self._buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, close = None, False
        for ln in lines[1:]:
            name, _, value = ln.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                raise RuntimeError("chunked answers are not supported by RawClient")
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise RuntimeError("an answer without Content-Length")
        while len(rest) < length:
            rest += self._recv_more()
        self._buf = rest[length:]
        if close:
            self.close()
        return RawResponse(status, rest[:length])

    def _recv(self) -> None:
        self._buf += self._recv_more()

    def _recv_more(self) -> bytes:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            self.close()
            raise ConnectionError("the server closed the connection")
        return chunk


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()
