"""``/api/v1`` traces: traced messages (keyset pages), one message's events, and the
live stream of new events (Server-Sent Events)."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import msgspec
from aiohttp import web

from smps.proxy.records import TraceEvent
from smps.proxy.trace_hub import EventFilter, Subscription
from smps.proxy.trace_match import normalise_rule_number
from smps.store import common, trace_queries
from smps.web import sse
from smps.web.api.base import (
    COUNTRY_CODE,
    HEARTBEAT,
    STORE,
    TRACE_HUB,
    Limit,
    error_response,
    json_response,
    query_params,
    time_us,
)


class TraceParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of GET /traces."""

    number: str | None = None
    since: str | None = None
    until: str | None = None
    limit: Limit = 100
    cursor: str | None = None


class StreamParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of GET /traces/stream (``token`` is read by the auth middleware)."""

    number: str | None = None
    token: str | None = None


class TraceSummaryOut(msgspec.Struct):
    """One traced message; status, verdict and reason come from its final answer, if any."""

    message_id: str
    first_at: str
    last_at: str
    first_us: int
    last_us: int
    smsc: str
    command: str
    source_addr: str  # normalised, as matched against trace rules
    destination_addr: str
    source_addr_raw: str  # as received
    destination_addr_raw: str
    rules: list[str]
    content: bool  # whether the events may carry decoded content
    concat_id: str | None  # shared by the segments of one concatenated message
    events: int
    status: int | None
    verdict: str | None
    reason: str | None


class TracePage(msgspec.Struct):
    items: list[TraceSummaryOut]
    next_cursor: str | None


class TraceOut(msgspec.Struct):
    message_id: str
    events: list[TraceEvent]


def trace_query(
    number: str | None, since: str | None, until: str | None, country_code: str
) -> trace_queries.TraceQuery:
    """The filters of a traced-message search (API or admin UI) as the store's query;
    Invalid names the field of an unreadable number or time."""
    found = _number(number, country_code)
    return trace_queries.TraceQuery(
        number=found[0] if found else None,
        prefix=found[1] if found else False,
        since_us=time_us(since, "since"),
        until_us=time_us(until, "until"),
    )


def _number(value: str | None, country_code: str) -> tuple[str, bool] | None:
    """A ``number`` filter → (normalised number or prefix, is_prefix), as trace rules are read."""
    if value is None:
        return None
    key, prefix = normalise_rule_number(value, country_code.encode("ascii"))
    if not key:
        raise common.Invalid("expected a number or a prefix ending in *", "number")
    return key.decode("utf-8"), prefix


def _event_filter(number: tuple[str, bool] | None) -> EventFilter | None:
    """The live stream's ``number`` filter, matching like :func:`trace_queries.query_traces`."""
    if number is None:
        return None
    key, prefix = number
    if prefix:
        return lambda e: e.source_addr.startswith(key) or e.destination_addr.startswith(key)
    return lambda e: e.source_addr == key or e.destination_addr == key


async def _traces(request: web.Request) -> web.Response:
    params: TraceParams = query_params(request, TraceParams)
    query = trace_query(params.number, params.since, params.until, request.app[COUNTRY_CODE])
    before = common.decode_cursor(params.cursor) if params.cursor else None
    rows = await trace_queries.query_traces(
        request.app[STORE], query, limit=params.limit + 1, before_id=before
    )
    rows, next_cursor = common.next_page(rows, params.limit)
    return json_response(TracePage(msgspec.convert(rows, list[TraceSummaryOut]), next_cursor))


async def _trace(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    events = await trace_queries.trace_events(request.app[STORE], message_id)
    # Stored events are served as written: no decode and re-encode per event.
    return json_response({"message_id": message_id, "events": [msgspec.Raw(e) for e in events]})


async def _trace_stream(request: web.Request) -> web.StreamResponse:
    """New trace events as Server-Sent Events until the client or the server leaves."""
    hub = request.app.get(TRACE_HUB)
    if hub is None:
        return error_response(503, "live traces are not available on this node")
    params: StreamParams = query_params(request, StreamParams)
    wants = _event_filter(_number(params.number, request.app[COUNTRY_CODE]))
    with hub.subscribe(wants) as subscription:
        return await sse.stream(request, _trace_events(subscription, request.app[HEARTBEAT]))


async def _trace_events(
    subscription: Subscription, heartbeat: float
) -> AsyncGenerator[bytes, None]:
    """Each batch of the hub's events (and how many it dropped) as framed chunks; a
    heartbeat comment when none came for ``heartbeat`` seconds."""
    encode = msgspec.json.encode
    while True:
        events, dropped = await subscription.receive(heartbeat)
        if subscription.closed:
            return
        chunk = b"".join(sse.event(encode(e), "trace") for e in events)
        if dropped:
            chunk += sse.event(encode({"dropped": dropped}), "dropped")
        yield chunk or b": heartbeat\n\n"


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/traces", _traces)
    router.add_get("/traces/stream", _trace_stream)  # before {message_id}, which it would match
    router.add_get("/traces/{message_id}", _trace)
