"""A simulated NE: binds to SMPS's NE server and answers the copies it gets.

An NE is an ESME toward SMPS, so the simulator is SMPS's own ESME side
(`SmscClient`/`SmscSession`) pointed at the NE server: the same binding,
enquire_link and reconnect-with-back-off code, with a copy handler that
plays an inspection system. Each copy gets a verdict drawn at random — never
answered (`silent_ratio`), blocked (`block_ratio`, answered with
`block_status`), or allowed — and is answered after a think time drawn from
a `Latency` distribution. Optionally the NE drops a bind now and then (every
so many seconds, or with a probability per copy) and binds again after the
client's back-off, which is how SMPS meets copies lost with their bind.

Delayed answers wait in one heap ordered by due time, drained by a single
loop timer set for the earliest one; answers due within the same
millisecond go out together. There is no timer or task per copy.
"""

import asyncio
import heapq
import itertools
import logging
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

from smps._native.pdu import Status
from smps.config import ReconnectConfig, SmscConfig
from smps.smpp.client import SmscClient, SmscSession

log = logging.getLogger("smps.sim.ne")

ANSWER_GRANULARITY = 0.001  # answers due this close together share one wake-up
MAX_LATENCY = 60.0  # an exponential draw is cut here: an NE that slow is just silent


@dataclass(frozen=True)
class Latency:
    """An NE's think time per copy, in seconds.

    ``fixed``: always `mean`; ``uniform``: evenly spread over mean ± 50 %;
    ``exp``: exponential with that mean (mostly quick, a long tail — the
    shape of a real inspection system under load), cut at MAX_LATENCY.
    """

    mean: float = 0.0
    dist: Literal["fixed", "uniform", "exp"] = "fixed"

    def __post_init__(self) -> None:
        if self.mean < 0:
            raise ValueError("latency must be >= 0")
        if self.dist not in ("fixed", "uniform", "exp"):
            raise ValueError(
                f"latency distribution must be fixed, uniform or exp, not {self.dist!r}"
            )

    def sample(self, rng: random.Random) -> float:
        if self.mean <= 0 or self.dist == "fixed":
            return self.mean
        if self.dist == "uniform":
            return rng.uniform(0.5 * self.mean, 1.5 * self.mean)
        return min(rng.expovariate(1.0 / self.mean), MAX_LATENCY)


