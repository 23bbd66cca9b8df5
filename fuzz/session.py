"""atheris target: the session core of both sides fed hostile byte streams.

Run: ``python -m fuzz.session [libFuzzer options] [corpus dir]`` (after ``make fuzz-build``).

Each input drives one connection on a real (uvloop) event loop through an
in-memory transport: an NE connection of a real NeServer (SMPS as the SMSC),
or a connection of SmscClient to an SMSC (SMPS as the ESME), built by the same
factories the node uses. Input layout (``fuzz.seeds.session_input`` builds it):

- octet 0: bit 0 the side (0 NE, 1 SMSC); bit 1 start bound (NE: a valid
  bind_transceiver first; SMSC: the bind answered ESME_ROK); bit 2 a peer
  that reads slowly (the transport pauses writing past 64 octets and drains
  every ``drain_every`` reads); bits 3-5: copies SMPS sends a bound NE first;
- octet 1: read size (0: everything in one read); octet 2: drain_every;
- the rest: the bytes the peer sends.

After the stream, and again after the connection is gone, it checks: nothing
raised out of data_received, no exception reached the loop and nothing was
logged at ERROR; what SMPS wrote frames cleanly; every response it wrote
answers a request it read, with the matching command id, at most once per
request, and while the connection is open every request read was answered
(outbind and alert_notification have no response); a bad command_length was
answered generic_nack ESME_RINVCMDLEN and closed the connection, and the
stream was read up to it; each copy's callback ran exactly once; the NE left
the bind registry; SMSC bind() failed only as it documents.
"""

import asyncio
import logging
import struct
from collections import Counter

from fuzz import engine
from fuzz.frames import reference_frames

with engine.instrumented():
    import msgspec
    import uvloop
    import yaml

    from smps import config as config_module
    from smps._native.pdu import CommandId, Status, decode_sm, encode
    from smps._native.states import State
    from smps.errors import PduError
    from smps.smpp.client import BindRefused, SmscClient
    from smps.smpp.server import NeServer
    from smps.smpp.session import REFUSED, SessionClosed

C = CommandId
RESPONSE_BIT = 0x80000000
NO_RESPONSE_PDU = {C.OUTBIND, C.ALERT_NOTIFICATION}
SLOW_PEER_HIGH_WATER = 64
NE_BIND_SEQUENCE = 0x7FFF0001
PASSWORD = b"pw"
# What SmscSession.bind() may raise: what it documents, and PduError for a response it
# cannot decode (SmscClient's reconnect loop survives any exception, with a log line).
BIND_ERRORS = (BindRefused, SessionClosed, TimeoutError, PduError)

CONFIG = config_module.loads(
    yaml.safe_dump(
        {
            "server": {"listen": "127.0.0.1:0", "max_pdu_size": 1024},
            "ne_accounts": [{"system_id": "antispam", "password": PASSWORD.decode()}],
            "smsc": [
                {
                    "name": "smsc1",
                    "host": "127.0.0.1",
                    "port": 2775,
                    "system_id": "smps",
                    "password": "secret",
                }
            ],
        }
    ),
    file="<fuzz>",
)
NE_BIND = encode(
    C.BIND_TRANSCEIVER, NE_BIND_SEQUENCE, {"system_id": b"antispam", "password": PASSWORD}
)
SMSC_BIND_RESP = encode(C.BIND_TRANSCEIVER_RESP, 1, {"system_id": b"SMSC"}, [(0x0210, b"\x34")])
COPY = encode(
    C.DELIVER_SM,
    0,
    {"source_addr": b"4670000", "destination_addr": b"4671111", "short_message": b"hi"},
)


class MemoryTransport(asyncio.Transport):
    """An asyncio.Transport that keeps what is written; close/abort end the
    connection on the next loop iteration, as socket transports do."""

    def __init__(self, loop, protocol, *, slow: bool):
        super().__init__()
        self._loop = loop
        self._protocol = protocol
        self._slow = slow
        self.written = bytearray()
        self.buffered = 0  # written, not yet taken by the (slow) peer
        self.high = self.low = 0
        self.writing_paused = False
        self.reading = True
        self.closing = False

    def write(self, data) -> None:
        self.written += data
        if self._slow:
            self.buffered += len(data)
            if not self.writing_paused and self.buffered > min(self.high, SLOW_PEER_HIGH_WATER):
                self.writing_paused = True
                self._protocol.pause_writing()

    def writelines(self, list_of_data) -> None:
        for data in list_of_data:
            self.write(data)

    def drain(self) -> None:
        """The peer reads everything written so far."""
        self.buffered = 0
        if self.writing_paused and not self.closing:
            self.writing_paused = False
            self._protocol.resume_writing()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        self.high, self.low = high, low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.low, self.high

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_reading(self) -> bool:
        return self.reading

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            self._loop.call_soon(self._protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name, default=None):
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 2775)}.get(
            name, default
        )


