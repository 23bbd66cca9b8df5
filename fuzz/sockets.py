"""Socket fuzzer: a running node's NE port and SMSC side under hostile peers.

``python -m fuzz.sockets --seconds 180`` (``make fuzz-sockets``) starts ``smps run``
with 2 workers on 127.0.0.1 and, for the given time:

* throws connections at its NE port, a few at a time: random bytes, valid
  headers with random bodies, truncated PDUs, command_length 0..15 and huge,
  a valid bind followed by garbage or by mutated PDUs, bind floods (one
  connection and many), slowloris binds (1 octet/s), abrupt resets (SO_LINGER 0);
* plays the SMSC the node binds to, answering each bind with a mutated
  bind_resp (refusals, wrong sequence, another command's response, bad
  command_length, a corrupt body, silence, a reset) or binding it and sending
  mutated deliver_sm / data_sm / enquire_link / unbind / generic_nack /
  outbind / alert_notification and random bytes.

Along the way it checks that what SMPS writes always frames, that it answers
no request twice, and that a bad command_length gets generic_nack
ESME_RINVCMDLEN and a closed connection. Then the SMSC behaves, and the node
must be healthy: /health ok, both workers up and never restarted, both SMSC
binds up again, a normal NE binds, a normal original gets exactly one answer,
and no Traceback in the node log. Exit status 1 and the problems listed if not.
"""

import argparse
import asyncio
import logging
import random
import shutil
import socket
import struct
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from fuzz.frames import reference_frames
from smps._native.pdu import CommandId as C
from smps._native.pdu import Status, encode
from smps._native.text import split, ucs2_encode
from tests.helpers import until
from tests.nodes import REPO, RunNode, sections, smsc_section

RESPONSE_BIT = 0x80000000
NE_ACCOUNT = {"system_id": "antispam", "password": "pw1", "max_binds": 4}
BIND_TIMEOUT = 2.0
SMSC_RESPONSE_TIMEOUT = 1.0
SM = {"source_addr": b"46700000001", "destination_addr": b"46711111111"}


@dataclass
class Report:
    attacks: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 100:
            self.problems.append(text)


def _bind(command_id=C.BIND_TRANSCEIVER, seq=1, system_id=b"antispam", password=b"pw1") -> bytes:
    return encode(command_id, seq, {"system_id": system_id, "password": password})


def smsc_traffic(rng: random.Random) -> list[bytes]:
    """Well-formed PDUs an SMSC sends a bound ESME (sequence numbers patched later)."""
    _, parts = split("z" * 300, ref=rng.randrange(256))
    return [
        encode(C.DELIVER_SM, 0, {**SM, "short_message": b"hello"}),
        encode(C.DELIVER_SM, 0, {**SM, "esm_class": 0x40, "short_message": parts[0]}),
        encode(C.DELIVER_SM, 0, {**SM, "data_coding": 8, "short_message": ucs2_encode("ок")}),
        encode(C.DELIVER_SM, 0, {**SM, "esm_class": 4}, [(0x001E, b"id\0"), (0x0427, b"\2")]),
        encode(C.DATA_SM, 0, SM, [(0x0424, b"payload"), (0x020C, b"\0\1"), (0x020E, b"\2")]),
        encode(C.ENQUIRE_LINK, 0),
        encode(C.GENERIC_NACK, 0, status=rng.choice([0, 3, 8])),
        encode(C.OUTBIND, 0, {"system_id": b"smsc", "password": b"x"}),
        encode(C.ALERT_NOTIFICATION, 0, {"source_addr": b"1", "esme_addr": b"2"}),
        encode(0x00000042, 0, {"body": b"??"}),
        encode(C.UNBIND, 0),
    ]


