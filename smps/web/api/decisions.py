"""``/api/v1`` decisions: the search (keyset pages), one decision, the CSV export
(also the admin UI's) and the per-minute verdict counts."""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from smps.proxy.records import Decision
from smps.store import common, decision_queries
from smps.store.db import Store
from smps.store.rows import StoredDecision
from smps.web.api.base import STORE, check_fingerprint, json_response, query_params, time_us


class DecisionParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of GET /decisions (and /decisions.csv, where limit defaults to all)."""

    src: str | None = None
    dst: str | None = None
    verdict: Literal["allow", "block", "tempfail"] | None = None
    reason: str | None = None
    account: str | None = None
    rule: str | None = None
    fingerprint: str | None = None
    since: str | None = None
    until: str | None = None
    limit: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    cursor: str | None = None


class StatsParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    since: str | None = None  # default: an hour before until
    until: str | None = None  # default: now
    account: str | None = None


class DecisionPage(msgspec.Struct):
    items: list[StoredDecision]
    next_cursor: str | None


class MinuteCount(msgspec.Struct):
    minute: str
    account: str  # "" = final verdicts sent to the SMSC
    verdict: str
    count: int


def decision_query(params: DecisionParams) -> decision_queries.DecisionQuery:
    """The filters of a decisions search (API or admin UI) as the store's query;
    Invalid names the field of an unreadable time or of what is no fingerprint."""
    if params.fingerprint is not None:
        check_fingerprint(params.fingerprint)
    return decision_queries.DecisionQuery(
        **{name: getattr(params, name) for name in decision_queries.DECISION_FILTERS},
        since_us=time_us(params.since, "since"),
        until_us=time_us(params.until, "until"),
    )


async def _decisions(request: web.Request) -> web.Response:
    params: DecisionParams = query_params(request, DecisionParams)
    limit = params.limit or 100
    if limit > 1000:
        raise common.Invalid("at most 1000 per page (use decisions.csv for more)", "limit")
    before = common.decode_cursor(params.cursor) if params.cursor else None
    rows = await decision_queries.query_decisions(
        request.app[STORE], decision_query(params), limit=limit + 1, before_id=before
    )
    return json_response(DecisionPage(*common.next_page(rows, limit)))


async def _decision(request: web.Request) -> web.Response:
    try:
        decision_id = int(request.match_info["id"])
    except ValueError:
        raise common.Invalid("decision ids are integers", "id") from None
    return json_response(await decision_queries.get_decision(request.app[STORE], decision_id))


# The API's fields but the times in µs; the stored decision's id and times first.
CSV_COLUMNS = (
    "id",
    "arrived_at",
    "decided_at",
    *[name for name in Decision.__struct_fields__ if not name.endswith("_us")],
    "epoch",
)
_CSV_PAGE = 1000


async def _decisions_csv(request: web.Request) -> web.StreamResponse:
    params = query_params(request, DecisionParams)
    return await write_decisions_csv(request, request.app[STORE], params)


async def write_decisions_csv(
    request: web.Request, store: Store, params: DecisionParams
) -> web.StreamResponse:
    """Every decision matching ``params``, newest first, streamed as CSV page by page
    (keyset); the API's export and the admin UI's download. Validate ``params``
    with :func:`decision_query` before calling: once streaming, errors cannot be told."""
    query = decision_query(params)
    remaining = params.limit
    before = common.decode_cursor(params.cursor) if params.cursor else None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="decisions.csv"',
        }
    )
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    while True:
        page = _CSV_PAGE if remaining is None else min(_CSV_PAGE, remaining)
        rows = await decision_queries.query_decisions(store, query, limit=page, before_id=before)
        for decision in rows:
            row = msgspec.structs.asdict(decision)
            row["results"] = msgspec.json.encode(decision.results).decode()
            if decision.parts is not None:  # as the API shows them, not Python's list
                row["parts"] = msgspec.json.encode(decision.parts).decode()
            writer.writerow([row[column] for column in CSV_COLUMNS])
        await response.write(buffer.getvalue().encode())
        buffer.seek(0)
        buffer.truncate()
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < page or remaining == 0:
            break
        before = rows[-1].id
    await response.write_eof()
    return response


async def _stats(request: web.Request) -> web.Response:
    params: StatsParams = query_params(request, StatsParams)
    until = time_us(params.until, "until") or common.now_us()
    since = time_us(params.since, "since")
    if since is None:
        since = until - 3_600_000_000
    if since >= until:
        raise common.Invalid("since must be before until", "since")
    return json_response(
        await decision_queries.minute_stats(request.app[STORE], since, until, params.account)
    )


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/decisions", _decisions)
    router.add_get("/decisions.csv", _decisions_csv)
    router.add_get("/decisions/{id}", _decision)
    router.add_get("/stats/minutes", _stats)
