"""Write back-pressure on real sockets, both sides: a peer that does not read what
its session sends is no longer read, gets no new copies, and is closed once it
has taken nothing for write_stall_timeout; a slow reader gets every answer.

The kernel buffers on the way from SMPS to the peer (SMPS's send buffer, the
peer's receive buffer) are made small, so that what a peer leaves unread piles
up in the transport's buffer (what the worker's memory holds) after a few KiB
rather than after the MiBs loopback would absorb. The way back keeps its
default sizes: a small receive buffer on the reading side makes loopback TCP
crawl (window updates wait for a whole 64 KiB segment of room).
"""

import asyncio
import contextlib
import logging
import socket
import threading
import time

import pytest

from smps._native.dispatch import Lane
from smps._native.pdu import CommandId, Framer, Status, decode, encode, make_resp
from smps._native.states import State
from smps.smpp.client import SmscClient
from smps.smpp.server import NeServer
from smps.smpp.session import QUEUED
from tests.helpers import until

pytestmark = pytest.mark.both_loops

CEILING = 256 * 1024  # write_buffer_max here: the transports' high-water mark is then 64 KiB
SMALLEST_CEILING = 64 * 1024  # the least write_buffer_max allowed: the high-water mark is 16 KiB
KERNEL_BUFFER = 8192
ENQUIRE_LINKS = b"".join(encode(CommandId.ENQUIRE_LINK, seq) for seq in range(1, 4097))
ACCOUNT = {"system_id": "antispam", "password": "pw1", "max_binds": 2, "window": 1000}


def small_buffer(sock, which: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, which, KERNEL_BUFFER)


def read_pdus(sock: socket.socket, framer: Framer, count: int) -> list[bytes]:
    pdus: list[bytes] = []
    while len(pdus) < count:
        data = sock.recv(65536)
        assert data, "closed by the server"
        framer.feed(data)
        pdus.extend(framer)
    return pdus


def flood(sock: socket.socket, give_up_after: float = 0.3) -> int:
    """Send enquire_links and never read, until the other end has taken nothing
    for `give_up_after` seconds; returns the bytes sent."""
    sock.settimeout(give_up_after)
    sent = 0
    pending = memoryview(ENQUIRE_LINKS)
    with contextlib.suppress(TimeoutError):
        while True:
            n = sock.send(pending)
            sent += n
            pending = pending[n:] or memoryview(ENQUIRE_LINKS)
    return sent


@contextlib.asynccontextmanager
async def ne_server(make_config, stall: str, ceiling: int = CEILING):
    cfg = make_config(
        server={
            "listen": "127.0.0.1:0",
            "write_buffer_max": ceiling,
            "write_stall_timeout": stall,
        },
        ne_accounts=[ACCOUNT],
    )
    server = NeServer(cfg.server, cfg.ne_accounts, copy_timeout=10.0)
    server.port = await server.start()
    try:
        yield server
    finally:
        await server.stop()


def connect_ne(port: int) -> socket.socket:
    """A raw NE with small socket buffers, bound as transceiver."""
    sock = socket.socket()
    small_buffer(sock, socket.SO_RCVBUF)  # before connect: the window scale is agreed then
    sock.connect(("127.0.0.1", port))
    sock.settimeout(5)
    fields = {"system_id": b"antispam", "password": b"pw1"}
    sock.sendall(encode(CommandId.BIND_TRANSCEIVER, 1, fields))
    (resp,) = read_pdus(sock, Framer(), 1)
    assert decode(resp).command_status == Status.ROK
    return sock


async def bind_ne(server: NeServer):
    """(raw socket, its server-side session with small kernel buffers)."""
    before = set(server.registry.by_account.get("antispam", ()))
    sock = await asyncio.to_thread(connect_ne, server.port)
    await until(lambda: len(server.registry.by_account.get("antispam", ())) == len(before) + 1)
    (session,) = set(server.registry.by_account["antispam"]) - before
    small_buffer(session.transport.get_extra_info("socket"), socket.SO_SNDBUF)
    return sock, session


def assert_pushed_back(session, sent: int) -> None:
    """The flood stopped because the session stopped reading, with what it
    buffered for the peer under the ceiling."""
    assert session.is_open
    assert session.write_paused and session.reading_paused
    assert 0 < session.write_buffered <= session.write_buffer_max
    answered = session.stats.pdus_out.get(CommandId.ENQUIRE_LINK_RESP, 0)
    assert answered * 16 < sent  # the rest waits unread in the kernel, not in the worker


