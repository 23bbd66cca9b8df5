"""The NE server against smpplib (PyPI) as an independent NE client, and raw
sockets for what no well-behaved client would send."""

import asyncio
import logging
import struct
from concurrent.futures import ThreadPoolExecutor

import pytest

from smps._native.pdu import CommandId, Status, encode
from smps._native.states import State
from smps.smpp.bind_guard import BindLockout
from smps.smpp.server import NeServer
from tests.helpers import until
from tests.peers import (
    bind,
    bind_status,
    closed_by_server,
    connect_raw,
    raw_exchange,
    timed_bind_status,
)

pytestmark = pytest.mark.both_loops

ACCOUNTS = [
    {"system_id": "antispam", "password": "pw1", "max_binds": 2, "allowed_ips": ["127.0.0.0/8"]},
    {"system_id": "fraud", "password": "pw2", "allowed_ips": ["10.0.0.0/8"]},
    {"system_id": "bulk", "password": "pw3", "max_binds": 200},
]
FAILURE_DELAY = 0.1  # server.auth_failure_delay in these tests


@pytest.fixture
async def start_server(make_config):
    """Start NE servers with these tests' settings, ``server`` keys replaced."""
    servers = []

    async def start(**server):
        cfg = make_config(
            server={
                "listen": "127.0.0.1:0",
                "bind_timeout": "300ms",
                "auth_failure_delay": f"{FAILURE_DELAY}s",
                **server,
            },
            ne_accounts=ACCOUNTS,
        )
        ne_server = NeServer(cfg.server, cfg.ne_accounts, copy_timeout=2.0)
        ne_server.port = await ne_server.start()
        servers.append(ne_server)
        return ne_server

    yield start
    for ne_server in servers:
        await ne_server.stop()


@pytest.fixture
async def server(start_server):
    return await start_server()


@pytest.mark.parametrize("kind", ["receiver", "transceiver"])
async def test_bind_ok(server, kind):
    client = await asyncio.to_thread(bind, server.port, kind)
    try:
        await until(lambda: server.registry.count("antispam") == 1)
        (session,) = server.registry.by_account["antispam"]
        assert session.state is (State.BOUND_RX if kind == "receiver" else State.BOUND_TRX)
        assert session.window == 64
    finally:
        client.disconnect()
    await until(lambda: server.registry.count("antispam") == 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"password": "nope"},
        {"system_id": "nobody"},
        {"system_id": "fraud", "password": "pw2"},  # the right password, the address not allowed
        {"kind": "transmitter"},  # cannot receive copies
    ],
)
async def test_every_refusal_is_rbindfail_after_the_same_delay(server, kwargs):
    """Neither the status nor the time to the answer tells a guesser what was wrong."""
    status, seconds = await asyncio.to_thread(timed_bind_status, server.port, **kwargs)
    assert status == Status.RBINDFAIL
    assert seconds >= FAILURE_DELAY  # the first refusal too
    assert server.auth_failures == 1
    assert server.registry.count("antispam") == 0


async def test_max_binds(server):
    clients = [await asyncio.to_thread(bind, server.port) for _ in range(2)]
    try:
        assert await asyncio.to_thread(bind_status, server.port) == Status.RBINDFAIL
        assert server.registry.count("antispam") == 2
    finally:
        for client in clients:
            client.disconnect()


async def test_lockout_refuses_the_right_password_from_that_address_only(start_server):
    server = await start_server(auth_lockout_failures=3)
    for _ in range(3):
        status = await asyncio.to_thread(bind_status, server.port, password="guess")
        assert status == Status.RBINDFAIL
    # Locked out: the right password from that address is refused like a wrong one...
    assert await asyncio.to_thread(bind_status, server.port) == Status.RBINDFAIL
    # ...while the same system_id binds from another address,
    assert await asyncio.to_thread(bind_status, server.port, source="127.0.0.2") == Status.ROK
    # and that success leaves the lockout of the first address in force.
    assert await asyncio.to_thread(bind_status, server.port) == Status.RBINDFAIL
    assert server.lockout.locked("127.0.0.1", "antispam")
    assert not server.lockout.locked("127.0.0.2", "antispam")


