"""Admin UI: trace rules, traced messages, and one message's ladder diagram.

Rules change only through :mod:`smps.store.repo` (validated as in the file,
file-managed rules read-only, audited, pushed to every tracer live), like
``/api/v1/trace_rules``. The message list reads :func:`repo.query_traces`;
its live mode is a Server-Sent Events stream that polls that query for
messages newer than the newest shown, so a row appears only once its events
are in the database and its ladder can be opened. The ladder is semantic
HTML (an ordered list of PDU steps) that ``trace.css`` lays out as columns
SMSC | SMPS | each NE; on a narrow screen the same list reads as text.

Normalising numbers and the content policy need the node's ``trace`` section:
the master puts a getter under :data:`TRACE_SETTINGS` (live, so a reload
counts); without one the pages say they assume no country code and no content.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import msgspec
from aiohttp import web

from smps._native.pdu import Status
from smps.config import TraceConfig
from smps.proxy.tracer import TraceEvent, normalise_rule_number
from smps.store import repo
from smps.web.api import _number, _time_us
from smps.web.ui import (
    PAGE_SIZE,
    UI,
    Handler,
    _actor,
    _error_page,
    _field_errors,
    _flash,
    _guard,
    _render,
    _see_other,
)

TRACE_SETTINGS = web.AppKey("trace_settings", Callable[[], TraceConfig])
RULES = repo.KINDS["trace_rules"]
LIVE_POLL = 1.0  # seconds between looks for new traced messages
LIVE_LOOKBACK_US = 60_000_000  # a message may reach the database this long after a newer one
LIVE_KEEP = 2 * PAGE_SIZE  # rows the live list keeps before it drops the oldest
MAX_LANES = 12  # SMSC, SMPS and 10 NEs drawn as columns; more read as a list
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


def _settings(request: web.Request) -> TraceConfig:
    getter = request.app.get(TRACE_SETTINGS)
    return getter() if getter is not None else TraceConfig()


def _country(settings: TraceConfig) -> bytes:
    return settings.country_code.encode("ascii")


# ------------------------------------------------------------------------ trace rules


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
        key, prefix = normalise_rule_number(rule["number"], _country(settings))
        content, why = _content_allowed(rule.get("decode_content"), settings.decode_content)
        expires_us = _expiry_us(rule.get("expires"))
        actor, created_at = creators.get(rule["number"], ("", None))
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
                "created_by": actor,
                "created_at": created_at,
            }
        )
    return rows


_NEW_RULE = {"number": "", "side": "both", "expiry": "24h", "custom": "", "content": "default"}


def _rule_document(form: dict[str, str], now: datetime) -> dict[str, Any]:
    """The add form as the API's trace rule document; expiry presets are from ``now``."""
    document: dict[str, Any] = {"number": form["number"].strip(), "side": form["side"]}
    choice = form["expiry"]
    if choice == "custom":
        if not form["custom"].strip():
            raise repo.Invalid("enter the date and time the rule ends (UTC)", "expires")
        document["expires"] = form["custom"].strip()
    else:
        seconds = next((s for key, _, s in EXPIRIES if key == choice), None)
        if seconds is None and choice != "never":
            raise repo.Invalid("choose when the rule ends", "expires")
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
    problem: str | None = None,
    status: int = 200,
) -> web.Response:
    store = request.app[UI].store
    settings = _settings(request)
    rules = await repo.list_entities(store, RULES)
    creators = await repo.created_by(store, RULES)
    return _render(
        request,
        "trace_rules.html",
        status=status,
        page="traces",
        rules=_rule_rows(rules, creators, settings, repo.now_us()),
        settings=settings,
        form=shown or dict(_NEW_RULE),
        errors=errors or {},
        problem=problem,
        expiries=EXPIRIES,
        sides=SIDES,
    )


async def _rules(request: web.Request) -> web.Response:
    return await _rules_page(request)


