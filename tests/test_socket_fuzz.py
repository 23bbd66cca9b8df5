"""A short run of the socket fuzzer (fuzz/sockets.py) against `smps run` with 2
workers, every attack included, and regression tests for what the fuzzers
found: a corrupt bind_resp, a bind "answered" by another command's response,
and a huge first command_length."""

import asyncio
import struct

import yaml

from fuzz.sockets import fuzz_node
from smps import config as config_module
from smps._native.pdu import CommandId, Status, encode
from smps.smpp.client import SmscClient
from tests.helpers import until
from tests.nodes import RunNode, sections, smsc_section


async def test_node_survives_a_short_socket_fuzz(tmp_path):
    report = await fuzz_node(tmp_path / "node", seconds=6, seed=18)
    assert report.problems == []
    assert sum(report.attacks.values()) > 30
    assert any(kind.startswith("smsc_") for kind in report.attacks)


class OneBadBindSmsc:
    """An SMSC answering the first bind with `first_answer(seq)` and every later
    bind with ESME_ROK; counts the binds it got."""

    def __init__(self, first_answer):
        self.first_answer = first_answer
        self.binds = 0
        self.writers = []

    async def start(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def serve(self, reader, writer):
        self.writers.append(writer)
        length, command_id, _status, seq = struct.unpack(">IIII", await reader.readexactly(16))
        await reader.readexactly(length - 16)
        self.binds += 1
        if self.binds == 1:
            writer.write(self.first_answer(seq))
        else:
            writer.write(encode(command_id | 0x80000000, seq, {"system_id": b"SMSC"}))
        await reader.read()  # hold the connection until the client goes

    async def stop(self):
        self.server.close()
        for writer in self.writers:
            writer.close()


async def bind_once_refused(first_answer) -> tuple[SmscClient, OneBadBindSmsc]:
    smsc = OneBadBindSmsc(first_answer)
    port = await smsc.start()
    section = smsc_section(
        port, reconnect={"initial": "50ms", "max": "200ms"}, response_timeout="1s"
    )
    cfg = config_module.loads(yaml.safe_dump({"smsc": [section]}), file="<test>").smsc[0]
    client = SmscClient(cfg)
    client.start()
    return client, smsc


async def test_a_corrupt_bind_resp_is_retried():
    # bind_transceiver_resp, ESME_ROK, system_id "SMSC", then a TLV header that
    # announces 0x31 octets of which 3 follow (ESME_RINVOPTPARSTREAM).
    def corrupt(seq):
        return (
            bytes.fromhex("0000001b80000009 00000000")
            + struct.pack(">I", seq)
            + (bytes.fromhex("534d534300 02100031 313131"))
        )

    client, smsc = await bind_once_refused(corrupt)
    try:
        await until(lambda: client.binds_up == 1, timeout=3)
        assert smsc.binds == 2
    finally:
        await client.stop()
        await smsc.stop()


async def test_only_a_bind_resp_completes_a_bind():
    client, smsc = await bind_once_refused(lambda seq: encode(CommandId.ENQUIRE_LINK_RESP, seq))
    try:
        await until(lambda: smsc.binds == 2, timeout=3)  # refused, so bound on a retry
    finally:
        await client.stop()
        await smsc.stop()


async def test_a_huge_first_command_length_gets_generic_nack(tmp_path):
    node = RunNode(tmp_path, sections(tmp_path, 9, server={"listen": "127.0.0.1:0"}))
    await node.start(timeout=60)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.smpp_port)
        writer.write(struct.pack(">IIII", 0xFFFFFFFF, CommandId.ENQUIRE_LINK, 0, 7))
        async with asyncio.timeout(3):  # bind_timeout is 10 s
            answer = await reader.readexactly(16)
        assert struct.unpack(">IIII", answer) == (16, CommandId.GENERIC_NACK, Status.RINVCMDLEN, 7)
        writer.close()
    finally:
        await node.stop()