async def test_not_allowed_address_counts_toward_the_lockout(start_server):
    server = await start_server(auth_lockout_failures=2)
    right_password_wrong_address = {"system_id": "fraud", "password": "pw2"}
    for _ in range(2):
        status = await asyncio.to_thread(bind_status, server.port, **right_password_wrong_address)
        assert status == Status.RBINDFAIL
    assert server.lockout.locked("127.0.0.1", "fraud")


async def test_refusals_beyond_capacity_are_refused_not_counted(start_server):
    """max_binds, transmitter binds and disabled accounts come after the password:
    they are not guesses, so a legitimate NE retrying them is never locked out."""
    server = await start_server(auth_lockout_failures=2)
    for _ in range(3):
        status = await asyncio.to_thread(bind_status, server.port, kind="transmitter")
        assert status == Status.RBINDFAIL
    assert not server.lockout.locked("127.0.0.1", "antispam")
    assert await asyncio.to_thread(bind_status, server.port) == Status.ROK


async def test_failed_binds_are_logged_once_then_summarised(server, caplog):
    server.refusals.interval = 0.3
    caplog.set_level(logging.WARNING, logger="smps.ne")
    for _ in range(6):  # the lockout (5 failures) refuses the sixth
        status = await asyncio.to_thread(bind_status, server.port, password="x")
        assert status == Status.RBINDFAIL

    def lines(text):
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    (first,) = lines("bind as 'antispam' refused: wrong password")
    assert "more from this address are summarised" in first
    assert len(lines("locked out as 'antispam'")) == 1
    assert len(lines("refused:")) == 1  # not one line per failure...

    def summarised():
        summaries = lines("failed binds from 1 address in the last 0.3 s; top: 127.0.0.1 as")
        return sum(int(line.split()[0]) for line in summaries)

    await until(lambda: summarised() == 5)  # ...the others are in the summaries


def test_lockout_forgets_old_failures_and_ends():
    now = [0.0]
    lockout = BindLockout(3, 60.0, clock=lambda: now[0])
    assert lockout.failed("10.0.0.1", "a") is None
    assert lockout.failed("10.0.0.1", "a") is None
    now[0] = 61.0  # both failures are older than the lockout: forgotten
    assert lockout.failed("10.0.0.1", "a") is None
    assert lockout.failed("10.0.0.1", "a") is None
    lockout.succeeded("10.0.0.1", "b")  # another pair's success changes nothing
    assert lockout.failed("10.0.0.1", "a") == 121.0
    assert lockout.locked("10.0.0.1", "a") and not lockout.locked("10.0.0.1", "b")
    lockout.succeeded("10.0.0.1", "a")  # a success does not wipe a lock
    assert lockout.active() == [("10.0.0.1", "a", 121.0)]
    now[0] = 121.0
    assert not lockout.locked("10.0.0.1", "a") and lockout.active() == []


def test_lockout_memory_is_bounded():
    lockout = BindLockout(1, 60.0, max_pairs=3)
    for n in range(10):
        lockout.failed(f"10.0.0.{n}", "a")
    assert [address for address, _sid, _until in lockout.active()] == [
        "10.0.0.7",
        "10.0.0.8",
        "10.0.0.9",
    ]


async def test_bind_timeout_closes_silent_connection(server):
    pdus, closed = await asyncio.to_thread(raw_exchange, server.port, b"")
    assert closed and pdus == []


# Timers far beyond the socket reads below: what answers or closes is not them.
PATIENT = {"bind_timeout": "60s", "first_pdu_timeout": "60s"}