async def _rule_add(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    shown = {name: str(form.get(name, default)) for name, default in _NEW_RULE.items()}
    try:
        document = _rule_document(shown, datetime.now(UTC).replace(microsecond=0))
        created = await repo.create(request.app[UI].store, RULES, document, _actor(request))
    except repo.Invalid as exc:
        errors = _field_errors(exc)
        if "expires" in errors:
            errors["custom" if shown["expiry"] == "custom" else "expiry"] = errors.pop("expires")
        return await _rules_page(request, shown=shown, errors=errors, status=422)
    except repo.Conflict as exc:
        return await _rules_page(request, shown=shown, errors={"number": str(exc)}, status=409)
    expires_us = _expiry_us(created.get("expires"))
    until = f"until {repo.iso(expires_us)[:16].replace('T', ' ')} UTC" if expires_us else ""
    if expires_us is not None and expires_us <= repo.now_us():
        _flash(request, "error", f"Trace rule {created['number']} added, but its end time "
               "has passed: it traces nothing. Remove it and add it again.")  # fmt: skip
    else:
        _flash(request, "ok", f"Tracing {created['number']} {until}".strip() + ".")
    raise _see_other("/traces/rules")


async def _rule_remove(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    number = str(form.get("number", ""))
    try:
        await repo.delete_entity(request.app[UI].store, RULES, number, _actor(request))
        _flash(request, "ok", f"Trace rule {number} removed; its traced messages stay.")
    except (repo.Conflict, repo.NotFound) as exc:
        _flash(request, "error", str(exc))
    raise _see_other("/traces/rules")


# --------------------------------------------------------------------- traced messages


def _status(value: int | None) -> str:
    """0x66 (RX_R_APPN): hex as the policy page writes codes, with the SMPP name."""
    if value is None:
        return ""
    try:
        return f"0x{value:02X} {Status(value).name}"
    except ValueError:
        return f"0x{value:02X}"


def _clock(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _message_row(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        **summary,
        "arrived": _clock(summary["first_us"]),
        "final": _status(summary["status"]),
        "cursor": repo.encode_cursor(summary["id"]),
    }


def _list_filters(request: web.Request) -> dict[str, str]:
    return {
        name: request.query[name].strip()
        for name in ("number", "since", "until")
        if request.query.get(name, "").strip()
    }


def _trace_query(filters: dict[str, str], settings: TraceConfig) -> repo.TraceQuery:
    number = _number(filters.get("number"), settings.country_code)
    return repo.TraceQuery(
        number=number[0] if number else None,
        prefix=number[1] if number else False,
        since_us=_time_us(filters.get("since"), "since"),
        until_us=_time_us(filters.get("until"), "until"),
    )


async def _messages(request: web.Request) -> web.Response:
    ui = request.app[UI]
    settings = _settings(request)
    filters = _list_filters(request)
    cursor = request.query.get("cursor") or None
    errors: dict[str, str] = {}
    rows: list[dict[str, Any]] = []
    try:
        query = _trace_query(filters, settings)
        before = repo.decode_cursor(cursor) if cursor else None
        rows = await repo.query_traces(ui.store, query, limit=PAGE_SIZE + 1, before_id=before)
    except repo.Invalid as exc:
        errors.update(_field_errors(exc))
    next_url = None
    if len(rows) > PAGE_SIZE:
        rows = rows[:PAGE_SIZE]
        next_url = "/traces?" + urlencode({**filters, "cursor": repo.encode_cursor(rows[-1]["id"])})
    live = cursor is None and "until" not in filters and not errors
    live_query = {k: v for k, v in filters.items() if k == "number"}
    live_query["after"] = str(rows[0]["id"] if rows else 0)
    return _render(
        request,
        "trace_list.html",
        status=422 if errors else 200,
        page="traces",
        filters=filters,
        errors=errors,
        rows=[_message_row(row) for row in rows],
        first_page=cursor is None,
        newest_url="/traces?" + urlencode(filters),
        next_url=next_url,
        live_url="/traces/live?" + urlencode(live_query) if live else None,
        live_keep=LIVE_KEEP,
        rules=len(await repo.list_entities(ui.store, RULES)),
    )


async def _live(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: rendered rows of traced messages newer than ``after``."""
    ui = request.app[UI]
    try:
        after = int(request.query.get("after", "0"))
        query = _trace_query(_list_filters(request), _settings(request))
    except (ValueError, repo.Invalid):
        return _error_page(request, 422, "Invalid filter", "Reload the trace list.")
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    template = ui.templates.get_template("trace_rows.html")
    newest_us: int | None = None
    try:
        await response.write(b"retry: 5000\n: connected\n\n")
        while not ui.closing.is_set():
            since = None if newest_us is None else newest_us - LIVE_LOOKBACK_US
            rows = await repo.query_traces(
                ui.store,
                msgspec.structs.replace(query, since_us=max(since or 0, query.since_us or 0)),
                limit=PAGE_SIZE,
            )
            fresh = [row for row in rows if row["id"] > after]
            if fresh:
                after = fresh[0]["id"]
                newest_us = max(newest_us or 0, *(row["first_us"] for row in fresh))
                html = template.render(rows=[_message_row(row) for row in fresh])
                document = msgspec.json.encode({"html": html, "count": len(fresh)})
                await response.write(b"data: " + document + b"\n\n")
            else:
                if newest_us is None and rows:
                    newest_us = rows[0]["first_us"]
                await response.write(b": idle\n\n")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LIVE_POLL):
                    await ui.closing.wait()
    except ConnectionResetError:
        pass  # the browser left
    return response


# ------------------------------------------------------------------------- the ladder


def _ms(us: int) -> str:
    return f"+{us / 1000:,.1f} ms"


def ladder(events: list[TraceEvent]) -> dict[str, Any]:
    """One message's events as lanes (SMSC, SMPS, each NE in order of its first copy)
    and one step per event, plus each NE's copy and answer for the summary table."""
    start = events[0].ts_us
    received = next((e for e in events if e.kind == "received"), events[0])
    lanes = [f"SMSC {received.smsc}", "SMPS"]
    lane_of: dict[str, int] = {}
    for event in events:
        if event.account is not None and event.account not in lane_of:
            lane_of[event.account] = len(lanes)
            lanes.append(event.account)
    nes = {account: {"account": account, "copies": []} for account in lane_of}
    steps = []
    final = None
    for event in events:
        step = _step(event, lane_of, start)
        steps.append(step)
        if event.kind == "final":
            final = {**step, "status": _status(event.status), "verdict": event.verdict,
                     "reason": event.reason}  # fmt: skip
        if event.account is not None:
            _note_ne(nes[event.account], event, start)
    return {
        "lanes": lanes,
        "steps": steps,
        "as_list": len(lanes) > MAX_LANES,
        "nes": list(nes.values()),
        "final": final,
        "received": received,
        "started": _clock(start),
        "duration": _ms(events[-1].ts_us - start)[1:],
    }


def _step(event: TraceEvent, lane_of: dict[str, int], start: int) -> dict[str, Any]:
    smsc, smps = 0, 1
    ne = lane_of.get(event.account or "", smps)
    step: dict[str, Any] = {
        "kind": event.kind,
        "t": _ms(event.ts_us - start),
        "verdict": event.verdict or "",
        "dashed": False,
        "late": bool(event.late),
        "detail": "",
    }
    seq = f" · seq {event.sequence}" if event.sequence is not None else ""
    if event.kind == "received":
        source, target = smsc, smps
        step["what"] = f"{event.command}{seq}"
        step["detail"] = f"{event.source_addr_raw} → {event.destination_addr_raw}"
    elif event.kind == "copy_sent":
        source, target = smps, ne
        step["what"] = f"{event.command}{seq}"
        step["detail"] = f"bind {event.bind} · worker {event.worker}"
    elif event.kind == "answered":
        source, target = ne, smps
        step["what"] = f"{event.command} {_status(event.status)}"
        step["detail"] = f"{event.verdict} in {event.latency_ms:,.1f} ms"
        if event.late:
            step["detail"] += " · late: after the final answer"
    elif event.kind == "timeout":
        source, target = ne, smps
        step["dashed"] = True
        step["what"] = f"no answer ({event.reason or 'timeout'})"
        step["detail"] = f"gave up after {event.latency_ms:,.1f} ms"
    elif event.kind == "final":
        source, target = smps, smsc
        step["what"] = f"{event.command} {_status(event.status)}"
        step["detail"] = f"{event.verdict} · reason {event.reason}"
    else:  # dropped: a copy never sent, or the original refused
        source, target = (smps, ne) if event.account is not None else (smps, smps)
        step["dashed"] = True
        step["what"] = "copy not sent" if event.account is not None else "refused"
        step["detail"] = event.reason or ""
    step.update(source=source, target=target)
    # Grid lines (trace.css): 1 | time | 2 half-columns per lane, so lane L's lifeline
    # is line 3 + 2L; an arrow runs between lifelines, a note covers its own lane.
    if source == target:
        step.update(direction="self", gs=2 + 2 * source, ge=4 + 2 * source)
    else:
        step.update(
            direction="right" if target > source else "left",
            gs=3 + 2 * min(source, target),
            ge=3 + 2 * max(source, target),
        )
    return step


def _note_ne(ne: dict[str, Any], event: TraceEvent, start: int) -> None:
    """Fold a copy, answer, timeout or drop into the NE's summary row."""
    if event.kind == "copy_sent":
        ne["copies"].append({"sent": _ms(event.ts_us - start), "bind": event.bind,
                             "sequence": event.sequence, "answer": None})  # fmt: skip
        return
    answer = {
        "kind": event.kind,
        "at": _ms(event.ts_us - start),
        "status": _status(event.status) if event.kind == "answered" else "",
        "verdict": event.verdict if event.kind == "answered" else "none",
        "latency": f"{event.latency_ms:,.1f} ms" if event.latency_ms is not None else "",
        "late": bool(event.late),
        "reason": event.reason or "",
    }
    waiting = [c for c in ne["copies"] if c["answer"] is None]
    if waiting:
        waiting[0]["answer"] = answer
    else:
        ne["copies"].append({"sent": "", "bind": "", "sequence": None, "answer": answer})


async def _message(request: web.Request) -> web.Response:
    message_id = request.match_info["message_id"]
    try:
        stored = await repo.trace_events(request.app[UI].store, message_id)
    except repo.NotFound:
        return _error_page(
            request,
            404,
            "No such traced message",
            f"There is no traced message {message_id!r}; traces older than the retention "
            "period are deleted.",
        )
    decode = msgspec.json.Decoder(TraceEvent).decode
    events = [decode(event) for event in stored]
    return _render(
        request,
        "trace_view.html",
        page="traces",
        message_id=message_id,
        events=events,
        ladder=ladder(events),
        status_text=_status,
        ms=lambda us: _ms(us - events[0].ts_us),
    )


# --------------------------------------------------------------------------- mounting

ROUTES: tuple[tuple[str, str, Handler, str | None], ...] = (
    ("GET", "/traces", _messages, None),
    ("GET", "/traces/live", _live, None),
    ("GET", "/traces/rules", _rules, None),
    ("POST", "/traces/rules", _rule_add, "traces.write"),
    ("POST", "/traces/rules/delete", _rule_remove, "traces.write"),
    ("GET", "/traces/{message_id}", _message, None),
)
"""(method, path, handler, action), guarded like the other pages; the fixed
paths come before ``{message_id}``."""


def add_trace_pages(app: web.Application) -> None:
    """Serve the trace pages on the admin UI's ``app`` (after :func:`add_ui_routes`)."""
    for method, path, handler, action in ROUTES:
        if method == "POST" and action is None:
            raise ValueError(f"POST {path} must name the action it needs")
        app.router.add_route(method, path, _guard(handler, action))
