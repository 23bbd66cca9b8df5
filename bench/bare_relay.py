"""The bare relay: what any SMPP fan-out proxy spends, the yardstick `smps bench
--baseline` measures SMPS against (issue 23).

It does only what a proxy must: bind to the SMSC, accept the NEs' binds, copy each
deliver_sm and data_sm to every NE account (to one of its binds, in turn), wait for
every account's answer and answer the SMSC once: with the first block (any non-zero
status, passed on as it came) or, when every NE allowed, ESME_ROK. Nothing else: no
screening, records, traces or statistics, no verdict timeout (the bench's NEs answer
every copy), no NE windows (the SMSC's window bounds what is in flight), no decoding
beyond the 16-byte header and a bind's system_id, no password check (the bench's own
accounts).

Plain Python on uvloop, as SMPS runs, in one process. What a connection writes is
queued and written once per loop iteration, so a burst of reads costs one send per
connection. It imports nothing from smps: its cost does not move with SMPS's code.

    python -m bench.bare_relay --smsc-port PORT --listen PORT [--binds 2]
"""

import argparse
import asyncio
import itertools
import signal
import struct
import sys
from collections.abc import Callable

import uvloop

HEADER = struct.Struct(">IIII")  # command_length, command_id, command_status, sequence
RESPONSE_BIT = 0x80000000
GENERIC_NACK = 0x80000000
BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER = 0x01, 0x02, 0x09
BIND_TRANSCEIVER_RESP = BIND_TRANSCEIVER | RESPONSE_BIT
DELIVER_SM, DATA_SM = 0x05, 0x103
TRAFFIC = frozenset({DELIVER_SM, DATA_SM})  # what the SMSC sends that NEs get copies of
BINDS = frozenset({BIND_RECEIVER, BIND_TRANSMITTER, BIND_TRANSCEIVER})
UNBIND, ENQUIRE_LINK = 0x06, 0x15
ESME_RINVCMDID = 0x03
INTERFACE_VERSION = 0x34
MAX_SEQUENCE = 0x7FFFFFFF
RELAY_SYSTEM_ID = b"bare_relay"


class Link(asyncio.Protocol):
    """One SMPP connection: cuts PDUs out of the byte stream and queues what it
    writes until the relay's next flush."""

    def __init__(self, relay: "Relay"):
        self.relay = relay
        self.transport: asyncio.Transport | None = None
        self.inbox = bytearray()
        self.outbox: list[bytes] = []
        self.queued = False  # in the relay's list of links to flush

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        inbox = self.inbox
        inbox += data
        size = len(inbox)
        start = 0
        unpack = HEADER.unpack_from
        on_pdu = self.on_pdu
        while size - start >= 16:
            length, command_id, status, sequence = unpack(inbox, start)
            if length < 16:
                self.transport.abort()  # not SMPP: nothing more can be framed
                return
            end = start + length
            if end > size:
                break
            # the relay reads no response's body: only requests' bodies are cut out
            body = b"" if command_id & RESPONSE_BIT else bytes(inbox[start + 16 : end])
            on_pdu(command_id, status, sequence, body)
            start = end
        del inbox[:start]

    def on_pdu(self, command_id: int, status: int, sequence: int, body: bytes) -> None:
        raise NotImplementedError

    def write(self, pdu: bytes) -> None:
        self.outbox.append(pdu)
        if not self.queued:
            self.relay.queue(self)

    def respond(self, command_id: int, sequence: int, status: int = 0, body: bytes = b"") -> None:
        self.write(HEADER.pack(16 + len(body), command_id, status, sequence) + body)

    def answer_common(self, command_id: int, sequence: int) -> None:
        """What either side may send besides its traffic: enquire_link, unbind, and
        requests the relay does not take (generic_nack); stray responses are dropped."""
        if command_id == ENQUIRE_LINK:
            self.respond(ENQUIRE_LINK | RESPONSE_BIT, sequence)
        elif command_id == UNBIND:
            self.respond(UNBIND | RESPONSE_BIT, sequence)
            self.relay.close_after_flush(self)
        elif not command_id & RESPONSE_BIT:
            self.respond(GENERIC_NACK, sequence, ESME_RINVCMDID)


class Original:
    """An SMSC message waiting for its NEs' answers."""

    __slots__ = ("response_id", "sequence", "smsc", "waiting")

    def __init__(self, smsc: "SmscLink", sequence: int, response_id: int, waiting: int):
        self.smsc = smsc
        self.sequence = sequence
        self.response_id = response_id
        self.waiting = waiting  # NE answers still to come; 0 once the SMSC has its answer


class SmscLink(Link):
    """A bind to the SMSC: originals in, one answer out for each."""

    def __init__(self, relay: "Relay", bound: asyncio.Future):
        super().__init__(relay)
        self.bound = bound
        self.fan_out = relay.fan_out

    def on_pdu(self, command_id: int, status: int, sequence: int, body: bytes) -> None:
        if command_id in TRAFFIC:
            self.fan_out(self, command_id, sequence, body)
        elif command_id & RESPONSE_BIT and not self.bound.done():  # to our bind
            self.bound.set_result(status if command_id == BIND_TRANSCEIVER_RESP else -1)
        else:
            self.answer_common(command_id, sequence)

    def answer(self, original: Original, status: int) -> None:
        self.write(HEADER.pack(17, original.response_id, status, original.sequence) + b"\0")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.bound.done():
            self.bound.set_result(None)


