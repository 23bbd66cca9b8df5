"""One worker's hot path in one process, for instruction counts and timing without sockets.

The real objects of a worker's data plane, built by `DataPlane` as a worker builds
them: a `Dispatcher` with the standard scenario's configuration (`smps bench`'s,
`--nes` accounts of 2 binds each, 100 trace rules matching about 1 % of the
messages, record non_allow, a `MemorySink`), 2 `SmscSession`s feeding it and real
`NeSession`s bound through an `NeServer`, all on in-memory transports. Originals of the standard mix
(70 % GSM7, 20 % UCS-2, 10 % three-part) go in 32 per read and session; every
copy is answered with deliver_sm_resp / data_sm_resp (every 20th with a block
status), and each original must get exactly one answer.

Every call into the proxy goes through `operator.call`, so callgrind can count
the proxy alone::

    valgrind --tool=callgrind --toggle-collect=_operator_call \\
        python bench/hotpath_driver.py --originals 20000 --repeat 1

Ir per original = the run's Ir ÷ originals (the setup is outside the toggle; a
whole-run count works too: Ir(N) − Ir(0), ÷ N). Without valgrind it prints the
time inside those calls, best of `--repeat`. With ``--screening`` the dispatcher has
the screening scenario's rules (``smps bench --screening``'s).

Inside the measured region the sessions' `call_soon` (the per-iteration write
flush) is collected and run by the driver at the point the event loop would;
the loop's own cost (epoll, uvloop handles) and the sockets are not counted.
"""

import argparse
import asyncio
import operator
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from smps._native.fanout import append_with_sequence
from smps._native.pdu import CommandId, Framer, encode, header, make_resp
from smps._native.states import State
from smps.config import Config, loads
from smps.proxy.records import MemorySink
from smps.proxy.trace_store import MemoryTraceSink
from smps.runtime.plane import DataPlane
from smps.sim.traffic import Mix, Traffic
from smps.smpp.client import SmscSession
from smps.smpp.server import NeSession

# `python bench/hotpath_driver.py` has bench/, not the checkout, on its path.
sys.path.append(str(Path(__file__).resolve().parent.parent))
from bench.loadrun.scenario import Scenario, bench_config

BATCH = 32  # originals per read on each SMSC session (the SMSC's window is 64)
SMSC_BINDS = 2
BLOCK_EVERY = 20  # every 20th copy is blocked: the standard 5 %
BLOCK_STATUS = 0x66  # one of the default policy.ne_block_codes
RESPONSE_BIT = 0x80000000

call = operator.call  # the callgrind toggle: only what runs inside it is counted