class SimNe:
    """One simulated NE account: `binds` connections to SMPS's NE server."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        system_id: str,
        password: str,
        bind: Literal["receiver", "transceiver"] = "transceiver",
        binds: int = 1,
        block_ratio: float = 0.0,
        block_status: int = Status.RX_R_APPN,
        latency: Latency = Latency(),
        silent_ratio: float = 0.0,
        disconnect_every: float | None = None,
        disconnect_ratio: float = 0.0,
        reconnect_initial: float = 0.2,
        reconnect_max: float = 5.0,
        enquire_link: float = 30.0,
        seed: int | None = None,
    ):
        for name, ratio in (
            ("block_ratio", block_ratio),
            ("silent_ratio", silent_ratio),
            ("disconnect_ratio", disconnect_ratio),
        ):
            if not 0.0 <= ratio <= 1.0:
                raise ValueError(f"{name} must be within 0..1")
        if block_ratio + silent_ratio > 1.0:
            raise ValueError("block_ratio + silent_ratio must not exceed 1")
        if disconnect_every is not None and disconnect_every <= 0:
            raise ValueError("disconnect_every must be > 0")
        self.system_id = system_id
        self.binds = binds
        self.block_ratio = block_ratio
        self.block_status = block_status
        self.latency = latency
        self.silent_ratio = silent_ratio
        self.disconnect_every = disconnect_every
        self.disconnect_ratio = disconnect_ratio
        self.client = SmscClient(
            SmscConfig(
                name=f"sim-ne-{system_id}",
                host=host,
                port=port,
                system_id=system_id,
                password=password,
                bind=bind,
                binds=binds,
                enquire_link=enquire_link,
                response_timeout=5.0,
                reconnect=ReconnectConfig(initial=reconnect_initial, max=reconnect_max),
            ),
            self._on_copy,
            logger=log,  # its binds are an NE's, not SMPS's connections to an SMSC
        )
        self.received = 0
        self.allowed = 0
        self.blocked = 0
        self.silent = 0
        self.dropped = 0  # answer due, but its bind was gone
        self.disconnects = 0
        self._rng = random.Random(seed)
        self._order = itertools.count()  # heap tie-break: sessions do not compare
        self._due: list[tuple[float, int, SmscSession, bytes, int]] = []
        self._wake: asyncio.TimerHandle | None = None
        self._wake_at = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._chaos: asyncio.Task[None] | None = None
        self._cpu_started: float | None = None

    @property
    def binds_up(self) -> int:
        return self.client.binds_up

    @property
    def answered(self) -> int:
        return self.allowed + self.blocked

    def start(self) -> None:
        """Bind (and keep binding) in the background; returns at once."""
        self._loop = asyncio.get_running_loop()
        self._cpu_started = time.process_time()
        self.client.start()
        if self.disconnect_every is not None:
            self._chaos = asyncio.create_task(self._disconnect_periodically())

    async def stop(self) -> None:
        """Unbind every bind; answers still waiting are dropped (and counted so)."""
        if self._chaos is not None:
            self._chaos.cancel()
            await asyncio.gather(self._chaos, return_exceptions=True)
            self._chaos = None
        if self._wake is not None:
            self._wake.cancel()
            self._wake = None
        self.dropped += len(self._due)
        self._due.clear()
        await self.client.stop()

    async def wait_bound(self, count: int | None = None, timeout: float | None = 10.0) -> None:
        """Wait until `count` binds (default: all) are up."""
        wanted = self.binds if count is None else count
        async with asyncio.timeout(timeout):
            while self.binds_up < wanted:
                await asyncio.sleep(0.01)

    # ---- answering copies --------------------------------------------------

    def _on_copy(self, session: SmscSession, pdu: bytes) -> None:
        self.received += 1
        rng = self._rng
        draw = rng.random()
        if draw < self.silent_ratio:
            self.silent += 1
        else:
            status = self.block_status if draw < self.silent_ratio + self.block_ratio else 0
            delay = self.latency.sample(rng)
            if delay > 0:
                self._answer_later(delay, session, pdu, status)
            else:
                self._answer(session, pdu, status)
        if self.disconnect_ratio and rng.random() < self.disconnect_ratio:
            self._disconnect(session)

    def _answer(self, session: SmscSession, pdu: bytes, status: int) -> None:
        transport = session.transport
        if transport is None or transport.is_closing():
            self.dropped += 1
            return
        session.respond(pdu, status)
        if status == 0:
            self.allowed += 1
        else:
            self.blocked += 1

    def _answer_later(self, delay: float, session: SmscSession, pdu: bytes, status: int) -> None:
        loop = self._loop
        due = loop.time() + delay
        heapq.heappush(self._due, (due, next(self._order), session, pdu, status))
        if self._wake is None or due < self._wake_at - ANSWER_GRANULARITY:
            if self._wake is not None:
                self._wake.cancel()
            self._wake_at = due
            self._wake = loop.call_at(due, self._answer_due)

    def _answer_due(self) -> None:
        self._wake = None
        due = self._due
        until = self._loop.time() + ANSWER_GRANULARITY / 2
        while due and due[0][0] <= until:
            _at, _order, session, pdu, status = heapq.heappop(due)
            self._answer(session, pdu, status)
        if due:
            self._wake_at = due[0][0]
            self._wake = self._loop.call_at(self._wake_at, self._answer_due)

    # ---- disconnects -------------------------------------------------------

    def _disconnect(self, session: SmscSession) -> None:
        """Drop a bind without unbinding, as a crashing NE would. What is
        already written still goes out, so SMPS gets every answer counted here."""
        transport = session.transport
        if transport is not None and not transport.is_closing():
            self.disconnects += 1
            session.abort_after_flush()

    async def _disconnect_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._rng.uniform(0.5, 1.5) * self.disconnect_every)
            sessions = sorted(self.client.sessions, key=lambda s: s.name)
            if sessions:
                self._disconnect(self._rng.choice(sessions))

    # ---- results -----------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Counts so far; JSON-ready."""
        cpu = time.process_time() - self._cpu_started if self._cpu_started is not None else 0.0
        return {
            "system_id": self.system_id,
            "binds": self.binds,
            "binds_up": self.binds_up,
            "received": self.received,
            "answered": {"allow": self.allowed, "block": self.blocked},
            "unanswered": self.silent,
            "dropped": self.dropped,
            "waiting": len(self._due),
            "disconnects": self.disconnects,
            "reconnects": self.client.reconnects,
            "bind_failures": self.client.bind_failures,
            "cpu_s": round(cpu, 3),
            "cpu_us_per_copy": round(1e6 * cpu / self.received, 2) if self.received else None,
        }