class NeLink(Link):
    """An NE's bind: copies out, its answers in."""

    account: str | None = None  # its system_id, once bound to take copies

    def __init__(self, relay: "Relay"):
        super().__init__(relay)
        self.waiting = relay.waiting

    def on_pdu(self, command_id: int, status: int, sequence: int, body: bytes) -> None:
        if command_id & RESPONSE_BIT:  # the relay sends an NE nothing but copies
            # The first block answers the SMSC at once, the last answer when every NE
            # allowed; the rest change nothing.
            original = self.waiting.pop(sequence, None)
            if original is not None and original.waiting:
                if status or original.waiting == 1:
                    original.waiting = 0
                    original.smsc.answer(original, status)
                else:
                    original.waiting -= 1
        elif command_id in BINDS:
            system_id = body[: body.find(b"\0")].decode("ascii", "replace")
            self.respond(command_id | RESPONSE_BIT, sequence, 0, RELAY_SYSTEM_ID + b"\0")
            if command_id != BIND_TRANSMITTER:  # a transmitter bind takes no deliver_sm
                self.relay.add_bind(system_id, self)
        else:
            self.answer_common(command_id, sequence)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.remove_bind(self)


class Relay:
    """The copies in flight, the NE accounts, and the links with something to write."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.accounts: dict[str, list[NeLink]] = {}  # system_id -> binds that take copies
        # For each account with such a bind: its binds' next in turn (round robin)
        self.next_binds: list[Callable[[], NeLink]] = []
        self.waiting: dict[int, Original] = {}  # copy's sequence number -> its original
        self.sequence = 0
        self.to_flush: list[Link] = []
        self.closing: list[Link] = []

    # ---- the traffic -------------------------------------------------------

    def fan_out(self, smsc: SmscLink, command_id: int, sequence: int, body: bytes) -> None:
        """A copy of the original to one bind of every reachable NE account."""
        next_binds = self.next_binds
        original = Original(smsc, sequence, command_id | RESPONSE_BIT, len(next_binds))
        if not next_binds:
            smsc.answer(original, 0)  # no NE to ask: allow, as SMPS's on_no_ne does
            return
        length = 16 + len(body)
        waiting = self.waiting
        pack = HEADER.pack
        copy = self.sequence
        for next_bind in next_binds:
            ne = next_bind()
            copy = copy % MAX_SEQUENCE + 1
            waiting[copy] = original
            outbox = ne.outbox
            outbox.append(pack(length, command_id, 0, copy))
            outbox.append(body)
            if not ne.queued:
                self.queue(ne)
        self.sequence = copy

    # ---- NE binds ----------------------------------------------------------

    def add_bind(self, system_id: str, ne: NeLink) -> None:
        self.accounts.setdefault(system_id, []).append(ne)
        ne.account = system_id
        self._take_turns()

    def remove_bind(self, ne: NeLink) -> None:
        """A bind gone: no more copies to it (those it had are never answered)."""
        if ne.account is not None:
            self.accounts[ne.account].remove(ne)
            self._take_turns()

    def _take_turns(self) -> None:
        self.next_binds = [
            itertools.cycle(list(binds)).__next__ for binds in self.accounts.values() if binds
        ]

    # ---- writing -----------------------------------------------------------

    def queue(self, link: Link) -> None:
        """Flush `link` at the end of this loop iteration, with every other link written."""
        link.queued = True
        if not self.to_flush:
            self.loop.call_soon(self.flush)
        self.to_flush.append(link)

    def close_after_flush(self, link: Link) -> None:
        self.closing.append(link)

    def flush(self) -> None:
        links, self.to_flush = self.to_flush, []
        for link in links:
            link.queued = False
            outbox, link.outbox = link.outbox, []
            transport = link.transport
            if transport is not None and not transport.is_closing():
                transport.write(b"".join(outbox))
        closing, self.closing = self.closing, []
        for link in closing:
            link.transport.close()


def bind_pdu(system_id: str, password: str) -> bytes:
    """bind_transceiver with sequence number 1: no system_type, any address."""
    body = b"%s\0%s\0\0" % (system_id.encode(), password.encode())
    body += bytes([INTERFACE_VERSION, 0, 0]) + b"\0"
    return HEADER.pack(16 + len(body), BIND_TRANSCEIVER, 0, 1) + body


async def bind_to_smsc(relay: Relay, host: str, port: int, system_id: str, password: str) -> None:
    loop = relay.loop
    bound = loop.create_future()
    _transport, link = await loop.create_connection(lambda: SmscLink(relay, bound), host, port)
    link.write(bind_pdu(system_id, password))
    status = await bound
    if status != 0:
        print(f"bare relay: no bind to the SMSC (status {status})", file=sys.stderr)
        raise SystemExit(1)


async def start(args: argparse.Namespace) -> tuple[Relay, asyncio.AbstractServer]:
    """Listen for the NEs, then bind to the SMSC `args.binds` times: as with SMPS, the
    NEs can bind from then on, and the SMSC sends once every bind is up."""
    relay = Relay()
    host, _, port = args.listen.rpartition(":")
    server = await relay.loop.create_server(lambda: NeLink(relay), host or "127.0.0.1", int(port))
    for _ in range(args.binds):
        await bind_to_smsc(relay, args.smsc_host, args.smsc_port, args.system_id, args.password)
    return relay, server


async def main(args: argparse.Namespace) -> None:
    stopped = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopped.set)
    _relay, server = await start(args)
    await stopped.wait()
    server.close()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bare_relay", description=__doc__.split("\n\n")[0])
    p.add_argument("--smsc-host", default="127.0.0.1")
    p.add_argument("--smsc-port", type=int, required=True)
    p.add_argument("--binds", type=int, default=2, help="binds to the SMSC (default: 2)")
    p.add_argument("--system-id", default="smps")
    p.add_argument("--password", default="secret")
    p.add_argument("--listen", required=True, metavar="[HOST:]PORT", help="for the NEs' binds")
    return p.parse_args(argv)


if __name__ == "__main__":
    uvloop.run(main(parse()))
