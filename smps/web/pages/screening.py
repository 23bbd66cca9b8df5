"""Screening: the rules in the order the engine applies them, with their hits over
the last hour; the create and edit form of a rule made here (the file's are
read-only), switching one on and off, between monitor and block, deleting it; and
trying a message on the live rules, as ``POST /api/v1/screening/test`` does.

Rules change only through :mod:`smps.store.entities` (validated as in the file,
audited, applied to every worker live), like ``/api/v1/screening/rules``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from aiohttp import web

from smps.store import common, decision_queries, entities
from smps.store.db import Store
from smps.web.api.screening import try_message
from smps.web.pages.common import UI, Route, actor, flash, see_other
from smps.web.pages.entities import EntityPages
from smps.web.pages.forms import field_errors, number_or_text, seconds

RULES = entities.KINDS["screening_rules"]
HOUR_US = 3600 * 1_000_000
TYPES = ("list", "keyword", "regex", "url", "velocity", "special", "fingerprint")
ACTIONS = (
    ("monitor", "Monitor: record and count hits, change nothing"),
    ("block", "Block: the SMSC gets the block status at once, no NE copy"),
    ("allow", "Allow: skip the rules after it"),
)
KINDS = (
    ("silent", "Silent SMS (PID 0x40)"),
    ("flash", "Flash (class 0)"),
    ("binary", "Binary (8-bit data)"),
    ("wap_push", "WAP push / OTA"),
)
_LINES = ("entries", "patterns", "scope_source", "scope_destination")
_TEXT = ("id", "type", "action", "description", "field", "key", "limit", "window")
_TRY = ("source", "destination", "text", "pid", "dcs", "smsc")


def _lines(form: Mapping[str, Any], name: str) -> list[str]:
    """One entry a line: keywords and sender IDs may hold spaces and commas."""
    return [line.strip() for line in str(form.get(name, "")).splitlines() if line.strip()]


def summary(rule: Mapping[str, Any]) -> str:
    """What a rule looks at, in a few words, for the list."""
    kind = rule["type"]
    if kind == "velocity":
        return f"over {rule['limit']} per {seconds(rule['window'])} per {rule['key']}"
    if kind == "special":
        return ", ".join(rule["kinds"])
    if kind in ("keyword", "regex"):
        return ", ".join(rule["patterns"])
    count = len(rule["entries"])
    nouns = ("domain", "domains") if kind == "url" else ("entry", "entries")
    listed = f"{count} {nouns[count != 1]}"
    side = f"{rule['field']}: " if kind == "list" else ""
    return side + listed + (f" + {rule['file']}" if rule.get("file") else "")


class _RulePages(EntityPages):
    """Entries, patterns and scopes are typed one per line; a field that does not
    apply to the rule's type is left empty (the store refuses it otherwise, beside it)."""

    kind = RULES
    what = "screening rule"
    called = "screening_rule"
    path = "/screening"  # type: ignore[assignment]  # the URL names the page, not the table
    new: ClassVar[Mapping[str, Any]] = {
        **dict.fromkeys(_TEXT, ""),
        **dict.fromkeys(_LINES, ()),
        "type": "keyword",
        "action": "monitor",  # try a rule on live traffic before it blocks
        "enabled": True,
        "skip_ne": False,
        "kinds": (),
        "file": None,
        "file_managed": False,
    }
    applies = "; every worker applies it now"

    def echo(self, form: Mapping[str, Any]) -> dict[str, Any]:
        echo: dict[str, Any] = {name: str(form.get(name, "")).strip() for name in _TEXT}
        echo.update({name: _lines(form, name) for name in _LINES})
        echo["kinds"] = [str(kind) for kind in form.getall("kinds", [])]
        echo["enabled"] = form.get("enabled") == "on"
        echo["skip_ne"] = form.get("skip_ne") == "on"
        return echo

    def document(self, form: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
        """The form as the API's document, without the fields left empty."""
        typed = self.echo(form)
        scope = {side: typed.pop(f"scope_{side}") for side in ("source", "destination")}
        document = {name: value for name, value in typed.items() if value not in ("", [])}
        document["enabled"], document["skip_ne"] = typed["enabled"], typed["skip_ne"]
        if "limit" in document:
            document["limit"] = number_or_text(document["limit"])
        if any(scope.values()):
            document["scope"] = scope
        return document

    async def choices(self, store: Store) -> dict[str, Any]:
        return {"types": TYPES, "actions": ACTIONS, "kinds": KINDS}

    def shown(self, row: Mapping[str, Any]) -> dict[str, Any]:
        scope = row.get("scope") or {}
        return {
            **row,
            "field": row["field"] or "",
            "key": row["key"] or "",
            "limit": row["limit"] or "",
            "window": seconds(row["window"]) if row["window"] else "",
            "scope_source": scope.get("source", []),
            "scope_destination": scope.get("destination", []),
        }

    async def listed(self, request: web.Request, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Each rule's hits (decisions naming it) over the last hour, whether the node
        screens at all, and the SMSCs a tried message may come from."""
        ui = request.app[UI]
        since = common.now_us() - HOUR_US
        hits = await decision_queries.rule_hits(ui.store, [r["id"] for r in rows], since)
        config = ui.screening.config() if ui.screening is not None else None
        return {
            "hits": hits,
            "summaries": {r["id"]: summary(r) for r in rows},
            "can_try": ui.screening is not None,
            "screening_on": config is None or config.screening.enabled,
            "smsc_names": [s.name for s in config.smsc] if config is not None else [],
            "tried": dict.fromkeys(_TRY, ""),
            "result": None,
            "errors": {},
        }


PAGES = _RulePages()


async def _change(request: web.Request, change: dict[str, Any], done: str) -> web.StreamResponse:
    """A patch of one rule (switched on or off, monitor or block), audited; back to the list."""
    key = request.match_info["key"]
    try:
        await entities.update(request.app[UI].store, RULES, key, change, actor(request), merge=True)
        flash(request, "ok", f"Screening rule {key} {done}; every worker applies it now.")
    except (common.Conflict, common.NotFound, common.Invalid) as exc:
        flash(request, "error", str(exc))
    raise see_other(PAGES.path)


async def _toggle(request: web.Request) -> web.StreamResponse:
    enable = (await request.post()).get("enabled") == "true"
    return await _change(request, {"enabled": enable}, "enabled" if enable else "disabled")


async def _enforce(request: web.Request) -> web.StreamResponse:
    """Monitor to block or back; an allow rule stays what it is."""
    action = (await request.post()).get("action")
    if action not in ("block", "monitor"):
        flash(request, "error", "A rule switches between monitor and block only.")
        raise see_other(PAGES.path)
    return await _change(request, {"action": action}, f"set to {action}")


async def _try(request: web.Request) -> web.Response:
    """The list again, with the message tried on the live rules (nothing counted)."""
    ui = request.app[UI]
    form = await request.post()
    tried = {name: str(form.get(name, "")) for name in _TRY}
    if ui.screening is None:
        return await PAGES.list_page(request, status=503)
    document: dict[str, Any] = {name: tried[name] for name in ("source", "destination", "text")}
    try:
        for name in ("pid", "dcs"):
            if tried[name].strip():
                document[name] = _octet(tried[name], name)
        if tried["smsc"]:
            document["smsc"] = tried["smsc"]
        result = await try_message(ui.screening, document)
    except common.Invalid as exc:
        return await PAGES.list_page(request, status=422, tried=tried, errors=field_errors(exc))
    except common.Conflict as exc:
        flash(request, "error", str(exc))
        return await PAGES.list_page(request, status=409, tried=tried)
    return await PAGES.list_page(request, tried=tried, result=result)


def _octet(text: str, name: str) -> int:
    """A PID or data coding as typed: 64 or 0x40."""
    try:
        return int(text.strip(), 0)
    except ValueError:
        raise common.Invalid("enter a number, e.g. 64 or 0x40", name) from None


ROUTES: tuple[Route, ...] = (
    ("POST", "/screening/try", _try, "screening.try"),  # before /screening/{key}
    *PAGES.routes(),
    ("POST", "/screening/{key}/enabled", _toggle, "screening.toggle"),
    ("POST", "/screening/{key}/action", _enforce, "screening.write"),
)
