"""An SMSC for tests whose PDUs smpplib builds and parses: SMPS's own codec is not
on this side of the wire, so what SMPS answers is read by an independent
implementation. It accepts binds (any system_id), delivers deliver_sm on the
bind the test names and keeps each answer's command_status by sequence."""

import asyncio
import contextlib
import struct

import smpplib.consts
import smpplib.smpp

from tests.helpers import until
from tests.nodes import RunNode, sections


class _Client:
    """The little smpplib wants of a client to build or parse a PDU."""

    sequence = 0

    def next_sequence(self):
        return 1


_CLIENT = _Client()


def _pdu(command: str, sequence: int, **params) -> bytes:
    pdu = smpplib.smpp.make_pdu(command, client=_CLIENT, **params)
    pdu.sequence = sequence
    return pdu.generate()


class SmpplibSmsc:
    def __init__(self):
        self.binds: list[asyncio.StreamWriter] = []
        self.answers: dict[int, int] = {}  # sequence -> command_status of the deliver_sm_resp
        self._server: asyncio.AbstractServer | None = None
        self._next_sequence = 0
        self._readers: set[asyncio.Task] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self.binds:
            writer.close()
        if self._server is not None:
            self._server.close()
        for task in list(self._readers):
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    async def _serve(self, reader, writer) -> None:
        task = asyncio.current_task()
        self._readers.add(task)
        try:
            while True:
                header = await reader.readexactly(4)
                body = await reader.readexactly(struct.unpack(">I", header)[0] - 4)
                pdu = smpplib.smpp.parse_pdu(header + body, client=_CLIENT)
                if pdu.command == "bind_transceiver":
                    writer.write(_pdu("bind_transceiver_resp", pdu.sequence, system_id="smsc"))
                    self.binds.append(writer)
                elif pdu.command == "enquire_link":
                    writer.write(_pdu("enquire_link_resp", pdu.sequence))
                elif pdu.command == "deliver_sm_resp":
                    self.answers[pdu.sequence] = pdu.status
                elif pdu.command == "unbind":
                    writer.write(_pdu("unbind_resp", pdu.sequence))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._readers.discard(task)
            if writer in self.binds:
                self.binds.remove(writer)

    def deliver(self, bind: int, source: str, destination: str, text: bytes = b"hi",
                **params) -> int:  # fmt: skip
        """Send one deliver_sm (international numbers unless ``params`` say otherwise)
        on bind number ``bind``; its sequence, the key of its answer."""
        self._next_sequence += 1
        fields = {
            "source_addr_ton": smpplib.consts.SMPP_TON_INTL,
            "source_addr_npi": smpplib.consts.SMPP_NPI_ISDN,
            "source_addr": source,
            "dest_addr_ton": smpplib.consts.SMPP_TON_INTL,
            "dest_addr_npi": smpplib.consts.SMPP_NPI_ISDN,
            "destination_addr": destination,
            "short_message": text,
            **params,
        }
        self.binds[bind].write(_pdu("deliver_sm", self._next_sequence, **fields))
        return self._next_sequence


def parse(pdu: bytes):
    """A PDU as smpplib reads it (e.g. a copy an NE got)."""
    return smpplib.smpp.parse_pdu(pdu, client=_CLIENT)


async def answers(smsc: SmpplibSmsc, sequences: list[int]) -> list[int]:
    """The statuses the SMSC got for ``sequences``, once it has them all."""
    await until(lambda: all(s in smsc.answers for s in sequences), timeout=15)
    return [smsc.answers[s] for s in sequences]


async def reach_every_ne(smsc: SmpplibSmsc, nes: list) -> None:
    """Probe on both binds until every NE gets both copies (the workers tell each
    other their NE binds asynchronously), then forget the probes."""
    for attempt in range(100):
        before = [len(ne.received) for ne in nes]
        await answers(
            smsc, [smsc.deliver(b, f"86138000{attempt:05d}", "1", b"probe") for b in (0, 1)]
        )
        await asyncio.sleep(0.05)
        if all(len(ne.received) == n + 2 for ne, n in zip(nes, before, strict=True)):
            break
    for ne in nes:
        ne.received.clear()


@contextlib.asynccontextmanager
async def smpplib_node(tmp_path, **over):
    """`smps run` (tests/nodes.py, 2 workers) bound to a fresh SmpplibSmsc, one bind
    per worker; ``over`` replaces sections of its configuration."""
    smsc = SmpplibSmsc()
    node = RunNode(tmp_path, sections(tmp_path, await smsc.start(), **over))
    try:
        await node.start()
        await until(lambda: len(smsc.binds) == 2)
        yield smsc, node
    finally:
        await node.stop()
        await smsc.stop()
