"""REST API ``/api/v1``: configuration CRUD, decisions, per-minute stats, audit log,
traced messages and their live stream.

Mounted on the master's aiohttp application as a sub-application by
:func:`add_api_routes`. Every request except ``GET /api/v1/openapi.json``
needs ``Authorization: Bearer <token>`` (tokens from ``smps token create``);
what each role may change is the admin UI's table
(:func:`smps.web.auth.allowed`): ``viewer`` tokens only read, ``operator``
tokens write trace rules, switch NE accounts on and off (a PATCH of
``enabled`` alone) and kick binds, ``admin`` tokens do everything. Errors
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
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import msgspec
from aiohttp import web
from msgspec import Meta

from smps import __version__
from smps import config as cfg
from smps.proxy.records import Decision
from smps.proxy.trace_hub import EventFilter, Subscription, TraceHub
from smps.proxy.tracer import TraceEvent, normalise_rule_number
from smps.store import audit_log, common, decision_queries, entities, tokens, trace_queries
from smps.store.db import Store
from smps.store.rows import StoredDecision
from smps.web import auth, sse
from smps.web.node import NodeView, kick

log = logging.getLogger("smps.web.api")

PREFIX = "/api/v1"
STORE = web.AppKey("store", Store)
TRACE_HUB = web.AppKey("trace_hub", TraceHub)
COUNTRY_CODE = web.AppKey("country_code", str)
HEARTBEAT = web.AppKey("heartbeat", float)
NODE = web.AppKey("node", NodeView)
IDENTITY = web.RequestKey("identity", tokens.TokenInfo)
STREAM_PATH = f"{PREFIX}/traces/stream"

_CRUD_KINDS = ("accounts", "smsc", "routes", "trace_rules")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# ---------------------------------------------------------------------------- responses


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=msgspec.json.encode(body), status=status, content_type="application/json"
    )


def _error(status: int, message: str, field: str | None = None, **headers: str) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    response = _json(body, status)
    response.headers.update(headers)
    return response


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure as a JSON body with the right status."""
    try:
        return await handler(request)
    except common.NotFound as exc:
        return _error(404, str(exc))
    except common.Conflict as exc:
        return _error(409, str(exc))
    except common.Invalid as exc:
        return _error(422, exc.message, exc.field)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("API %s %s failed", request.method, request.path)
        return _error(500, "internal error; see the server log")


def _token(request: web.Request) -> str | None:
    """The bearer token; on the event stream also ``?token=`` (see the module docstring)."""
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
        return _error(401, "missing bearer token", **{"WWW-Authenticate": "Bearer"})
    identity = await tokens.authenticate(store, token)
    if identity is None:
        return _error(401, "invalid, revoked or expired token", **{"WWW-Authenticate": "Bearer"})
    return identity