def ne_traffic(rng: random.Random) -> list[bytes]:
    """Well-formed PDUs an NE might send (sequence numbers patched later)."""
    return [
        _bind(rng.choice([C.BIND_TRANSCEIVER, C.BIND_RECEIVER, C.BIND_TRANSMITTER])),
        _bind(password=b"wrong"),
        encode(C.ENQUIRE_LINK, 0),
        encode(C.SUBMIT_SM, 0, {**SM, "short_message": b"x"}),
        encode(C.DELIVER_SM_RESP, rng.randrange(1, 5), {"message_id": b""}),
        encode(C.QUERY_SM, 0, {"message_id": b"1"}),
        encode(C.OUTBIND, 0, {"system_id": b"ne"}),
        encode(C.GENERIC_NACK, 0, status=8),
        encode(0x00000077, 0, {"body": b"??"}),
        encode(C.UNBIND, 0),
    ]


def with_seq(pdu: bytes, seq: int) -> bytes:
    return pdu[:12] + struct.pack(">I", seq) + pdu[16:]


def mutate(pdu: bytes, rng: random.Random, *, keep_length: bool = True) -> bytes:
    """Flip, insert, delete and truncate octets of a PDU's body (now and then its
    command_id or status); command_length follows the new size when keep_length."""
    data = bytearray(pdu)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "insert", "delete", "truncate", "header"])
        at = rng.randint(16, max(16, len(data)))
        if op == "flip" and at < len(data):
            data[at] ^= rng.randint(1, 255)
        elif op == "insert":
            data[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == "delete":
            del data[at : at + rng.randint(1, 8)]
        elif op == "truncate":
            del data[at:]
        else:
            data[rng.choice([4, 8, 11])] ^= rng.randint(1, 255)
    if keep_length:
        data[0:4] = struct.pack(">I", len(data))
    return bytes(data)


class Wire:
    """One hostile connection: what it sent (request sequence numbers) and got."""

    def __init__(self, reader, writer, label: str, report: Report):
        self.reader, self.writer, self.label, self.report = reader, writer, label, report
        self.asked: Counter = Counter()  # requests sent, by sequence number
        self.framing_nacks: Counter = Counter()  # bad headers sent, by sequence number
        self.received = bytearray()
        self.eof = False

    def send(self, data: bytes) -> None:
        if self.writer.transport.is_closing():
            return  # SMPS closed it (as it should, after much of what is sent here)
        if len(data) >= 4:
            (length,) = struct.unpack_from(">I", data)
            seq = struct.unpack_from(">I", data, 12)[0] if len(data) >= 16 else 0
            if length < 16 or length > 65536:  # refused from its 4 length octets
                self.framing_nacks[seq] += 1
            elif len(data) >= 16 and not struct.unpack_from(">I", data, 4)[0] & RESPONSE_BIT:
                self.asked[seq] += 1
        self.writer.write(data)

    async def collect(self, seconds: float) -> None:
        """Read what SMPS writes until it closes or `seconds` pass."""
        deadline = time.monotonic() + seconds
        while not self.eof and (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except ConnectionResetError:
                self.eof = True  # closed, by a reset
                return
            except (TimeoutError, OSError):
                return
            self.received += chunk
            self.eof = not chunk

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def check(self) -> list[tuple[int, int, int]]:
        """What SMPS wrote must frame and answer each request at most once; returns
        the headers (command_id, status, seq) of the PDUs it wrote."""
        pdus, bad = reference_frames(bytes(self.received), 1 << 24)
        if bad is not None:
            self.report.problem(f"{self.label}: SMPS wrote a bad header {bad.hex()}")
        headers = [struct.unpack_from(">III", p, 4) for p in pdus]
        answers = Counter(seq for cid, _st, seq in headers if cid & RESPONSE_BIT)
        # A framing error is answered with the bad header's sequence number when its 16
        # octets came together, else 0 (SMPS does not wait for a header it will refuse).
        stray_nack = 1 if self.framing_nacks else 0
        for seq, count in answers.items():
            if count > self.asked[seq] + self.framing_nacks[seq] + (stray_nack if seq == 0 else 0):
                self.report.problem(
                    f"{self.label}: {count} responses to sequence {seq}, "
                    f"{self.asked[seq]} requests sent"
                )
        return headers

    def expect_framing_close(self, seq: int) -> None:
        headers = self.check()
        if (C.GENERIC_NACK, Status.RINVCMDLEN, seq) not in headers:
            self.report.problem(f"{self.label}: no generic_nack ESME_RINVCMDLEN for seq {seq}")
        if not self.eof:
            self.report.problem(f"{self.label}: connection left open after a bad command_length")


# ---- the NE port ---------------------------------------------------------------


async def _open(port: int, label: str, report: Report) -> Wire:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Wire(reader, writer, label, report)


async def ne_random_bytes(port, rng, report):
    wire = await _open(port, "ne random bytes", report)
    wire.send(rng.randbytes(rng.randint(1, 3000)))
    await wire.collect(0.5)
    wire.check()
    wire.reset()


async def ne_random_bodies(port, rng, report):
    wire = await _open(port, "ne random bodies", report)
    for seq in range(1, rng.randint(2, 20)):
        command_id = rng.choice([*map(int, C), rng.getrandbits(32)])
        body = rng.randbytes(rng.randint(0, 300))
        wire.send(struct.pack(">IIII", 16 + len(body), command_id, 0, seq) + body)
    await wire.collect(0.5)
    wire.check()
    wire.writer.close()


async def ne_truncated(port, rng, report):
    wire = await _open(port, "ne truncated", report)
    pdu = rng.choice(ne_traffic(rng))
    wire.send(pdu[: rng.randint(1, len(pdu) - 1)])
    await wire.collect(0.3)
    wire.check()
    wire.reset() if rng.random() < 0.5 else wire.writer.close()


async def _bad_length(port, rng, report, *, after_bind: bool):
    label = "ne bad command_length" + (" after a bind" if after_bind else " first")
    wire = await _open(port, label, report)
    if after_bind:
        wire.send(with_seq(_bind(), 1))
    length = rng.choice([0, 1, 15, 65537, 1 << 24, 0xFFFFFFFF])
    seq = rng.randint(2, 0x7FFFFFFF)
    wire.send(struct.pack(">IIII", length, C.ENQUIRE_LINK, 0, seq) + rng.randbytes(20))
    await wire.collect(3.0)
    wire.expect_framing_close(seq)
    wire.writer.close()


async def ne_bad_length_first(port, rng, report):
    await _bad_length(port, rng, report, after_bind=False)


async def ne_bad_length_after_bind(port, rng, report):
    await _bad_length(port, rng, report, after_bind=True)


async def ne_bind_then_garbage(port, rng, report):
    wire = await _open(port, "ne bind then garbage", report)
    wire.send(with_seq(_bind(), 1))
    traffic = ne_traffic(rng)
    for seq in range(2, rng.randint(3, 30)):
        pdu = with_seq(rng.choice(traffic), seq)
        wire.send(mutate(pdu, rng) if rng.random() < 0.7 else pdu)
        if rng.random() < 0.1:
            wire.send(rng.randbytes(rng.randint(1, 40)))
            break  # the stream is garbage from here: anything after it is unframed
    await wire.collect(1.0)
    wire.check()
    wire.reset() if rng.random() < 0.3 else wire.writer.close()


async def ne_bind_flood(port, rng, report):
    if rng.random() < 0.5:  # many binds on one connection
        wire = await _open(port, "ne bind flood", report)
        for seq in range(1, 30):
            password = rng.choice([b"pw1", b"nope", b""])
            wire.send(_bind(rng.choice(list(BIND_COMMANDS)), seq, password=password))
        await wire.collect(1.0)
        wire.check()
        wire.writer.close()
        return
    wires = [await _open(port, "ne bind flood", report) for _ in range(rng.randint(2, 8))]
    for wire in wires:
        wire.send(_bind())
    await asyncio.gather(*(w.collect(1.0) for w in wires))
    for wire in wires:
        wire.check()
        wire.writer.close()


async def ne_slowloris(port, rng, report, *, seconds: float):
    """A bind at 1 octet/s: the node must drop it at bind_timeout."""
    wire = await _open(port, "ne slowloris", report)
    started = time.monotonic()
    try:
        for octet in _bind():
            if time.monotonic() - started > seconds:
                break
            wire.send(bytes([octet]))
            await wire.writer.drain()
            await wire.collect(1.0)
            if wire.eof:
                break
    except OSError:
        return  # dropped mid-write: what bind_timeout is for
    if not wire.eof and time.monotonic() - started > BIND_TIMEOUT + 3:
        report.problem("ne slowloris: still connected past bind_timeout")
    wire.check()
    wire.reset()


async def ne_reset(port, rng, report):
    wire = await _open(port, "ne reset", report)
    wire.send(_bind()[: rng.randint(0, 30)])
    await asyncio.sleep(rng.random() * 0.05)
    wire.reset()


BIND_COMMANDS = (C.BIND_TRANSCEIVER, C.BIND_RECEIVER, C.BIND_TRANSMITTER)
NE_ATTACKS = [
    ne_random_bytes,
    ne_random_bodies,
    ne_truncated,
    ne_bad_length_first,
    ne_bad_length_after_bind,
    ne_bind_then_garbage,
    ne_bind_flood,
    ne_reset,
]


# ---- the SMSC side -------------------------------------------------------------


class HostileSmsc:
    """The SMSC the node binds to: hostile until `behave()`, then a plain SMSC."""

    KINDS = (
        "refuse",
        "wrong_sequence",
        "wrong_command",
        "bad_length",
        "malformed_bind_resp",
        "silent",
        "reset",
        *["bound_then_hostile"] * 4,
    )

    def __init__(self, rng: random.Random, report: Report, *, skip: frozenset[str]):
        self.rng, self.report = rng, report
        self.kinds = [k for k in self.KINDS if f"smsc_{k}" not in skip]
        self.good = False
        self.bound: list[Wire] = []  # well-behaved binds, after behave()
        self._server = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._server.close()
        for wire in self.bound:
            wire.writer.close()

    def behave(self) -> None:
        self.good = True

    async def _serve(self, reader, writer) -> None:
        wire = Wire(reader, writer, "smsc", self.report)
        try:
            header = await asyncio.wait_for(reader.readexactly(16), 5)
            length, command_id, _status, seq = struct.unpack(">IIII", header)
            await reader.readexactly(min(max(length - 16, 0), 4096))
            if self.good:
                await self._plain(wire, command_id, seq)
            else:
                kind = self.rng.choice(self.kinds)
                wire.label = f"smsc_{kind}"
                self.report.attacks[wire.label] += 1
                await self._hostile(wire, kind, command_id, seq)
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            if not self.good or wire not in self.bound:
                writer.close()

    def _bind_resp(self, command_id: int, seq: int, status: int = 0) -> bytes:
        return encode(command_id | RESPONSE_BIT, seq, {"system_id": b"SMSC"}, status=status)

    async def _hostile(self, wire: Wire, kind: str, command_id: int, seq: int) -> None:
        rng = self.rng
        if kind == "refuse":
            status = rng.choice([Status.RBINDFAIL, Status.RINVPASWD, 0x08, rng.getrandbits(32) | 1])
            resp = self._bind_resp(command_id, seq, status)
            wire.send(resp[:16] if rng.random() < 0.5 else resp)
        elif kind == "wrong_sequence":
            wire.send(self._bind_resp(command_id, seq + 1))
        elif kind == "wrong_command":
            other = rng.choice([C.GENERIC_NACK, C.ENQUIRE_LINK_RESP, C.BIND_RECEIVER_RESP])
            wire.send(encode(other, seq, status=rng.choice([0, 8])))
        elif kind == "bad_length":
            bad_seq = rng.randint(1, 0x7FFFFFFF)
            length = rng.choice([0, 15, 1 << 24, 0xFFFFFFFF])
            wire.send(struct.pack(">IIII", length, C.DELIVER_SM, 0, bad_seq))
            await wire.collect(2.0)
            wire.expect_framing_close(bad_seq)
            return
        elif kind == "malformed_bind_resp":
            wire.send(mutate(self._bind_resp(command_id, seq), rng))
        elif kind == "reset":
            wire.reset()
            return
        elif kind == "bound_then_hostile":
            wire.send(self._bind_resp(command_id, seq))
            await self._hostile_traffic(wire)
        await wire.collect(SMSC_RESPONSE_TIMEOUT + 1)
        wire.check()
        if rng.random() < 0.3:
            wire.reset()

    async def _hostile_traffic(self, wire: Wire) -> None:
        rng = self.rng
        traffic = smsc_traffic(rng)
        for seq in range(100, 100 + rng.randint(1, 40)):
            pdu = with_seq(rng.choice(traffic), seq)
            roll = rng.random()
            if roll < 0.5:
                pdu = mutate(pdu, rng)
            elif roll < 0.52:
                wire.send(rng.randbytes(rng.randint(1, 60)))
                break
            wire.send(pdu)
            if rng.random() < 0.2:
                await wire.collect(0.05)
        await wire.collect(0.5)

    async def _plain(self, wire: Wire, command_id: int, seq: int) -> None:
        wire.label = "smsc (behaving)"
        wire.send(self._bind_resp(command_id, seq))
        self.bound.append(wire)
        while True:
            header = await wire.reader.readexactly(16)
            length, command_id, _status, seq = struct.unpack(">IIII", header)
            body = await wire.reader.readexactly(length - 16)
            wire.received += header + body
            if command_id == C.ENQUIRE_LINK:
                wire.writer.write(encode(C.ENQUIRE_LINK_RESP, seq))

    async def original(self, wire: Wire, seq: int, timeout: float = 5.0) -> list[int]:
        """Send one normal deliver_sm; the statuses of its answers after `timeout`
        (or after the first answer and a short wait for a second)."""
        wire.send(encode(C.DELIVER_SM, seq, {**SM, "short_message": b"normal"}))
        answers = []

        def answered():
            answers[:] = [
                st
                for cid, st, s in (
                    struct.unpack_from(">III", p, 4)
                    for p in reference_frames(bytes(wire.received), 1 << 24)[0]
                )
                if s == seq and cid & RESPONSE_BIT
            ]
            return answers

        try:
            await until(answered, timeout=timeout)
            await asyncio.sleep(0.5)  # a second answer would come now
        except TimeoutError:
            pass
        return answered()


ATTACKS = frozenset([a.__name__ for a in NE_ATTACKS] + [f"smsc_{k}" for k in HostileSmsc.KINDS])


# ---- the run -------------------------------------------------------------------


async def _attack_ne_port(
    port, attacks, rng, report, deadline, concurrency, max_connections
) -> None:
    running: set[asyncio.Task] = set()
    slow_seconds = max(0.0, min(30.0, deadline - time.monotonic()))
    for _ in range(2):
        running.add(asyncio.create_task(ne_slowloris(port, rng, report, seconds=slow_seconds)))
        report.attacks["ne_slowloris"] += 1  # always: two for the whole run
    started = 0
    while time.monotonic() < deadline and started < max_connections:
        while len(running) >= concurrency:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running -= done
            for task in done:
                _note_failure(task, report)
        attack = rng.choice(attacks)
        report.attacks[attack.__name__] += 1
        running.add(asyncio.create_task(attack(port, random.Random(rng.random()), report)))
        started += 1
    if running:
        await asyncio.wait(running)
    for task in running:
        _note_failure(task, report)


def _note_failure(task: asyncio.Task, report: Report) -> None:
    error = task.exception()
    if error is not None and not isinstance(error, OSError | asyncio.IncompleteReadError):
        report.problem(f"fuzzer bug: {error!r}")


async def fuzz_node(
    directory: Path,
    *,
    seconds: float,
    seed: int,
    skip: frozenset[str] = frozenset(),
    concurrency: int = 8,
    max_connections: int = 100_000,
) -> Report:
    """Run the whole thing against a fresh node in `directory`; returns the report.

    `skip` names attacks to leave out (see ATTACKS), e.g. one whose finding is
    reported and not fixed yet.
    """
    unknown = skip - ATTACKS
    if unknown:
        raise ValueError(f"unknown attacks {sorted(unknown)}; known: {sorted(ATTACKS)}")
    rng = random.Random(seed)
    report = Report()
    smsc = HostileSmsc(rng, report, skip=skip)
    smsc_port = await smsc.start()
    node = RunNode(
        directory,
        sections(
            directory,
            smsc_port,
            smsc=[
                smsc_section(
                    smsc_port,
                    response_timeout=f"{SMSC_RESPONSE_TIMEOUT}s",
                    reconnect={"initial": "100ms", "max": "500ms"},
                )
            ],
            server={"listen": "127.0.0.1:0", "bind_timeout": f"{BIND_TIMEOUT}s"},
            ne_accounts=[NE_ACCOUNT],
        ),
    )
    await node.start(timeout=60)
    try:
        deadline = time.monotonic() + seconds
        attacks = [a for a in NE_ATTACKS if a.__name__ not in skip]
        await _attack_ne_port(
            node.smpp_port, attacks, rng, report, deadline, concurrency, max_connections
        )
        smsc.behave()
        await _check_health(node, smsc, report)
    finally:
        await smsc.stop()
        code = await node.stop()
        if code != 0:
            report.problem(f"smps run exited {code} on SIGTERM")
    if "Traceback" in node.log_text():
        report.problem(f"a Traceback in {node.dir / 'var' / 'smps.log'}")
    return report


async def _check_health(node: RunNode, smsc: HostileSmsc, report: Report) -> None:
    # A hostile bind that was still going on at behave() counts as up until its
    # wire closes, so wait for the two binds to be behaving ones.
    try:
        await until(
            lambda: len(smsc.bound) == 2 and node.status()["smsc_binds"].get("smsc1") == 2,
            timeout=15,
        )
    except TimeoutError:
        report.problem(
            f"SMSC binds not back up: {node.status()['smsc_binds']},"
            f" {len(smsc.bound)} on the behaving SMSC"
        )
    status = node.status()
    for worker in status["workers"]:
        if not worker["up"] or worker["restarts"]:
            report.problem(
                f"worker {worker['index']}: up {worker['up']}, restarts {worker['restarts']}"
            )
    code, body = await asyncio.to_thread(node.health)
    if code != 200 or body.get("status") != "ok":
        report.problem(f"/health {code}: {body}")
    wire = await _open(node.smpp_port, "normal NE", report)
    wire.send(_bind(seq=1))
    await wire.collect(1.0)
    headers = wire.check()
    if (C.BIND_TRANSCEIVER_RESP, 0, 1) not in headers:
        report.problem(f"a normal NE could not bind: {headers}")
    wire.writer.close()
    for index, plain in enumerate(smsc.bound):
        statuses = await smsc.original(plain, 0x10000 + index)
        if statuses != [Status.ROK]:
            report.problem(f"a normal original on SMSC bind {index} got answers {statuses}")
    if not smsc.bound:
        report.problem("the node never bound to the behaving SMSC")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180.0, help="attack time (default 180)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time)")
    parser.add_argument("--dir", type=Path, default=REPO / "test-artifacts" / "fuzz" / "sockets")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument(
        "--skip",
        default="",
        help=f"comma-separated attacks to leave out: {', '.join(sorted(ATTACKS))}",
    )
    args = parser.parse_args(argv)
    logging.getLogger("asyncio").setLevel(logging.ERROR)  # our own writes to reset sockets
    seed = args.seed if args.seed is not None else int(time.time())
    shutil.rmtree(args.dir, ignore_errors=True)
    print(f"socket fuzzing for {args.seconds:g} s, seed {seed}, node in {args.dir}", flush=True)
    report = asyncio.run(
        fuzz_node(
            args.dir,
            seconds=args.seconds,
            seed=seed,
            skip=frozenset(filter(None, args.skip.split(","))),
            concurrency=args.concurrency,
        )
    )
    total = sum(report.attacks.values())
    print(
        f"{total} hostile connections: "
        + ", ".join(f"{k} {n}" for k, n in sorted(report.attacks.items()))
    )
    for problem in report.problems:
        print(f"PROBLEM: {problem}")
    print("node healthy" if not report.problems else f"{len(report.problems)} problems")
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
