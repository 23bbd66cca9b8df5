"""Traced messages: the list (filtered, paged, and live), and one message's ladder.

The list reads :func:`trace_queries.query_traces`; its live mode is a Server-Sent Events
stream that polls that query for messages newer than the newest shown, so a
row appears only once its events are in the database and its ladder can be
opened. Numbers are normalised with the node's country code
(:data:`TRACE_SETTINGS`), as trace rules are.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from smps.config import TraceConfig
from smps.proxy.records import TraceEvent
from smps.store import common, entities, trace_queries
from smps.web import sse
from smps.web.api.traces import trace_query
from smps.web.pages.common import (
    PAGE_SIZE,
    UI,
    Route,
    UiState,
    error_page,
    render,
    trace_settings,
)
from smps.web.pages.forms import filtered_page
from smps.web.pages.ladder import after, clock, ladder, status_text

LIVE_POLL = 1.0  # seconds between looks for new traced messages
LIVE_LOOKBACK_US = 60_000_000  # a message may reach the database this long after a newer one
LIVE_KEEP = 2 * PAGE_SIZE  # rows the live list keeps before it drops the oldest


def _message_row(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        **summary,
        "arrived": clock(summary["first_us"]),
        "final": status_text(summary["status"]),
        "cursor": common.encode_cursor(summary["id"]),
    }


def _filters(request: web.Request) -> dict[str, str]:
    return {
        name: request.query[name].strip()
        for name in ("number", "since", "until")
        if request.query.get(name, "").strip()
    }


def _query(filters: dict[str, str], settings: TraceConfig) -> trace_queries.TraceQuery:
    number, since, until = (filters.get(name) for name in ("number", "since", "until"))
    return trace_query(number, since, until, settings.country_code)


async def _messages(request: web.Request) -> web.Response:
    store = request.app[UI].store
    filters = _filters(request)
    settings = trace_settings(request)

    async def fetch(before: int | None) -> list[dict[str, Any]]:
        query = _query(filters, settings)
        rows = await trace_queries.query_traces(store, query, limit=PAGE_SIZE + 1, before_id=before)
        return [_message_row(row) for row in rows]

    listing = await filtered_page(request, filters, fetch)
    live = listing.first_page and "until" not in filters and not listing.errors
    live_query = {k: v for k, v in filters.items() if k == "number"}
    live_query["after"] = str(listing.rows[0]["id"] if listing.rows else 0)
    return listing.render(
        request,
        "trace_list.html",
        page="traces",
        live_url="/traces/live?" + urlencode(live_query) if live else None,
        live_keep=LIVE_KEEP,
        rules=len(await entities.list_entities(store, entities.KINDS["trace_rules"])),
    )


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: rendered rows of traced messages newer than ``after``."""
    try:
        newer_than = int(request.query.get("after", "0"))
        query = _query(_filters(request), trace_settings(request))
    except (ValueError, common.Invalid):
        return error_page(request, 422, "Invalid filter", "Reload the trace list.")
    return await sse.stream(request, _new_rows(request.app[UI], query, newer_than))


async def _new_rows(
    ui: UiState, query: trace_queries.TraceQuery, newer_than: int
) -> AsyncGenerator[bytes, None]:
    """Each poll's messages with an id above the last one sent, as rendered table rows;
    an idle comment when there are none."""
    template = ui.templates.get_template("trace_rows.html")
    newest_us: int | None = None
    async for _ in sse.every(LIVE_POLL, ui.closing):
        since = None if newest_us is None else newest_us - LIVE_LOOKBACK_US
        rows = await trace_queries.query_traces(
            ui.store,
            msgspec.structs.replace(query, since_us=max(since or 0, query.since_us or 0)),
            limit=PAGE_SIZE,
        )
        fresh = [row for row in rows if row["id"] > newer_than]
        if fresh:
            newer_than = fresh[0]["id"]
            newest_us = max(newest_us or 0, *(row["first_us"] for row in fresh))
            html = template.render(rows=[_message_row(row) for row in fresh])
            yield sse.event(msgspec.json.encode({"html": html, "count": len(fresh)}))
        else:
            if newest_us is None and rows:
                newest_us = rows[0]["first_us"]
            yield b": idle\n\n"


async def _message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    try:
        stored = await trace_queries.trace_events(request.app[UI].store, message_id)
    except common.NotFound:
        return error_page(
            request,
            404,
            "No such traced message",
            f"There is no traced message {message_id!r}; traces older than the retention "
            "period are deleted.",
        )
    decode = msgspec.json.Decoder(TraceEvent).decode
    events = [decode(event) for event in stored]
    return render(
        request,
        "trace_view.html",
        page="traces",
        message_id=message_id,
        events=events,
        ladder=ladder(events),
        status_text=status_text,
        ms=lambda us: after(us - events[0].ts_us),
    )


ROUTES: tuple[Route, ...] = (
    ("GET", "/traces", _messages, None),
    ("GET", "/traces/live", _live, None),
    ("GET", "/traces/{message_id}", _message, None),
)
"""``/traces/live`` (and the trace rules' ``/traces/rules``) before ``{message_id}``."""
