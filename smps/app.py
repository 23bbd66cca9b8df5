"""One running SMPS node: the HTTP side, the periodic stats line, and (as the
data plane grows) the SMPP sessions and the proxy core, until stop is asked.

`Node.run()` owns start-up order and shutdown: anything started is stopped in
reverse order, and a failure while starting stops what already started, so a
node never half-starts.
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
from smps.web.http import HttpServer, make_app

log = logging.getLogger("smps.node")

StatsSource = Callable[[], dict[str, Any]]
"""Returns the counters one component contributes to the periodic stats line."""


class Node:
    def __init__(self, config: Config):
        self.config = config
        self.started = time.monotonic()
        self.role = "active" if config.ha.mode == "standalone" else config.ha.initial_role
        self.registry = make_registry()
        self.stats_sources: list[StatsSource] = [self._uptime_stats]
        self.http_port: int | None = None
        self._stop = asyncio.Event()

    def stop(self) -> None:
        """Ask run() to finish; safe to call from a signal handler."""
        self._stop.set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        body = {
            "status": "ok",
            "node": self.config.node.name,
            "role": self.role,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
        }
        return True, body

    def stats_line(self) -> str:
        fields: dict[str, Any] = {}
        for source in self.stats_sources:
            fields.update(source())
        return "stats " + " ".join(f"{key}={value}" for key, value in fields.items())

    def _uptime_stats(self) -> dict[str, Any]:
        return {"uptime": f"{time.monotonic() - self.started:.0f}s"}

    async def _report_stats(self) -> None:
        interval = self.config.log.stats_interval
        while True:
            await asyncio.sleep(interval)
            log.info("%s", self.stats_line())

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        async with AsyncExitStack() as stack:
            http = HttpServer(make_app(self.health, self.registry))
            host, port = self.config.web.listen
            self.http_port = await http.start(host, port)
            stack.push_async_callback(http.close)
            log.info("HTTP listening on %s:%d (/health, /metrics)", host, self.http_port)

            stats = asyncio.create_task(self._report_stats(), name="stats")
            stack.callback(stats.cancel)

            log.info(
                "SMPS %s ready: node=%s role=%s", __version__, self.config.node.name, self.role
            )
            await self._stop.wait()
            log.info("stopping")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        log.info("stopped")
