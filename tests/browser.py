"""What the browser tests share: Debian's Chromium driven by Playwright, skipped with
a clear reason when either is missing, an app served to it, and the single-process
node as the UI sees it.

Importing this module skips the importing test module when there is no browser.
"""

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from smps.web.node import LatencyWindow, LiveStatus, SmscLive

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "ui"
PASSWORD = "correct horse"

playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
if shutil.which(CHROMIUM) is None:
    pytest.skip(
        f"{CHROMIUM} missing: install Debian's chromium (apt-get install -y chromium)",
        allow_module_level=True,
    )


@contextlib.asynccontextmanager
async def chromium(app: web.Application) -> AsyncIterator[tuple[Any, str]]:
    """``app`` served on 127.0.0.1 and Chromium launched: (browser, the app's base URL);
    the browser and then the server closed afterwards."""
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        async with playwright_api.async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_FLAGS
            )
            try:
                yield browser, str(server.make_url("")).rstrip("/")
            finally:
                await browser.close()
    finally:
        await server.close()
        await asyncio.sleep(0)


class NodeLive:
    """The single-process Node as the UI's NodeView."""

    def __init__(self, node):
        self.node = node
        self.latency = LatencyWindow()

    def kick(self, system_id: str) -> int:
        return self.node.ne_server.kick(system_id)

    def live_status(self) -> LiveStatus:
        node = self.node
        dispatcher = node.dispatcher.snapshot()
        verdicts: dict[str, int] = {}
        for key, count in dispatcher["decisions"].items():
            verdict = key.split("/", 1)[0]
            verdicts[verdict] = verdicts.get(verdict, 0) + count
        return LiveStatus(
            node=node.config.node.name,
            role=node.role,
            workers=1,
            uptime_s=time.monotonic() - node.started,
            smsc=[SmscLive(c.cfg.name, c.binds_up, c.cfg.binds) for c in node.smsc_clients],
            ne_binds=dict(node.ne_server.snapshot()["binds"]),
            received=dispatcher["received"],
            in_flight=dispatcher["in_flight"],
            verdicts=verdicts,
            ne_latency_ms=self.latency.mean_ms(
                {
                    name: (lane.latency.total, lane.latency.count)
                    for name, lane in node.dispatcher.lanes.items()
                },
                time.monotonic(),
            ),
        )
