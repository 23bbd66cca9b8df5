"""What stands between the NE port and a password guesser or a connection
flood: lockouts of (address, system_id) pairs after repeated failed binds, caps
on the connections that have not bound yet, and a log of refusals that
summarises instead of flooding.

All are plain tables fed by their caller. `NeServer` uses them alone in one
process; in `smps run` every worker keeps its own lockouts and reports each
failed and successful bind to the master, whose table is the node's: when it
locks a pair it pushes the lock to every worker (smps.runtime.master), so a
guesser gets no more tries by landing on another worker. The master caps the
connections it peeks at (balanced placement) with an `UnboundLimit` of its own.
"""

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable

Pair = tuple[str, str]
"""(source address, system_id)"""


class BindLockout:
    """Locks an (address, system_id) pair out after `failures` failed binds.

    Failures older than `duration` are forgotten. Once a pair has `failures`,
    every bind of that system_id from that address is refused for `duration`,
    the right password too, so a guesser gets `failures` tries per `duration`
    however it times its attempts. A success clears the count of its own pair
    only: never a lock, never another pair. Memory is bounded by `max_pairs`
    counts and as many locks, the oldest dropped first.
    """

    def __init__(
        self,
        failures: int,
        duration: float,
        *,
        max_pairs: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.failures = failures
        self.duration = duration
        self.max_pairs = max_pairs
        self.clock = clock
        self._counts: OrderedDict[Pair, tuple[int, float]] = OrderedDict()
        self._locks: OrderedDict[Pair, float] = OrderedDict()  # pair -> until (clock time)

    def locked(self, address: str, system_id: str) -> bool:
        until = self._locks.get((address, system_id))
        if until is None:
            return False
        if until > self.clock():
            return True
        del self._locks[(address, system_id)]
        return False

    def failed(self, address: str, system_id: str) -> float | None:
        """Count a failed bind; returns the lock's end when this failure locked the pair."""
        pair = (address, system_id)
        if self.locked(*pair):
            return None
        now = self.clock()
        count, last = self._counts.pop(pair, (0, now))
        if now - last > self.duration:
            count = 0
        if count + 1 < self.failures:
            self._counts[pair] = (count + 1, now)
            _bound(self._counts, self.max_pairs)
            return None
        until = now + self.duration
        self.lock(address, system_id, until)
        return until

    def succeeded(self, address: str, system_id: str) -> None:
        self._counts.pop((address, system_id), None)

    def lock(self, address: str, system_id: str, until: float) -> bool:
        """Hold a lock until `until` (clock time; decided here or by the master);
        True when the pair was not locked before."""
        pair = (address, system_id)
        was_locked = self.locked(*pair)
        self._counts.pop(pair, None)
        self._locks[pair] = max(until, self._locks.pop(pair, until))
        _bound(self._locks, self.max_pairs)
        return not was_locked

    def active(self) -> list[tuple[str, str, float]]:
        """The locks still in force, as (address, system_id, until)."""
        now = self.clock()
        for pair in [p for p, until in self._locks.items() if until <= now]:
            del self._locks[pair]
        return [(address, system_id, until) for (address, system_id), until in self._locks.items()]


def _bound(table: OrderedDict, size: int) -> None:
    while len(table) > size:
        table.popitem(last=False)


class UnboundLimit:
    """Connections that have not bound yet, per source address and in all.

    `admit` counts a new one, or names the cap it would break
    (`server.max_unbound_per_address` or `server.max_unbound`); each admitted
    connection is `release`d once it bound or closed. `refused` counts the
    refusals by cap.
    """

    def __init__(self, per_address: int, total: int):
        self.limits = {"max_unbound_per_address": per_address, "max_unbound": total}
        self.count = 0
        self._by_address: dict[str, int] = {}
        self.refused = dict.fromkeys(self.limits, 0)

    def admit(self, address: str) -> str | None:
        """None when admitted (and counted); else the name of the cap it would break."""
        held = self._by_address.get(address, 0)
        if held >= self.limits["max_unbound_per_address"]:
            over = "max_unbound_per_address"
        elif self.count >= self.limits["max_unbound"]:
            over = "max_unbound"
        else:
            self._by_address[address] = held + 1
            self.count += 1
            return None
        self.refused[over] += 1
        return over

    def release(self, address: str) -> None:
        held = self._by_address.pop(address, 0) - 1
        if held > 0:
            self._by_address[address] = held
        self.count -= 1

    def note_refusal(self, refusals: "RefusalLog", address: str, over: str) -> None:
        """Log a refusal `admit` made, through the caller's summarising log."""
        refusals.note(
            address,
            f"(over server.{over})",
            f"{address}: NE connection closed at once: server.{over} "
            f"({self.limits[over]}) connections {'from it ' if 'address' in over else ''}"
            "have not bound yet",
        )


class RefusalLog:
    """Logs refusals without flooding the log.

    The first refusal of an (address, subject) pair is one WARNING line (at
    most `max_first` such lines per `interval`); the others are counted and
    told as one summary line per `interval`: "N failed binds from M addresses
    in the last 60 s; top: ...". A pair is remembered for `remember` seconds
    after its last refusal, so one that keeps failing is never logged twice.
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = 60.0,
        max_first: int = 10,
        remember: float = 3600.0,
        max_pairs: int = 10_000,
    ):
        self.logger = logger
        self.what = what
        self.interval = interval
        self.max_first = max_first
        self.remember = remember
        self.max_pairs = max_pairs
        self._seen: OrderedDict[Pair, float] = OrderedDict()
        self._first_lines = 0
        self._counts: dict[Pair, int] = {}  # counted for the next summary
        self._uncounted = 0  # beyond max_pairs: in the total only
        self._summary: asyncio.TimerHandle | None = None

    def note(self, address: str, subject: str, line: str) -> None:
        """One refusal: `subject` says what was refused (e.g. "as 'antispam'"),
        `line` is the full text logged when this one gets a line of its own."""
        now = time.monotonic()
        pair = (address, subject)
        last = self._seen.pop(pair, None)
        self._seen[pair] = now
        while self._seen and (
            len(self._seen) > self.max_pairs
            or now - next(iter(self._seen.values())) > self.remember
        ):
            self._seen.popitem(last=False)
        if (last is None or now - last > self.remember) and self._first_lines < self.max_first:
            self._first_lines += 1
            self.logger.warning("%s", line)
        elif pair in self._counts or len(self._counts) < self.max_pairs:
            self._counts[pair] = self._counts.get(pair, 0) + 1
        else:
            self._uncounted += 1
        if self._summary is None:
            self._summary = asyncio.get_running_loop().call_later(self.interval, self._summarise)

    def _summarise(self) -> None:
        self._summary = None
        self._first_lines = 0
        counts, self._counts = self._counts, {}
        total = sum(counts.values()) + self._uncounted
        self._uncounted = 0
        if not total:
            return
        addresses = len({address for address, _subject in counts})
        top = sorted(counts.items(), key=lambda item: -item[1])[:5]
        self.logger.warning(
            "%d %s from %d address%s in the last %g s; top: %s",
            total,
            self.what,
            addresses,
            "" if addresses == 1 else "es",
            self.interval,
            ", ".join(f"{' '.join(filter(None, pair))} ({n})" for pair, n in top),
        )
        # Summaries keep coming while refusals do; the next refusal starts a new period.
        self._summary = asyncio.get_running_loop().call_later(self.interval, self._summarise)

    def close(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
