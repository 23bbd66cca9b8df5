"""One running SMPS node: the HTTP side, the NE server, the proxy core, the
SMSC binds and the periodic stats line, until stop is asked.

`Node.run()` owns start-up order and shutdown: anything started is stopped in
reverse order, and a failure while starting stops what already started, so a
node never half-starts. Stopping is graceful: reads from the SMSCs stop, every
original in flight is answered (at most one verdict timeout), then the SMSC
and NE binds are unbound.
"""

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

from smps import __version__
from smps.config import Config
from smps.metrics import make_registry
from smps.proxy.dispatcher import Dispatcher
from smps.proxy.records import FanOutSink, MemorySink
from smps.proxy.trace_hub import TraceHub
from smps.proxy.trace_store import TraceFileSink, TraceSink
from smps.proxy.tracer import Tracer
from smps.smpp.client import SmscClients
from smps.smpp.server import NeServer
from smps.store import live_config
from smps.store.db import Store
from smps.store.minute_counts import verdict_totals
from smps.store.rows import trace_row
from smps.store.startup import open_database
from smps.store.writer import DecisionWriter
from smps.web.api import add_api_routes
from smps.web.http import HttpServer, degraded, make_app

log = logging.getLogger("smps.node")

COUNT_INTERVAL = 1.0  # seconds between readings of the verdict totals for the database

StatsSource = Callable[[], dict[str, Any]]
"""Returns the counters one component contributes to the periodic stats line."""


