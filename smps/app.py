"""The single-process node: one data plane (`smps.runtime.plane`, the one a
worker of ``smps run`` runs), with its database, the HTTP side (/health,
/metrics, /api/v1) and the periodic stats line, until stop is asked. This is
what ``smps demo`` and the in-process tests run.

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
from contextlib import AsyncExitStack
from typing import Any

from smps import __version__
from smps.config import Config
from smps.metrics import CallbackCollector, make_registry
from smps.proxy.campaigns import CampaignReader, campaign_metrics
from smps.proxy.dispatcher import Dispatcher
from smps.proxy.records import FanOutSink, MemorySink, TraceSink
from smps.proxy.screening_trial import ScreeningTrial
from smps.proxy.trace_hub import TraceHub
from smps.proxy.trace_store import TraceFileSink
from smps.proxy.tracer import Tracer
from smps.runtime.plane import DataPlane, TraceTee
from smps.runtime.stats import verdict_totals
from smps.smpp.client import SmscClients
from smps.smpp.server import NeServer
from smps.store import live_config
from smps.store.db import Store
from smps.store.startup import open_database
from smps.store.writer import DecisionWriter
from smps.web.api import add_api_routes
from smps.web.http import HttpServer, degraded, make_app

log = logging.getLogger("smps.node")

COUNT_INTERVAL = 1.0  # seconds between readings of the verdict totals for the database


class Node:
    def __init__(
        self,
        config: Config,
        *,
        trace_sink: TraceSink | None = None,
        recent: int = 10_000,
    ):
        self.config = config  # the file's; the data plane has the live one
        self.started = time.monotonic()
        self.role = "active" if config.ha.mode == "standalone" else config.ha.initial_role
        self.registry = make_registry()
        self.http_port: int | None = None
        self.smpp_port: int | None = None
        self.trace_files = TraceFileSink(
            config.node.state_dir, retention_days=config.database.retention_days
        )
        # Trace events go to the day files (or the test's sink) and the newest
        # decisions stay in memory; the database and live watchers join at start.
        self.trace_sink = trace_sink if trace_sink is not None else self.trace_files
        self.recent = MemorySink(recent)
        self.plane = DataPlane(
            config, config.ne_accounts, decisions=self.recent, traces=self.trace_sink
        )
        self.registry.register(CallbackCollector(self.plane.metric_families))
        # Messages tried through the API see the dispatcher's own velocity counts.
        velocity = self.dispatcher.screening.velocity
        self.screening = ScreeningTrial(lambda: self.plane.config, velocity)
        self.campaigns = CampaignReader(
            [self.dispatcher.campaigns.buffer], lambda: self.plane.config
        )
        self.registry.register(CallbackCollector(lambda: campaign_metrics(self.campaigns)))
        self.trace_hub = TraceHub()  # live trace events for /api/v1/traces/stream
        self.store: Store | None = None
        self.writer: DecisionWriter | None = None
        self._received = (0, time.monotonic())  # for the stats line's rate
        self._stop = asyncio.Event()

    @property
    def dispatcher(self) -> Dispatcher:
        return self.plane.dispatcher

    @property
    def ne_server(self) -> NeServer:
        return self.plane.ne_server

    @property
    def smsc_clients(self) -> SmscClients:
        return self.plane.smsc_clients

    @property
    def tracer(self) -> Tracer:
        return self.plane.tracer

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
        reasons = self.plane.smsc_down()
        if self.writer is not None and (failing := self.writer.failing()):
            reasons.append(failing)
        return reasons

    def stats_line(self) -> str:
        """The data plane's binds, rate and originals in flight, and the database
        writer's counters: the fields of ``smps run``'s stats line."""
        report = self.plane.snapshot()
        received = report.counters.originals_received
        last, at = self._received
        now = time.monotonic()
        self._received = (received, now)
        fields: dict[str, Any] = {
            "uptime": f"{now - self.started:.0f}s",
            "smsc_binds": _listed(report.gauges.smsc_binds),
            "ne_binds": _listed(report.gauges.ne_binds),
            "received_s": f"{max(received - last, 0) / max(now - at, 1e-9):.1f}",
            "in_flight": report.gauges.in_flight,
        }
        if self.writer is not None:
            fields.update(self.writer.stats())
        return "stats " + " ".join(f"{key}={value}" for key, value in fields.items())

    async def _apply_live_config(self) -> None:
        """Push the file's and the API's configuration into the data plane."""
        self.plane.apply(*await live_config.load(self.store, self.config))

    async def _on_config_change(self, entity: str, key: str) -> None:
        log.info("configuration changed through the API: %s %s; applying live", entity, key)
        await self._apply_live_config()

    async def _report_stats(self) -> None:
        interval = self.config.log.stats_interval
        while True:
            await asyncio.sleep(interval)
            log.info("%s", self.stats_line())
            self.tracer.prune_expired()

    async def _count_verdicts(self) -> None:
        """The per-minute counters in the database, from the data plane's running totals."""
        while True:
            await asyncio.sleep(COUNT_INTERVAL)
            self._add_totals()

    async def _stop_counting(self, counting: asyncio.Task[None]) -> None:
        await _cancel_and_wait(counting)
        self._add_totals()

    def _add_totals(self) -> None:
        self.writer.add_totals(None, verdict_totals(self.plane.snapshot().counters))

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
            self.plane.sink_to(
                FanOutSink(self.recent, self.writer),
                TraceTee(self.trace_sink, self.writer, live=self.trace_hub),
            )
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
                screening_trial=self.screening,
                campaigns=self.campaigns,
                country_code=self.config.trace.country_code,
            )
            http = HttpServer(app, tls=self.config.web.tls)
            host, port = self.config.web.listen
            self.http_port = await http.start(host, port)
            stack.push_async_callback(http.close)
            log.info("HTTP listening on %s:%d (/health, /metrics, /api/v1)", host, self.http_port)
            # Unwound after the data plane stopped: its last trace events are written too.
            trace_files = asyncio.create_task(self.trace_files.run(), name="trace-files")
            stack.push_async_callback(_cancel_and_wait, trace_files)

            self.plane.start()
            stack.push_async_callback(self.plane.stop)
            smpp_host = self.config.server.listen[0]
            self.smpp_port = await self.plane.serve()
            log.info("SMPP server for NEs listening on %s:%d", smpp_host, self.smpp_port)
            stack.push_async_callback(self.plane.answer_in_flight, "stopping")

            stats = asyncio.create_task(self._report_stats(), name="stats")
            stack.callback(stats.cancel)

            log.info(
                "SMPS %s ready: node=%s role=%s", __version__, self.config.node.name, self.role
            )
            await self._stop.wait()
            log.info("stopping")
        for sig in signals:
            loop.remove_signal_handler(sig)
        log.info("stopped")


def _listed(binds: dict[str, int]) -> str:
    return ",".join(f"{name}:{count}" for name, count in sorted(binds.items())) or "-"


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel a background task and let it finish its own clean-up (final flush)."""
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
