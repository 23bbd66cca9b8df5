"""A simulated SMSC: accepts SMPS's binds, sends originals, counts the answers.

It plays the SMSC role with the same session core as SMPS, so it speaks real
SMPP on real sockets. Every original it sends gets exactly one of: a response
(counted by status), or none before the response timeout (counted as
missing). A response nobody waits for — a second answer to the same original —
is counted as a duplicate.

With `resend_after`, originals from `send_deliver()` behave as a real SMSC's
do across a failover: one that got no response (its connection was lost, or
its response timer ran out), or was refused for now with ESME_RTHROTTLED (as
a node standing down or overloaded answers), is not missing but sent again
`resend_after` seconds later, on whichever session is bound then (waiting for
a bind when none is), until it is answered.

`send_deliver()` sends one original for tests; `run()` is the load driver:
originals from a pre-encoded `Traffic` pool at a fixed rate (a token bucket
filled once per loop tick, the tick's messages sent as one batch) or as fast
as the windows allow, spread over every bound session. Its cost per message
is a few dictionary operations: no timer, task or future per message, and
response times go into a fixed-size histogram.
"""

import asyncio
import hmac
import math
import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

from smps._native.pdu import CommandId, Status, decode, encode
from smps._native.states import BIND_STATE, Role
from smps.sim.traffic import STANDARD_MIX, Mix, Traffic
from smps.smpp.session import NO_RESPONSE, RESPONSE_BIT, Session

BOUND_STATES = frozenset(BIND_STATE.values())


