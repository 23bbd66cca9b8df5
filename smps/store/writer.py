"""The one batched writer of decision and trace records.

The data plane hands records to :meth:`DecisionWriter.put` (a
:class:`~smps.proxy.records.DecisionSink`) and :meth:`DecisionWriter.put_trace`.
Both only append to a list: they never await, never block and never fail.
Which decisions are handed over at all is the proxy's choice, by
``database.record`` (see :func:`smps.proxy.records.should_record`): ``all``, ``non_allow``
(the default: all but the NEs' own allows and receipts) or ``none``; traced messages are
always recorded.

Behind ``put``, three stages, all on the event loop except file I/O:

1. **Cut**: every ``flush_interval``, or as soon as ``batch_size`` records wait,
   the buffer is cut into batches of at most ``batch_size`` decisions (and
   traces), each with a random batch id; the per-minute counter increments
   gathered since the last cut (:meth:`DecisionWriter.add_totals`) ride in the first.
2. **Queue**: batches wait in memory, up to ``buffer_limit`` records. Past
   that, or while anything is already spooled, they are appended to the spool
   (``state_dir/spool``, :mod:`smps.store.spool`), so that the queue is always
   "memory, then spool" in arrival order.
3. **Write**: one task writes the oldest batch in one transaction, with the
   batches queued behind it up to ``transaction_records``. Under load it commits
   at most once per ``commit_interval`` (unless a whole transaction's worth
   waits), so that the commit's cost is shared by more rows: the batch ids into
   ``writer_batches`` first, then the rows and the counters (:mod:`smps.store.batch_sql`).
   If a batch id is already there, the batch was committed before (its outcome was
   lost with the connection, or it was replayed from the spool after a crash)
   and it is skipped: none twice (a group holding one is retried a batch at a
   time). A failed write is retried with back-off; the queue grows into the
   spool meanwhile; none lost.

**Failing**: after repeated failed writes, or at once when the SQLite file is gone,
the writer is *failing* (:mod:`smps.store.write_health`, for /health and
``smps_db_writer_failing``): it moves what waits in memory to the spool, where new
batches go too, until a write succeeds; the spool is then replayed.

Records are dropped only when memory *and* spool are full, when the writer is
closed, or when the database refuses a batch as invalid (not as unavailable).
Each drop is counted (:attr:`DecisionWriter.dropped`, exported as
``smps_db_records_dropped_total``) and logged once per ``report_interval``.

Retention (:mod:`smps.store.retention`) runs between batches, on the writer's own
connection (SQLite keeps a single writer).

Each decision row carries the HA lease epoch the node served under
(:meth:`DecisionWriter.set_epoch`, called by the master as it goes ACTIVE).

Times in the rows are integer microseconds since the epoch (see schema.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Hashable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError

from smps.config import Config
from smps.metrics import CallbackCollector
from smps.proxy.records import Decision, TraceEvent
from smps.store.batch_sql import Batch, Statements, encode_batch, spooled_batch, write_batches
from smps.store.db import Store
from smps.store.minute_counts import Totals, TotalsDelta
from smps.store.retention import RETENTION_CHUNK, purge_expired
from smps.store.rows import decision_row, trace_row
from smps.store.spool import Spool
from smps.store.write_health import WriteHealth
from smps.store.writer_runners import EngineRunner, ThreadRunner

log = logging.getLogger("smps.store.writer")


class _Regroup(Exception):
    """A group of batches could not be written whole: write them one per transaction."""


class DecisionWriter:
    """Batches decision and trace records into the database; see the module docstring."""

    def __init__(
        self,
        store: Store,
        spool_dir: str | Path,
        *,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        transaction_records: int = 5000,
        commit_interval: float = 1.0,
        retention_days: int = 30,
        buffer_limit: int = 100_000,
        spool_max_bytes: int = 1 << 30,
        retry_initial: float = 0.5,
        retry_max: float = 10.0,
        write_timeout: float = 30.0,
        report_interval: float = 30.0,
        retention_interval: float = 3600.0,
    ):
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.transaction_records = transaction_records
        self.commit_interval = commit_interval
        self.retention_days = retention_days
        self.buffer_limit = buffer_limit
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.write_timeout = write_timeout
        self.report_interval = report_interval
        self.retention_interval = retention_interval
        self._spool_dir = Path(spool_dir)
        self._spool_max_bytes = spool_max_bytes
        self._spool: Spool | None = None
        dialect = store.engine.dialect
        self._sql = Statements(dialect.name, dialect.paramstyle)

        self._decisions: list[Decision] = []  # made into rows when cut (with the epoch)
        self._traces: list[tuple] = []
        self._counts: dict[tuple[int, str, str], int] = {}  # (minute, account, verdict)
        self._totals = TotalsDelta()
        self._ready: deque[Batch] = deque()
        self._ready_records = 0
        self._wake = asyncio.Event()
        self._queued = asyncio.Event()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="smps-spool")
        self._runner = (
            ThreadRunner(store.engine) if dialect.name == "sqlite" else EngineRunner(store.engine)
        )
        self._tasks: list[asyncio.Task] = []
        self._closed = False
        self._next_retention = 0.0
        self._health = WriteHealth(self._spool_dir)  # outage and failing state
        self._singly = 0  # batches to write one per transaction (after a group was refused)
        self.epoch: int | None = None  # the HA lease epoch stamped on decisions (set_epoch)

        # Counters in records (metric-ready; read by stats() and collect()).
        self.written = 0
        self.skipped = 0  # found already committed (replays after an unknown outcome)
        self.spooled = 0
        self.dropped = 0
        self.batches = 0
        self._dropped_reported = 0

    @classmethod
    def from_config(cls, store: Store, config: Config, **options: Any) -> DecisionWriter:
        """A writer with ``database`` settings, spooling under ``node.state_dir/spool``."""
        database = config.database
        return cls(
            store,
            Path(config.node.state_dir) / "spool",
            batch_size=database.batch_size,
            flush_interval=database.flush_interval,
            retention_days=database.retention_days,
            **options,
        )

    # ------------------------------------------------------------------- data plane side

    def put(self, decision: Decision) -> None:
        """Queue one decision; never blocks. Dropped (and counted) only when memory is full."""
        if self._closed or len(self._decisions) + len(self._traces) >= self.buffer_limit:
            self.dropped += 1
            return
        self._decisions.append(decision)
        if len(self._decisions) >= self.batch_size:
            self._wake.set()

    def put_many(self, decisions: list[Decision]) -> None:
        """``put`` for a worker's batch at once (the master's): those past the memory
        limit are dropped, and counted."""
        room = self.buffer_limit - len(self._decisions) - len(self._traces)
        if self._closed or room <= 0:
            self.dropped += len(decisions)
            return
        if len(decisions) > room:
            self.dropped += len(decisions) - room
            decisions = decisions[:room]
        self._decisions.extend(decisions)
        if len(self._decisions) >= self.batch_size:
            self._wake.set()

    def put_trace(self, event: TraceEvent) -> None:
        """Queue one trace event as its row (:func:`smps.store.rows.trace_row`); never blocks."""
        if self._closed or len(self._decisions) + len(self._traces) >= self.buffer_limit:
            self.dropped += 1
            return
        self._traces.append(trace_row(event))
        if len(self._traces) >= self.batch_size:
            self._wake.set()

    def add_totals(self, source: Hashable, totals: Totals, now: float | None = None) -> None:
        """A data plane's running verdict totals (:mod:`smps.store.minute_counts`): their
        growth since its last call counts in the current minute."""
        if self._closed:
            return
        minute = int((time.time() if now is None else now) // 60)
        counts = self._counts
        for (account, verdict), growth in self._totals.step(source, totals).items():
            key = (minute, account[:16], verdict)
            counts[key] = counts.get(key, 0) + growth

    def forget_source(self, source: Hashable) -> None:
        """The data plane behind ``source`` ended; a new one counts from zero."""
        self._totals.forget(source)

    async def set_epoch(self, epoch: int | None) -> None:
        """Stamp decisions from now on with ``epoch``, the fencing token of the lease the
        node serves under (None: no lease). Decisions already buffered keep the old one."""
        if epoch != self.epoch:
            await self._cut()
            self.epoch = epoch

    # ------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._spool = await loop.run_in_executor(
            self._io, Spool, self._spool_dir, self._spool_max_bytes
        )
        if len(self._spool):
            log.warning(
                "spool holds %d batches (%d bytes) from an earlier run; replaying them first",
                len(self._spool),
                self._spool.bytes,
            )
            self._queued.set()
        self._next_retention = loop.time() + min(60.0, self.retention_interval)
        self._tasks = [
            asyncio.create_task(self._cut_loop(), name="db-cut"),
            asyncio.create_task(self._write_loop(), name="db-write"),
            asyncio.create_task(self._report_loop(), name="db-report"),
        ]

    async def close(self, drain_timeout: float = 5.0) -> None:
        """Stop: write what is queued for up to ``drain_timeout`` s, spool the rest, in order."""
        if self._closed:
            return
        self._closed = True
        cut, write, report = self._tasks
        report.cancel()
        self._wake.set()  # the cut loop finishes its round and exits; cancelling could lose a batch
        await asyncio.gather(cut, report, return_exceptions=True)
        await self._cut()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while (
            (self._ready or len(self._spool))
            and loop.time() < deadline
            and not write.done()
            and not self._health.failing  # a failing database: the spool keeps it all
        ):
            await asyncio.sleep(0.02)
        write.cancel()
        await asyncio.gather(write, return_exceptions=True)
        if self._ready:
            await self._spool_ready("at stop")
            log.info("stopped with %d batches spooled for the next start", len(self._spool))
        self._log_dropped()
        await self._runner.close()
        self._io.shutdown(wait=True)

    # ---------------------------------------------------------------------- metrics

    @property
    def pending(self) -> int:
        """Records not yet written and not on disk."""
        return len(self._decisions) + len(self._traces) + self._ready_records

    def failing(self) -> str | None:
        """Why the database writes are failing and for how long (for /health), or None."""
        return self._health.describe()

    def stats(self) -> dict[str, int]:
        """Counters for the node's periodic stats line."""
        return {
            "db_failing": int(self._health.failing),
            "db_written": self.written,
            "db_pending": self.pending,
            "db_spool_batches": len(self._spool) if self._spool else 0,
            "db_dropped": self.dropped,
        }

    def collect(self) -> Iterable[Metric]:
        written = CounterMetricFamily(
            "smps_db_records_written", "Decision and trace records committed to the database."
        )
        written.add_metric([], self.written)
        dropped = CounterMetricFamily(
            "smps_db_records_dropped", "Records dropped: memory and spool full, or refused."
        )
        dropped.add_metric([], self.dropped)
        spooled = CounterMetricFamily(
            "smps_db_records_spooled", "Records written to the spool while the database lagged."
        )
        spooled.add_metric([], self.spooled)
        pending = GaugeMetricFamily("smps_db_records_pending", "Records queued in memory.")
        pending.add_metric([], self.pending)
        spool_bytes = GaugeMetricFamily("smps_db_spool_bytes", "Bytes waiting in the spool.")
        spool_bytes.add_metric([], self._spool.bytes if self._spool else 0)
        failing = GaugeMetricFamily(
            "smps_db_writer_failing",
            "1 while database writes keep failing or the SQLite file is gone (records spool).",
        )
        failing.add_metric([], int(self._health.failing))
        return [written, dropped, spooled, pending, spool_bytes, failing]

    def collector(self) -> CallbackCollector:
        """A prometheus collector for the master's registry."""
        return CallbackCollector(self.collect)

    # ---------------------------------------------------------------------- cutting

    async def _cut_loop(self) -> None:
        while not self._closed:
            try:
                async with asyncio.timeout(self.flush_interval):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            await self._cut()

    async def _cut(self) -> None:
        """Turn buffered records into batches and queue them (memory, else spool)."""
        while self._decisions or self._traces or self._counts:
            decisions = self._decisions[: self.batch_size]
            traces = self._traces[: self.batch_size]
            del self._decisions[: self.batch_size]
            del self._traces[: self.batch_size]
            counters = [(*key, count) for key, count in self._counts.items()]
            self._counts = {}
            epoch = self.epoch
            rows = [decision_row(decision, epoch) for decision in decisions]
            batch = Batch(uuid.uuid4().hex, rows, traces, counters)
            await self._queue(batch)

    async def _queue(self, batch: Batch) -> None:
        spool = self._spool
        if (
            not len(spool)
            and not self._health.failing
            and self._ready_records + batch.records <= self.buffer_limit
        ):
            self._ready.append(batch)
            self._ready_records += batch.records
        else:
            if not len(spool) and not self._health.failing:
                log.warning(
                    "database is behind: %d records queued in memory; spooling to %s",
                    self._ready_records,
                    spool.directory,
                )
            try:
                stored = await asyncio.get_running_loop().run_in_executor(
                    self._io, spool.append, encode_batch(batch)
                )
            except OSError as exc:
                log.error("cannot write the spool: %s", exc)
                stored = False
            if stored:
                self.spooled += batch.records
            else:
                self.dropped += batch.records
        self._queued.set()

    # ----------------------------------------------------------------------- writing

    async def _next_batches(self) -> tuple[list[Batch], bool] | None:
        """The oldest queued batches and whether they came from the spool; None when idle.

        From memory, consecutive batches up to ``transaction_records`` go together into
        one transaction: under load the commit (SQLite: the WAL write of every page the
        indexes dirtied) is shared by more rows. From the spool, one at a time.
        """
        if self._ready:
            if self._singly:
                return [self._ready[0]], False
            group = [self._ready[0]]
            records = group[0].records
            for batch in itertools.islice(self._ready, 1, None):
                records += batch.records
                if records > self.transaction_records:
                    break
                group.append(batch)
            return group, False
        if len(self._spool):
            payload = await asyncio.get_running_loop().run_in_executor(self._io, self._spool.peek)
            if payload is not None:
                try:
                    return [spooled_batch(payload)], True
                except msgspec.DecodeError:
                    log.error("undecodable batch in the spool, skipped")
                    await asyncio.get_running_loop().run_in_executor(self._io, self._spool.pop)
                    return None
        return None

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.retry_initial
        committed = 0.0
        while True:
            await self._gather(committed)
            if loop.time() >= self._next_retention:
                await self._retention_step()
            self._queued.clear()  # before looking, so a batch queued meanwhile is not missed
            item = await self._next_batches()
            if item is None:
                wait = max(self._next_retention - loop.time(), 0.01)
                try:
                    async with asyncio.timeout(wait):
                        await self._queued.wait()
                except TimeoutError:
                    pass
                continue
            batches, from_spool = item
            started = loop.time()
            try:
                await self._write(batches)
            except _Regroup:
                # A batch of the group was committed before, or refused: one at a time.
                self._singly = len(batches)
                continue
            except (DataError, ProgrammingError, IntegrityError) as exc:
                # The database is up but refuses these rows: retrying cannot help.
                log.error("database refused a batch of %d records: %s", batches[0].records, exc)
                self.dropped += batches[0].records
                await self._discard_connection()
            except Exception as exc:
                if self._health.failed(exc) and self._ready:
                    await self._spool_ready("while the database fails")
                await self._discard_connection()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                continue
            self._health.succeeded(len(self._spool))
            delay = self.retry_initial
            if from_spool:
                await loop.run_in_executor(self._io, self._spool.pop)
                if not len(self._spool):
                    log.info("spool replayed")
            else:
                committed = started
                for batch in batches:
                    self._ready.popleft()
                    self._ready_records -= batch.records
                self._singly = max(self._singly - 1, 0)

    async def _spool_ready(self, when: str) -> None:
        """Move the batches waiting in memory to the front of the spool (they are
        older than anything spooled); what does not fit is dropped, and counted."""
        batches = list(self._ready)
        self._ready.clear()
        self._ready_records = 0
        self._singly = 0
        kept = await asyncio.get_running_loop().run_in_executor(
            self._io, self._spool.push_front, [encode_batch(b) for b in batches]
        )
        for batch in batches[:kept]:
            self.spooled += batch.records
        for batch in batches[kept:]:
            self.dropped += batch.records
        if kept < len(batches):
            lost = sum(batch.records for batch in batches[kept:])
            log.error("spool full %s: %d records dropped", when, lost)

    async def _gather(self, since: float) -> None:
        """Let batches gather until ``commit_interval`` has passed ``since`` the last
        write from memory began, or a whole transaction's worth waits: a commit (SQLite: the WAL
        write of every page the indexes dirtied) costs about as much for 500 rows as
        for 5000."""
        loop = asyncio.get_running_loop()
        while (
            not self._closed
            and not len(self._spool)  # replaying: as fast as the database takes it
            and self._ready_records < self.transaction_records
        ):
            left = since + self.commit_interval - loop.time()
            if left <= 0:
                return
            self._queued.clear()
            try:
                async with asyncio.timeout(left):
                    await self._queued.wait()
            except TimeoutError:
                return

    async def _discard_connection(self) -> None:
        await self._runner.discard()

    async def _write(self, batches: list[Batch]) -> None:
        """Write ``batches`` in one transaction. A group that cannot be written whole
        (one of its batches is already in the ledger, or refused) raises _Regroup."""
        try:
            async with asyncio.timeout(self.write_timeout):
                new = await self._runner.run(write_batches, self._sql, batches)
        except (DataError, ProgrammingError, IntegrityError):
            if len(batches) > 1:
                await self._discard_connection()
                raise _Regroup from None
            raise
        records = sum(batch.records for batch in batches)
        if new:
            self.written += records
            self.batches += len(batches)
        elif len(batches) > 1:
            raise _Regroup
        else:
            self.skipped += records

    async def _retention_step(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.write_timeout):
                deleted = await self._runner.run(
                    purge_expired, self.retention_days, chunk=RETENTION_CHUNK
                )
        except Exception as exc:
            log.warning("retention: %s", exc)
            await self._runner.discard()
            deleted = 0
        # A full chunk means more is due: continue after the next batch.
        more = deleted >= RETENTION_CHUNK
        self._next_retention = loop.time() + (0.0 if more else self.retention_interval)

    # ----------------------------------------------------------------------- reports

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_interval)
            self._log_dropped()
            if self._health.failing:
                log.error(
                    "%s (%d batches, %d bytes; %d records spooled since start)",
                    self.failing(),
                    len(self._spool),
                    self._spool.bytes,
                    self.spooled,
                )

    def _log_dropped(self) -> None:
        new = self.dropped - self._dropped_reported
        if new:
            self._dropped_reported = self.dropped
            log.error(
                "dropped %d records (%d since start): memory and spool full", new, self.dropped
            )
