"""Signing in and out of the admin UI.

The sign-in page is the only page served without a session; failed attempts
are throttled per user name and client address (:class:`auth.LoginThrottle`)
before any password hash is computed. Signing out is a POST like every change,
so it carries the CSRF token.
"""

from __future__ import annotations

import logging

from aiohttp import web

from smps.web import auth
from smps.web.pages.common import SESSION, UI, Route, render

log = logging.getLogger("smps.web.ui")


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never an absolute or protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


async def login_page(request: web.Request) -> web.Response:
    return render(
        request, "login.html", next=_safe_next(request.query.get("next")), error=None, name=""
    )


async def login(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    address = request.remote or "unknown"
    wait = ui.throttle.retry_after(name, address)
    if wait > 0:
        minutes = max(1, round(wait / 60))
        response = render(
            request,
            "login.html",
            status=429,
            next=target,
            name=name,
            error=f"Too many failed sign-ins. Try again in about {minutes} min.",
        )
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    user = await auth.check_password(ui.store, name, password) if name and password else None
    if user is None:
        ui.throttle.failed(name, address)
        log.warning("admin UI: failed sign-in for %r from %s", name, address)
        return render(
            request,
            "login.html",
            status=401,
            next=target,
            name=name,
            error="Wrong user name or password.",
        )
    ui.throttle.succeeded(name, address)
    session = ui.sessions.start(user)
    log.info("admin UI: %s (%s) signed in from %s", user.name, user.role, address)
    response = web.HTTPSeeOther(target)
    response.set_cookie(
        auth.COOKIE,
        session.id,
        httponly=True,
        samesite="Strict",
        secure=request.secure,
        path="/",
    )
    raise response


async def _logout(request: web.Request) -> web.StreamResponse:
    session = request[SESSION]
    request.app[UI].sessions.end(session.id)
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.COOKIE, path="/")
    raise response


ROUTES: tuple[Route, ...] = (("POST", "/logout", _logout, "session.end"),)
"""Signing out is allowed to every role; the sign-in page itself is not guarded."""
