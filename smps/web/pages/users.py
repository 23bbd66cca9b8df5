"""Users of the admin UI (admins only): add, change a role, reset a password, disable or
enable, delete; and the API tokens: listed, revoked.

A changed, disabled or deleted user's sessions end at once, since their role or password
is no longer what they signed in with; no admin changes or deletes themself.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

from aiohttp import web

from smps.store import admin_users, common, tokens
from smps.web.pages.common import SESSION, UI, Route, actor, error_page, flash, render, see_other
from smps.web.pages.forms import form_page, submit

ROLE_CHOICES = (
    ("viewer", "Viewer: reads everything, changes nothing"),
    ("operator", "Operator: traces, kicks binds, enables and disables NE accounts"),
    ("admin", "Admin: everything, including users"),
)
"""The roles (:data:`smps.store.roles.ROLES`) as the forms offer them, least first."""


async def _form(request: web.Request, template: str, **form: Any) -> web.Response:
    return form_page(request, template, "users", roles=ROLE_CHOICES, **form)


async def _users(request: web.Request) -> web.Response:
    return render(
        request,
        "users.html",
        page="users",
        users=await admin_users.list_users(request.app[UI].store),
        tokens=await tokens.list_tokens(request.app[UI].store),
    )


async def _new(request: web.Request) -> web.Response:
    return await _form(request, "user_new.html", shown={"name": "", "role": "viewer"})


async def _create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    shown = {"name": str(form.get("name", "")).strip(), "role": str(form.get("role", ""))}

    async def create() -> str:
        password = str(form.get("password", ""))
        store = request.app[UI].store
        await admin_users.add_user(
            store, shown["name"], password, shown["role"], actor=actor(request)
        )
        return f"User {shown['name']} added as {shown['role']}."

    return await submit(
        request, create, partial(_form, request, "user_new.html", shown=shown), "/users"
    )


async def _user_or_404(request: web.Request) -> dict[str, Any] | web.Response:
    name = request.match_info["key"]
    for user in await admin_users.list_users(request.app[UI].store):
        if user["name"] == name:
            return user
    return error_page(request, 404, "No such user", f"There is no user {name!r}.")


async def _edit(request: web.Request) -> web.Response:
    user = await _user_or_404(request)
    if isinstance(user, web.Response):
        return user
    return await _form(request, "user_edit.html", person=user)


async def _change(
    request: web.Request, change: Callable[[str, Mapping[str, Any]], Awaitable[str]]
) -> web.StreamResponse:
    """Apply one change to a user and end their sessions."""
    user = await _user_or_404(request)
    if isinstance(user, web.Response):
        return user
    form = await request.post()

    async def apply() -> str:
        done = await change(user["name"], form)
        request.app[UI].sessions.end_user(user["name"])
        return done

    return await submit(
        request, apply, partial(_form, request, "user_edit.html", person=user), "/users"
    )


def _not_yourself(request: web.Request, name: str, what: str) -> None:
    if name == request[SESSION].user.name:
        raise common.Conflict(f"You cannot {what} yourself; ask another admin.")


async def _role(request: web.Request) -> web.StreamResponse:
    async def change(name: str, form: Mapping[str, Any]) -> str:
        _not_yourself(request, name, "change the role of")
        role = str(form.get("role", ""))
        await admin_users.set_user_role(request.app[UI].store, name, role, actor=actor(request))
        return f"{name} is now {role}; their sessions were ended."

    return await _change(request, change)


async def _password(request: web.Request) -> web.StreamResponse:
    async def change(name: str, form: Mapping[str, Any]) -> str:
        password = str(form.get("password", ""))
        await admin_users.set_user_password(
            request.app[UI].store, name, password, actor=actor(request)
        )
        return f"Password of {name} reset; their sessions were ended."

    return await _change(request, change)


async def _from_the_list(
    request: web.Request, what: str, act: Callable[[str], Awaitable[str]]
) -> web.StreamResponse:
    """A change made from the users list (disable, enable, delete): refused on oneself;
    the user's sessions end; the outcome is flashed on the list."""
    name = request.match_info["key"]
    try:
        _not_yourself(request, name, what)
        done = await act(name)
    except (common.Conflict, common.NotFound) as exc:
        flash(request, "error", str(exc))
    else:
        request.app[UI].sessions.end_user(name)
        flash(request, "ok", done)
    raise see_other("/users")


async def _enabled(request: web.Request) -> web.StreamResponse:
    enabled = (await request.post()).get("enabled") == "1"

    async def act(name: str) -> str:
        store = request.app[UI].store
        await admin_users.set_user_enabled(store, name, enabled, actor=actor(request))
        return f"User {name} {'enabled' if enabled else 'disabled'}."

    return await _from_the_list(request, "disable or enable", act)


async def _revoke(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    try:
        token = await tokens.revoke_token(request.app[UI].store, int(key), actor=actor(request))
    except (ValueError, common.NotFound):
        flash(request, "error", f"There is no token {key!r}.")
    else:
        flash(request, "ok", f"Token {token['name']} revoked.")
    raise see_other("/users#tokens")


async def _delete(request: web.Request) -> web.StreamResponse:
    async def act(name: str) -> str:
        await admin_users.delete_user(request.app[UI].store, name, actor=actor(request))
        return f"User {name} deleted."

    return await _from_the_list(request, "delete", act)


ROUTES: tuple[Route, ...] = (
    ("GET", "/users", _users, "users.write"),
    ("GET", "/users/new", _new, "users.write"),
    ("POST", "/users", _create, "users.write"),
    ("GET", "/users/{key}", _edit, "users.write"),
    ("POST", "/users/{key}/role", _role, "users.write"),
    ("POST", "/users/{key}/password", _password, "users.write"),
    ("POST", "/users/{key}/enabled", _enabled, "users.write"),
    ("POST", "/users/{key}/delete", _delete, "users.write"),
    ("POST", "/tokens/{key}/revoke", _revoke, "users.write"),
)
"""Every users page needs ``users.write``: only admins see or change users and tokens."""
