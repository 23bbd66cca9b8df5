"""What every ``/api/v1`` handler shares: the application's keys, JSON answers and
errors, the bearer-token check, the role check, and reading query strings and bodies."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from aiohttp import web
from msgspec import Meta

from smps.proxy.campaigns import CampaignReader
from smps.proxy.screening_trial import ScreeningTrial
from smps.proxy.trace_hub import TraceHub
from smps.store import common, entities, tokens
from smps.store.db import Store
from smps.web import auth
from smps.web.node import NodeView

log = logging.getLogger("smps.web.api")

PREFIX = "/api/v1"
STORE = web.AppKey("store", Store)
TRACE_HUB = web.AppKey("trace_hub", TraceHub)
COUNTRY_CODE = web.AppKey("country_code", str)
HEARTBEAT = web.AppKey("heartbeat", float)
NODE = web.AppKey("node", NodeView)
SCREENING = web.AppKey("screening", ScreeningTrial)
CAMPAIGNS = web.AppKey("campaigns", CampaignReader)
IDENTITY = web.RequestKey("identity", tokens.TokenInfo)
STREAM_PATH = f"{PREFIX}/traces/stream"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

Limit = Annotated[int, Meta(ge=1, le=1000)]


class ErrorOut(msgspec.Struct):
    error: str
    field: str | None = None


# ---------------------------------------------------------------------------- responses


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def error_response(
    status: int, message: str, field: str | None = None, **headers: str
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    response = json_response(body, status)
    response.headers.update(headers)
    return response


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON body with the right status."""
    try:
        return await handler(request)
    except common.NotFound as exc:
        return error_response(404, str(exc))
    except common.Conflict as exc:
        return error_response(409, str(exc))
    except common.Invalid as exc:
        return error_response(422, exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error_response(exc.status, exc.reason)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return error_response(500, "internal error; see the server log")


# ------------------------------------------------------------------------ who is asking


def _token(request: web.Request) -> str | None:
    """The bearer token; on the event stream also ``?token=`` (see smps.web.api)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    if request.path == STREAM_PATH and request.method == "GET":
        return request.query.get("token", "").strip() or None
    return None


async def authenticate(request: web.Request, store: Store) -> tokens.TokenInfo | web.Response:
    """The request's bearer token → its identity, or the 401 answer to send instead
    (also what guards /metrics under ``web.metrics_auth``)."""
    token = _token(request)
    if token is None:
        return error_response(401, "missing bearer token", **{"WWW-Authenticate": "Bearer"})
    identity = await tokens.authenticate(store, token)
    if identity is None:
        return error_response(
            401, "invalid, revoked or expired token", **{"WWW-Authenticate": "Bearer"}
        )
    return identity


@web.middleware
async def authenticated(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token → identity (what the role may change is checked per route)."""
    if request.path == f"{PREFIX}/openapi.json":
        return await handler(request)
    identity = await authenticate(request, request.app[STORE])
    if isinstance(identity, web.Response):
        return identity
    request[IDENTITY] = identity
    return await handler(request)


def actor(request: web.Request) -> str:
    """Who made a change, as the audit log names a token."""
    identity: tokens.TokenInfo = request[IDENTITY]
    return f"token:{identity.name}"


def needs(handler: Handler, action: str | Callable[[Any], str]) -> Handler:
    """``handler`` behind the role check for ``action`` (:func:`smps.web.auth.allowed`,
    the admin UI's table); a callable ``action`` derives it from the JSON body."""

    async def checked(request: web.Request) -> web.StreamResponse:
        role = request[IDENTITY].role
        needed = action if isinstance(action, str) else action(await read_body(request))
        if not auth.allowed(role, needed):
            return error_response(403, f"role {role!r} may not do {needed}")
        return await handler(request)

    return checked


# ------------------------------------------------------------------------------ input


async def read_body(request: web.Request) -> Any:
    try:
        return msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise common.Invalid(f"invalid JSON: {exc}") from None


def query_params(request: web.Request, kind: type[msgspec.Struct]) -> Any:
    """The query string as ``kind``; Invalid names a wrong or unknown field."""
    try:
        return msgspec.convert(dict(request.query), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise entities.validation_error(exc) from None


_FINGERPRINT = re.compile("[0-9a-f]{16}")  # as smps.proxy.records.Decision has it


def check_fingerprint(value: str, field: str = "fingerprint") -> None:
    """A content fingerprint as the API takes one (decisions filter, campaigns);
    Invalid names ``field`` otherwise."""
    if not _FINGERPRINT.fullmatch(value):
        raise common.Invalid("expected a fingerprint: 16 lowercase hex digits (0-9, a-f)", field)


def time_us(value: str | None, field: str) -> int | None:
    """ISO 8601 (UTC when no offset) or epoch seconds → epoch µs."""
    if value is None:
        return None
    try:
        return round(float(value) * 1_000_000)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise common.Invalid(
            "expected ISO 8601 (2026-06-30T18:00:00Z) or epoch seconds", field
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1_000_000)
