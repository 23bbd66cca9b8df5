"""``/api/v1/campaigns``: the biggest campaigns (whole messages by content
fingerprint) over a sliding window, merged over the workers; ``block`` and
``monitor`` make a fingerprint screening rule for one (audited, live on every
worker at once; deleting the rule, ``DELETE /api/v1/screening/rules/{id}``,
undoes it). docs/campaigns.md says what the figures mean and how exact they are.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from smps.proxy.campaigns import CampaignOut, CampaignReader
from smps.store import common, entities
from smps.store.db import Store
from smps.web import auth
from smps.web.api.base import (
    CAMPAIGNS,
    STORE,
    actor,
    check_fingerprint,
    json_response,
    needs,
    query_params,
)

NOTE = (
    "messages: exact for a campaign that stayed in the table, else at most `error` too "
    "many; senders and recipients: distinct counts, exact up to 16 per worker, else "
    "within about 2.3 %, over the last half of the window or more"
)
RULES = entities.KINDS["screening_rules"]


class CampaignParams(msgspec.Struct, forbid_unknown_fields=True):
    window: Literal["5m", "1h", "24h"] = "1h"
    limit: Annotated[int, Meta(ge=1, le=500)] = 50


class CampaignsOut(msgspec.Struct):
    window: str
    now: int  # epoch seconds the windows end at
    campaigns: list[CampaignOut]
    note: str = NOTE


def _reader(request: web.Request) -> CampaignReader:
    reader = request.app.get(CAMPAIGNS)
    if reader is None:
        raise web.HTTPServiceUnavailable(reason="campaigns are not counted on this node")
    return reader


async def _list(request: web.Request) -> web.Response:
    params = query_params(request, CampaignParams)
    now, campaigns = _reader(request).top(params.window, params.limit)
    return json_response(CampaignsOut(params.window, now, campaigns))


def rule_id(fingerprint: str) -> str:
    """The id of the rule the campaigns view makes for a fingerprint."""
    return f"campaign-{fingerprint}"


async def make_rule(
    store: Store, reader: CampaignReader, fingerprint: str, action: str, actor: str
) -> dict:
    """The fingerprint rule for one campaign, made as any screening rule is (audited,
    applied live), for the API and the Campaigns page alike; Conflict when screening
    is off or the campaign has its rule."""
    check_fingerprint(fingerprint)
    if not reader.screening_enabled():
        raise common.Conflict(
            "the screening engine is off (screening.enabled in the configuration file): "
            "a campaign rule would not apply"
        )
    rule = rule_id(fingerprint)
    document = {
        "id": rule,
        "type": "fingerprint",
        "entries": [fingerprint],
        "action": action,
        "description": f"{action} the campaign {fingerprint} (campaigns view)",
    }
    try:
        return await entities.create(store, RULES, document, actor)
    except common.Conflict:  # a screening rule clashes only by its id
        raise common.Conflict(
            f"the campaign {fingerprint} has its rule already ({rule}): undo it first"
        ) from None


def _acting(action: str):
    async def handler(request: web.Request) -> web.Response:
        store, fingerprint = request.app[STORE], request.match_info["fp"]
        made = await make_rule(store, _reader(request), fingerprint, action, actor(request))
        return json_response(made, 201)

    return handler


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/campaigns", _list)
    write = auth.change_action("screening_rules")
    router.add_post("/campaigns/{fp}/block", needs(_acting("block"), write))
    router.add_post("/campaigns/{fp}/monitor", needs(_acting("monitor"), write))