class Wire(asyncio.Transport):
    """An in-memory transport: what the session writes waits in `out`."""

    def __init__(self, port: int):
        super().__init__()
        self.out = bytearray()
        self._peer = ("127.0.0.1", port)

    def get_extra_info(self, name, default=None):
        return self._peer if name == "peername" else default

    def write(self, data) -> None:
        self.out += data

    def take(self) -> bytes:
        data = bytes(self.out)
        self.out.clear()
        return data

    def is_closing(self) -> bool:
        return False

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        pass  # `out` is taken every round: the session is never write-paused

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Turn:
    """The event loop as the sessions see it while measuring: `call_soon` callbacks
    wait until the driver runs them (`run`), everything else is the real loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._real = loop
        self.time = loop.time  # per copy: not through __getattr__
        self.ready: list = []

    def call_soon(self, callback, *args):
        self.ready.append((callback, args))

    def run(self) -> None:
        ready, self.ready = self.ready, []
        for callback, args in ready:
            callback(*args)

    def __getattr__(self, name):
        return getattr(self._real, name)


def pdus_of(data: bytes) -> list[bytes]:
    framer = Framer()
    framer.feed(data)
    pdus = []
    while (pdu := framer.next_pdu()) is not None:
        pdus.append(pdu)
    return pdus


def reads(nes_config: Config, originals: int) -> tuple[list[list[bytes]], int]:
    """Per SMSC session, its reads: BATCH originals each, whole messages on one
    session, sequence numbers 1..n over the run."""
    scenario = Scenario(nes=len(nes_config.ne_accounts))
    traffic = Traffic(
        Mix(**scenario.mix), traced=scenario.traced_numbers(), traced_ratio=scenario.traced_ratio
    )
    streams: list[list[bytes]] = [[] for _ in range(SMSC_BINDS)]
    count = 0
    turn = 0
    while count < originals:
        _kind, pdus = next(traffic)
        for pdu in pdus:
            count += 1
            out = bytearray()
            append_with_sequence(out, pdu, count)
            streams[turn % SMSC_BINDS].append(bytes(out))
        turn += 1
    per_session = [
        [b"".join(stream[i : i + BATCH]) for i in range(0, len(stream), BATCH)]
        for stream in streams
    ]
    return per_session, count


class Worker:
    """The data plane of one worker, built as a worker builds it, bound on in-memory wires."""

    def __init__(self, config: Config):
        self.config = config
        self.sink = MemorySink(limit=1 << 30)
        plane = DataPlane(
            config,
            config.ne_accounts,
            decisions=self.sink,
            traces=MemoryTraceSink(limit=1 << 30),
            worker=0,
        )
        self.dispatcher = plane.dispatcher
        self.server = plane.ne_server
        self.smscs: list[tuple[SmscSession, Wire]] = []
        self.nes: list[tuple[NeSession, Wire]] = []

    async def connect(self, binds_per_account: int) -> None:
        port = 40000
        for index in range(SMSC_BINDS):
            session = SmscSession(
                smsc="sim", on_message=self.dispatcher.on_message, name=f"w0:sim#{index}"
            )
            wire = Wire(port := port + 1)
            session.connection_made(wire)
            session.bound(State.BOUND_TRX)
            self.smscs.append((session, wire))
        for account in self.config.ne_accounts:
            for _ in range(binds_per_account):
                session = self.server._new_session()
                wire = Wire(port := port + 1)
                session.connection_made(wire)
                fields = {
                    "system_id": account.system_id.encode(),
                    "password": account.password.encode(),
                }
                session.data_received(encode(CommandId.BIND_TRANSCEIVER, 1, fields))
                self.nes.append((session, wire))
        async with asyncio.timeout(5):
            while not all(s.state is State.BOUND_TRX for s, _w in self.nes):
                await asyncio.sleep(0.001)
        await asyncio.sleep(0.01)  # the bind responses' flush
        for _session, wire in self.nes:
            wire.take()
        turn = Turn(asyncio.get_running_loop())
        for session, _wire in self.smscs + self.nes:
            session._loop = turn
        self.turn = turn

    def run(self, per_session: list[list[bytes]], expected: int) -> tuple[int, dict[int, int]]:
        """Push every read through, answer every copy; returns (ns inside the proxy,
        answers by status)."""
        answered = bytearray(expected + 1)
        statuses: dict[int, int] = {}
        copies = 0
        elapsed = 0
        rounds = max(len(r) for r in per_session)
        for round_index in range(rounds):
            started = time.perf_counter_ns()
            for (session, _wire), session_reads in zip(self.smscs, per_session, strict=True):
                if round_index < len(session_reads):
                    call(session.data_received, session_reads[round_index])
            call(self.turn.run)
            elapsed += time.perf_counter_ns() - started
            answers = []
            for _session, wire in self.nes:
                out = []
                for copy in pdus_of(wire.take()):
                    copies += 1
                    out.append(make_resp(copy, BLOCK_STATUS if copies % BLOCK_EVERY == 0 else 0))
                answers.append(b"".join(out))
            started = time.perf_counter_ns()
            for (session, _wire), data in zip(self.nes, answers, strict=True):
                if data:
                    call(session.data_received, data)
            call(self.turn.run)
            elapsed += time.perf_counter_ns() - started
            for _session, wire in self.smscs:
                for response in pdus_of(wire.take()):
                    _length, command_id, status, seq = header(response)
                    if not command_id & RESPONSE_BIT or answered[seq] == 255:
                        raise SystemExit(f"unexpected PDU 0x{command_id:08x} seq {seq}")
                    answered[seq] += 1
                    statuses[status] = statuses.get(status, 0) + 1
        wrong = [seq for seq in range(1, expected + 1) if answered[seq] != 1]
        if wrong or self.dispatcher.in_flight:
            raise SystemExit(
                f"{len(wrong)} originals without exactly one answer (first: {wrong[:5]}), "
                f"{self.dispatcher.in_flight} in flight"
            )
        return elapsed, statuses


async def measure(config: Config, originals: int, binds: int) -> tuple[int, dict[int, int], int]:
    per_session, count = reads(config, originals)
    worker = Worker(config)
    await worker.connect(binds)
    elapsed, statuses = worker.run(per_session, count)
    return elapsed, statuses, count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nes", type=int, default=3, help="NE accounts (2 binds each)")
    parser.add_argument("--originals", type=int, default=20_000, help="0: setup only")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best is printed")
    parser.add_argument(
        "--screening", action="store_true", help="the screening scenario's rules (smps bench's)"
    )
    args = parser.parse_args(argv)
    scenario = Scenario(nes=args.nes, screening=args.screening)
    with tempfile.TemporaryDirectory() as workdir:
        config = loads(bench_config(scenario, Path(workdir), 1, 2), file="hotpath driver")
        best = None
        for _ in range(args.repeat):
            elapsed, statuses, count = uvloop.run(measure(config, args.originals, 2))
            best = elapsed if best is None else min(best, elapsed)
    per = best / count if count else 0.0
    print(
        f"nes={args.nes} originals={count} answers={dict(sorted(statuses.items()))} "
        f"best of {args.repeat}: {per:.0f} ns/original"
    )


if __name__ == "__main__":
    main()
