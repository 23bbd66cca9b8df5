"""What every admin UI page uses: the UI's state, the guard, rendering and flash messages.

The guard (:func:`guard`) checks the session, the CSRF token of every POST and
the role before a page's handler runs; :func:`render` fills a template with
what ``base.html`` needs (the user, the navigation the role may see, the CSRF
token, pending flash messages) and sends it with the security headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from aiohttp import web

from smps.config import TraceConfig
from smps.proxy.campaigns import CampaignReader
from smps.proxy.screening_trial import ScreeningTrial
from smps.store.db import Store
from smps.web import auth
from smps.web.node import NodeView

TEMPLATES = Path(__file__).parent.parent / "templates"
PAGE_SIZE = 50  # rows per page of the decisions, traced messages and the audit log
VERDICTS = ("allow", "block", "tempfail")  # the final verdicts, in the order pages show them

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Route = tuple[str, str, Handler, str | None]
"""(method, path, handler, action it needs): a page the guard protects. A POST
must name its action; reading (``None``) is allowed to every role."""


@dataclass
class UiState:
    store: Store
    node: NodeView
    sessions: auth.Sessions
    throttle: auth.LoginThrottle
    templates: jinja2.Environment
    closing: asyncio.Event  # set at shutdown: live streams end
    screening: ScreeningTrial | None = None  # tries messages on the live screening rules
    campaigns: CampaignReader | None = None  # the node's campaign tables, merged on each read


UI = web.AppKey("ui", UiState)
SESSION = web.RequestKey("ui_session", auth.Session)
TRACE_SETTINGS = web.AppKey("trace_settings", Callable[[], TraceConfig])
"""The node's ``trace`` section (country code, content switch) for the trace pages; the
master sets a getter, so a reload counts. Without one they assume the defaults."""


def trace_settings(request: web.Request) -> TraceConfig:
    getter = request.app.get(TRACE_SETTINGS)
    return getter() if getter is not None else TraceConfig()


def _time(us: int | None) -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso_time(value: str | None) -> str:
    if not value:
        return ""
    return value.replace("T", " ").replace("Z", "")[:19]


def make_templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["time"] = _time
    env.filters["isotime"] = _iso_time
    env.filters["hex"] = lambda value: "" if value is None else f"0x{value:02X}"
    return env


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

NAV = (
    ("dashboard", "/", "Dashboard", None),
    ("accounts", "/accounts", "NE accounts", None),
    ("smsc", "/smsc", "SMSC connections", None),
    ("routes", "/routes", "Routes", None),
    ("policy", "/policy", "Policy", None),
    ("screening_rules", "/screening", "Screening", None),
    ("campaigns", "/campaigns", "Campaigns", None),
    ("sessions", "/sessions", "Sessions", None),
    ("decisions", "/decisions", "Decisions", None),
    ("traces", "/traces", "Traces", None),
    ("audit", "/audit", "Audit log", None),
    ("users", "/users", "Users", "users.write"),
)
"""(page, path, label, action needed to see it)."""


def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """``template`` as a page for the signed-in user (or the sign-in page's visitor)."""
    ui = request.app[UI]
    session = request.get(SESSION)

    def can(action: str | None) -> bool:
        return session is not None and auth.allowed(session.user.role, action)

    page = ui.templates.get_template(template).render(
        session=session,
        user=session.user if session else None,
        csrf=session.csrf if session else "",
        can=can,
        nav=[(key, href, label) for key, href, label, action in NAV if can(action)],
        static=lambda name: str(request.app.router["static"].url_for(filename=name)),
        flash=_take_flash(session),
        **context,
    )
    response = web.Response(text=page, status=status, content_type="text/html")
    response.headers.update(SECURITY_HEADERS)
    if request.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def flash(request: web.Request, kind: str, text: str) -> None:
    """A message for the page after the redirect (post/redirect/get)."""
    request[SESSION].flash.append((kind, text))


def _take_flash(session: auth.Session | None) -> list[tuple[str, str]]:
    if session is None:
        return []
    messages, session.flash = session.flash, []
    return messages


def see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", status=status, title=title, message=message)


def actor(request: web.Request) -> str:
    """Who the audit log names for a change made on this request."""
    return f"user:{request[SESSION].user.name}"


def guard(handler: Handler, action: str | None) -> Handler:
    """Session, CSRF (on every POST) and role, checked before ``handler`` runs."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        ui = request.app[UI]
        session = ui.sessions.get(request.cookies.get(auth.COOKIE))
        if session is None:
            if request.method == "GET":
                raise see_other("/login?" + urlencode({"next": request.path_qs}))
            return error_page(request, 401, "Signed out", "Your session ended; sign in again.")
        request[SESSION] = session
        if request.method != "GET":
            form = await request.post()
            presented = form.get("csrf") or request.headers.get("X-CSRF-Token")
            if not session.csrf_ok(presented if isinstance(presented, str) else None):
                return error_page(
                    request,
                    403,
                    "Form expired",
                    "This form did not come from your current session. "
                    "Go back, reload the page and try again.",
                )
        if not auth.allowed(session.user.role, action):
            return error_page(
                request,
                403,
                "Not allowed",
                f"Your role ({session.user.role}) may not do this. Ask an admin.",
            )
        return await handler(request)

    return guarded
