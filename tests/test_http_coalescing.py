"""workers/http/protocol.py ``CoalescingTransport`` on a real asyncio transport over a real
socket pair: writes made in one turn of the loop leave together at the end of the turn, in
order; ``close`` sends what is buffered first; ``abort`` drops it. The HTTP suites (test_api_*)
check every response through it end to end."""

from __future__ import annotations

import asyncio
import socket

from workers.http.protocol import CoalescingTransport


def _recv_now(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except BlockingIOError:
        return b""


async def _pair() -> tuple[CoalescingTransport, socket.socket, asyncio.AbstractEventLoop]:
    loop = asyncio.get_running_loop()
    ours, peer = socket.socketpair()
    peer.setblocking(False)
    transport, _ = await loop.connect_accepted_socket(asyncio.Protocol, ours)
    return CoalescingTransport(transport, loop), peer, loop


def test_writes_of_one_turn_leave_together_in_order():
    async def main() -> None:
        t, peer, _ = await _pair()
        t.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        t.write(memoryview(b"hello"))
        t.writelines([b"-", b"more"])
        assert _recv_now(peer) == b""  # nothing sent during the turn
        assert t.get_write_buffer_size() == 48
        await asyncio.sleep(0)  # the turn ends: one write of everything
        await asyncio.sleep(0.01)
        assert _recv_now(peer) == b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello-more"
        t.write(b"next")
        await asyncio.sleep(0.01)
        assert _recv_now(peer) == b"next"
        t.close()
        peer.close()

    asyncio.run(main())


def test_close_sends_the_buffer_and_abort_drops_it():
    async def main() -> None:
        t, peer, _ = await _pair()
        t.write(b"last words")
        t.close()
        await asyncio.sleep(0.01)
        assert _recv_now(peer) == b"last words" and t.is_closing()
        peer.close()
        t, peer, _ = await _pair()
        t.write(b"never sent")
        t.abort()
        await asyncio.sleep(0.01)
        assert _recv_now(peer) == b""  # closed with nothing sent
        peer.close()

    asyncio.run(main())
