"""REST API ``/api/v1``: configuration CRUD, decisions, per-minute stats, audit log,
traced messages and their live stream, screening rules and trying a message on them.

Mounted on the master's aiohttp application as a sub-application by
:func:`add_api_routes`. Every request except ``GET /api/v1/openapi.json``
needs ``Authorization: Bearer <token>`` (tokens from ``smps token create``);
what each role may change is the admin UI's table
(:func:`smps.web.auth.allowed`): ``viewer`` tokens only read, ``operator``
tokens write trace rules, switch NE accounts and screening rules on and off
(a PATCH of ``enabled`` alone) and kick binds, ``admin`` tokens do everything. Errors
are JSON, ``{"error": "...", "field": "..."}``: 401 (no or bad token),
403 (role), 404, 409 (file-managed, duplicate, still referenced), 422
(invalid input; ``field`` names the key, e.g. ``allowed_ips[0]``).

Configuration bodies have the shape of the YAML file's entries and are read
with the same rules (``"2s"`` or ``2`` for durations, ``"0x66"`` for status
codes). Passwords are write-only: responses say ``password_set``. PUT replaces
an entity, PATCH merges into it; leaving out ``password`` keeps the stored one.

Times in responses: ISO 8601 UTC (``decided_at``) beside epoch microseconds
(``decided_us``). Time filters (``since``, ``until``) take ISO 8601 (UTC when
no offset is given) or epoch seconds; ``since`` is inclusive, ``until`` exclusive.

Sessions: ``GET /sessions`` lists the live binds per NE account and per SMSC;
``POST /sessions/{system_id}/kick`` unbinds an NE account's binds (audited).

Screening: ``/screening/rules`` is CRUD like the other kinds (the key is the
rule's ``id``; rules from the file are read-only; a rule made here may not name a
list ``file``), listed in the order the engine applies them: the file's in the
file's order, then those made here in the order they were made.
``POST /screening/test`` takes a message (``source``, ``destination``, ``text``,
optional ``source_ton``, ``dest_ton``, ``pid``, ``dcs``, ``smsc``) and returns
every rule that fires and the verdict, counting it in no velocity window; any
role may (it changes nothing).

Traces: ``GET /traces`` lists traced messages, ``GET /traces/{message_id}``
returns one message's events as recorded (content only where decoding was
allowed: the tracer redacts before anything is stored or streamed), and
``GET /traces/stream`` is a Server-Sent Events stream of new events
(``event: trace``), ``event: dropped`` when this watcher was too slow and
lost some, and a comment line as heartbeat. Browsers' ``EventSource`` cannot
send headers, so this one read-only path also takes the token as ``?token=``.
SMPS writes no access log and logs no query strings; a reverse proxy in front
may, so give dashboards their own viewer token. ``number`` filters take a
number as written in a trace rule (``+8613800138000``, ``13800138000``, a
prefix ``8613*``) and match the source or the destination after the tracer's
normalisation.

Tokens and users (admin tokens): ``GET /tokens``, ``POST /tokens/{id}/revoke``,
``GET /users``, ``POST /users/{name}/password|disable|enable`` (audited).

One module per job: :mod:`~smps.web.api.base` (what every handler shares),
:mod:`~smps.web.api.configuration`, :mod:`~smps.web.api.decisions`,
:mod:`~smps.web.api.access` (tokens and users),
:mod:`~smps.web.api.traces`, :mod:`~smps.web.api.openapi`; this one mounts them.
"""

from __future__ import annotations

from aiohttp import web

from smps.proxy.campaigns import CampaignReader
from smps.proxy.screening_trial import ScreeningTrial
from smps.proxy.trace_hub import TraceHub
from smps.store.db import Store
from smps.web.api import access, configuration, decisions, screening, traces
from smps.web.api import campaigns as campaigns_api
from smps.web.api.base import (
    CAMPAIGNS,
    COUNTRY_CODE,
    HEARTBEAT,
    NODE,
    PREFIX,
    SCREENING,
    STORE,
    TRACE_HUB,
    authenticated,
    errors,
)
from smps.web.api.openapi import serve_openapi
from smps.web.node import NodeView


def add_api_routes(
    app: web.Application,
    store: Store,
    *,
    trace_hub: TraceHub | None = None,
    node: NodeView | None = None,
    screening_trial: ScreeningTrial | None = None,
    campaigns: CampaignReader | None = None,
    country_code: str = "",
    heartbeat: float = 15.0,
) -> None:
    """Mount ``/api/v1`` on ``app``, backed by ``store``.

    ``trace_hub`` feeds ``/traces/stream``, ``node`` serves ``/sessions`` and
    ``screening_trial`` ``/screening/test`` (503 without them); ``country_code``
    (``trace.country_code``) normalises ``number`` filters as the tracer does;
    ``heartbeat`` is the seconds between keep-alive comments on the stream.
    """
    api = web.Application(middlewares=[errors, authenticated])
    api[STORE] = store
    api[COUNTRY_CODE] = country_code
    api[HEARTBEAT] = heartbeat
    if node is not None:
        api[NODE] = node
    if screening_trial is not None:
        api[SCREENING] = screening_trial
    if campaigns is not None:
        api[CAMPAIGNS] = campaigns
    if trace_hub is not None:
        api[TRACE_HUB] = trace_hub

        async def end_streams(_app: web.Application) -> None:
            trace_hub.close()  # open streams would otherwise hold up the server's shutdown

        api.on_shutdown.append(end_streams)
    for part in (configuration, decisions, traces, screening, access, campaigns_api):
        part.add_routes(api.router)
    api.router.add_get("/openapi.json", serve_openapi)
    app.add_subapp(PREFIX, api)
