"""Who may use SMPS, over ``/api/v1`` (admin tokens only, every change audited):
``GET /tokens``, ``POST /tokens/{id}/revoke``; ``GET /users``,
``POST /users/{name}/password`` (``{"password": "..."}``), ``POST /users/{name}/disable``
and ``/enable``. A revoked token gets 401 from its next request on."""

from __future__ import annotations

import msgspec
from aiohttp import web

from smps.store import admin_users, common, tokens
from smps.web.api.base import STORE, actor, json_response, needs, read_body

ACTION = "users.write"


class PasswordIn(msgspec.Struct, forbid_unknown_fields=True):
    password: str


async def _tokens(request: web.Request) -> web.Response:
    return json_response({"items": await tokens.list_tokens(request.app[STORE])})


async def _revoke(request: web.Request) -> web.Response:
    try:
        token_id = int(request.match_info["id"])
    except ValueError:
        raise common.NotFound(f"no token {request.match_info['id']!r}") from None
    return json_response(
        await tokens.revoke_token(request.app[STORE], token_id, actor=actor(request))
    )


async def _users(request: web.Request) -> web.Response:
    return json_response({"items": await admin_users.list_users(request.app[STORE])})


async def _password(request: web.Request) -> web.Response:
    try:
        body = msgspec.convert(await read_body(request), PasswordIn)
    except msgspec.ValidationError:
        raise common.Invalid("a string is required", "password") from None
    name = request.match_info["name"]
    await admin_users.set_user_password(
        request.app[STORE], name, body.password, actor=actor(request)
    )
    return json_response({"name": name, "password_set": True})


def _set_enabled(enabled: bool):
    async def handler(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        await admin_users.set_user_enabled(request.app[STORE], name, enabled, actor=actor(request))
        return json_response({"name": name, "enabled": enabled})

    return handler


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/tokens", needs(_tokens, ACTION))
    router.add_post("/tokens/{id}/revoke", needs(_revoke, ACTION))
    router.add_get("/users", needs(_users, ACTION))
    router.add_post("/users/{name}/password", needs(_password, ACTION))
    router.add_post("/users/{name}/disable", needs(_set_enabled(False), ACTION))
    router.add_post("/users/{name}/enable", needs(_set_enabled(True), ACTION))