@web.middleware
async def _auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token → identity (what the role may change is checked per route)."""
    if request.path == f"{PREFIX}/openapi.json":
        return await handler(request)
    identity = await authenticate(request, request.app[STORE])
    if isinstance(identity, web.Response):
        return identity
    request[IDENTITY] = identity
    return await handler(request)


def _actor(request: web.Request) -> str:
    identity: tokens.TokenInfo = request[IDENTITY]
    return f"token:{identity.name}"


async def _body(request: web.Request) -> Any:
    try:
        return msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise common.Invalid(f"invalid JSON: {exc}") from None


def _needs(handler: Handler, action: str | Callable[[Any], str]) -> Handler:
    """``handler`` behind the role check for ``action`` (:func:`smps.web.auth.allowed`,
    the admin UI's table); a callable ``action`` derives it from the JSON body."""

    async def checked(request: web.Request) -> web.StreamResponse:
        role = request[IDENTITY].role
        needed = action if isinstance(action, str) else action(await _body(request))
        if not auth.allowed(role, needed):
            return _error(403, f"role {role!r} may not do {needed}")
        return await handler(request)

    return checked


# ------------------------------------------------------------------------- parameters

Limit = Annotated[int, Meta(ge=1, le=1000)]


class DecisionParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of GET /decisions (and /decisions.csv, where limit defaults to all)."""

    src: str | None = None
    dst: str | None = None
    verdict: Literal["allow", "block", "tempfail"] | None = None
    reason: str | None = None
    account: str | None = None
    since: str | None = None
    until: str | None = None
    limit: Annotated[int, Meta(ge=1, le=1_000_000)] | None = None
    cursor: str | None = None


class StatsParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    since: str | None = None  # default: an hour before until
    until: str | None = None  # default: now
    account: str | None = None


class PageParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    limit: Limit = 100
    cursor: str | None = None


class TraceParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of GET /traces."""

    number: str | None = None
    since: str | None = None
    until: str | None = None
    limit: Limit = 100
    cursor: str | None = None


class StreamParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Query string of GET /traces/stream (``token`` is read by the auth middleware)."""

    number: str | None = None
    token: str | None = None


def _params(request: web.Request, kind: type[msgspec.Struct]) -> Any:
    try:
        return msgspec.convert(dict(request.query), kind, strict=False)
    except msgspec.ValidationError as exc:
        raise entities.validation_error(exc) from None


def _time_us(value: str | None, field: str) -> int | None:
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


def decision_query(params: DecisionParams) -> decision_queries.DecisionQuery:
    """The filters of a decisions search (API or admin UI) as the store's query;
    Invalid names the field of an unreadable time."""
    return decision_queries.DecisionQuery(
        src=params.src,
        dst=params.dst,
        verdict=params.verdict,
        reason=params.reason,
        account=params.account,
        since_us=_time_us(params.since, "since"),
        until_us=_time_us(params.until, "until"),
    )


def trace_query(
    number: str | None, since: str | None, until: str | None, country_code: str
) -> trace_queries.TraceQuery:
    """The filters of a traced-message search (API or admin UI) as the store's query;
    Invalid names the field of an unreadable number or time."""
    found = _number(number, country_code)
    return trace_queries.TraceQuery(
        number=found[0] if found else None,
        prefix=found[1] if found else False,
        since_us=_time_us(since, "since"),
        until_us=_time_us(until, "until"),
    )


def _number(value: str | None, country_code: str) -> tuple[str, bool] | None:
    """A ``number`` filter → (normalised number or prefix, is_prefix), as trace rules are read."""
    if value is None:
        return None
    key, prefix = normalise_rule_number(value, country_code.encode("ascii"))
    if not key:
        raise common.Invalid("expected a number or a prefix ending in *", "number")
    return key.decode("utf-8"), prefix


def _event_filter(number: tuple[str, bool] | None) -> EventFilter | None:
    """The live stream's ``number`` filter, matching like :func:`trace_queries.query_traces`."""
    if number is None:
        return None
    key, prefix = number
    if prefix:
        return lambda e: e.source_addr.startswith(key) or e.destination_addr.startswith(key)
    return lambda e: e.source_addr == key or e.destination_addr == key


# ------------------------------------------------------------------ response documents


class DecisionPage(msgspec.Struct):
    items: list[StoredDecision]
    next_cursor: str | None


class MinuteCount(msgspec.Struct):
    minute: str
    account: str  # "" = final verdicts sent to the SMSC
    verdict: str
    count: int


class TraceSummaryOut(msgspec.Struct):
    """One traced message; status, verdict and reason come from its final answer, if any."""

    message_id: str
    first_at: str
    last_at: str
    first_us: int
    last_us: int
    smsc: str
    command: str
    source_addr: str  # normalised, as matched against trace rules
    destination_addr: str
    source_addr_raw: str  # as received
    destination_addr_raw: str
    rules: list[str]
    content: bool  # whether the events may carry decoded content
    concat_id: str | None  # shared by the segments of one concatenated message
    events: int
    status: int | None
    verdict: str | None
    reason: str | None


class TracePage(msgspec.Struct):
    items: list[TraceSummaryOut]
    next_cursor: str | None


class TraceOut(msgspec.Struct):
    message_id: str
    events: list[TraceEvent]


class ErrorOut(msgspec.Struct):
    error: str
    field: str | None = None


# -------------------------------------------------------------------------- handlers


def _entity_handlers(kind: entities.Kind) -> dict[str, Handler]:
    async def list_(request: web.Request) -> web.Response:
        return _json(await entities.list_entities(request.app[STORE], kind))

    async def create(request: web.Request) -> web.Response:
        created = await entities.create(
            request.app[STORE], kind, await _body(request), _actor(request)
        )
        return _json(created, 201)

    async def get(request: web.Request) -> web.Response:
        return _json(await entities.get_entity(request.app[STORE], kind, request.match_info["key"]))

    async def replace(request: web.Request) -> web.Response:
        body = await _body(request)
        key = request.match_info["key"]
        return _json(
            await entities.update(request.app[STORE], kind, key, body, _actor(request), merge=False)
        )

    async def patch(request: web.Request) -> web.Response:
        body = await _body(request)
        key = request.match_info["key"]
        return _json(
            await entities.update(request.app[STORE], kind, key, body, _actor(request), merge=True)
        )

    async def remove(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        await entities.delete_entity(request.app[STORE], kind, key, _actor(request))
        return web.Response(status=204)

    return {
        "list": list_,
        "create": create,
        "get": get,
        "put": replace,
        "patch": patch,
        "delete": remove,
    }


async def _get_policy(request: web.Request) -> web.Response:
    return _json(await entities.get_policy(request.app[STORE]))


async def _put_policy(request: web.Request) -> web.Response:
    body = await _body(request)
    return _json(await entities.put_policy(request.app[STORE], body, _actor(request)))


async def _decisions(request: web.Request) -> web.Response:
    params: DecisionParams = _params(request, DecisionParams)
    limit = params.limit or 100
    if limit > 1000:
        raise common.Invalid("at most 1000 per page (use decisions.csv for more)", "limit")
    before = common.decode_cursor(params.cursor) if params.cursor else None
    rows = await decision_queries.query_decisions(
        request.app[STORE], decision_query(params), limit=limit + 1, before_id=before
    )
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = common.encode_cursor(rows[-1].id) if more else None
    return _json(DecisionPage(rows, next_cursor))


async def _decision(request: web.Request) -> web.Response:
    try:
        decision_id = int(request.match_info["id"])
    except ValueError:
        raise common.Invalid("decision ids are integers", "id") from None
    return _json(await decision_queries.get_decision(request.app[STORE], decision_id))


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
    return await write_decisions_csv(request, request.app[STORE], _params(request, DecisionParams))


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
    params: StatsParams = _params(request, StatsParams)
    until = _time_us(params.until, "until") or common.now_us()
    since = _time_us(params.since, "since")
    if since is None:
        since = until - 3_600_000_000
    if since >= until:
        raise common.Invalid("since must be before until", "since")
    return _json(
        await decision_queries.minute_stats(request.app[STORE], since, until, params.account)
    )


async def _audit(request: web.Request) -> web.Response:
    params: PageParams = _params(request, PageParams)
    before = common.decode_cursor(params.cursor) if params.cursor else None
    rows = await audit_log.audit_entries(
        request.app[STORE], limit=params.limit + 1, before_id=before
    )
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    return _json(
        {"items": rows, "next_cursor": common.encode_cursor(rows[-1]["id"]) if more else None}
    )


async def _traces(request: web.Request) -> web.Response:
    params: TraceParams = _params(request, TraceParams)
    query = trace_query(params.number, params.since, params.until, request.app[COUNTRY_CODE])
    before = common.decode_cursor(params.cursor) if params.cursor else None
    rows = await trace_queries.query_traces(
        request.app[STORE], query, limit=params.limit + 1, before_id=before
    )
    more = len(rows) > params.limit
    rows = rows[: params.limit]
    next_cursor = common.encode_cursor(rows[-1]["id"]) if more else None
    return _json(TracePage(msgspec.convert(rows, list[TraceSummaryOut]), next_cursor))


async def _trace(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    events = await trace_queries.trace_events(request.app[STORE], message_id)
    # Stored events are served as written: no decode and re-encode per event.
    return _json({"message_id": message_id, "events": [msgspec.Raw(e) for e in events]})


async def _trace_stream(request: web.Request) -> web.StreamResponse:
    """New trace events as Server-Sent Events until the client or the server leaves."""
    hub = request.app.get(TRACE_HUB)
    if hub is None:
        return _error(503, "live traces are not available on this node")
    params: StreamParams = _params(request, StreamParams)
    wants = _event_filter(_number(params.number, request.app[COUNTRY_CODE]))
    with hub.subscribe(wants) as subscription:
        return await sse.stream(request, _trace_events(subscription, request.app[HEARTBEAT]))


async def _trace_events(
    subscription: Subscription, heartbeat: float
) -> AsyncGenerator[bytes, None]:
    """Each batch of the hub's events (and how many it dropped) as framed chunks; a
    heartbeat comment when none came for ``heartbeat`` seconds."""
    encode = msgspec.json.encode
    while True:
        events, dropped = await subscription.receive(heartbeat)
        if subscription.closed:
            return
        chunk = b"".join(sse.event(encode(e), "trace") for e in events)
        if dropped:
            chunk += sse.event(encode({"dropped": dropped}), "dropped")
        yield chunk or b": heartbeat\n\n"


def _node(request: web.Request) -> NodeView:
    node = request.app.get(NODE)
    if node is None:
        raise web.HTTPServiceUnavailable(reason="live sessions are not available on this node")
    return node


async def _sessions(request: web.Request) -> web.Response:
    """The live binds: per NE account, and per SMSC (up of configured)."""
    status = _node(request).live_status()
    return _json(
        {
            "ne": [{"system_id": k, "binds": v} for k, v in sorted(status.ne_binds.items())],
            "smsc": status.smsc,
        }
    )


async def _kick(request: web.Request) -> web.Response:
    system_id = request.match_info["system_id"]
    count = await kick(request.app[STORE], _node(request), system_id, _actor(request))
    return _json({"system_id": system_id, "unbound": count})


async def _openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


# --------------------------------------------------------------------------- mounting


def add_api_routes(
    app: web.Application,
    store: Store,
    *,
    trace_hub: TraceHub | None = None,
    node: NodeView | None = None,
    country_code: str = "",
    heartbeat: float = 15.0,
) -> None:
    """Mount ``/api/v1`` on ``app``, backed by ``store``.

    ``trace_hub`` feeds ``/traces/stream`` and ``node`` serves ``/sessions``
    (503 without them); ``country_code``
    (``trace.country_code``) normalises ``number`` filters as the tracer does;
    ``heartbeat`` is the seconds between keep-alive comments on the stream.
    """
    api = web.Application(middlewares=[_errors, _auth])
    api[STORE] = store
    api[COUNTRY_CODE] = country_code
    api[HEARTBEAT] = heartbeat
    if node is not None:
        api[NODE] = node
    if trace_hub is not None:
        api[TRACE_HUB] = trace_hub

        async def end_streams(_app: web.Application) -> None:
            trace_hub.close()  # open streams would otherwise hold up the server's shutdown

        api.on_shutdown.append(end_streams)
    router = api.router
    for name in _CRUD_KINDS:
        handlers = _entity_handlers(entities.KINDS[name])
        write = auth.change_action(name)
        router.add_get(f"/{name}", handlers["list"])
        router.add_post(f"/{name}", _needs(handlers["create"], write))
        router.add_get(f"/{name}/{{key}}", handlers["get"])
        router.add_put(f"/{name}/{{key}}", _needs(handlers["put"], write))
        router.add_patch(
            f"/{name}/{{key}}",
            _needs(handlers["patch"], lambda body, name=name: auth.change_action(name, body)),
        )
        router.add_delete(f"/{name}/{{key}}", _needs(handlers["delete"], write))
    router.add_get("/policy", _get_policy)
    router.add_put("/policy", _needs(_put_policy, auth.change_action("policy")))
    router.add_get("/sessions", _sessions)
    router.add_post("/sessions/{system_id}/kick", _needs(_kick, "sessions.kick"))
    router.add_get("/decisions", _decisions)
    router.add_get("/decisions.csv", _decisions_csv)
    router.add_get("/decisions/{id}", _decision)
    router.add_get("/stats/minutes", _stats)
    router.add_get("/audit", _audit)
    router.add_get("/traces", _traces)
    router.add_get("/traces/stream", _trace_stream)
    router.add_get("/traces/{message_id}", _trace)
    router.add_get("/openapi.json", _openapi)
    app.add_subapp(PREFIX, api)


# ---------------------------------------------------------------------------- OpenAPI

_ENTITY_STRUCTS = {
    "accounts": cfg.NeAccount,
    "smsc": cfg.SmscConfig,
    "routes": cfg.Route,
    "trace_rules": cfg.TraceRule,
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description of this API, schemas generated from the msgspec types."""
    structs = (
        *_ENTITY_STRUCTS.values(),
        cfg.PolicyConfig,
        DecisionPage,
        MinuteCount,
        TracePage,
        TraceOut,
        ErrorOut,
    )
    _, components = msgspec.json.schema_components(
        structs, ref_template="#/components/schemas/{name}"
    )
    errors = {
        str(code): {"description": text, **_content(_ref("ErrorOut"))}
        for code, text in (
            (401, "missing or invalid token"),
            (403, "the token's role may not do this"),
            (404, "not found"),
            (409, "file-managed, duplicate or still referenced"),
            (422, "invalid input; `field` names the key"),
        )
    }
    paths: dict[str, Any] = {}
    for name, struct in _ENTITY_STRUCTS.items():
        schema = _ref(struct.__name__)
        paths[f"{PREFIX}/{name}"] = {
            "get": {"summary": f"list {name}", "responses": {"200": {"description": "ok"}}},
            "post": {
                "summary": f"create one of {name}",
                "requestBody": {"required": True, **_content(schema)},
                "responses": {"201": {"description": "created"}, **errors},
            },
        }
        item = {"summary": f"one of {name}", "responses": {"200": {"description": "ok"}, **errors}}
        paths[f"{PREFIX}/{name}/{{key}}"] = {
            "parameters": [
                {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": item,
            "put": {
                **item,
                "summary": f"replace one of {name}",
                "requestBody": {"required": True, **_content(schema)},
            },
            "patch": {
                **item,
                "summary": f"change fields of one of {name}",
                "requestBody": {"required": True, **_content({"type": "object"})},
            },
            "delete": {
                "summary": f"delete one of {name}",
                "responses": {"204": {"description": "deleted"}, **errors},
            },
        }
    paths[f"{PREFIX}/policy"] = {
        "get": {"summary": "the verdict policy", "responses": {"200": {"description": "ok"}}},
        "put": {
            "summary": "replace the verdict policy",
            "requestBody": {"required": True, **_content(_ref("PolicyConfig"))},
            "responses": {"200": {"description": "ok"}, **errors},
        },
    }
    filters = [
        _query("src", "source address, exact"),
        _query("dst", "destination address, exact"),
        _query("verdict", "allow | block | tempfail"),
        _query("reason", "block | all_allow | timeout | no_ne | overload | sticky | receipt"),
        _query("account", "the NE account whose verdict decided"),
        _query("since", "ISO 8601 or epoch seconds, inclusive"),
        _query("until", "ISO 8601 or epoch seconds, exclusive"),
        _query("limit", "page size, 1..1000 (default 100)", {"type": "integer"}),
        _query("cursor", "next_cursor of the previous page"),
    ]
    paths[f"{PREFIX}/sessions"] = {
        "get": {
            "summary": "live binds per NE account and per SMSC",
            "responses": {"200": {"description": "ok"}, "503": {"description": "no node"}},
        }
    }
    paths[f"{PREFIX}/sessions/{{system_id}}/kick"] = {
        "post": {
            "summary": "unbind every bind of an NE account (it may bind again); audited",
            "parameters": [
                {"name": "system_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "how many were unbound"}, **errors},
        }
    }
    paths[f"{PREFIX}/decisions"] = {
        "get": {
            "summary": "decisions, newest first, keyset pagination",
            "parameters": filters,
            "responses": {"200": {"description": "ok", **_content(_ref("DecisionPage"))}, **errors},
        }
    }
    paths[f"{PREFIX}/decisions.csv"] = {
        "get": {
            "summary": "the same query as CSV, streamed (limit: rows in all, default all)",
            "parameters": filters,
            "responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}, **errors},
        }
    }
    paths[f"{PREFIX}/decisions/{{id}}"] = {
        "get": {
            "summary": "one decision with its per-NE results",
            "parameters": [
                {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}}
            ],
            "responses": {
                "200": {"description": "ok", **_content(_ref("StoredDecision"))},
                **errors,
            },
        }
    }
    paths[f"{PREFIX}/stats/minutes"] = {
        "get": {
            "summary": "per-minute counts per account and verdict (account '' = final verdict)",
            "parameters": [
                _query("since", "default: an hour before until"),
                _query("until", "default: now"),
                _query("account", "one account"),
            ],
            "responses": {
                "200": {
                    "description": "ok",
                    **_content({"type": "array", "items": _ref("MinuteCount")}),
                },
                **errors,
            },
        }
    }
    paths[f"{PREFIX}/audit"] = {
        "get": {
            "summary": "audit log, newest first (secrets masked)",
            "parameters": [_query("limit", "1..1000", {"type": "integer"}), _query("cursor", "")],
            "responses": {"200": {"description": "ok"}, **errors},
        }
    }
    paths[f"{PREFIX}/traces"] = {
        "get": {
            "summary": "traced messages, newest first by arrival, keyset pagination",
            "parameters": [
                _query("number", "source or destination, as in a trace rule (prefix: 8613*)"),
                _query("since", "arrival, ISO 8601 or epoch seconds, inclusive"),
                _query("until", "arrival, ISO 8601 or epoch seconds, exclusive"),
                _query("limit", "page size, 1..1000 (default 100)", {"type": "integer"}),
                _query("cursor", "next_cursor of the previous page"),
            ],
            "responses": {"200": {"description": "ok", **_content(_ref("TracePage"))}, **errors},
        }
    }
    paths[f"{PREFIX}/traces/stream"] = {
        "get": {
            "summary": "new trace events as Server-Sent Events (event: trace | dropped)",
            "parameters": [
                _query("number", "only events of this number or prefix"),
                _query("token", "the bearer token, for EventSource clients"),
            ],
            "responses": {
                "200": {"description": "event stream", "content": {"text/event-stream": {}}},
                "503": {"description": "no live traces on this node"},
                **errors,
            },
        }
    }
    paths[f"{PREFIX}/traces/{{message_id}}"] = {
        "get": {
            "summary": "the events of one traced message, in the order recorded",
            "parameters": [
                {"name": "message_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "responses": {"200": {"description": "ok", **_content(_ref("TraceOut"))}, **errors},
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "SMPS API", "version": __version__},
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }
