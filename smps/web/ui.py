"""The admin UI at ``/``: server-rendered pages over the same data layer as ``/api/v1``.

Every change goes through :mod:`smps.store.entities` (validation with the config
file's rules, file-managed rows read-only, an audit record per change), so the
UI and the API cannot disagree. Every route is registered with the action it
needs (:func:`smps.web.auth.allowed`); the guard checks the session, the CSRF
token of every POST and the role before the handler runs. The pages live in
:mod:`smps.web.pages`, one module per page family; live parts (the dashboard's
numbers, the traced-message list, the campaigns) are Server-Sent Events (:mod:`smps.web.sse`).

What the master uses: :func:`add_ui_routes`, and :data:`TRACE_SETTINGS` to give
the trace pages the node's ``trace`` section.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from smps.proxy.campaigns import CampaignReader
from smps.proxy.screening_trial import ScreeningTrial
from smps.store.db import Store
from smps.web import auth
from smps.web.node import NodeView
from smps.web.pages import (
    accounts,
    audit,
    dashboard,
    decisions,
    policy,
    routes,
    signin,
    smscs,
    trace_rules,
    traces,
    users,
)
from smps.web.pages import campaigns as campaigns_page  # not the reader it is given
from smps.web.pages import screening as screening_page  # not the trial it is given
from smps.web.pages import sessions as sessions_page  # not to be mistaken for auth.Sessions
from smps.web.pages.common import TRACE_SETTINGS, UI, Route, UiState, guard, make_templates

__all__ = ["ROUTES", "TRACE_SETTINGS", "add_ui_routes"]

STATIC = Path(__file__).parent / "static"

PAGES = (
    signin,
    dashboard,
    accounts,
    smscs,
    routes,
    sessions_page,
    users,
    policy,
    screening_page,
    campaigns_page,
    decisions,
    audit,
    trace_rules,  # before traces: /traces/rules is not a /traces/{message_id}
    traces,
)
ROUTES: tuple[Route, ...] = tuple(route for page in PAGES for route in page.ROUTES)
"""(method, path, handler, action): every page the guard protects."""


def add_ui_routes(
    app: web.Application,
    store: Store,
    node: NodeView,
    *,
    sessions: auth.Sessions | None = None,
    throttle: auth.LoginThrottle | None = None,
    screening: ScreeningTrial | None = None,
    campaigns: CampaignReader | None = None,
) -> None:
    """Serve the admin UI on ``app`` at ``/``; creates the first admin at start-up
    from $SMPS_ADMIN_PASSWORD when there are no users yet. ``screening`` tries
    messages on the node's live rules (the Screening page says when there is none);
    ``campaigns`` reads the node's campaign tables (the Campaigns page says when
    there are none)."""
    ui = UiState(
        store=store,
        node=node,
        sessions=sessions or auth.Sessions(),
        throttle=throttle or auth.LoginThrottle(),
        templates=make_templates(),
        closing=asyncio.Event(),
        screening=screening,
        campaigns=campaigns,
    )
    app[UI] = ui
    router = app.router
    router.add_get("/login", signin.login_page)
    router.add_post("/login", signin.login)
    for method, path, handler, action in ROUTES:
        if method == "POST" and action is None:
            raise ValueError(f"POST {path} must name the action it needs")
        router.add_route(method, path, guard(handler, action))
    router.add_static("/static", STATIC, append_version=True, name="static")

    async def first_admin(_app: web.Application) -> None:
        await auth.ensure_first_admin(store)

    async def close_streams(_app: web.Application) -> None:
        ui.closing.set()

    app.on_startup.append(first_admin)
    app.on_shutdown.append(close_streams)
