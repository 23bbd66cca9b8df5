"""The dashboard at ``/``: the node's live numbers, the verdict chart and the NE accounts.

The numbers come from the node (:class:`NodeView`) and are pushed again once a
second over Server-Sent Events (``/live``); the chart is redrawn from the
per-minute counters in the database (``/dashboard/chart.svg``).
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec
from aiohttp import web

from smps.store import common, decision_queries, entities
from smps.store.db import Store
from smps.web import sse
from smps.web.node import LiveStatus
from smps.web.pages.chart import verdict_chart
from smps.web.pages.common import SECURITY_HEADERS, UI, VERDICTS, Route, UiState, render

LIVE_INTERVAL = 1.0  # seconds between two live documents
HOUR_US = 3_600_000_000


def live_document(status: LiveStatus, rate: float | None) -> dict[str, Any]:
    """The node's live numbers as the pages show them (and ``/live`` sends them)."""
    total = sum(status.verdicts.get(v, 0) for v in VERDICTS)
    return {
        "node": status.node,
        "role": status.role,
        "workers": status.workers,
        "uptime": _duration(status.uptime_s),
        "rate": "–" if rate is None else f"{rate:,.1f}",
        "in_flight": f"{status.in_flight:,}",
        "received": f"{status.received:,}",
        "smsc": {s.name: f"{s.binds_up}/{s.binds}" for s in status.smsc},
        "smsc_up": f"{sum(s.binds_up for s in status.smsc)}/{sum(s.binds for s in status.smsc)}",
        "ne_binds": status.ne_binds,
        "ne_binds_total": sum(status.ne_binds.values()),
        "latency": {a: f"{ms:,.1f} ms" for a, ms in status.ne_latency_ms.items()},
        "mix": {v: _percent(status.verdicts.get(v, 0), total) for v in VERDICTS},
    }


def _percent(part: int, whole: int) -> str:
    return "–" if not whole else f"{100 * part / whole:.1f}%"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s"


async def _chart(store: Store) -> dict[str, Any]:
    now = common.now_us()
    counts = await decision_queries.minute_stats(store, now - HOUR_US, now, "")
    return verdict_chart(counts, now)


async def _timeout_rates(store: Store) -> dict[str, str]:
    """Per NE account: the share of copies with no usable answer over the last hour
    (`none`: none in time, or an answer that neither allows nor blocks; `waiting`)."""
    now = common.now_us()
    answered: dict[str, list[int]] = {}
    for row in await decision_queries.minute_stats(store, now - HOUR_US, now):
        if row["account"]:
            entry = answered.setdefault(row["account"], [0, 0])
            entry[1] += row["count"]
            if row["verdict"] in ("none", "waiting"):
                entry[0] += row["count"]
    return {account: _percent(waiting, total) for account, (waiting, total) in answered.items()}


async def _dashboard(request: web.Request) -> web.Response:
    ui = request.app[UI]
    status = ui.node.live_status()
    accounts = await entities.list_entities(ui.store, entities.KINDS["accounts"])
    names = [a["system_id"] for a in accounts]
    names += sorted(set(status.ne_binds) - set(names))  # bound but since removed
    return render(
        request,
        "dashboard.html",
        page="dashboard",
        live=live_document(status, None),
        accounts={a["system_id"]: a for a in accounts},
        names=names,
        timeouts=await _timeout_rates(ui.store),
        chart=await _chart(ui.store),
    )


async def _chart_fragment(request: web.Request) -> web.Response:
    ui = request.app[UI]
    svg = ui.templates.get_template("chart.svg").render(chart=await _chart(ui.store))
    response = web.Response(text=svg, content_type="image/svg+xml")
    response.headers.update(SECURITY_HEADERS)
    return response


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the live document once a second until the client or server leaves."""
    return await sse.stream(request, _live_documents(request.app[UI]))


async def _live_documents(ui: UiState) -> AsyncGenerator[bytes, None]:
    previous: tuple[int, float] | None = None
    async for _ in sse.every(LIVE_INTERVAL, ui.closing):
        status = ui.node.live_status()
        now = time.monotonic()
        rate = None
        if previous is not None:
            rate = max(status.received - previous[0], 0) / max(now - previous[1], 1e-6)
        previous = (status.received, now)
        yield sse.event(msgspec.json.encode(live_document(status, rate)))


ROUTES: tuple[Route, ...] = (
    ("GET", "/", _dashboard, None),
    ("GET", "/live", _live, None),
    ("GET", "/dashboard/chart.svg", _chart_fragment, None),
)