async def assert_closed_as_stalled(session, caplog) -> None:
    await until(lambda: session.state is State.CLOSED, timeout=10)
    assert session.stats.errors.get("write_stall") == 1
    (warning,) = [r for r in caplog.records if "has read nothing" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert str(session.peer[1]) in warning.getMessage()
    assert "bytes waiting for it" in warning.getMessage()


async def test_ne_that_never_reads_is_paused_bounded_and_closed(make_config, caplog):
    """The flood arrives while the proxy holds reading (too much in flight), so
    reading resumes into a full socket: one read of more than 64 KiB of requests,
    whose answers alone would pass the smallest ceiling. The session hands them
    over as they reach the high-water mark and stops in the middle of the read."""
    async with ne_server(make_config, stall="2s", ceiling=SMALLEST_CEILING) as server:
        sock, session = await bind_ne(server)
        try:
            session.pause_reading()
            sent = await asyncio.to_thread(flood, sock)
            session.resume_reading()
            await until(lambda: session.write_paused)
            assert_pushed_back(session, sent)
            await assert_closed_as_stalled(session, caplog)
        finally:
            sock.close()


async def test_smsc_that_never_reads_is_paused_bounded_and_closed(make_config, caplog):
    listener = socket.socket()
    small_buffer(listener, socket.SO_RCVBUF)  # the accepted connection inherits it
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(5)
    go = threading.Event()

    def smsc() -> tuple[socket.socket, int]:
        """Answers the bind, then floods enquire_links without reading."""
        conn, _ = listener.accept()
        conn.settimeout(5)
        (bind,) = read_pdus(conn, Framer(), 1)
        conn.sendall(make_resp(bind, Status.ROK))
        go.wait(5)
        return conn, flood(conn)

    section = {
        "name": "smsc1",
        "host": "127.0.0.1",
        "port": listener.getsockname()[1],
        "system_id": "smps",
        "write_buffer_max": "256KiB",
        "write_stall_timeout": "2s",
        "reconnect": {"initial": "30s", "max": "30s"},  # one connection in this test
    }
    client = SmscClient(make_config(smsc=[section]).smsc[0])
    flooding = asyncio.ensure_future(asyncio.to_thread(smsc))
    client.start()
    conn = None
    try:
        await until(lambda: client.binds_up == 1)
        (session,) = client.sessions
        small_buffer(session.transport.get_extra_info("socket"), socket.SO_SNDBUF)
        go.set()
        conn, sent = await flooding
        assert_pushed_back(session, sent)
        await assert_closed_as_stalled(session, caplog)
    finally:
        go.set()
        await client.stop()
        if conn is None:
            conn, _sent = await flooding
        conn.close()
        listener.close()


async def test_slow_reader_is_not_closed_and_gets_every_answer(make_config):
    """Paused for longer than write_stall_timeout at a stretch, but always taking
    something: the session waits for it, and no answer is lost."""
    count = 10_000  # 160 KB of enquire_link_resp, read at about 100 KB/s
    requests = b"".join(encode(CommandId.ENQUIRE_LINK, seq) for seq in range(2, count + 2))
    async with ne_server(make_config, stall="300ms") as server:
        sock, session = await bind_ne(server)

        def read_slowly() -> list[int]:
            framer, sequences = Framer(), []
            while len(sequences) < count:
                data = sock.recv(1024)
                if not data:
                    break
                framer.feed(data)
                sequences.extend(decode(pdu).sequence for pdu in framer)
                time.sleep(0.01)
            return sequences

        try:
            _, sequences = await asyncio.gather(
                asyncio.to_thread(sock.sendall, requests), asyncio.to_thread(read_slowly)
            )
            assert sequences == list(range(2, count + 2))
            assert session.stats.write_pauses >= 1
            assert session.is_open and "write_stall" not in session.stats.errors
        finally:
            sock.close()


COPY = encode(CommandId.DELIVER_SM, 0, {"short_message": b"x" * 200})


async def send_until_write_paused(session, callback) -> int:
    """Copies to an NE that does not read them, until the session is write-paused;
    returns how many went out (their contexts are 1..n)."""
    sent = 0
    while not session.write_paused and sent < session.window:
        for _ in range(50):
            sent += 1
            assert session.send(COPY, callback, sent) > 0
        await asyncio.sleep(0.01)  # the flush, and the peer not reading it
    assert session.write_paused
    return sent


async def test_copies_go_to_the_other_bind_while_one_is_write_paused(make_config):
    answers: dict[object, int] = {}

    def answered(context, status, _pdu):
        answers[context] = status

    async with ne_server(make_config, stall="10s") as server:
        stuck_sock, stuck = await bind_ne(server)
        live_sock, live = await bind_ne(server)
        try:
            sent = await send_until_write_paused(stuck, answered)
            assert live.free_window > 0 >= stuck.free_window
            lane = Lane(server.accounts["antispam"])  # the dispatcher's choice of bind
            lane.binds = [stuck, live]
            assert lane.pick_bind() is live

            buffered = stuck.write_buffered
            assert stuck.send(COPY, answered, "held") == QUEUED
            await asyncio.sleep(0.05)
            assert stuck.queued == 1 and stuck.write_buffered == buffered

            def answer_all() -> None:
                """The stuck NE starts reading, and answers every copy."""
                framer, done = Framer(), 0
                while done < sent + 1:
                    for pdu in read_pdus(stuck_sock, framer, 1):
                        stuck_sock.sendall(make_resp(pdu, Status.ROK))
                        done += 1

            await asyncio.to_thread(answer_all)
            await until(lambda: len(answers) == sent + 1)
            assert set(answers.values()) == {Status.ROK} and "held" in answers
            assert not stuck.write_paused and stuck.queued == 0
        finally:
            stuck_sock.close()
            live_sock.close()


async def test_answers_past_write_buffer_max_close_at_once(make_config, caplog):
    """Answers are never held back, so a write-paused peer whose answers pile
    up past the ceiling is closed then, without waiting for the stall timeout."""
    async with ne_server(make_config, stall="10s") as server:
        sock, session = await bind_ne(server)
        try:
            await send_until_write_paused(session, lambda *_: None)
            request = encode(CommandId.ENQUIRE_LINK, 9)
            for _ in range(CEILING // 16):
                session.respond(request)
            assert session.is_open  # until the end of this loop iteration's writes
            await until(lambda: session.state is State.CLOSED, timeout=5)
            assert session.stats.errors.get("write_stall") == 1
            assert any("over write_buffer_max" in r.getMessage() for r in caplog.records)
        finally:
            sock.close()
