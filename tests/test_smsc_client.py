"""SMPS as an ESME against a test SMSC on real loopback sockets."""

import asyncio
import contextlib
import logging
import struct

import pytest

from smps._native.pdu import (
    CommandId,
    Framer,
    Status,
    decode,
    encode,
    make_generic_nack,
    make_resp,
)
from smps._native.states import State
from smps.sim.smsc import SimSmsc
from smps.smpp.client import SmscClient
from tests.helpers import until
from tests.nodes import smsc_section

pytestmark = pytest.mark.both_loops


def client_section(port, **overrides):
    """The client's SMSC entry: quick reconnects and response timeout."""
    quick = {"reconnect": {"initial": "50ms", "max": "400ms"}, "response_timeout": "1s"}
    return smsc_section(port, **{**quick, **overrides})


@pytest.fixture
async def sim():
    smsc = SimSmsc()
    await smsc.start()
    yield smsc
    await smsc.stop()


def port_of(sim: SimSmsc) -> int:
    return sim._server.sockets[0].getsockname()[1]


@contextlib.asynccontextmanager
async def running_client(make_config, port, on_message=None, **overrides):
    """An SmscClient to the SMSC on ``port``, started; stopped on the way out."""
    cfg = make_config(smsc=[client_section(port, **overrides)])
    handler = {} if on_message is None else {"on_message": on_message}
    client = SmscClient(cfg.smsc[0], **handler)
    client.start()
    try:
        yield client
    finally:
        await client.stop()


async def test_binds_and_default_handler_allows(sim, make_config):
    port = port_of(sim)
    async with running_client(make_config, port, binds=2) as client:
        await sim.wait_bound(2)
        await until(lambda: client.binds_up == 2)
        assert all(s.sc_interface_version == 0x34 for s in client.sessions)
        numbers = [sim.send_deliver(short_message=b"m%d" % i) for i in range(50)]
        await until(lambda: len(sim.answers) == 50)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert sim.missing == 0 and sim.duplicates == 0
    assert client.binds_up == 0


async def test_data_sm_is_answered_with_data_sm_resp(sim, make_config):
    port = port_of(sim)
    async with running_client(make_config, port):
        await sim.wait_bound()
        sim.send_deliver(command_id=CommandId.DATA_SM, short_message=b"payload")
        await until(lambda: sim.answers)
        session = next(iter(sim.sessions))
        assert session.stats.pdus_in.get(CommandId.DATA_SM_RESP) == 1


async def test_refused_bind_backs_off_and_logs_once(sim, make_config, caplog):
    sim.refuse_status = Status.RBINDFAIL
    port = port_of(sim)
    caplog.set_level(logging.DEBUG, logger="smps.smsc")
    async with running_client(make_config, port) as client:
        await until(lambda: len(sim.bind_attempts) >= 5)
    gaps = [b - a for a, b in zip(sim.bind_attempts, sim.bind_attempts[1:], strict=False)]
    # Jittered exponential back-off: each wait is within [delay/2, delay] and
    # delay doubles from 50 ms up to 400 ms.
    assert gaps[0] >= 0.025
    assert gaps[3] >= 0.2, gaps
    assert client.bind_failures >= 5
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "RBINDFAIL" in errors[0].getMessage()
    assert "secret" not in caplog.text


async def test_reconnects_after_smsc_restart(make_config):
    sim = SimSmsc()
    port = await sim.start()
    try:
        async with running_client(make_config, port) as client:
            await sim.wait_bound()
            await sim.stop()
            await until(lambda: client.binds_up == 0)
            down_attempts = len(client.attempt_times)
            await asyncio.sleep(0.3)  # the SMSC stays down for a while
            assert len(client.attempt_times) - down_attempts <= 5  # no reconnect storm
            sim = SimSmsc()
            await sim.start(port=port)
            await sim.wait_bound()
            assert client.reconnects == 1
            sim.send_deliver()
            await until(lambda: sim.answers)
    finally:
        await sim.stop()


async def test_enquire_link_sent_when_idle(sim, make_config):
    port = port_of(sim)
    async with running_client(make_config, port, enquire_link="100ms"):
        await sim.wait_bound()
        session = next(iter(sim.sessions))
        await until(lambda: session.stats.pdus_in.get(CommandId.ENQUIRE_LINK, 0) >= 2)
        assert session.stats.pdus_out.get(CommandId.ENQUIRE_LINK_RESP, 0) >= 2


class SilentSmsc(asyncio.Protocol):
    """Accepts the bind, then never answers anything again."""

    def connection_made(self, transport):
        self.transport = transport
        self.framer = Framer()

    def data_received(self, data):
        self.framer.feed(data)
        for pdu in self.framer:
            if decode(pdu).command_id == CommandId.BIND_TRANSCEIVER:
                self.transport.write(make_resp(pdu, Status.ROK))