@pytest.mark.parametrize("length", [0xFFFFFFFF, 2**31, 8])
async def test_bad_command_length_is_answered_from_its_four_octets(start_server, length):
    """A first PDU claiming 4 GiB, 2 GiB or 8 octets gets generic_nack
    ESME_RINVCMDLEN and a close at once, without waiting for the rest of a header."""
    server = await start_server(**PATIENT)
    payload = struct.pack(">I", length)
    pdus, closed = await asyncio.to_thread(raw_exchange, server.port, payload, timeout=5.0)
    assert closed
    assert [(p.command_id, p.command_status, p.sequence) for p in pdus] == [
        (CommandId.GENERIC_NACK, Status.RINVCMDLEN, 0)
    ]


async def test_no_whole_pdu_within_first_pdu_timeout_closes(start_server):
    server = await start_server(bind_timeout="60s", first_pdu_timeout="100ms")
    sock = await asyncio.to_thread(connect_raw, server.port, payload=b"\0\0\0")
    with sock:
        assert await asyncio.to_thread(closed_by_server, sock)
    assert await asyncio.to_thread(bind_status, server.port) == Status.ROK  # a bind is in time


async def test_unbound_connections_are_capped_per_address_and_in_all(start_server):
    server = await start_server(max_unbound_per_address=2, max_unbound=3, **PATIENT)
    junk = []
    try:
        for _ in range(3):
            junk.append(await asyncio.to_thread(connect_raw, server.port))
        # The third from 127.0.0.1 is over max_unbound_per_address: closed at once.
        assert await asyncio.to_thread(closed_by_server, junk[2])
        assert server.unbound.count == 2
        # Another address still binds while 127.0.0.1 holds its cap full of junk.
        client = await asyncio.to_thread(bind, server.port, source="127.0.0.2")
        client.disconnect()
        junk.append(await asyncio.to_thread(connect_raw, server.port, "127.0.0.3"))
        await until(lambda: server.unbound.count == 3)
        # max_unbound reached: a new connection from any address is closed at once.
        junk.append(await asyncio.to_thread(connect_raw, server.port, "127.0.0.4"))
        assert await asyncio.to_thread(closed_by_server, junk[-1])
        assert server.unbound.refused == {"max_unbound_per_address": 1, "max_unbound": 1}
    finally:
        for sock in junk:
            sock.close()
    await until(lambda: server.unbound.count == 0)


async def test_request_before_bind_gets_rinvbndsts(server):
    submit = encode(CommandId.SUBMIT_SM, 7, {"short_message": b"hi"})
    pdus, _ = await asyncio.to_thread(raw_exchange, server.port, submit, read_until_close=False)
    assert pdus[0].command_id == CommandId.SUBMIT_SM_RESP
    assert (pdus[0].command_status, pdus[0].sequence) == (Status.RINVBNDSTS, 7)


async def test_unknown_command_gets_generic_nack(server):
    unknown = (
        (16).to_bytes(4, "big") + (0x99).to_bytes(4, "big") + bytes(4) + (9).to_bytes(4, "big")
    )
    pdus, _ = await asyncio.to_thread(raw_exchange, server.port, unknown, read_until_close=False)
    assert pdus[0].command_id == CommandId.GENERIC_NACK
    assert (pdus[0].command_status, pdus[0].sequence) == (Status.RINVCMDID, 9)


async def test_garbage_gets_nack_and_close_while_others_keep_working(server):
    client = await asyncio.to_thread(bind, server.port)
    try:
        garbage = b"\x00\x00\x00\x05GARBAGE-GARBAGE-GARBAGE"
        pdus, closed = await asyncio.to_thread(raw_exchange, server.port, garbage)
        assert closed
        assert pdus[0].command_id == CommandId.GENERIC_NACK
        assert pdus[0].command_status == Status.RINVCMDLEN
        # The bound NE is unaffected: it still receives and answers a copy.
        received = await _copy_round_trip(server, client, b"still here")
        assert received == [b"still here"]
    finally:
        client.disconnect()


