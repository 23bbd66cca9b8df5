"""Trace rules: which subscribers' messages are traced PDU by PDU, until when, with or
without their text; the list with what each rule matches, adding and removing.

Rules change only through :mod:`smps.store.entities` (validated as in the file,
file-managed rules read-only, audited, pushed to every tracer live), like
``/api/v1/trace_rules``. What a rule matches and whether text is decoded follow
the node's ``trace`` section (:data:`TRACE_SETTINGS`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

from smps.config import TraceConfig
from smps.proxy.trace_match import normalise_rule_number
from smps.store import common, entities
from smps.web.pages.common import UI, Route, actor, flash, render, see_other, trace_settings
from smps.web.pages.forms import field_errors

RULES = entities.KINDS["trace_rules"]
EXPIRIES = (
    ("1h", "1 hour", 3600),
    ("24h", "24 hours", 86400),
    ("7d", "7 days", 7 * 86400),
    ("never", "Never", None),
    ("custom", "At (UTC)", None),
)
SIDES = (
    ("both", "Sender or receiver"),
    ("sender", "Sender only (source_addr)"),
    ("receiver", "Receiver only (destination_addr)"),
)
_NEW_RULE = {"number": "", "side": "both", "expiry": "24h", "custom": "", "content": "default"}


def _content_allowed(rule_setting: bool | None, node_default: bool) -> tuple[bool, str]:
    """(decoded?, why), as the tracer decides: the node's switch, then the rule's."""
    if not node_default:
        return False, "content decoding is off on this node (trace.decode_content)"
    if rule_setting is False:
        return False, "this rule hides content"
    return True, "this rule allows content" if rule_setting else "the node's default"


def _expiry_us(value: str | None) -> int | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _remaining(us: int) -> str:
    seconds = max(us // 1_000_000, 0)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{max(minutes, 1)} min"


def _rule_rows(
    rules: list[dict[str, Any]],
    creators: dict[str, tuple[str, str | None]],
    settings: TraceConfig,
    now_us: int,
) -> list[dict[str, Any]]:
    rows = []
    for rule in rules:
        key, prefix = normalise_rule_number(rule["number"], settings.country_code.encode("ascii"))
        content, why = _content_allowed(rule.get("decode_content"), settings.decode_content)
        expires_us = _expiry_us(rule.get("expires"))
        creator, created_at = creators.get(rule["number"], ("", None))
        rows.append(
            {
                **rule,
                "matches": key.decode("utf-8") + ("…" if prefix else ""),
                "prefix": prefix,
                "content": content,
                "content_why": why,
                "expires_us": expires_us,
                "expired": expires_us is not None and expires_us <= now_us,
                "remaining": _remaining(expires_us - now_us) if expires_us else "",
                "created_by": creator,
                "created_at": created_at,
            }
        )
    return rows


def _rule_document(form: dict[str, str], now: datetime) -> dict[str, Any]:
    """The add form as the API's trace rule document; expiry presets are from ``now``."""
    document: dict[str, Any] = {"number": form["number"].strip(), "side": form["side"]}
    choice = form["expiry"]
    if choice == "custom":
        if not form["custom"].strip():
            raise common.Invalid("enter the date and time the rule ends (UTC)", "expires")
        document["expires"] = form["custom"].strip()
    else:
        seconds = next((s for key, _, s in EXPIRIES if key == choice), None)
        if seconds is None and choice != "never":
            raise common.Invalid("choose when the rule ends", "expires")
        if seconds is not None:
            document["expires"] = (now + timedelta(seconds=seconds)).isoformat()
    if form["content"] in ("allow", "hide"):
        document["decode_content"] = form["content"] == "allow"
    return document


async def _rules_page(
    request: web.Request,
    *,
    shown: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    store = request.app[UI].store
    settings = trace_settings(request)
    rules = await entities.list_entities(store, RULES)
    creators = await entities.created_by(store, RULES)
    return render(
        request,
        "trace_rules.html",
        status=status,
        page="traces",
        rules=_rule_rows(rules, creators, settings, common.now_us()),
        settings=settings,
        form=shown or dict(_NEW_RULE),
        errors=errors or {},
        expiries=EXPIRIES,
        sides=SIDES,
    )


async def _rules(request: web.Request) -> web.Response:
    return await _rules_page(request)


async def _add(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    shown = {name: str(form.get(name, default)) for name, default in _NEW_RULE.items()}
    try:
        document = _rule_document(shown, datetime.now(UTC).replace(microsecond=0))
        created = await entities.create(request.app[UI].store, RULES, document, actor(request))
    except common.Invalid as exc:
        ends = "custom" if shown["expiry"] == "custom" else "expiry"
        form_field = {"expires": ends, "decode_content": "content"}  # the document's names
        errors = {form_field.get(k, k): message for k, message in field_errors(exc).items()}
        return await _rules_page(request, shown=shown, errors=errors, status=422)
    except common.Conflict as exc:
        return await _rules_page(request, shown=shown, errors={"number": str(exc)}, status=409)
    expires_us = _expiry_us(created.get("expires"))
    until = f"until {common.iso(expires_us)[:16].replace('T', ' ')} UTC" if expires_us else ""
    if expires_us is not None and expires_us <= common.now_us():
        flash(request, "error", f"Trace rule {created['number']} added, but its end time "
              "has passed: it traces nothing. Remove it and add it again.")  # fmt: skip
    else:
        flash(request, "ok", f"Tracing {created['number']} {until}".strip() + ".")
    raise see_other("/traces/rules")


async def _remove(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    number = str(form.get("number", ""))
    try:
        await entities.delete_entity(request.app[UI].store, RULES, number, actor(request))
        flash(request, "ok", f"Trace rule {number} removed; its traced messages stay.")
    except (common.Conflict, common.NotFound) as exc:
        flash(request, "error", str(exc))
    raise see_other("/traces/rules")


ROUTES: tuple[Route, ...] = (
    ("GET", "/traces/rules", _rules, None),
    ("POST", "/traces/rules", _add, "traces.write"),
    ("POST", "/traces/rules/delete", _remove, "traces.write"),
)