async def test_unanswered_enquire_link_closes_and_reconnects(make_config):
    loop = asyncio.get_running_loop()
    connections = []

    def factory():
        connections.append(SilentSmsc())
        return connections[-1]

    server = await loop.create_server(factory, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running_client(
            make_config, port, enquire_link="100ms", response_timeout="200ms"
        ) as client:
            await until(lambda: len(connections) >= 2, timeout=5)
            assert client.reconnects >= 1
    finally:
        server.close()


async def test_window_limits_outstanding_requests(sim, make_config):
    """The SMSC side's window holds requests back; nothing is lost."""
    sim.window = 2
    port = port_of(sim)
    held = []
    async with running_client(make_config, port, lambda s, pdu: held.append((s, pdu))):
        await sim.wait_bound()
        for _ in range(5):
            sim.send_deliver()
        await until(lambda: len(held) == 2)
        smsc_side = next(iter(sim.sessions))
        assert smsc_side.outstanding == 2 and smsc_side.queued == 3
        for _ in range(5):
            await until(lambda: held)
            session, pdu = held.pop(0)
            session.respond(pdu, Status.ROK)
        await until(lambda: len(sim.answers) == 5)
        assert smsc_side.stats.window_peak == 2


async def test_unbind_from_smsc_closes_session(sim, make_config):
    port = port_of(sim)
    async with running_client(make_config, port) as client:
        await sim.wait_bound()
        await until(lambda: client.binds_up == 1)
        smsc_side = next(iter(sim.sessions))
        esme_side = next(iter(client.sessions))
        await smsc_side.unbind()
        assert smsc_side.state is State.CLOSED
        await until(lambda: esme_side.state is State.CLOSED)
        assert esme_side.stats.pdus_out.get(CommandId.UNBIND_RESP) == 1


async def test_submit_sm_from_smsc_gets_rinvbndsts(sim, make_config):
    """A request the state table forbids is answered with its own resp, not dropped."""
    port = port_of(sim)
    async with running_client(make_config, port):
        await sim.wait_bound()
        smsc_side = next(iter(sim.sessions))
        answers = []
        smsc_side.send(
            encode(CommandId.SUBMIT_SM, 0, {"short_message": b"x"}),
            lambda ctx, status, pdu: answers.append((status, pdu)),
        )
        await until(lambda: answers)
        status, pdu = answers[0]
        assert status == Status.RINVBNDSTS
        assert decode(pdu).command_id == CommandId.SUBMIT_SM_RESP


class FakeSmsc(asyncio.Protocol):
    """An SMSC that misbehaves on purpose: a subclass answers each PDU in on_pdu."""

    def __init__(self):
        self.framer = Framer()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.framer.feed(data)
        for pdu in self.framer:
            self.on_pdu(pdu, decode(pdu))

    def on_pdu(self, pdu: bytes, request) -> None:
        raise NotImplementedError


class EagerSmsc(FakeSmsc):
    """Writes bind_resp and a deliver_sm in one segment, as busy SMSCs do."""

    def __init__(self):
        super().__init__()
        self.answers = []

    def on_pdu(self, pdu, request):
        if request.command_id == CommandId.BIND_TRANSCEIVER:
            deliver = encode(CommandId.DELIVER_SM, 1, {"short_message": b"right away"})
            self.transport.write(make_resp(pdu, Status.ROK) + deliver)
        elif request.command_id == CommandId.DELIVER_SM_RESP:
            self.answers.append(request.command_status)


async def test_deliver_sm_in_the_same_segment_as_bind_resp_is_accepted(make_config):
    loop = asyncio.get_running_loop()
    smsc = EagerSmsc()
    server = await loop.create_server(lambda: smsc, "127.0.0.1", 0)
    try:
        async with running_client(make_config, server.sockets[0].getsockname()[1]):
            await until(lambda: smsc.answers)
            assert smsc.answers == [Status.ROK]
    finally:
        server.close()


class MalformedFirstBindSmsc(FakeSmsc):
    """Answers the first bind of the server's life with a bind_transceiver_resp whose
    system_id lacks its NUL terminator, every later bind correctly."""

    def __init__(self, binds: list[str]):
        super().__init__()
        self.binds = binds  # shared by the server's connections: "malformed" | "ok"

    def on_pdu(self, pdu, request):
        if request.command_id != CommandId.BIND_TRANSCEIVER:
            return
        if not self.binds:
            body = b"smsc"  # C-Octet String without its NUL
            length, command_id = 16 + len(body), CommandId.BIND_TRANSCEIVER_RESP
            self.transport.write(
                struct.pack(">IIII", length, command_id, 0, request.sequence) + body
            )
            self.binds.append("malformed")
        else:
            self.transport.write(make_resp(pdu, Status.ROK))
            self.binds.append("ok")


async def test_malformed_bind_resp_is_logged_and_the_bind_retried(make_config, caplog):
    """A PduError from the bind must not end the reconnect loop (it used to, silently)."""
    caplog.set_level(logging.INFO, logger="smps.smsc")
    loop = asyncio.get_running_loop()
    binds: list[str] = []
    server = await loop.create_server(lambda: MalformedFirstBindSmsc(binds), "127.0.0.1", 0)
    try:
        async with running_client(make_config, server.sockets[0].getsockname()[1]) as client:
            await until(lambda: client.binds_up == 1)
            assert binds == ["malformed", "ok"]
    finally:
        server.close()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "malformed response from the SMSC: system_id: no NUL" in errors[0].getMessage()
    assert errors[0].exc_info is None  # a peer's fault, not a bug: no traceback


class FlakyClient(SmscClient):
    """The first attempts fail with exceptions no bind attempt should raise (a bug)."""

    def __init__(self, *args, failures: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures_left = failures

    async def _connect_and_bind(self, name):
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError(f"bug #{self.failures_left}")
        return await super()._connect_and_bind(name)


async def test_unexpected_exception_is_retried_with_its_traceback_logged_once(
    sim, make_config, caplog
):
    caplog.set_level(logging.INFO, logger="smps.smsc")
    cfg = make_config(smsc=[client_section(port_of(sim))])
    client = FlakyClient(cfg.smsc[0], failures=2)
    client.start()
    try:
        await sim.wait_bound()
        await until(lambda: client.binds_up == 1)
    finally:
        await client.stop()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage().split(": ", 2)[2].split(" (")[0] for r in errors] == [
        "unexpected RuntimeError: bug #1",
        "unexpected RuntimeError: bug #0",
    ]
    assert errors[0].exc_info is not None and errors[1].exc_info is None


class NackingSmsc(FakeSmsc):
    """Answers every bind with generic_nack carrying ``status`` and a deliver_sm right
    behind it in the same segment; keeps the statuses the ESME answers those with."""

    def __init__(self, status: int, binds: list[int], answers: list[int]):
        super().__init__()
        self.status = status
        self.binds = binds
        self.answers = answers

    def on_pdu(self, pdu, request):
        if request.command_id == CommandId.BIND_TRANSCEIVER:
            self.binds.append(request.sequence)
            deliver = encode(CommandId.DELIVER_SM, 1, {"short_message": b"too early"})
            self.transport.write(make_generic_nack(request.sequence, self.status) + deliver)
        elif request.command_id == CommandId.DELIVER_SM_RESP:
            self.answers.append(request.command_status)


@pytest.mark.parametrize("status", [Status.ROK, Status.RSYSERR])
async def test_bind_answered_by_generic_nack_is_refused(make_config, caplog, status):
    """generic_nack is never a bind's success, even with command_status 0."""
    caplog.set_level(logging.INFO, logger="smps.smsc")
    loop = asyncio.get_running_loop()
    binds: list[int] = []
    answers: list[int] = []
    server = await loop.create_server(lambda: NackingSmsc(status, binds, answers), "127.0.0.1", 0)
    bound_seen = []
    try:
        async with running_client(make_config, server.sockets[0].getsockname()[1]) as client:

            def refused_three_times():
                bound_seen.append(client.binds_up)
                return client.bind_failures >= 3

            await until(refused_three_times)
    finally:
        server.close()
    assert max(bound_seen) == 0 and len(binds) >= 3
    assert Status.ROK not in answers  # the deliver_sm behind the nack found no bound session
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    name = f"ESME_{Status(status).name}"
    assert f"bind answered by generic_nack with {name} (0x{status:08X})" in errors[0]


class CrossingSmsc(FakeSmsc):
    """Answers our unbind only after a deliver_sm of its own, which crosses it."""

    def __init__(self):
        super().__init__()
        self.answers = []

    def on_pdu(self, pdu, request):
        if request.command_id == CommandId.BIND_TRANSCEIVER:
            self.transport.write(make_resp(pdu, Status.ROK))
        elif request.command_id == CommandId.UNBIND:
            deliver = encode(CommandId.DELIVER_SM, 7, {"short_message": b"crossing"})
            self.transport.write(deliver + make_resp(pdu, Status.ROK))
        elif request.command_id == CommandId.DELIVER_SM_RESP:
            self.answers.append(request.command_status)


async def test_a_deliver_sm_crossing_our_unbind_is_throttled_for_a_retry(make_config):
    """ESME_RTHROTTLED, which the SMSC sends again (to the other node of a pair), not
    ESME_RINVBNDSTS, which it may take as a final refusal of the message."""
    loop = asyncio.get_running_loop()
    smsc = CrossingSmsc()
    server = await loop.create_server(lambda: smsc, "127.0.0.1", 0)
    try:
        async with running_client(make_config, server.sockets[0].getsockname()[1]) as client:
            await until(lambda: client.binds_up == 1)
            session = next(iter(client.sessions))
            await session.unbind()
            assert smsc.answers == [Status.RTHROTTLED]
            assert session.stats.errors == {"after_unbind": 1}
    finally:
        server.close()
