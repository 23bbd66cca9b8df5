"""Campaigns: the biggest campaigns (whole messages by text fingerprint) over a window,
as ``GET /api/v1/campaigns`` lists them, each with a sparkline of its rate; Block and
Monitor make the campaign's fingerprint rule, Undo deletes it, through
:mod:`smps.store.entities` as the API does (audited, live on every worker).

The table refreshes itself over Server-Sent Events: each look merges the workers'
tables (a few milliseconds) and sends the rendered rows when they changed; the
browser sorts them (static/campaigns.js). docs/campaigns.md says what the figures mean.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from smps.proxy.campaigns import CampaignReader
from smps.store import common, entities
from smps.web import auth, sse
from smps.web.api.campaigns import make_rule, rule_id
from smps.web.pages.chart import sparkline
from smps.web.pages.common import (
    PAGE_SIZE,
    SESSION,
    UI,
    Route,
    UiState,
    actor,
    error_page,
    flash,
    render,
    see_other,
)

RULES = entities.KINDS["screening_rules"]
WRITE = auth.change_action("screening_rules")
WINDOWS = (("5m", "5 minutes"), ("1h", "hour"), ("24h", "24 hours"))  # (key, "the last …")
BUCKETS = {"5m": "10 s", "1h": "minute", "24h": "15 minutes"}  # a sparkline point's width
DEFAULT_WINDOW = "1h"  # as the API's
LIVE_POLL = 2.0  # seconds between looks at the tables for the live table


def _window(values: Mapping[str, Any]) -> str:
    window = values.get("window")
    return window if window in BUCKETS else DEFAULT_WINDOW


def _url(window: str) -> str:
    return "/campaigns?" + urlencode({"window": window})


def _not_counted(request: web.Request) -> web.Response:
    return error_page(
        request,
        503,
        "Campaigns",
        "Campaigns are not counted on this node: it serves the admin UI without the "
        "message path's tables.",
    )


def _table(reader: CampaignReader, window: str) -> dict[str, Any]:
    """What the rows template shows: the campaigns with their sparkline, top cause
    and rule (the campaign's own, in any state, else a rule that lists it)."""
    now, campaigns = reader.top(window, PAGE_SIZE)
    rules = {rule.id: rule for rule in reader.config().screening.rules}
    rows = []
    for campaign in campaigns:
        own = rules.get(rule_id(campaign.fingerprint))
        rows.append(
            {
                "c": campaign,
                "spark": sparkline(campaign.rate),
                "top_cause": _top_cause(campaign.by_cause),
                "first_seen": _seen(campaign.first_seen, now),
                "last_seen": _seen(campaign.last_seen, now),
                "own": own,
                "rule": own.id if own else campaign.rule,
            }
        )
    return {"rows": rows, "window": window, "bucket": BUCKETS[window]}


def _seen(epoch: int, now: int) -> str:
    """A time of today (UTC) as its clock alone, an earlier one with its day: short cells."""
    when, today = (datetime.fromtimestamp(t, UTC) for t in (epoch, now))
    return when.strftime("%H:%M:%S" if when.date() == today.date() else "%b %d %H:%M")


def _top_cause(by_cause: list[dict]) -> str:
    """What decided most of a campaign's messages: ``block by campaign-…``, ``allow``."""
    if not by_cause:
        return ""
    top = by_cause[0]
    return top["outcome"] + (f" by {top['cause']}" if top["cause"] else "")


async def _page(request: web.Request) -> web.Response:
    reader = request.app[UI].campaigns
    if reader is None:
        return _not_counted(request)
    window = _window(request.query)
    return render(
        request,
        "campaigns.html",
        page="campaigns",
        windows=WINDOWS,
        label=dict(WINDOWS)[window],
        screening_on=reader.screening_enabled(),
        live_url="/campaigns/live?" + urlencode({"window": window}),
        write=WRITE,
        **_table(reader, window),
    )


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the table's rendered rows, whenever they changed."""
    ui = request.app[UI]
    if ui.campaigns is None:
        return _not_counted(request)
    window = _window(request.query)
    return await sse.stream(request, _updates(ui, ui.campaigns, request[SESSION], window))


async def _updates(
    ui: UiState, reader: CampaignReader, session: auth.Session, window: str
) -> AsyncGenerator[bytes, None]:
    """Each look's rows as the page renders them (the buttons the role may press, with
    its CSRF token), sent when they differ from the last sent; an idle comment else."""
    template = ui.templates.get_template("campaign_rows.html")

    def can(action: str | None) -> bool:
        return auth.allowed(session.user.role, action)

    sent = None
    async for _ in sse.every(LIVE_POLL, ui.closing):
        html = template.render(csrf=session.csrf, can=can, write=WRITE, **_table(reader, window))
        if html == sent:
            yield b": idle\n\n"
        else:
            sent = html
            yield sse.event(msgspec.json.encode({"html": html}))


def _acting(action: str):
    """Block or Monitor: the campaign's fingerprint rule made, or why not; back to the table."""

    async def handler(request: web.Request) -> web.StreamResponse:
        ui = request.app[UI]
        if ui.campaigns is None:
            return _not_counted(request)
        fingerprint = request.match_info["key"]
        window = _window(await request.post())
        try:
            made = await make_rule(ui.store, ui.campaigns, fingerprint, action, actor(request))
            doing = "blocks" if action == "block" else "counts (monitor)"
            flash(request, "ok", f"Screening rule {made['id']} made: every worker {doing} "
                                 f"the campaign {fingerprint} now.")  # fmt: skip
        except (common.Conflict, common.Invalid) as exc:
            flash(request, "error", f"No rule made: {exc}.")
        raise see_other(_url(window))

    return handler


async def _undo(request: web.Request) -> web.StreamResponse:
    """The campaign's own rule deleted (audited), as DELETE /api/v1/screening/rules/{id}."""
    fingerprint = request.match_info["key"]
    rule = rule_id(fingerprint)
    window = _window(await request.post())
    try:
        await entities.delete_entity(request.app[UI].store, RULES, rule, actor(request))
        flash(request, "ok", f"Screening rule {rule} deleted; every worker stops applying it now.")
    except common.NotFound:
        flash(request, "error", f"Nothing undone: the campaign {fingerprint} has no rule of "
                                f"its own ({rule}).")  # fmt: skip
    except common.Conflict as exc:  # the configuration file's
        flash(request, "error", f"Nothing undone: {exc}.")
    raise see_other(_url(window))


ROUTES: tuple[Route, ...] = (
    ("GET", "/campaigns", _page, None),
    ("GET", "/campaigns/live", _live, None),
    ("POST", "/campaigns/{key}/block", _acting("block"), WRITE),
    ("POST", "/campaigns/{key}/monitor", _acting("monitor"), WRITE),
    ("POST", "/campaigns/{key}/undo", _undo, WRITE),
)