class Problems(logging.Handler):
    """Exceptions that reached the loop and records logged at ERROR (formatting every
    record on the way, so a broken log call is found too)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.found.append(f"logged: {message}")

    def loop_exception(self, loop, context) -> None:
        self.found.append(f"loop: {context.get('message')}: {context.get('exception')!r}")


def answer_original(session, pdu: bytes) -> None:
    """The proxy's contract for an original: a malformed one raises PduError (the
    session answers it), a good one is answered once."""
    decode_sm(pdu)
    session.respond(pdu, Status.ROK)


PROBLEMS = Problems()
_smps_log = logging.getLogger("smps")
_smps_log.addHandler(PROBLEMS)
_smps_log.setLevel(logging.WARNING)
_smps_log.propagate = False
LOOP = uvloop.new_event_loop()
LOOP.set_exception_handler(PROBLEMS.loop_exception)
asyncio.set_event_loop(LOOP)


async def _start_servers():
    # Refusals answered on the next loop turn, not a second later, and no lockout:
    # the inputs' wrong binds all come from one peer address, and a lockout would
    # refuse the good bind of a later input (neither is a valid setting for an
    # operator, so both are set past the config's checks).
    at_once = msgspec.structs.replace(
        CONFIG.server, auth_failure_delay=0.0, auth_lockout_failures=1 << 62
    )
    server = NeServer(at_once, CONFIG.ne_accounts, copy_timeout=5.0)
    return server, SmscClient(CONFIG.smsc[0], answer_original)


NE_SERVER, SMSC_CLIENT = LOOP.run_until_complete(_start_servers())


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


class Run:
    """One connection driven by one input; what it saw, for the checks."""

    def __init__(self, data: bytes):
        flags = data[0] if data else 0
        self.smsc = bool(flags & 1)
        self.bound = bool(flags & 2)
        self.slow = bool(flags & 4)
        self.copies = flags >> 3 & 7
        self.read = data[1] if len(data) > 1 else 0
        self.drain_every = max(1, data[2] if len(data) > 2 else 1)
        self.stream = data[3:]
        self.fed = bytearray()
        self.callbacks: Counter = Counter()
        self.sent: list[int] = []
        self.bind_task = None

    def on_copy_answer(self, index, status, pdu) -> None:
        self.callbacks[index] += 1

    def feed(self, chunk: bytes) -> None:
        self.fed += chunk
        self.session.data_received(chunk)

    async def drive(self) -> None:
        if self.smsc:
            self.session = SMSC_CLIENT._new_session("smsc1#0")
        else:
            self.session = NE_SERVER._new_session()
        self.transport = MemoryTransport(LOOP, self.session, slow=self.slow)
        self.session.connection_made(self.transport)
        if self.smsc:
            self.bind_task = asyncio.ensure_future(self.session.bind(CONFIG.smsc[0]))
            await settle()
            if self.bound:
                self.feed(SMSC_BIND_RESP)
                await settle()
                assert self.session.state is State.BOUND_TRX, self.session.state
        elif self.bound:
            self.feed(NE_BIND)
            await settle()
            assert self.session.state is State.BOUND_TRX, self.session.state
            for index in range(self.copies):
                if self.session.send(COPY, self.on_copy_answer, index) != REFUSED:
                    self.sent.append(index)
        size = self.read or len(self.stream) or 1
        for n, at in enumerate(range(0, len(self.stream), size)):
            if self.transport.closing:
                break
            if not self.transport.reading and self.slow:
                self.transport.drain()
                await settle()
            if not self.transport.reading:
                break
            self.feed(self.stream[at : at + size])
            await settle()
            if self.slow and n % self.drain_every == self.drain_every - 1:
                self.transport.drain()
                await settle()
        await settle()
        self.open_at_end = not self.transport.closing
        self.paused_at_end = self.session.reading_paused
        self.processed = sum(self.session.stats.pdus_in.values())
        self.framing = self.session.stats.errors.get("framing", 0)
        self.transport.abort()
        await settle()


def check(run: Run) -> None:
    session, transport = run.session, run.transport
    assert session.closed.done() and session.state is State.CLOSED
    max_length = CONFIG.server.max_pdu_size if not run.smsc else 65536
    received, bad_header = reference_frames(bytes(run.fed), max_length)
    assert run.processed <= len(received)
    written, garbage = reference_frames(bytes(transport.written), 0xFFFFFFFF)
    assert garbage is None and sum(map(len, written)) == len(transport.written), (
        "SMPS wrote bytes that do not frame"
    )

    # Requests read, by sequence number: (command ids, how many need an answer).
    headers = [struct.unpack_from(">III", pdu, 4) for pdu in received]
    requests: dict[int, list[int]] = {}
    for command_id, _status, seq in headers[: run.processed]:
        if not command_id & RESPONSE_BIT:
            requests.setdefault(seq, []).append(command_id)
    nack_for_framing = None
    if run.framing:
        assert bad_header is not None and run.processed == len(received), (
            "a framing error where the stream frames"
        )
        # The header's sequence number when its 16 octets had come, else 0: a bad
        # command_length is refused from its 4 octets.
        header_seq = struct.unpack_from(">I", bad_header, 12)[0] if len(bad_header) == 16 else 0
        nacks = {
            seq: struct.pack(">IIII", 16, C.GENERIC_NACK, Status.RINVCMDLEN, seq)
            for seq in {header_seq, 0}
        }
        nack_for_framing = next((seq for seq, nack in nacks.items() if nack in written), None)
        assert nack_for_framing is not None, (
            "a framing error was not answered generic_nack ESME_RINVCMDLEN"
        )
        assert not run.open_at_end, "a framing error did not close the connection"
    elif not run.paused_at_end:
        assert bad_header is None, "a bad command_length was read and not refused"
        assert run.processed == len(received), "whole PDUs were left unread"

    answers: dict[int, list[int]] = {}
    for pdu in written:
        command_id, _status, seq = struct.unpack_from(">III", pdu, 4)
        if command_id & RESPONSE_BIT:
            answers.setdefault(seq, []).append(command_id)
    if nack_for_framing is not None:
        answers[nack_for_framing].remove(C.GENERIC_NACK)
    for seq, answered in answers.items():
        asked = requests.get(seq, [])
        assert len(answered) <= len(asked), f"{len(answered)} answers to {len(asked)} requests"
        for command_id in answered:
            assert command_id == C.GENERIC_NACK or command_id & ~RESPONSE_BIT in asked
    if run.open_at_end:
        for seq, asked in requests.items():
            needed = sum(1 for c in asked if c not in NO_RESPONSE_PDU)
            assert len(answers.get(seq, [])) >= needed, f"a request (seq {seq}) went unanswered"

    for index in range(run.copies):
        expected = 1 if index in run.sent else 0
        assert run.callbacks[index] == expected, f"copy {index}: {run.callbacks[index]} callbacks"
    assert not NE_SERVER.registry.by_account, "a closed NE session stayed in the bind registry"
    if run.bind_task is not None:
        assert run.bind_task.done()
        error = run.bind_task.exception()
        assert error is None or isinstance(error, BIND_ERRORS), (
            f"SmscSession.bind() raised {error!r}, not one of BindRefused, SessionClosed, "
            "TimeoutError, PduError"
        )
        if error is None:
            # Bound: by the first response to the bind (sequence 1), and only by an ESME_ROK
            # bind_transceiver_resp (a generic_nack or another command's response is no bind).
            first = next(h for h in headers[: run.processed] if h[2] == 1 and h[0] & RESPONSE_BIT)
            assert first[:2] == (C.BIND_TRANSCEIVER_RESP, 0), (
                f"bind() succeeded on a response 0x{first[0]:08X} status 0x{first[1]:X}"
            )


def test_one_input(data: bytes) -> None:
    run = Run(data)
    LOOP.run_until_complete(run.drive())
    if PROBLEMS.found:
        found, PROBLEMS.found = PROBLEMS.found, []
        raise AssertionError("; ".join(found))
    check(run)


if __name__ == "__main__":
    engine.run(test_one_input)