async def _copy_round_trip(server, client, body, *, verdict=Status.ROK, data_coding=0):
    """Send one deliver_sm copy to the NE; return the bodies the NE saw."""
    (session,) = server.registry.by_account["antispam"]
    seen, answers = [], []

    def on_message(pdu, **kwargs):
        seen.append(pdu.short_message)
        return verdict

    client.set_message_received_handler(on_message)
    copy = encode(
        CommandId.DELIVER_SM,
        0,
        {
            "source_addr": b"8613800138000",
            "destination_addr": b"10086",
            "data_coding": data_coding,
            "short_message": body,
        },
    )
    assert session.send(copy, lambda ctx, status, pdu: answers.append(status))
    await asyncio.to_thread(client.read_once)
    await until(lambda: answers)
    assert answers == [verdict]
    return seen


async def test_copy_body_is_byte_identical_and_verdict_returns(server):
    client = await asyncio.to_thread(bind, server.port)
    try:
        body = bytes(range(256))[:254]  # every octet value, including NUL
        seen = await _copy_round_trip(server, client, body, verdict=0x66, data_coding=4)
        assert seen == [body]
    finally:
        client.disconnect()


async def test_a_raising_response_callback_leaves_the_bind_up(server, caplog):
    """A bug where answers are handed over (once, the dispatcher's) is logged with
    its traceback and counted; the NE connection stays up, later answers arrive."""
    client = await asyncio.to_thread(bind, server.port)
    try:
        await until(lambda: server.registry.count("antispam") == 1)
        (session,) = server.registry.by_account["antispam"]
        client.set_message_received_handler(lambda pdu, **kwargs: Status.ROK)
        copy = encode(CommandId.DELIVER_SM, 0, {"short_message": b"copy"})

        def broken(context, status, pdu):
            raise KeyError(context)

        answers = []
        assert session.send(copy, broken, "first") and session.send(copy, broken, "second")
        assert session.send(copy, lambda context, status, pdu: answers.append(status))
        for _ in range(3):
            await asyncio.to_thread(client.read_once)
        await until(lambda: answers)
        assert answers == [Status.ROK]
        assert session.is_open and session.stats.errors["callback_error"] == 2
        (logged,) = [r for r in caplog.records if "response callback" in r.getMessage()]
        assert "KeyError" in logged.getMessage() and logged.exc_info is not None
    finally:
        client.disconnect()


async def test_unbind_from_ne(server):
    client = await asyncio.to_thread(bind, server.port)
    await until(lambda: server.registry.count("antispam") == 1)
    resp = await asyncio.to_thread(client.unbind)
    assert resp.command == "unbind_resp"
    client.disconnect()
    await until(lambda: server.registry.count("antispam") == 0)


async def test_disabled_account_is_unbound_live(server, make_config):
    client = await asyncio.to_thread(bind, server.port)
    try:
        await until(lambda: server.registry.count("antispam") == 1)
        accounts = [dict(a) for a in ACCOUNTS]
        accounts[0]["enabled"] = False
        server.set_accounts(make_config(ne_accounts=accounts).ne_accounts)
        await until(lambda: server.registry.count("antispam") == 0)
        assert await asyncio.to_thread(bind_status, server.port) == Status.RBINDFAIL
    finally:
        client.disconnect()


async def test_two_hundred_concurrent_binds(start_server):
    server = await start_server(max_unbound_per_address=256)  # 50 at once from 127.0.0.1
    with ThreadPoolExecutor(max_workers=50) as pool:
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(pool, lambda: bind(server.port, system_id="bulk", password="pw3"))
            for _ in range(200)
        ]
        clients = await asyncio.gather(*futures)
        try:
            await until(lambda: server.registry.count("bulk") == 200)
            assert server.auth_failures == 0
        finally:
            for client in clients:
                client.disconnect()
    await until(lambda: server.registry.count("bulk") == 0)
