"""Where trace events go: the daily JSON-lines files, or memory.

A sink (`smps.proxy.records.TraceSink`) takes finished events with
``put(event)`` and must not block: the proxy calls it on the data plane when a
traced original is closed. The file sink only buffers there; `run()` (or
`flush()`) writes the buffer in one ``write`` per daily file, off the event
loop, and deletes files older than ``retention_days``. The database writer of
the store is another sink; the caller fans events out to as many as it likes.

Files are ``state_dir/traces/YYYY-MM-DD.jsonl`` (UTC date of the event),
opened with O_APPEND for every batch, so several worker processes can share
one day's file: each batch is whole lines in one append.
"""

import asyncio
import datetime as dt
import logging
import os
import re
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgspec

from smps.proxy.records import TraceEvent

log = logging.getLogger("smps.trace")

DAY_US = 86_400_000_000
BUFFER_LIMIT = 100_000  # events waiting for the writer before new ones are dropped (and counted)
_DAY_FILE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})\.jsonl$")


class MemoryTraceSink:
    """Keeps the newest `limit` events: for tests, the demo, and the API
    before a database is there."""

    def __init__(self, limit: int = 10_000):
        self._items: deque[TraceEvent] = deque(maxlen=limit)

    def put(self, event: TraceEvent) -> None:
        self._items.append(event)

    def __iter__(self) -> Iterator[TraceEvent]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def of_message(self, message_id: str) -> list[TraceEvent]:
        return [event for event in self._items if event.message_id == message_id]


def day_of(ts_us: int) -> str:
    """The UTC date an event belongs to, as its file stem."""
    return dt.datetime.fromtimestamp(ts_us / 1e6, dt.UTC).strftime("%Y-%m-%d")


class TraceFileSink:
    """Trace events as JSON lines in one file per UTC day, written in batches."""

    def __init__(
        self,
        state_dir: str | os.PathLike,
        *,
        retention_days: int = 30,
        buffer_limit: int = BUFFER_LIMIT,
    ):
        self.directory = Path(state_dir) / "traces"
        self.retention_days = retention_days  # 0 = keep forever
        self.buffer_limit = buffer_limit
        self.dropped = 0  # events refused because the writer fell behind
        self.written = 0
        self._buffer: list[TraceEvent] = []
        self._encoder = msgspec.json.Encoder()

    def put(self, event: TraceEvent) -> None:
        if len(self._buffer) >= self.buffer_limit:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 10_000 == 0:
                log.warning("trace files: writer behind, %d events dropped so far", self.dropped)
            return
        self._buffer.append(event)

    def flush(self) -> int:
        """Write what is buffered now; returns the number of events written."""
        batch, self._buffer = self._buffer, []
        return self._write(batch)

    def _write(self, batch: list[TraceEvent]) -> int:
        if not batch:
            return 0
        by_day: dict[str, list[TraceEvent]] = {}
        start = end = 0  # the UTC day of `events`, in epoch µs: one date format per day
        events: list[TraceEvent] = []
        for event in batch:
            ts = event.ts_us
            if not start <= ts < end:
                start = ts - ts % DAY_US
                end = start + DAY_US
                events = by_day.setdefault(day_of(start), [])
            events.append(event)
        self.directory.mkdir(parents=True, exist_ok=True)
        written = 0
        for day, events in by_day.items():
            data = self._encoder.encode_lines(events)
            try:
                _append(self.directory / f"{day}.jsonl", data)
            except OSError as exc:
                self.dropped += len(events)
                log.error("trace files: cannot write %d events to %s: %s", len(events), day, exc)
                continue
            written += len(events)
        self.written += written
        return written

    def prune(self, today: dt.date | None = None) -> list[Path]:
        """Delete day files older than `retention_days`; returns the deleted paths."""
        if self.retention_days <= 0 or not self.directory.is_dir():
            return []
        today = today or dt.datetime.now(dt.UTC).date()
        oldest_kept = today - dt.timedelta(days=self.retention_days - 1)
        deleted = []
        for path in self.directory.iterdir():
            day = _file_day(path.name)
            if day is not None and day < oldest_kept:
                try:
                    path.unlink()
                except OSError as exc:
                    log.warning("trace files: cannot delete %s: %s", path, exc)
                    continue
                deleted.append(path)
        return deleted

    def files(self) -> list[Path]:
        """The day files present, oldest first."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if _file_day(p.name) is not None)

    async def run(self, interval: float = 0.5, prune_every: float = 3600.0) -> None:
        """Flush every `interval` seconds in a worker thread, prune hourly;
        flushes what is left when cancelled."""
        loop = asyncio.get_running_loop()
        next_prune = loop.time()
        try:
            while True:
                await asyncio.sleep(interval)
                batch, self._buffer = self._buffer, []
                if batch:
                    await asyncio.to_thread(self._write, batch)
                if loop.time() >= next_prune:
                    await asyncio.to_thread(self.prune)
                    next_prune = loop.time() + prune_every
        finally:
            self.flush()


def read_events(paths: Iterable[Path]) -> Iterator[TraceEvent]:
    """Events back from day files (for tools and tests)."""
    decoder = msgspec.json.Decoder(TraceEvent)
    for path in paths:
        with open(path, "rb") as f:
            for line in f:
                if line.strip():
                    yield decoder.decode(line)


def _file_day(name: str) -> dt.date | None:
    found = _DAY_FILE.match(name)
    if found is None:
        return None
    try:
        return dt.date(int(found[1]), int(found[2]), int(found[3]))
    except ValueError:
        return None


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
