"""The admin UI at ``/``: server-rendered pages over the same data layer as ``/api/v1``.

Every change goes through :mod:`smps.store.repo` (validation with the config
file's rules, file-managed rows read-only, an audit record per change), so the
UI and the API cannot disagree. Every route is registered with the action it
needs (:func:`smps.web.auth.allowed`); the guard checks the session, the CSRF
token of every POST and the role before the handler runs. Live parts (the
dashboard's numbers and bind counts) come from a :class:`NodeView` over
Server-Sent Events; the verdict chart is SVG drawn here from the per-minute
counters in the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
import msgspec
from aiohttp import web

from smps.store import repo
from smps.store.db import Store
from smps.store.roles import ROLES
from smps.web import auth
from smps.web.api import DecisionParams, decision_query, write_decisions_csv
from smps.web.node import LiveStatus, NodeView, kick

log = logging.getLogger("smps.web.ui")

HERE = Path(__file__).parent
PAGE_SIZE = 50
LIVE_INTERVAL = 1.0
VERDICTS = ("allow", "block", "tempfail")
REASONS = ("block", "all_allow", "timeout", "no_ne", "overload", "sticky", "receipt")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# ------------------------------------------------------------------------ the app


@dataclass
class UiState:
    store: Store
    node: NodeView
    sessions: auth.Sessions
    throttle: auth.LoginThrottle
    templates: jinja2.Environment
    closing: asyncio.Event


UI = web.AppKey("ui", UiState)
SESSION = web.RequestKey("ui_session", auth.Session)


def _time(us: int | None) -> str:
    if us is None:
        return ""
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _iso_time(value: str | None) -> str:
    if not value:
        return ""
    return value.replace("T", " ").replace("Z", "")[:19]


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["time"] = _time
    env.filters["isotime"] = _iso_time
    env.filters["hex"] = lambda value: "" if value is None else f"0x{value:02X}"
    return env


_SECURITY_HEADERS = {
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
    ("sessions", "/sessions", "Sessions", None),
    ("decisions", "/decisions", "Decisions", None),
    ("traces", "/traces", "Traces", None),
    ("audit", "/audit", "Audit log", None),
    ("users", "/users", "Users", "users.write"),
)
"""(page, path, label, action needed to see it)."""


def _render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
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
    response.headers.update(_SECURITY_HEADERS)
    if request.secure:
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    return response


def _flash(request: web.Request, kind: str, text: str) -> None:
    """A message for the page after the redirect (post/redirect/get)."""
    request[SESSION].flash.append((kind, text))


def _take_flash(session: auth.Session | None) -> list[tuple[str, str]]:
    if session is None:
        return []
    messages, session.flash = session.flash, []
    return messages


def _see_other(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


def _error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return _render(request, "error.html", status=status, title=title, message=message)


def _guard(handler: Handler, action: str | None) -> Handler:
    """Session, CSRF (on every POST) and role, checked before ``handler`` runs."""

    async def guarded(request: web.Request) -> web.StreamResponse:
        ui = request.app[UI]
        session = ui.sessions.get(request.cookies.get(auth.COOKIE))
        if session is None:
            if request.method == "GET":
                raise _see_other("/login?" + urlencode({"next": request.path_qs}))
            return _error_page(request, 401, "Signed out", "Your session ended; sign in again.")
        request[SESSION] = session
        if request.method != "GET":
            form = await request.post()
            presented = form.get("csrf") or request.headers.get("X-CSRF-Token")
            if not session.csrf_ok(presented if isinstance(presented, str) else None):
                return _error_page(
                    request,
                    403,
                    "Form expired",
                    "This form did not come from your current session. "
                    "Go back, reload the page and try again.",
                )
        if not auth.allowed(session.user.role, action):
            return _error_page(
                request,
                403,
                "Not allowed",
                f"Your role ({session.user.role}) may not do this. Ask an admin.",
            )
        return await handler(request)

    return guarded


# ------------------------------------------------------------------ sign in and out


def _client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def _safe_next(target: str | None) -> str:
    """Only same-site paths: never an absolute or protocol-relative URL."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


async def _login_page(request: web.Request) -> web.Response:
    return _render(
        request, "login.html", next=_safe_next(request.query.get("next")), error=None, name=""
    )


