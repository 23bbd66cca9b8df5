"""The sessions page: live binds per NE account and per SMSC, and kicking an account's binds."""

from __future__ import annotations

from aiohttp import web

from smps.store import entities
from smps.web.node import kick
from smps.web.pages.common import UI, Route, actor, flash, render, see_other
from smps.web.pages.dashboard import live_document


async def kick_binds(request: web.Request, back: str) -> web.StreamResponse:
    """Unbind the binds of the NE account named by the path's ``{key}`` (audited, as
    the API's kick) and go ``back``."""
    key = request.match_info["key"]
    ui = request.app[UI]
    count = await kick(ui.store, ui.node, key, actor(request))
    flash(request, "ok", f"Unbound {count} bind{'s' if count != 1 else ''} of {key}.")
    raise see_other(back)


async def _sessions(request: web.Request) -> web.Response:
    """Live binds per NE account (configured and still-bound removed ones) and per SMSC."""
    ui = request.app[UI]
    status = ui.node.live_status()
    accounts = {
        a["system_id"]: a
        for a in await entities.list_entities(ui.store, entities.KINDS["accounts"])
    }
    names = [*accounts, *sorted(set(status.ne_binds) - set(accounts))]
    return render(
        request,
        "sessions.html",
        page="sessions",
        live=live_document(status, None),
        ne=[(name, accounts.get(name), status.ne_binds.get(name, 0)) for name in names],
        smsc=status.smsc,
    )


async def _session_kick(request: web.Request) -> web.StreamResponse:
    return await kick_binds(request, "/sessions")


ROUTES: tuple[Route, ...] = (
    ("GET", "/sessions", _sessions, None),
    ("POST", "/sessions/{key}/kick", _session_kick, "sessions.kick"),
)