class Node:
    def __init__(
        self,
        config: Config,
        *,
        trace_sink: TraceSink | None = None,
        recent: int = 10_000,
    ):
        self.config = config
        self.started = time.monotonic()
        self.role = "active" if config.ha.mode == "standalone" else config.ha.initial_role
        self.registry = make_registry()
        self.http_port: int | None = None
        self.smpp_port: int | None = None
        self.trace_files = TraceFileSink(
            config.node.state_dir, retention_days=config.database.retention_days
        )
        self.tracer = Tracer.from_config(
            config, trace_sink if trace_sink is not None else self.trace_files
        )
        # The newest decisions in memory; the database writer joins at start.
        self.recent = MemorySink(recent)
        self.dispatcher = Dispatcher(config, sink=self.recent, tracer=self.tracer)
        self.trace_hub = TraceHub()  # live trace events for /api/v1/traces/stream
        self.store: Store | None = None
        self.writer: DecisionWriter | None = None
        self.ne_server = NeServer(
            config.server, config.ne_accounts, copy_timeout=config.policy.timeout
        )
        self.ne_server.registry.listeners.append(self.dispatcher.on_bind_change)
        self.smsc_clients = SmscClients(
            self.dispatcher.on_message, turn_away=self.dispatcher.turn_away
        )
        self.live_smsc = list(config.smsc)  # the database's list once the store is open
        self._serving = False  # the SMSC clients follow live_smsc once the node serves
        self.stats_sources: list[StatsSource] = [self._uptime_stats, self._smpp_stats]
        self._pdu_totals = (0, 0, time.monotonic())
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask run() to finish; safe to call from a signal handler."""
        self._stop.set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """/health: "ok", or "degraded" with the reasons (see `web.health_strict`)."""
        body = {
            "status": "ok",
            "node": self.config.node.name,
            "role": self.role,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        return degraded(True, body, self.degradations(), strict=self.config.web.health_strict)

    def degradations(self) -> list[str]:
        """What the node serves worse for now: SMSCs down for longer than their
        back-off, database writes failing."""
        now = time.monotonic()
        reasons = [reason for client in self.smsc_clients if (reason := client.down_reason(now))]
        if self.writer is not None and (failing := self.writer.failing()):
            reasons.append(failing)
        return reasons

    def stats_line(self) -> str:
        fields: dict[str, Any] = {}
        for source in self.stats_sources:
            fields.update(source())
        return "stats " + " ".join(f"{key}={value}" for key, value in fields.items())

    def _uptime_stats(self) -> dict[str, Any]:
        return {"uptime": f"{time.monotonic() - self.started:.0f}s"}

    def _sessions(self):
        for client in self.smsc_clients:
            yield from client.sessions
        yield from self.ne_server.registry.sessions()

    def _smpp_stats(self) -> dict[str, Any]:
        pdus_in = pdus_out = 0
        for session in self._sessions():
            pdus_in += sum(session.stats.pdus_in.values())
            pdus_out += sum(session.stats.pdus_out.values())
        last_in, last_out, last_at = self._pdu_totals
        now = time.monotonic()
        elapsed = max(now - last_at, 1e-9)
        self._pdu_totals = (pdus_in, pdus_out, now)
        dispatcher = self.dispatcher.snapshot()
        return {
            "smsc_binds": ",".join(
                f"{c.cfg.name}:{c.binds_up}/{c.cfg.binds}" for c in self.smsc_clients
            )
            or "-",
            "ne_binds": ",".join(f"{a}:{n}" for a, n in self.ne_server.snapshot()["binds"].items())
            or "-",
            "pdus_in_s": f"{max(pdus_in - last_in, 0) / elapsed:.1f}",
            "pdus_out_s": f"{max(pdus_out - last_out, 0) / elapsed:.1f}",
            "reconnects": sum(c.reconnects for c in self.smsc_clients),
            "auth_failures": self.ne_server.auth_failures,
            "received": dispatcher["received"],
            "in_flight": dispatcher["in_flight"],
            "throttled": dispatcher["throttled"],
            "late": dispatcher["late_answers"],
        }

    async def _apply_live_config(self) -> None:
        """Push the file's and the API's configuration into the data plane."""
        config, accounts = await live_config.load(self.store, self.config)
        self.ne_server.set_accounts(accounts)
        self.dispatcher.apply_config(config, accounts)
        self.tracer.apply_config(config)
        self.live_smsc = config.smsc
        if self._serving:
            await self.smsc_clients.apply(self.live_smsc, self._answer_smsc_in_flight)

    async def _answer_smsc_in_flight(self) -> None:
        """Before a removed or changed SMSC's binds go: its originals are answered
        by the verdict timeout at the latest."""
        await self.dispatcher.drain(self.config.policy.timeout + 0.5)

    async def _on_config_change(self, entity: str, key: str) -> None:
        log.info("configuration changed through the API: %s %s; applying live", entity, key)
        await self._apply_live_config()

    async def _graceful_stop(self) -> None:
        """Turn new originals away, answer everything in flight, then let the
        exit stack unbind the SMSCs and NEs."""
        self.smsc_clients.pause()
        in_flight = self.dispatcher.in_flight
        if in_flight:
            log.info("stopping: answering %d originals in flight", in_flight)
        if not await self.dispatcher.drain(self.config.policy.timeout + 1.0):
            log.error("stopping: %d originals still unanswered", self.dispatcher.in_flight)

    async def _report_stats(self) -> None:
        interval = self.config.log.stats_interval
        while True:
            await asyncio.sleep(interval)
            log.info("%s", self.stats_line())
            self.tracer.prune_expired()

    async def _count_verdicts(self) -> None:
        """The per-minute counters in the database, from the dispatcher's running totals."""
        while True:
            await asyncio.sleep(COUNT_INTERVAL)
            self.writer.add_totals(None, verdict_totals(self.dispatcher))

    async def _stop_counting(self, counting: asyncio.Task[None]) -> None:
        await _cancel_and_wait(counting)
        self.writer.add_totals(None, verdict_totals(self.dispatcher))

    async def run(self, *, handle_signals: bool = True) -> None:
        """Run until stop(); with handle_signals, SIGINT and SIGTERM call stop()."""
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM) if handle_signals else ()
        for sig in signals:
            loop.add_signal_handler(sig, self.stop)
        async with AsyncExitStack() as stack:
            self.store, self.writer = await open_database(self.config, stack)
            await self._apply_live_config()
            self.store.listeners.append(self._on_config_change)
            self.dispatcher.sink = FanOutSink(self.recent, self.writer)
            self.tracer.sink = _TraceFanOut(self.tracer.sink, self.writer, self.trace_hub)
            self.stats_sources.append(self.writer.stats)
            self.registry.register(self.writer.collector())
            counting = asyncio.create_task(self._count_verdicts(), name="verdict-counts")
            # Unwound after the graceful stop (pushed later): the final totals count too.
            stack.push_async_callback(self._stop_counting, counting)

            app = make_app(
                self.health,
                self.registry,
                metrics_auth=self.store if self.config.web.metrics_auth else None,
            )
            add_api_routes(
                app,
                self.store,
                trace_hub=self.trace_hub,
                country_code=self.config.trace.country_code,
            )
            http = HttpServer(app, tls=self.config.web.tls)
            host, port = self.config.web.listen
            self.http_port = await http.start(host, port)
            stack.push_async_callback(http.close)
            log.info("HTTP listening on %s:%d (/health, /metrics, /api/v1)", host, self.http_port)

            self.dispatcher.start()
            stack.callback(self.dispatcher.stop)
            smpp_host = self.config.server.listen[0]
            self.smpp_port = await self.ne_server.start()
            stack.push_async_callback(self.ne_server.stop)
            log.info("SMPP server for NEs listening on %s:%d", smpp_host, self.smpp_port)
            await self.smsc_clients.apply(self.live_smsc, self._answer_smsc_in_flight)
            self._serving = True
            stack.push_async_callback(self.smsc_clients.stop)
            stack.push_async_callback(self._graceful_stop)

            stats = asyncio.create_task(self._report_stats(), name="stats")
            stack.callback(stats.cancel)
            trace_files = asyncio.create_task(self.trace_files.run(), name="trace-files")
            stack.push_async_callback(_cancel_and_wait, trace_files)

            log.info(
                "SMPS %s ready: node=%s role=%s", __version__, self.config.node.name, self.role
            )
            await self._stop.wait()
            log.info("stopping")
        for sig in signals:
            loop.remove_signal_handler(sig)
        log.info("stopped")


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a background task and let it finish its own clean-up (final flush)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class _TraceFanOut:
    """Trace events go to the daily files, the database's traces table and live watchers."""

    def __init__(self, files: TraceSink, writer: DecisionWriter, hub: TraceHub):
        self.files = files
        self.writer = writer
        self.hub = hub

    def put(self, event) -> None:
        self.files.put(event)
        self.writer.put_trace(trace_row(event))
        self.hub.put(event)
