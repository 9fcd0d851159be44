"""uvicorn's HTTP/1.1 protocol, with JSON error answers for requests it cannot parse.

uvicorn answers a request it cannot parse (a request line over llhttp's 65,535-byte URL
limit, a malformed header, a bad request line) with a plain-text ``400 Invalid HTTP request
received.`` before the app sees anything. This protocol answers those in the API's error
format instead (DESIGN §7): ``414 uri_too_long`` for a URL over the limit, ``400
malformed_request`` for anything else the parser refuses; the connection is then closed,
as uvicorn does. ``workers.runtime`` passes it to ``uvicorn.Config(http=...)``.
"""

from __future__ import annotations

import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

try:  # uvicorn's faster parser, when installed (uvicorn[standard])
    import httptools
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - httptools is installed here
    httptools = None  # type: ignore[assignment]
    HttpToolsProtocol = object  # type: ignore[assignment,misc]

REASONS = {400: b"Bad Request", 414: b"URI Too Long"}


def error_response(status: int, code: str, message: str, field: str = "request") -> bytes:
    """A complete HTTP/1.1 response with the JSON error body; the connection closes after it."""
    body = json.dumps({"error": {"code": code, "message": message, "field": field}}).encode()
    return b"".join([b"HTTP/1.1 %d %s\r\n" % (status, REASONS[status]),
                     b"content-type: application/json\r\n",
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n", body])


def protocol_class() -> Any:
    """The protocol for ``uvicorn.Config(http=...)``: httptools when installed, else h11."""
    return JsonErrorsHttpToolsProtocol if httptools is not None else JsonErrorsH11Protocol


class JsonErrorsH11Protocol(H11Protocol):
    """:class:`H11Protocol` answering what h11 cannot parse (a request line or headers over
    its limit, malformed lines) with a JSON 400 instead of plain text."""

    def send_400_response(self, msg: str) -> None:
        self.logger.warning("refused an unparseable request: %s", msg[:200])
        self.transport.write(error_response(400, "malformed_request", f"malformed HTTP request: "
                                            f"{msg}"))
        self.transport.close()


class CoalescingTransport:
    """A transport whose writes made in one turn of the event loop leave in one ``write`` of
    the real transport, at the end of that turn: uvicorn writes a response's head and its
    body separately, and on loopback each write is a syscall that also runs the receiver's
    side of TCP (py-spy: the two were ~40 % of the HTTP thread's time per predict). Bytes keep
    their order; ``close`` sends what is buffered first, ``abort`` drops it; the rest is the
    real transport's."""

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport = transport
        self._loop = loop
        self._buffer: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._buffer:
            self._loop.call_soon(self._flush)
        self._buffer.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(b) for b in self._buffer)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._buffer.clear()
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class JsonErrorsHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` answering unparseable requests with a JSON 4xx; a response's
    writes leave together (:class:`CoalescingTransport`)."""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(CoalescingTransport(transport, self.loop))  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserInvalidURLError as e:
            if "too long" in str(e):
                self._refuse(414, "uri_too_long", f"the request line is too long: {e}", "url")
            else:
                self._refuse(400, "malformed_request", f"invalid URL in the request line: {e}",
                             "url")
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as e:
            # the URL is parsed in a callback (on_headers_complete): its error comes back as
            # a callback error, so parse it again here to tell a too long URL from the rest
            try:
                httptools.parse_url(self.url)
            except httptools.HttpParserInvalidURLError as url_error:
                if "too long" in str(url_error):
                    self._refuse(414, "uri_too_long",
                                 f"the request line is too long: {url_error}", "url")
                    return
            self._refuse(400, "malformed_request", f"malformed HTTP request: {e}")

    def _refuse(self, status: int, code: str, message: str, field: str = "request") -> None:
        self.logger.warning("refused an unparseable request: %s", message[:200])
        self.transport.write(error_response(status, code, message, field))
        self.transport.close()