class LatencyHistogram:
    """Response times in buckets about 2 % wide: fixed memory however long the run.

    Bucket b holds times t (µs) with ``int(log1p(t) * 50) == b``; a percentile
    is reported as its bucket's upper edge, so it errs high by at most 2 %.
    The maximum is exact.
    """

    __slots__ = ("buckets", "count", "max")

    SCALE = 50.0
    SIZE = 1200  # log1p(1 hour in µs) * 50 ≈ 1096

    def __init__(self) -> None:
        self.buckets = [0] * self.SIZE
        self.count = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        index = int(math.log1p(seconds * 1e6 if seconds > 0 else 0.0) * self.SCALE)
        self.buckets[index if index < self.SIZE else self.SIZE - 1] += 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds

    def percentile(self, fraction: float) -> float:
        """The time (seconds) below which `fraction` of the samples fall."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return min(math.expm1((index + 1) / self.SCALE) / 1e6, self.max)
        return self.max

    def summary_ms(self) -> dict[str, float | None]:
        if not self.count:
            return {"p50": None, "p90": None, "p99": None, "max": None}
        return {
            "p50": round(self.percentile(0.50) * 1000, 3),
            "p90": round(self.percentile(0.90) * 1000, 3),
            "p99": round(self.percentile(0.99) * 1000, 3),
            "max": round(self.max * 1000, 3),
        }


class _LongMessage:
    """A long message in flight (`whole_messages`): when its parts went out and
    the statuses they got so far."""

    __slots__ = ("parts", "sent_at", "statuses")

    def __init__(self, sent_at: float, parts: int):
        self.sent_at = sent_at
        self.parts = parts
        self.statuses: list[int] = []


class SimSmscSession(Session):
    role = Role.SMSC

    def __init__(self, sim: "SimSmsc", **options: Any):
        super().__init__(**options)
        self.sim = sim
        self.system_id = ""

    def on_request(self, command_id: int, pdu: bytes) -> None:
        if command_id in BIND_STATE:
            self.sim._bind(self, command_id, pdu)
        else:
            self.respond(pdu, Status.ROK)  # submissions: accept

    def on_closed(self, exc: Exception | None) -> None:
        self.sim.sessions.discard(self)


class SimSmsc:
    """An SMSC on 127.0.0.1 for tests, the demo and load runs."""

    def __init__(
        self,
        *,
        system_id: str = "smps",
        password: str = "secret",
        refuse_status: int = Status.ROK,
        window: int = 1000,
        response_timeout: float = 10.0,
        enquire_link: float = 30.0,
        resend_after: float | None = None,
        whole_messages: bool = False,
    ):
        self.system_id = system_id
        self.password = password
        self.refuse_status = refuse_status
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link = enquire_link
        self.resend_after = resend_after
        self.whole_messages = whole_messages
        self.sessions: set[SimSmscSession] = set()
        self.bind_attempts: list[float] = []  # monotonic times
        self.sent = 0
        self.answered = 0
        self.statuses: Counter[int] = Counter()
        self.missing = 0
        self.answers: dict[int, tuple[int, float]] = {}  # message number -> (status, rtt)
        # message number -> (session that answered, monotonic time of the answer)
        self.answered_on: dict[int, tuple[SimSmscSession, float]] = {}
        self.resent = 0  # send attempts after the first (resend_after)
        # (due, number, pdu): originals waiting to be sent again, oldest first
        self._resend: deque[tuple[float, int, bytes]] = deque()
        self._resender: asyncio.Task | None = None
        self.latency = LatencyHistogram()
        self.messages: Counter[str] = Counter()  # run(): messages (not PDUs) by kind
        # run() with whole_messages: answers to parts of long messages, long messages with
        # every part answered, and those whose parts got different statuses, by the
        # statuses ("0x00/0x66")
        self.parts_answered = 0
        self.long_answered = 0
        self.mismatched: Counter[str] = Counter()
        self.stalled = 0.0  # run(): originals the rate called for while no window was free
        self.send_failures = 0  # run(): PDUs a session refused (closed, queue full)
        self.rate: float | None = None
        self._all_sessions: list[SimSmscSession] = []
        self._server: asyncio.AbstractServer | None = None
        self._message_no = 0
        self._bound_event = asyncio.Event()
        self._next_session = 0
        self._stopping = False
        self._drain = True
        self._run_started: float | None = None
        self._run_ended: float | None = None
        self._last_answer: float | None = None
        self._cpu_started: float | None = None
        self._cpu_ended: float | None = None

    @property
    def duplicates(self) -> int:
        return sum(s.stats.unexpected_responses for s in self._all_sessions)

    @property
    def messages_answered(self) -> int:
        """Messages with every part answered (whole_messages; else PDUs answered)."""
        return self.answered - self.parts_answered + self.long_answered

    @property
    def bound_sessions(self) -> list[SimSmscSession]:
        return [s for s in self.sessions if s.state in BOUND_STATES]

    @property
    def running(self) -> bool:
        return self._run_started is not None and self._run_ended is None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_session, host, port)
        if self.resend_after is not None:
            self._resender = asyncio.create_task(self._resend_loop(), name="sim-smsc-resend")
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._resender is not None:
            self._resender.cancel()
            await asyncio.gather(self._resender, return_exceptions=True)
            self._resender = None
        if self._server is not None:
            self._server.close()
            for session in list(self.sessions):
                if session.transport is not None:
                    session.transport.abort()
            await self._server.wait_closed()
            self._server = None

    async def wait_bound(self, count: int = 1, timeout: float | None = 10.0) -> None:
        async def bound() -> None:
            while len(self.bound_sessions) < count:
                self._bound_event.clear()
                await self._bound_event.wait()

        async with asyncio.timeout(timeout):
            await bound()

    def _new_session(self) -> SimSmscSession:
        session = SimSmscSession(
            self,
            name="sim-smsc",
            window=self.window,
            response_timeout=self.response_timeout,
            enquire_link=self.enquire_link,
        )
        self.sessions.add(session)
        self._all_sessions.append(session)
        return session

    def _bind(self, session: SimSmscSession, command_id: int, pdu: bytes) -> None:
        self.bind_attempts.append(time.monotonic())
        bind = decode(pdu)
        status = self.refuse_status
        if status == Status.ROK and (
            bind.fields["system_id"].decode() != self.system_id
            or not hmac.compare_digest(bind.fields["password"], self.password.encode())
        ):
            status = Status.RINVPASWD
        if status != Status.ROK:
            session.reject(pdu, status)
            return
        session.system_id = bind.fields["system_id"].decode()
        session.bound(BIND_STATE[command_id])
        session.write(
            encode(
                command_id | RESPONSE_BIT,
                bind.sequence,
                {"system_id": b"SIMSMSC"},
                [(0x0210, b"\x34")],
            )
        )
        self._bound_event.set()

    # ---- one message at a time (tests) -------------------------------------

    def send_deliver(
        self,
        *,
        source_addr: bytes = b"8613800138000",
        destination_addr: bytes = b"10086",
        short_message: bytes = b"hello",
        data_coding: int = 0,
        esm_class: int = 0,
        tlvs: Iterable[tuple[int, bytes]] = (),
        session: SimSmscSession | None = None,
        command_id: int = CommandId.DELIVER_SM,
    ) -> int:
        """Send one original; returns its message number (a key of `answers`)."""
        session = session or self._pick_session()
        self._message_no += 1
        number = self._message_no
        fields = {
            "source_addr": source_addr,
            "destination_addr": destination_addr,
            "esm_class": esm_class,
            "data_coding": data_coding,
            "source_addr_ton": 1,
            "source_addr_npi": 1,
        }
        if command_id == CommandId.DATA_SM:  # no short_message: the text is a TLV
            tlvs = [*tlvs, (0x0424, short_message)]
        else:
            fields["short_message"] = short_message
        pdu = encode(command_id, 0, fields, tlvs)
        if not session.send(pdu, self._answered, (number, time.monotonic(), pdu, session)):
            raise RuntimeError("simulated SMSC: session window and queue full")
        self.sent += 1
        return number

    def _pick_session(self) -> SimSmscSession:
        bound = self.bound_sessions
        if not bound:
            raise RuntimeError("simulated SMSC: no bound session")
        return max(bound, key=lambda s: s.free_window)

    def _answered(self, context: tuple, status: int, pdu: bytes | None) -> None:
        number, sent_at, original, session = context
        now = time.monotonic()
        if status == NO_RESPONSE or (status == Status.RTHROTTLED and self.resend_after is not None):
            if self.resend_after is None:
                self.missing += 1
            else:
                self._resend.append((now + self.resend_after, number, original))
            return
        rtt = now - sent_at
        self.statuses[status] += 1
        self.answered += 1
        self.latency.add(rtt)
        self.answers[number] = (status, rtt)
        self.answered_on[number] = (session, now)

    async def _resend_loop(self) -> None:
        """Send the originals that are due again, oldest first, as windows allow."""
        queue = self._resend
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            while queue and queue[0][0] <= now:
                sessions = [s for s in self.bound_sessions if s.free_window > 0]
                if not sessions:
                    break
                session = max(sessions, key=lambda s: s.free_window)
                _due, number, original = queue[0]
                context = (number, now, original, session)
                if not session.send(original, self._answered, context):
                    break
                queue.popleft()
                self.resent += 1

    # ---- the load driver ---------------------------------------------------

    async def run(
        self,
        rate: float | None = None,
        duration: float | None = None,
        count: int | None = None,
        mix: Mix | Traffic | None = None,
        *,
        tick: float = 0.002,
    ) -> dict[str, Any]:
        """Send originals until `duration` seconds pass, `count` originals are
        sent, or stop_run(); then wait (up to the response timeout) for the
        last answers and return summary().

        `rate` is originals (PDUs) per second; None sends as fast as the
        windows allow. `mix` is a Mix (a Traffic pool is built from it) or a
        ready Traffic, e.g. one with traced numbers. Without duration and
        count it runs until stop_run(), which is what the demo wants.
        """
        if rate is not None and rate <= 0:
            raise ValueError("rate must be > 0, or None for as fast as the window allows")
        if count is not None and count < 0:
            raise ValueError("count must be >= 0")
        traffic = mix if isinstance(mix, Traffic) else Traffic(mix or STANDARD_MIX)
        clock = time.perf_counter  # uvloop's loop.time() only has millisecond resolution
        self.rate = rate
        self._stopping = False
        self._drain = True
        self._run_ended = self._cpu_ended = None
        self._cpu_started = time.process_time()
        self._run_started = start = clock()
        deadline = start + duration if duration is not None else math.inf
        remaining = count if count is not None else math.inf
        # A tick's worth of tokens, a few ticks of slack, never less than one
        # concatenated message: beyond that the sender is behind, not bursting.
        burst = max(3.0, rate * tick * 4) if rate is not None else 0.0
        tokens, last = 0.0, start
        try:
            while not self._stopping and remaining > 0:
                now = clock()
                if now >= deadline:
                    break
                if rate is None:
                    budget = math.inf
                else:
                    tokens += rate * (now - last)
                    if tokens > burst:
                        self.stalled += tokens - burst
                        tokens = burst
                    budget = tokens
                last = now
                if budget >= 1:
                    sent = self._send_batch(traffic, budget, remaining, now)
                    tokens -= sent
                    remaining -= sent
                await asyncio.sleep(tick)
            await self._wait_answers()
        finally:
            self._run_ended = clock()
            self._cpu_ended = time.process_time()
        return self.summary()

    def stop_run(self, *, drain: bool = True) -> None:
        """End run(): it stops sending and, with drain, waits for the last answers."""
        self._stopping = True
        self._drain = self._drain and drain

    def _send_batch(self, traffic: Traffic, budget: float, remaining: float, now: float) -> int:
        """Send up to `budget` originals round-robin over the sessions with window free."""
        sessions = [s for s in self.sessions if s.state in BOUND_STATES and s.free_window > 0]
        callback = self._counted
        messages = self.messages
        spread = self.whole_messages
        sent = 0
        index = self._next_session
        while sessions and sent < budget and sent < remaining:
            index += 1
            session = sessions[index % len(sessions)]
            if session.free_window <= 0:
                sessions.remove(session)
                continue
            kind, pdus = next(traffic)
            while len(pdus) > remaining - sent and traffic.has_singles:
                kind, pdus = next(traffic)
            if spread and len(pdus) > 1:
                parts_sent, index = self._send_parts(sessions, index, pdus, now)
                sent += parts_sent
            else:
                for pdu in pdus:
                    if session.send(pdu, callback, now):
                        sent += 1
                    else:
                        self.send_failures += 1
            messages[kind] += 1
        self._next_session = index
        self.sent += sent
        return sent

    def _send_parts(
        self, sessions: list[SimSmscSession], index: int, pdus: tuple[bytes, ...], now: float
    ) -> tuple[int, int]:
        """A long message's parts, each on the next session with room (when none has
        any, the rest wait in the last one's queue): (parts sent, the last session's
        index)."""
        message = _LongMessage(now, len(pdus))
        callback = self._part_counted
        session = sessions[index % len(sessions)]
        sent = 0
        for number, pdu in enumerate(pdus):
            while number and sessions:
                index += 1
                candidate = sessions[index % len(sessions)]
                if candidate.free_window > 0:
                    session = candidate
                    break
                sessions.remove(candidate)
            if session.send(pdu, callback, message):
                sent += 1
            else:
                self.send_failures += 1
        return sent, index

    def _part_counted(self, message: _LongMessage, status: int, pdu: bytes | None) -> None:
        self._counted(message.sent_at, status, pdu)
        if status == NO_RESPONSE:  # missing: the message is never whole
            return
        self.parts_answered += 1
        statuses = message.statuses
        statuses.append(status)
        if len(statuses) == message.parts:
            self.long_answered += 1
            if min(statuses) != max(statuses):
                self.mismatched["/".join(f"0x{s:02X}" for s in sorted(set(statuses)))] += 1

    def _counted(self, sent_at: float, status: int, pdu: bytes | None) -> None:
        if status == NO_RESPONSE:
            self.missing += 1
            return
        statuses = self.statuses
        statuses[status] = statuses.get(status, 0) + 1
        self.answered += 1
        now = time.perf_counter()
        self._last_answer = now
        self.latency.add(now - sent_at)

    async def _wait_answers(self) -> None:
        """Every original ends answered or missing (the session's response
        timeout, or its connection's loss, settles it); wait for that."""
        give_up = time.perf_counter() + self.response_timeout + 1.0
        while (
            self._drain
            and self.answered + self.missing < self.sent
            and time.perf_counter() < give_up
        ):
            await asyncio.sleep(0.01)

    # ---- results -----------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts so far (also while run() is going, for live views); JSON-ready."""
        result: dict[str, Any] = {
            "sent": self.sent,
            "answered": self.answered,
            "missing": self.missing,
            "duplicates": self.duplicates,
            "outstanding": self.sent - self.answered - self.missing,
            "statuses": {f"0x{k:02X}": v for k, v in sorted(self.statuses.items())},
            "messages": dict(self.messages),
            "latency_ms": self.latency.summary_ms(),
            "binds": len(self.bound_sessions),
        }
        if self.whole_messages:
            result.update(
                messages_answered=self.messages_answered,
                long_answered=self.long_answered,
                mismatched=dict(self.mismatched),
            )
        if self._run_started is not None:
            ended = time.perf_counter() if self._run_ended is None else self._run_ended
            elapsed = ended - self._run_started
            answering = (self._last_answer or ended) - self._run_started
            cpu_now = time.process_time() if self._cpu_ended is None else self._cpu_ended
            cpu = cpu_now - self._cpu_started
            result.update(
                rate_offered=self.rate,
                elapsed_s=round(elapsed, 3),
                msgs_per_s=round(self.answered / answering, 1) if answering > 0 else 0.0,
                stalled=int(self.stalled),
                send_failures=self.send_failures,
                cpu_s=round(cpu, 3),
                cpu_us_per_msg=round(1e6 * cpu / self.sent, 2) if self.sent else None,
            )
        return result