async def _login(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    target = _safe_next(str(form.get("next", "")))
    address = _client_address(request)
    wait = ui.throttle.retry_after(name, address)
    if wait > 0:
        minutes = max(1, round(wait / 60))
        response = _render(
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
        return _render(
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


# --------------------------------------------------------------------- dashboard


def _live_document(status: LiveStatus, rate: float | None) -> dict[str, Any]:
    total = sum(status.verdicts.get(v, 0) for v in VERDICTS)
    return {
        "node": status.node,
        "role": status.role,
        "workers": status.workers,
        "uptime": _duration(status.uptime_s),
        "rate": "–" if rate is None else f"{rate:,.1f}",
        "in_flight": f"{status.in_flight:,}",
        "received": f"{status.received:,}",
        "smsc": {s.name: f"{s.binds_up}/{s.binds}" for s in status.smsc},
        "smsc_up": f"{sum(s.binds_up for s in status.smsc)}/{sum(s.binds for s in status.smsc)}",
        "ne_binds": status.ne_binds,
        "ne_binds_total": sum(status.ne_binds.values()),
        "latency": {a: f"{ms:,.1f} ms" for a, ms in status.ne_latency_ms.items()},
        "mix": {v: _percent(status.verdicts.get(v, 0), total) for v in VERDICTS},
    }


def _percent(part: int, whole: int) -> str:
    return "–" if not whole else f"{100 * part / whole:.1f}%"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s"


CHART_WIDTH, CHART_HEIGHT, CHART_MINUTES = 720, 220, 60


def verdict_chart(counts: list[dict[str, Any]], now_us: int) -> dict[str, Any]:
    """Stacked bars per minute (allow, block, tempfail) for the last hour, as SVG geometry.

    ``counts`` are :func:`repo.minute_stats` rows; only account "" (final
    verdicts) is drawn. Returns the bars, y-axis ticks and totals for the template.
    """
    last_minute = now_us // 60_000_000
    first_minute = last_minute - CHART_MINUTES + 1
    per_minute: dict[int, dict[str, int]] = {}
    totals = dict.fromkeys(VERDICTS, 0)
    for row in counts:
        if row["account"] != "" or row["verdict"] not in totals:
            continue
        minute = int(datetime.fromisoformat(row["minute"].replace("Z", "+00:00")).timestamp()) // 60
        if first_minute <= minute <= last_minute:
            per_minute.setdefault(minute, {})[row["verdict"]] = row["count"]
            totals[row["verdict"]] += row["count"]
    peak = max((sum(m.values()) for m in per_minute.values()), default=0)
    scale_top = _nice_ceiling(peak)
    left, bottom, top = 48, 24, 8
    plot_h = CHART_HEIGHT - bottom - top
    slot = (CHART_WIDTH - left) / CHART_MINUTES
    bars = []
    for index in range(CHART_MINUTES):
        minute = first_minute + index
        y = CHART_HEIGHT - bottom
        for verdict in VERDICTS:
            count = per_minute.get(minute, {}).get(verdict, 0)
            if not count:
                continue
            height = plot_h * count / scale_top
            y -= height
            label = datetime.fromtimestamp(minute * 60, UTC).strftime("%H:%M")
            bars.append(
                {
                    "x": round(left + index * slot + 1, 1),
                    "y": round(y, 1),
                    "w": round(max(slot - 2, 1), 1),
                    "h": round(height, 1),
                    "verdict": verdict,
                    "title": f"{label} UTC: {count:,} {verdict} ({count / 60:,.1f}/s)",
                }
            )
    steps = 4 if str(int(scale_top)).startswith("2") else 5  # whole-number ticks
    ticks = [
        {
            "y": round(CHART_HEIGHT - bottom - plot_h * i / steps, 1),
            "label": _short(scale_top * i / steps),
        }
        for i in range(steps + 1)
    ]
    x_labels = [
        {
            "x": round(left + i * slot, 1),
            "label": datetime.fromtimestamp((first_minute + i) * 60, UTC).strftime("%H:%M"),
        }
        for i in range(0, CHART_MINUTES, 15)
    ]
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "left": left,
        "base": CHART_HEIGHT - bottom,
        "bars": bars,
        "ticks": ticks,
        "x_labels": x_labels,
        "totals": totals,
        "empty": not bars,
    }


def _nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above ``value``, at least 10: the y-axis top."""
    if value <= 10:
        return 10.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= value)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


async def _chart(request: web.Request) -> dict[str, Any]:
    now = repo.now_us()
    counts = await repo.minute_stats(request.app[UI].store, now - 3_600_000_000, now, "")
    return verdict_chart(counts, now)


async def _timeout_rates(store: Store) -> dict[str, str]:
    """Per NE account: the share of copies not answered in time over the last hour."""
    now = repo.now_us()
    answered: dict[str, list[int]] = {}
    for row in await repo.minute_stats(store, now - 3_600_000_000, now):
        if row["account"]:
            entry = answered.setdefault(row["account"], [0, 0])
            entry[1] += row["count"]
            if row["verdict"] == "waiting":
                entry[0] += row["count"]
    return {account: _percent(waiting, total) for account, (waiting, total) in answered.items()}


async def _dashboard(request: web.Request) -> web.Response:
    ui = request.app[UI]
    status = ui.node.live_status()
    accounts = await repo.list_entities(ui.store, repo.KINDS["accounts"])
    names = [a["system_id"] for a in accounts]
    names += sorted(set(status.ne_binds) - set(names))  # bound but since removed
    return _render(
        request,
        "dashboard.html",
        page="dashboard",
        live=_live_document(status, None),
        accounts={a["system_id"]: a for a in accounts},
        names=names,
        timeouts=await _timeout_rates(ui.store),
        chart=await _chart(request),
    )


async def _chart_fragment(request: web.Request) -> web.Response:
    ui = request.app[UI]
    svg = ui.templates.get_template("chart.svg").render(chart=await _chart(request))
    response = web.Response(text=svg, content_type="image/svg+xml")
    response.headers.update(_SECURITY_HEADERS)
    return response


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: the live document once a second until the client or server leaves."""
    ui = request.app[UI]
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    previous: tuple[int, float] | None = None
    try:
        while not ui.closing.is_set():
            status = ui.node.live_status()
            now = time.monotonic()
            rate = None
            if previous is not None:
                rate = max(status.received - previous[0], 0) / max(now - previous[1], 1e-6)
            previous = (status.received, now)
            payload = msgspec.json.encode(_live_document(status, rate))
            await response.write(b"data: " + payload + b"\n\n")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LIVE_INTERVAL):
                    await ui.closing.wait()
    except ConnectionResetError:
        pass  # the browser left
    return response


# ------------------------------------------------------------------- NE accounts

ACCOUNTS = repo.KINDS["accounts"]
_ACCOUNT_NUMBERS = ("max_binds", "window", "tps")


def _account_document(form: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
    """The form as an API document; an empty password on edit keeps the stored one."""
    document: dict[str, Any] = {
        "system_id": str(form.get("system_id", "")).strip(),
        "allowed_ips": [
            part.strip()
            for part in str(form.get("allowed_ips", "")).replace(",", "\n").splitlines()
            if part.strip()
        ],
        "mode": str(form.get("mode", "enforce")),
        "enabled": form.get("enabled") == "on",
    }
    for name in _ACCOUNT_NUMBERS:
        text = str(form.get(name, "")).strip()
        if text:
            try:
                document[name] = int(text)
            except ValueError:
                raise repo.Invalid("enter a whole number", name) from None
    password = str(form.get("password", ""))
    if password or new:
        document["password"] = password
    return document


_PLAIN_MESSAGES = (
    (re.compile(r"Expected `str` of length >= 1$"), "required"),
    (re.compile(r"Expected `str` of length <= (\d+)$"), r"at most \1 characters"),
    (re.compile(r"Expected `str` of length >= (\d+)$"), r"at least \1 characters"),
    (re.compile(r"Expected `array` of length >= 1$"), "enter at least one"),
    (re.compile(r"Expected `int` >= (-?\d+)$"), r"must be at least \1"),
    (re.compile(r"Expected `int` <= (-?\d+)$"), r"must be at most \1"),
    (re.compile(r"Invalid enum value (.*)$"), r"\1 is not one of the choices"),
)


def _plain(message: str) -> str:
    """The validator's terse wording in words a form user reads at a glance."""
    for pattern, replacement in _PLAIN_MESSAGES:
        if pattern.match(message):
            return pattern.sub(replacement, message)
    return message


_LINE_LISTS = frozenset(
    {"allowed_ips", "source_prefix", "destination_prefix", "service_type", "data_coding"}
)


def _field_errors(exc: repo.Invalid) -> dict[str, str]:
    """{form field: message}: ``allowed_ips[1]`` is shown at the ``allowed_ips``
    field ("line 2: ..."), ``reconnect.max`` at ``reconnect_max``."""
    name = (exc.field or "").split("[", 1)[0].replace(".", "_")
    index = re.search(r"\[(\d+)\]", exc.field or "")
    prefix = f"line {int(index.group(1)) + 1}: " if index and name in _LINE_LISTS else ""
    return {name: prefix + _plain(exc.message)}


def _actor(request: web.Request) -> str:
    return f"user:{request[SESSION].user.name}"


async def _accounts(request: web.Request) -> web.Response:
    ui = request.app[UI]
    return _render(
        request,
        "accounts.html",
        page="accounts",
        accounts=await repo.list_entities(ui.store, ACCOUNTS),
        binds=ui.node.live_status().ne_binds,
    )


def _form_page(
    request: web.Request,
    template: str,
    page: str,
    *,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """A form page: field errors shown beside their fields, a problem above the form."""
    return _render(
        request, template, status=status, page=page, errors=errors or {}, problem=problem, **context
    )


def _account_form(request: web.Request, account: dict[str, Any], **form: Any) -> web.Response:
    return _form_page(request, "account_form.html", "accounts", account=account, **form)


_NEW_ACCOUNT = {
    "system_id": "",
    "allowed_ips": [],
    "max_binds": 4,
    "window": 64,
    "tps": 0,
    "mode": "enforce",
    "enabled": True,
    "password_set": False,
    "file_managed": False,
}


async def _account_new(request: web.Request) -> web.Response:
    return _account_form(request, dict(_NEW_ACCOUNT), new=True)


async def _account_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    shown = {**_NEW_ACCOUNT, **_form_echo(form)}
    try:
        document = _account_document(form, new=True)
        created = await repo.create(request.app[UI].store, ACCOUNTS, document, _actor(request))
    except repo.Invalid as exc:
        return _account_form(request, shown, new=True, errors=_field_errors(exc), status=422)
    except repo.Conflict as exc:
        return _account_form(request, shown, new=True, problem=str(exc), status=409)
    _flash(request, "ok", f"NE account {created['system_id']} created.")
    raise _see_other("/accounts")


def _form_echo(form: Mapping[str, Any]) -> dict[str, Any]:
    """What the user typed, to show again beside the error (never the password)."""
    echo = {k: str(form.get(k, "")) for k in ("system_id", "mode", *_ACCOUNT_NUMBERS)}
    echo["allowed_ips"] = str(form.get("allowed_ips", "")).split()
    echo["enabled"] = form.get("enabled") == "on"
    return echo


async def _account_edit(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    try:
        account = await repo.get_entity(request.app[UI].store, ACCOUNTS, key)
    except repo.NotFound:
        return _error_page(request, 404, "No such account", f"There is no NE account {key!r}.")
    return _account_form(request, account, new=False)


async def _account_save(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    key = request.match_info["key"]
    form = await request.post()
    try:
        stored = await repo.get_entity(ui.store, ACCOUNTS, key)
    except repo.NotFound:
        return _error_page(request, 404, "No such account", f"There is no NE account {key!r}.")
    shown = {**stored, **_form_echo(form), "system_id": key}
    try:
        document = {**_account_document(form, new=False), "system_id": key}
        await repo.update(ui.store, ACCOUNTS, key, document, _actor(request), merge=False)
    except repo.Invalid as exc:
        return _account_form(request, shown, new=False, errors=_field_errors(exc), status=422)
    except repo.Conflict as exc:
        return _account_form(request, shown, new=False, problem=str(exc), status=409)
    _flash(request, "ok", f"NE account {key} saved.")
    raise _see_other("/accounts")


async def _account_toggle(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    form = await request.post()
    enable = form.get("enabled") == "true"
    try:
        await repo.update(
            request.app[UI].store, ACCOUNTS, key, {"enabled": enable}, _actor(request), merge=True
        )
        _flash(request, "ok", f"NE account {key} {'enabled' if enable else 'disabled'}.")
    except (repo.Conflict, repo.NotFound, repo.Invalid) as exc:
        _flash(request, "error", str(exc))
    raise _see_other("/accounts")


async def _account_delete(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    try:
        await repo.delete_entity(request.app[UI].store, ACCOUNTS, key, _actor(request))
        _flash(request, "ok", f"NE account {key} deleted.")
    except (repo.Conflict, repo.NotFound) as exc:
        _flash(request, "error", str(exc))
    raise _see_other("/accounts")


async def _kick(request: web.Request, back: str) -> web.StreamResponse:
    """Unbind an NE account's binds (audited, as the API's kick) and go ``back``."""
    key = request.match_info["key"]
    ui = request.app[UI]
    count = await kick(ui.store, ui.node, key, _actor(request))
    _flash(request, "ok", f"Unbound {count} bind{'s' if count != 1 else ''} of {key}.")
    raise _see_other(back)


async def _account_kick(request: web.Request) -> web.StreamResponse:
    return await _kick(request, "/accounts")


# ----------------------------------------------------------------- shared form bits


def _lines(form: Mapping[str, Any], name: str) -> list[str]:
    """A list typed one per line (commas and spaces also separate)."""
    return str(form.get(name, "")).replace(",", " ").split()


def _number_or_text(text: str) -> int | str:
    """A whole number as a number, else as typed, for the validator to name the field."""
    try:
        return int(text)
    except ValueError:
        return text


def _seconds(value: float) -> str:
    return f"{value:g}s"


async def _entity_or_404(
    request: web.Request, kind: repo.Kind, what: str
) -> dict[str, Any] | web.Response:
    key = request.match_info["key"]
    try:
        return await repo.get_entity(request.app[UI].store, kind, key)
    except repo.NotFound:
        return _error_page(request, 404, f"No such {what}", f"There is no {what} {key!r}.")


async def _entity_delete(request: web.Request, kind: repo.Kind, what: str, back: str):
    key = request.match_info["key"]
    try:
        await repo.delete_entity(request.app[UI].store, kind, key, _actor(request))
        _flash(request, "ok", f"{what} {key} deleted.")
    except (repo.Conflict, repo.NotFound) as exc:
        _flash(request, "error", str(exc))
    raise _see_other(back)


# ----------------------------------------------------------------- SMSC connections

SMSC = repo.KINDS["smsc"]
_SMSC_NUMBERS = ("port", "binds")
_SMSC_TEXT = ("name", "host", "system_id", "system_type", "bind", "default_alphabet")
_SMSC_DURATIONS = ("enquire_link", "response_timeout", "reconnect_initial", "reconnect_max")
_NEW_SMSC = {
    "name": "",
    "host": "",
    "port": "",
    "system_id": "",
    "system_type": "",
    "bind": "transceiver",
    "binds": 1,
    "enquire_link": "30s",
    "response_timeout": "10s",
    "reconnect_initial": "1s",
    "reconnect_max": "30s",
    "default_alphabet": "gsm7",
    "gsm7_packed": False,
    "tls": False,
    "tls_ca": "",
    "tls_cert": "",
    "tls_key": "",
    "tls_verify": True,
    "password_set": False,
    "file_managed": False,
}


def _smsc_shown(smsc: Mapping[str, Any]) -> dict[str, Any]:
    """A stored SMSC as the form shows it (durations as ``30s``, TLS flattened)."""
    tls = smsc.get("tls") or {}
    return {
        **smsc,
        "enquire_link": _seconds(smsc["enquire_link"]),
        "response_timeout": _seconds(smsc["response_timeout"]),
        "reconnect_initial": _seconds(smsc["reconnect"]["initial"]),
        "reconnect_max": _seconds(smsc["reconnect"]["max"]),
        "tls": bool(smsc.get("tls")),
        "tls_ca": tls.get("ca", ""),
        "tls_cert": tls.get("cert", ""),
        "tls_key": tls.get("key", ""),
        "tls_verify": tls.get("verify", True),
    }


def _smsc_echo(form: Mapping[str, Any]) -> dict[str, Any]:
    """What the user typed, to show again beside the error (never the password)."""
    names = (*_SMSC_TEXT, *_SMSC_NUMBERS, *_SMSC_DURATIONS, "tls_ca", "tls_cert", "tls_key")
    echo: dict[str, Any] = {name: str(form.get(name, "")) for name in names}
    for flag in ("gsm7_packed", "tls", "tls_verify"):
        echo[flag] = form.get(flag) == "on"
    return echo


def _smsc_document(form: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
    """The form as an API document. An empty password on edit keeps the stored one
    unless "remove the password" is ticked."""
    document: dict[str, Any] = {name: str(form.get(name, "")).strip() for name in _SMSC_TEXT}
    for name in _SMSC_NUMBERS:
        document[name] = _number_or_text(str(form.get(name, "")).strip())
    for name in ("enquire_link", "response_timeout"):
        document[name] = str(form.get(name, "")).strip()
    document["reconnect"] = {
        "initial": str(form.get("reconnect_initial", "")).strip(),
        "max": str(form.get("reconnect_max", "")).strip(),
    }
    document["gsm7_packed"] = form.get("gsm7_packed") == "on"
    if form.get("tls") == "on":
        document["tls"] = {
            "ca": str(form.get("tls_ca", "")).strip(),
            "cert": str(form.get("tls_cert", "")).strip(),
            "key": str(form.get("tls_key", "")).strip(),
            "verify": form.get("tls_verify") == "on",
        }
    password = str(form.get("password", ""))
    if password or new or form.get("clear_password") == "on":
        document["password"] = password
    return document


async def _smsc_list(request: web.Request) -> web.Response:
    ui = request.app[UI]
    return _render(
        request,
        "smsc.html",
        page="smsc",
        connections=await repo.list_entities(ui.store, SMSC),
        live={s.name: s for s in ui.node.live_status().smsc},
    )


def _smsc_form(request: web.Request, smsc: Mapping[str, Any], **form: Any) -> web.Response:
    return _form_page(request, "smsc_form.html", "smsc", smsc=smsc, **form)


async def _smsc_new(request: web.Request) -> web.Response:
    return _smsc_form(request, dict(_NEW_SMSC), new=True)


async def _smsc_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    shown = {**_NEW_SMSC, **_smsc_echo(form)}
    try:
        created = await repo.create(
            request.app[UI].store, SMSC, _smsc_document(form, new=True), _actor(request)
        )
    except repo.Invalid as exc:
        return _smsc_form(request, shown, new=True, errors=_field_errors(exc), status=422)
    except repo.Conflict as exc:
        return _smsc_form(request, shown, new=True, problem=str(exc), status=409)
    _flash(request, "ok", f"SMSC connection {created['name']} created.")
    raise _see_other("/smsc")


async def _smsc_edit(request: web.Request) -> web.Response:
    smsc = await _entity_or_404(request, SMSC, "SMSC connection")
    if isinstance(smsc, web.Response):
        return smsc
    return _smsc_form(request, _smsc_shown(smsc), new=False)


async def _smsc_save(request: web.Request) -> web.StreamResponse:
    stored = await _entity_or_404(request, SMSC, "SMSC connection")
    if isinstance(stored, web.Response):
        return stored
    key = stored["name"]
    form = await request.post()
    shown = {**_smsc_shown(stored), **_smsc_echo(form), "name": key}
    try:
        document = {**_smsc_document(form, new=False), "name": key}
        await repo.update(request.app[UI].store, SMSC, key, document, _actor(request), merge=False)
    except repo.Invalid as exc:
        return _smsc_form(request, shown, new=False, errors=_field_errors(exc), status=422)
    except repo.Conflict as exc:
        return _smsc_form(request, shown, new=False, problem=str(exc), status=409)
    _flash(request, "ok", f"SMSC connection {key} saved.")
    raise _see_other("/smsc")


async def _smsc_delete(request: web.Request) -> web.StreamResponse:
    return await _entity_delete(request, SMSC, "SMSC connection", "/smsc")


# -------------------------------------------------------------------------- routes

ROUTE_KIND = repo.KINDS["routes"]
_ROUTE_LISTS = ("source_prefix", "destination_prefix", "service_type", "data_coding")
_NEW_ROUTE = {
    "name": "",
    "accounts": [],
    "smsc": [],
    **{name: [] for name in _ROUTE_LISTS},
    "file_managed": False,
}


def _route_document(form: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": str(form.get("name", "")).strip(),
        "accounts": [str(v) for v in form.getall("accounts", [])],
        "smsc": [str(v) for v in form.getall("smsc", [])],
        **{name: _lines(form, name) for name in _ROUTE_LISTS},
    }
    document["data_coding"] = [_number_or_text(v) for v in document["data_coding"]]
    return document


async def _routes(request: web.Request) -> web.Response:
    ui = request.app[UI]
    return _render(
        request, "routes.html", page="routes", routes=await repo.list_entities(ui.store, ROUTE_KIND)
    )


async def _route_form(request: web.Request, route: Mapping[str, Any], **form: Any) -> web.Response:
    store = request.app[UI].store
    return _form_page(
        request,
        "route_form.html",
        "routes",
        route=route,
        **form,
        account_names=[a["system_id"] for a in await repo.list_entities(store, ACCOUNTS)],
        smsc_names=[s["name"] for s in await repo.list_entities(store, SMSC)],
    )


async def _route_new(request: web.Request) -> web.Response:
    return await _route_form(request, dict(_NEW_ROUTE), new=True)


async def _route_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    document = _route_document(form)
    shown = {**_NEW_ROUTE, **document}
    try:
        await repo.create(request.app[UI].store, ROUTE_KIND, document, _actor(request))
    except repo.Invalid as exc:
        return await _route_form(request, shown, new=True, errors=_field_errors(exc), status=422)
    except repo.Conflict as exc:
        return await _route_form(request, shown, new=True, problem=str(exc), status=409)
    _flash(request, "ok", f"Route {document['name']} created; it applies to new messages now.")
    raise _see_other("/routes")


async def _route_edit(request: web.Request) -> web.Response:
    route = await _entity_or_404(request, ROUTE_KIND, "route")
    if isinstance(route, web.Response):
        return route
    return await _route_form(request, route, new=False)


async def _route_save(request: web.Request) -> web.StreamResponse:
    stored = await _entity_or_404(request, ROUTE_KIND, "route")
    if isinstance(stored, web.Response):
        return stored
    key = stored["name"]
    document = {**_route_document(await request.post()), "name": key}
    shown = {**stored, **document}
    try:
        await repo.update(
            request.app[UI].store, ROUTE_KIND, key, document, _actor(request), merge=False
        )
    except repo.Invalid as exc:
        return await _route_form(request, shown, new=False, errors=_field_errors(exc), status=422)
    except repo.Conflict as exc:
        return await _route_form(request, shown, new=False, problem=str(exc), status=409)
    _flash(request, "ok", f"Route {key} saved; it applies to new messages now.")
    raise _see_other("/routes")


async def _route_delete(request: web.Request) -> web.StreamResponse:
    return await _entity_delete(request, ROUTE_KIND, "Route", "/routes")


# ------------------------------------------------------------------------ sessions


async def _sessions(request: web.Request) -> web.Response:
    """Live binds per NE account (configured and still-bound removed ones) and per SMSC."""
    ui = request.app[UI]
    status = ui.node.live_status()
    accounts = {a["system_id"]: a for a in await repo.list_entities(ui.store, ACCOUNTS)}
    names = [*accounts, *sorted(set(status.ne_binds) - set(accounts))]
    return _render(
        request,
        "sessions.html",
        page="sessions",
        live=_live_document(status, None),
        ne=[(name, accounts.get(name), status.ne_binds.get(name, 0)) for name in names],
        smsc=status.smsc,
    )


async def _session_kick(request: web.Request) -> web.StreamResponse:
    return await _kick(request, "/sessions")


# --------------------------------------------------------------------------- users


def _user_form(request: web.Request, template: str, **form: Any) -> web.Response:
    return _form_page(request, template, "users", roles=ROLES, **form)


async def _users(request: web.Request) -> web.Response:
    return _render(
        request, "users.html", page="users", users=await repo.list_users(request.app[UI].store)
    )


async def _user_new(request: web.Request) -> web.Response:
    return _user_form(request, "user_new.html", shown={"name": "", "role": "viewer"})


async def _user_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    shown = {"name": str(form.get("name", "")).strip(), "role": str(form.get("role", ""))}
    try:
        await repo.add_user(
            request.app[UI].store,
            shown["name"],
            str(form.get("password", "")),
            shown["role"],
            actor=_actor(request),
        )
    except repo.Invalid as exc:
        return _user_form(
            request, "user_new.html", shown=shown, errors=_field_errors(exc), status=422
        )
    except repo.Conflict as exc:
        return _user_form(request, "user_new.html", shown=shown, problem=str(exc), status=409)
    _flash(request, "ok", f"User {shown['name']} added as {shown['role']}.")
    raise _see_other("/users")


async def _user_or_404(request: web.Request) -> dict[str, Any] | web.Response:
    name = request.match_info["key"]
    for user in await repo.list_users(request.app[UI].store):
        if user["name"] == name:
            return user
    return _error_page(request, 404, "No such user", f"There is no user {name!r}.")


async def _user_edit(request: web.Request) -> web.Response:
    user = await _user_or_404(request)
    if isinstance(user, web.Response):
        return user
    return _user_form(request, "user_edit.html", person=user)


async def _user_change(
    request: web.Request, change: Callable[[str, Mapping[str, Any]], Awaitable[str]]
) -> web.StreamResponse:
    """Apply one change to a user; the user's sessions end, as their role or password
    is no longer what they signed in with."""
    user = await _user_or_404(request)
    if isinstance(user, web.Response):
        return user
    form = await request.post()
    try:
        done = await change(user["name"], form)
    except repo.Invalid as exc:
        return _user_form(
            request, "user_edit.html", person=user, errors=_field_errors(exc), status=422
        )
    except (repo.Conflict, repo.NotFound) as exc:
        return _user_form(request, "user_edit.html", person=user, problem=str(exc), status=409)
    request.app[UI].sessions.end_user(user["name"])
    _flash(request, "ok", done)
    raise _see_other("/users")


def _not_yourself(request: web.Request, name: str, what: str) -> None:
    if name == request[SESSION].user.name:
        raise repo.Conflict(f"You cannot {what} yourself; ask another admin.")


async def _user_role(request: web.Request) -> web.StreamResponse:
    async def change(name: str, form: Mapping[str, Any]) -> str:
        _not_yourself(request, name, "change the role of")
        role = str(form.get("role", ""))
        await repo.set_user_role(request.app[UI].store, name, role, actor=_actor(request))
        return f"{name} is now {role}; their sessions were ended."

    return await _user_change(request, change)


async def _user_password(request: web.Request) -> web.StreamResponse:
    async def change(name: str, form: Mapping[str, Any]) -> str:
        password = str(form.get("password", ""))
        await repo.set_user_password(request.app[UI].store, name, password, actor=_actor(request))
        return f"Password of {name} reset; their sessions were ended."

    return await _user_change(request, change)


async def _user_delete(request: web.Request) -> web.StreamResponse:
    name = request.match_info["key"]
    try:
        _not_yourself(request, name, "delete")
        await repo.delete_user(request.app[UI].store, name, actor=_actor(request))
    except (repo.Conflict, repo.NotFound) as exc:
        _flash(request, "error", str(exc))
    else:
        request.app[UI].sessions.end_user(name)
        _flash(request, "ok", f"User {name} deleted.")
    raise _see_other("/users")


# ------------------------------------------------------------------------ policy

POLICY = repo.KINDS["policy"]
_POLICY_CHOICES = ("allow", "block", "tempfail")


def _policy_document(form: Mapping[str, Any]) -> dict[str, Any]:
    """The form as the policy document; durations and codes are read as in the file."""
    return {
        "timeout": str(form.get("timeout", "")).strip(),
        "on_timeout": str(form.get("on_timeout", "")),
        "on_no_ne": str(form.get("on_no_ne", "")),
        "block_status": str(form.get("block_status", "")).strip(),
        "tempfail_status": str(form.get("tempfail_status", "")).strip(),
        "ne_block_codes": [
            code.strip()
            for code in str(form.get("ne_block_codes", "")).replace(",", " ").split()
            if code.strip()
        ],
        "inspect_receipts": form.get("inspect_receipts") == "on",
        "concat_window": str(form.get("concat_window", "")).strip(),
        "concat_sticky_block": form.get("concat_sticky_block") == "on",
    }


def _policy_shown(policy: Mapping[str, Any]) -> dict[str, Any]:
    """Stored values as the form shows them: seconds as ``2s``, status codes in hex."""
    return {
        **policy,
        "timeout": f"{policy['timeout']:g}s",
        "concat_window": f"{policy['concat_window']:g}s",
        "block_status": f"0x{policy['block_status']:02X}",
        "tempfail_status": f"0x{policy['tempfail_status']:02X}",
        "ne_block_codes": ", ".join(f"0x{code:02X}" for code in policy["ne_block_codes"]),
    }


def _policy_form(
    request: web.Request,
    policy: Mapping[str, Any],
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    return _render(
        request,
        "policy.html",
        status=status,
        page="policy",
        policy=policy,
        choices=_POLICY_CHOICES,
        errors=errors or {},
    )


async def _policy(request: web.Request) -> web.Response:
    return _policy_form(request, _policy_shown(await repo.get_policy(request.app[UI].store)))


async def _policy_save(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    form = await request.post()
    document = _policy_document(form)
    stored = await repo.get_policy(ui.store)
    try:
        await repo.put_policy(ui.store, document, _actor(request))
    except repo.Invalid as exc:
        shown = {**stored, **document, "ne_block_codes": ", ".join(document["ne_block_codes"])}
        return _policy_form(request, shown, errors=_field_errors(exc), status=422)
    except repo.Conflict as exc:
        _flash(request, "error", str(exc))
        raise _see_other("/policy") from None
    _flash(request, "ok", "Policy saved; it applies to messages arriving from now on.")
    raise _see_other("/policy")


# --------------------------------------------------------------------- decisions


def _decision_filters(request: web.Request) -> dict[str, str]:
    """The non-empty filter fields of the query string (an empty field means "any")."""
    names = (*repo.DECISION_FILTERS, "since", "until")
    return {name: request.query[name].strip() for name in names if request.query.get(name, "")}


async def _decisions(request: web.Request) -> web.Response:
    ui = request.app[UI]
    filters = _decision_filters(request)
    cursor = request.query.get("cursor") or None
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    next_cursor = None
    try:
        params = msgspec.convert(filters, DecisionParams)
        query = decision_query(params)
        before = repo.decode_cursor(cursor) if cursor else None
        rows = await repo.query_decisions(ui.store, query, limit=PAGE_SIZE + 1, before_id=before)
    except repo.Invalid as exc:
        errors.update(_field_errors(exc))
    except msgspec.ValidationError as exc:
        errors.update(_field_errors(repo.validation_error(exc)))
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_cursor = repo.encode_cursor(rows[-1]["id"])
    return _render(
        request,
        "decisions.html",
        status=422 if errors else 200,
        page="decisions",
        filters=filters,
        errors=errors,
        rows=rows,
        verdicts=VERDICTS,
        reasons=REASONS,
        first_page=cursor is None,
        newest_url="/decisions?" + urlencode(filters),
        next_url=(
            "/decisions?" + urlencode({**filters, "cursor": next_cursor}) if next_cursor else None
        ),
        csv_url="/decisions.csv?" + urlencode(filters),
    )


async def _decisions_export(request: web.Request) -> web.StreamResponse:
    """The API's CSV export, on the UI's session instead of a bearer token."""
    try:
        params = msgspec.convert(_decision_filters(request), DecisionParams)
        decision_query(params)
    except repo.Invalid as exc:
        return _error_page(request, 422, "Invalid filter", f"{exc.field}: {exc.message}")
    except msgspec.ValidationError as exc:
        return _error_page(request, 422, "Invalid filter", str(exc))
    return await write_decisions_csv(request, request.app[UI].store, params)


# ---------------------------------------------------------------------- audit log


async def _audit(request: web.Request) -> web.Response:
    cursor = request.query.get("cursor") or None
    try:
        before = repo.decode_cursor(cursor) if cursor else None
    except repo.Invalid:
        before = None
    rows = await repo.audit_entries(request.app[UI].store, limit=PAGE_SIZE + 1, before_id=before)
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_url = "/audit?" + urlencode({"cursor": repo.encode_cursor(rows[-1]["id"])})
    for row in rows:
        row["changes"] = _changes(row["before"], row["after"])
    return _render(
        request,
        "audit.html",
        page="audit",
        rows=rows,
        next_url=next_url,
        first_page=before is None,
    )


def _changes(before: dict | None, after: dict | None) -> list[tuple[str, str, str]]:
    """(field, old, new) for each field that differs; secrets arrive masked."""
    before = before or {}
    after = after or {}
    changed = []
    for name in sorted(set(before) | set(after)):
        old, new = before.get(name), after.get(name)
        if old != new:
            changed.append((name, _show(old), _show(new)))
    return changed


def _show(value: Any) -> str:
    """A configuration value as an operator writes it in the file, not as Python prints it."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) or "(none)"
    return str(value)


# --------------------------------------------------------------------- mounting

ROUTES: tuple[tuple[str, str, Handler, str | None], ...] = (
    ("GET", "/", _dashboard, None),
    ("GET", "/live", _live, None),
    ("GET", "/dashboard/chart.svg", _chart_fragment, None),
    ("POST", "/logout", _logout, "session.end"),
    ("GET", "/accounts", _accounts, None),
    ("GET", "/accounts/new", _account_new, None),
    ("POST", "/accounts", _account_create, "accounts.write"),
    ("GET", "/accounts/{key}", _account_edit, None),
    ("POST", "/accounts/{key}", _account_save, "accounts.write"),
    ("POST", "/accounts/{key}/enabled", _account_toggle, "accounts.toggle"),
    ("POST", "/accounts/{key}/delete", _account_delete, "accounts.write"),
    ("POST", "/accounts/{key}/kick", _account_kick, "sessions.kick"),
    ("GET", "/smsc", _smsc_list, None),
    ("GET", "/smsc/new", _smsc_new, None),
    ("POST", "/smsc", _smsc_create, "smsc.write"),
    ("GET", "/smsc/{key}", _smsc_edit, None),
    ("POST", "/smsc/{key}", _smsc_save, "smsc.write"),
    ("POST", "/smsc/{key}/delete", _smsc_delete, "smsc.write"),
    ("GET", "/routes", _routes, None),
    ("GET", "/routes/new", _route_new, None),
    ("POST", "/routes", _route_create, "routes.write"),
    ("GET", "/routes/{key}", _route_edit, None),
    ("POST", "/routes/{key}", _route_save, "routes.write"),
    ("POST", "/routes/{key}/delete", _route_delete, "routes.write"),
    ("GET", "/sessions", _sessions, None),
    ("POST", "/sessions/{key}/kick", _session_kick, "sessions.kick"),
    ("GET", "/users", _users, "users.write"),
    ("GET", "/users/new", _user_new, "users.write"),
    ("POST", "/users", _user_create, "users.write"),
    ("GET", "/users/{key}", _user_edit, "users.write"),
    ("POST", "/users/{key}/role", _user_role, "users.write"),
    ("POST", "/users/{key}/password", _user_password, "users.write"),
    ("POST", "/users/{key}/delete", _user_delete, "users.write"),
    ("GET", "/policy", _policy, None),
    ("POST", "/policy", _policy_save, "policy.write"),
    ("GET", "/decisions", _decisions, None),
    ("GET", "/decisions.csv", _decisions_export, None),
    ("GET", "/audit", _audit, None),
)
"""(method, path, handler, action): every page the guard protects. A POST must
name its action; "session.end" (signing out) is allowed to every role."""


def add_ui_routes(
    app: web.Application,
    store: Store,
    node: NodeView,
    *,
    sessions: auth.Sessions | None = None,
    throttle: auth.LoginThrottle | None = None,
) -> None:
    """Serve the admin UI on ``app`` at ``/``; creates the first admin at start-up
    from $SMPS_ADMIN_PASSWORD when there are no users yet."""
    ui = UiState(
        store=store,
        node=node,
        sessions=sessions or auth.Sessions(),
        throttle=throttle or auth.LoginThrottle(),
        templates=_templates(),
        closing=asyncio.Event(),
    )
    app[UI] = ui
    router = app.router
    router.add_get("/login", _login_page)
    router.add_post("/login", _login)
    for method, path, handler, action in ROUTES:
        if method == "POST" and action is None:
            raise ValueError(f"POST {path} must name the action it needs")
        router.add_route(method, path, _guard(handler, action))
    from smps.web.ui_traces import add_trace_pages  # here: that module builds on this one

    add_trace_pages(app)
    router.add_static("/static", HERE / "static", append_version=True, name="static")

    async def first_admin(_app: web.Application) -> None:
        await auth.ensure_first_admin(store)

    async def close_streams(_app: web.Application) -> None:
        ui.closing.set()

    app.on_startup.append(first_admin)
    app.on_shutdown.append(close_streams)
