"""The master's peek at a new NE connection, on real loopback TCP sockets:
whatever the split of the first PDU, it is read without consuming it, and the
socket is left as the worker's session expects it."""

import asyncio
import contextlib
import socket
import struct

import pytest

from smps._native.pdu import CommandId, Status, encode
from smps.errors import FramingError
from smps.runtime.placement import peek_bind

pytestmark = pytest.mark.both_loops

BIND = encode(CommandId.BIND_RECEIVER, 5, {"system_id": b"antispam", "password": b"pw1"})


@contextlib.asynccontextmanager
async def connection():
    """(client socket, the server's accepted non-blocking socket)."""
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        client = socket.create_connection(listener.getsockname())
        accepted, _peer = await loop.sock_accept(listener)
    with client, accepted:
        accepted.setblocking(False)
        yield client, accepted


async def send_in_pieces(client, data, size):
    for start in range(0, len(data), size):
        client.send(data[start : start + size])
        await asyncio.sleep(0.01)  # separate segments, separate wakeups if any


@pytest.mark.parametrize("size", [1, 3, 16, len(BIND)])
async def test_a_bind_in_any_pieces_is_peeked_and_left_unread(size):
    async with connection() as (client, accepted):
        sending = asyncio.ensure_future(send_in_pieces(client, BIND, size))
        assert await peek_bind(accepted, 5.0, 65536) == "antispam"
        await sending
        # The worker's session reads the whole bind, and readiness is not held back.
        assert accepted.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
        assert accepted.recv(4096) == BIND


async def test_another_first_pdu_is_not_a_bind():
    async with connection() as (client, accepted):
        client.send(encode(CommandId.ENQUIRE_LINK, 1))
        assert await peek_bind(accepted, 5.0, 65536) is None


@pytest.mark.parametrize(
    ("payload", "sequence"),
    [(struct.pack(">I", 0xFFFFFFFF), 0), (struct.pack(">IIII", 8, 9, 0, 77), 77)],
)
async def test_a_bad_command_length_fails_at_once(payload, sequence):
    async with connection() as (client, accepted):
        client.send(payload)
        with pytest.raises(FramingError) as caught:
            await peek_bind(accepted, 5.0, 65536)
        assert (caught.value.status, caught.value.sequence) == (Status.RINVCMDLEN, sequence)


async def test_a_peer_that_closes_mid_pdu_is_false():
    async with connection() as (client, accepted):
        client.send(BIND[:10])
        client.shutdown(socket.SHUT_WR)
        assert await peek_bind(accepted, 5.0, 65536) is False


async def test_no_whole_pdu_in_time_times_out():
    async with connection() as (client, accepted):
        client.send(BIND[:10])
        with pytest.raises(TimeoutError):
            await peek_bind(accepted, 0.05, 65536)
