"""``/api/v1`` configuration: NE accounts, SMSC connections, routes, trace rules and
screening rules (CRUD), the policy, the live sessions and their kick, and the audit
log of changes."""

from __future__ import annotations

import msgspec
from aiohttp import web

from smps.store import audit_log, common, entities
from smps.web import auth
from smps.web.api.base import (
    NODE,
    STORE,
    Handler,
    Limit,
    actor,
    json_response,
    needs,
    query_params,
    read_body,
)
from smps.web.node import NodeView, kick

CRUD_PATHS = {
    "accounts": "/accounts",
    "smsc": "/smsc",
    "routes": "/routes",
    "trace_rules": "/trace_rules",
    "screening_rules": "/screening/rules",  # listed in the order the engine applies them
}
"""Where each kind of entity is created, read, changed and deleted."""


class PageParams(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    limit: Limit = 100
    cursor: str | None = None


def _entity_handlers(kind: entities.Kind) -> dict[str, Handler]:
    async def list_(request: web.Request) -> web.Response:
        return json_response(await entities.list_entities(request.app[STORE], kind))

    async def create(request: web.Request) -> web.Response:
        created = await entities.create(
            request.app[STORE], kind, await read_body(request), actor(request)
        )
        return json_response(created, 201)

    async def get(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        return json_response(await entities.get_entity(request.app[STORE], kind, key))

    async def replace(request: web.Request) -> web.Response:
        body = await read_body(request)
        key = request.match_info["key"]
        return json_response(
            await entities.update(request.app[STORE], kind, key, body, actor(request), merge=False)
        )

    async def patch(request: web.Request) -> web.Response:
        body = await read_body(request)
        key = request.match_info["key"]
        return json_response(
            await entities.update(request.app[STORE], kind, key, body, actor(request), merge=True)
        )

    async def remove(request: web.Request) -> web.Response:
        key = request.match_info["key"]
        await entities.delete_entity(request.app[STORE], kind, key, actor(request))
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
    return json_response(await entities.get_policy(request.app[STORE]))


async def _put_policy(request: web.Request) -> web.Response:
    body = await read_body(request)
    return json_response(await entities.put_policy(request.app[STORE], body, actor(request)))


def _node(request: web.Request) -> NodeView:
    node = request.app.get(NODE)
    if node is None:
        raise web.HTTPServiceUnavailable(reason="live sessions are not available on this node")
    return node


async def _sessions(request: web.Request) -> web.Response:
    """The live binds: per NE account, and per SMSC (up of configured)."""
    status = _node(request).live_status()
    return json_response(
        {
            "ne": [{"system_id": k, "binds": v} for k, v in sorted(status.ne_binds.items())],
            "smsc": status.smsc,
        }
    )


async def _kick(request: web.Request) -> web.Response:
    system_id = request.match_info["system_id"]
    count = await kick(request.app[STORE], _node(request), system_id, actor(request))
    return json_response({"system_id": system_id, "unbound": count})


async def _reload(request: web.Request) -> web.Response:
    """SIGHUP through the API: the configuration file and the list files of its
    screening rules read again and applied live (a bad file changes nothing: 409)."""
    result = await _node(request).reload()
    await audit_log.record(request.app[STORE], actor(request), "reload", "config", "file",
                           after={"result": result})  # fmt: skip
    if result != "applied":
        raise common.Conflict(result)
    return json_response({"result": result})


async def _audit(request: web.Request) -> web.Response:
    params: PageParams = query_params(request, PageParams)
    before = common.decode_cursor(params.cursor) if params.cursor else None
    rows = await audit_log.audit_entries(
        request.app[STORE], limit=params.limit + 1, before_id=before
    )
    rows, next_cursor = common.next_page(rows, params.limit)
    return json_response({"items": rows, "next_cursor": next_cursor})


def add_routes(router: web.UrlDispatcher) -> None:
    for name, path in CRUD_PATHS.items():
        handlers = _entity_handlers(entities.KINDS[name])
        write = auth.change_action(name)
        router.add_get(path, handlers["list"])
        router.add_post(path, needs(handlers["create"], write))
        router.add_get(f"{path}/{{key}}", handlers["get"])
        router.add_put(f"{path}/{{key}}", needs(handlers["put"], write))
        router.add_patch(
            f"{path}/{{key}}",
            needs(handlers["patch"], lambda body, name=name: auth.change_action(name, body)),
        )
        router.add_delete(f"{path}/{{key}}", needs(handlers["delete"], write))
    router.add_get("/policy", _get_policy)
    router.add_put("/policy", needs(_put_policy, auth.change_action("policy")))
    router.add_get("/sessions", _sessions)
    router.add_post("/sessions/{system_id}/kick", needs(_kick, "sessions.kick"))
    router.add_post("/reload", needs(_reload, "config.reload"))
    router.add_get("/audit", _audit)
