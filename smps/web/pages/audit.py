"""The audit log: every configuration change, newest first, with what changed."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from smps.store import audit_log, common
from smps.web.pages.common import PAGE_SIZE, UI, Route, render


async def _audit(request: web.Request) -> web.Response:
    cursor = request.query.get("cursor") or None
    try:
        before = common.decode_cursor(cursor) if cursor else None
    except common.Invalid:
        before = None
    rows = await audit_log.audit_entries(
        request.app[UI].store, limit=PAGE_SIZE + 1, before_id=before
    )
    rows, next_cursor = common.next_page(rows, PAGE_SIZE)
    for row in rows:
        row["changes"] = _changes(row["before"], row["after"])
    return render(
        request,
        "audit.html",
        page="audit",
        rows=rows,
        next_url="/audit?" + urlencode({"cursor": next_cursor}) if next_cursor else None,
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


ROUTES: tuple[Route, ...] = (("GET", "/audit", _audit, None),)
