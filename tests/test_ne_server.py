"""The NE server against smpplib (PyPI) as an independent NE client, and raw
sockets for what no well-behaved client would send."""

import asyncio
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import smpplib.client
import smpplib.exceptions

from smps._native.pdu import CommandId, Framer, Status, decode, encode
from smps.smpp.server import AuthThrottle, NeServer
from smps.smpp.states import State
from tests.helpers import until

pytestmark = pytest.mark.both_loops

ACCOUNTS = [
    {"system_id": "antispam", "password": "pw1", "max_binds": 2},
    {"system_id": "fraud", "password": "pw2", "allowed_ips": ["10.0.0.0/8"]},
    {"system_id": "bulk", "password": "pw3", "max_binds": 200},
]


@pytest.fixture
async def server(make_config):
    cfg = make_config(
        server={"listen": "127.0.0.1:0", "bind_timeout": "300ms"}, ne_accounts=ACCOUNTS
    )
    ne_server = NeServer(cfg.server, cfg.ne_accounts, copy_timeout=2.0)
    ne_server.throttle = AuthThrottle(base=0.05, ceiling=0.2)
    ne_server.port = await ne_server.start()
    yield ne_server
    await ne_server.stop()


def smpplib_client(port):
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.connect()
    return client


def bind(port, kind="transceiver", system_id="antispam", password="pw1"):
    client = smpplib_client(port)
    try:
        getattr(client, f"bind_{kind}")(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError:
        client.disconnect()
        raise
    return client


def bind_status(port, **kwargs):
    try:
        client = bind(port, **kwargs)
    except smpplib.exceptions.PDUError as exc:
        return exc.args[1]
    client.disconnect()
    return Status.ROK


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
    ("kwargs", "status"),
    [
        ({"password": "nope"}, Status.RINVPASWD),
        ({"system_id": "nobody"}, Status.RINVSYSID),
        ({"system_id": "fraud", "password": "pw2"}, Status.RBINDFAIL),  # IP not allowed
        ({"kind": "transmitter"}, Status.RBINDFAIL),  # cannot receive copies
    ],
)
async def test_bind_refused(server, kwargs, status):
    assert await asyncio.to_thread(bind_status, server.port, **kwargs) == status
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


async def test_repeated_failures_are_slowed_down(server):
    started = time.monotonic()
    for _ in range(4):
        assert await asyncio.to_thread(bind_status, server.port, password="x") == Status.RINVPASWD
    # Failures 2..4 wait 0.05 + 0.1 + 0.2 s before the answer.
    assert time.monotonic() - started >= 0.35
    assert server.throttle.delay("127.0.0.1") == 0.2
    assert await asyncio.to_thread(bind_status, server.port) == Status.ROK
    assert server.throttle.delay("127.0.0.1") == 0.0


def test_throttle_memory_is_bounded():
    throttle = AuthThrottle(max_addresses=3)
    for n in range(10):
        throttle.failed(f"10.0.0.{n}")
    assert throttle.delay("10.0.0.0") == 0.0  # forgotten, oldest first
    assert throttle.delay("10.0.0.9") == throttle.base


def raw_exchange(port, payload, *, read_until_close=True, timeout=3.0):
    """Send bytes on a raw socket; return the PDUs received and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        framer, pdus, closed = Framer(), [], False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                closed = True
                break
            framer.feed(data)
            pdus.extend(decode(p) for p in framer)
            if pdus and not read_until_close:
                break
        return pdus, closed


async def test_bind_timeout_closes_silent_connection(server):
    pdus, closed = await asyncio.to_thread(raw_exchange, server.port, b"")
    assert closed and pdus == []


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


async def test_two_hundred_concurrent_binds(server):
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
