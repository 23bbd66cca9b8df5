"""NE accounts: the list with their binds, the create and edit form, enable or disable,
delete, and kicking an account's binds.

An empty password on edit keeps the stored one; a typed password is never shown
again, not even beside an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from smps.store import common, entities
from smps.web.node import LiveStatus
from smps.web.pages.common import UI, Route, actor, flash, see_other
from smps.web.pages.entities import EntityPages
from smps.web.pages.sessions import kick_binds

ACCOUNTS = entities.KINDS["accounts"]
_NUMBERS = ("max_binds", "window", "tps")


class _AccountPages(EntityPages):
    """Allowed IP addresses are typed one per line; the list shows each account's binds."""

    kind = ACCOUNTS
    what = "NE account"
    called = "account"
    new: ClassVar[Mapping[str, Any]] = {
        "system_id": "",
        "allowed_ips": [],
        "max_binds": 4,
        "window": 64,
        "tps": 0,
        "mode": "enforce",
        "concat": "message",
        "enabled": True,
        "password_set": False,
        "file_managed": False,
    }

    def document(self, form: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
        """An empty password on edit keeps the stored one."""
        document: dict[str, Any] = {
            "system_id": str(form.get("system_id", "")).strip(),
            "allowed_ips": [
                part.strip()
                for part in str(form.get("allowed_ips", "")).replace(",", "\n").splitlines()
                if part.strip()
            ],
            "mode": str(form.get("mode", "enforce")),
            "concat": str(form.get("concat", "message")),
            "enabled": form.get("enabled") == "on",
        }
        for name in _NUMBERS:
            text = str(form.get(name, "")).strip()
            if text:
                try:
                    document[name] = int(text)
                except ValueError:
                    raise common.Invalid("enter a whole number", name) from None
        password = str(form.get("password", ""))
        if password or new:
            document["password"] = password
        return document

    def echo(self, form: Mapping[str, Any]) -> dict[str, Any]:
        echo = {k: str(form.get(k, "")) for k in ("system_id", "mode", "concat", *_NUMBERS)}
        echo["allowed_ips"] = str(form.get("allowed_ips", "")).split()
        echo["enabled"] = form.get("enabled") == "on"
        return echo

    def live(self, status: LiveStatus) -> dict[str, Any]:
        return {"binds": status.ne_binds}


async def _toggle(request: web.Request) -> web.StreamResponse:
    key = request.match_info["key"]
    form = await request.post()
    enable = form.get("enabled") == "true"
    try:
        await entities.update(
            request.app[UI].store, ACCOUNTS, key, {"enabled": enable}, actor(request), merge=True
        )
        flash(request, "ok", f"NE account {key} {'enabled' if enable else 'disabled'}.")
    except (common.Conflict, common.NotFound, common.Invalid) as exc:
        flash(request, "error", str(exc))
    raise see_other("/accounts")


async def _kick(request: web.Request) -> web.StreamResponse:
    return await kick_binds(request, "/accounts")


ROUTES: tuple[Route, ...] = (
    *_AccountPages().routes(),
    ("POST", "/accounts/{key}/enabled", _toggle, "accounts.toggle"),
    ("POST", "/accounts/{key}/kick", _kick, "sessions.kick"),
)
