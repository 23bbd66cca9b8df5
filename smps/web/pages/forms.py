"""What the form pages share: validation errors beside their fields, the form page,
submitting a change, a page of a filtered list, and reading a typed list, number or
duration.

Every change still goes through :mod:`smps.store.entities`, which validates with
the configuration file's rules; this module only turns its answers into what a
form shows.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from smps.store import common
from smps.web.pages.common import PAGE_SIZE, flash, render, see_other

_PLAIN_MESSAGES = (
    (re.compile(r"Expected `str` of length >= 1$"), "required"),
    (re.compile(r"Expected `str` of length <= (\d+)$"), r"at most \1 characters"),
    (re.compile(r"Expected `str` of length >= (\d+)$"), r"at least \1 characters"),
    (re.compile(r"Expected `array` of length >= 1$"), "enter at least one"),
    (re.compile(r"Expected `int` >= (-?\d+)$"), r"must be at least \1"),
    (re.compile(r"Expected `int` <= (-?\d+)$"), r"must be at most \1"),
    (re.compile(r"Invalid enum value (.*)$"), r"\1 is not one of the choices"),
)


def _plain(message: str) -> str:
    """The validator's terse wording in words a form user reads at a glance."""
    for pattern, replacement in _PLAIN_MESSAGES:
        if pattern.match(message):
            return pattern.sub(replacement, message)
    return message


_LINE_LISTS = frozenset(
    {"allowed_ips", "source_prefix", "destination_prefix", "service_type", "data_coding",
     "entries", "patterns", "scope_source", "scope_destination"}
)  # fmt: skip


def field_errors(exc: common.Invalid) -> dict[str, str]:
    """{form field: message}: ``allowed_ips[1]`` is shown at the ``allowed_ips``
    field ("line 2: ..."), ``reconnect.max`` at ``reconnect_max``."""
    name = (exc.field or "").split("[", 1)[0].replace(".", "_")
    index = re.search(r"\[(\d+)\]", exc.field or "")
    prefix = f"line {int(index.group(1)) + 1}: " if index and name in _LINE_LISTS else ""
    return {name: prefix + _plain(exc.message)}


def form_page(
    request: web.Request,
    template: str,
    page: str,
    *,
    errors: dict[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
    **context: Any,
) -> web.Response:
    """A form page: field errors shown beside their fields, a problem above the form."""
    return render(
        request, template, status=status, page=page, errors=errors or {}, problem=problem, **context
    )


def lines(form: Mapping[str, Any], name: str) -> list[str]:
    """A list typed one per line (commas and spaces also separate)."""
    return str(form.get(name, "")).replace(",", " ").split()


def number_or_text(text: str) -> int | str:
    """A whole number as a number, else as typed, for the validator to name the field."""
    try:
        return int(text)
    except ValueError:
        return text


def seconds(value: float) -> str:
    """A stored duration as the form shows it: ``30s``."""
    return f"{value:g}s"


async def submit(
    request: web.Request,
    change: Callable[[], Awaitable[str]],
    show_again: Callable[..., Awaitable[web.Response]],
    back: str,
) -> web.StreamResponse:
    """Make ``change`` (it returns what to tell the user) and go ``back`` to the list;
    when the store refuses it, ``show_again`` the form: a field's error beside the field
    (422), a conflict above the form (409)."""
    try:
        done = await change()
    except common.Invalid as exc:
        return await show_again(errors=field_errors(exc), status=422)
    except (common.Conflict, common.NotFound) as exc:
        return await show_again(problem=str(exc), status=409)
    flash(request, "ok", done)
    raise see_other(back)


@dataclass
class FilteredPage:
    """One page of a filtered, newest-first list (decisions, traced messages)."""

    filters: dict[str, str]  # the non-empty filter fields
    rows: list[Any]  # dicts, or records with an id (decisions)
    errors: dict[str, str]  # an unreadable filter: its message beside its field
    first_page: bool
    next_cursor: str | None

    def render(self, request: web.Request, template: str, **context: Any) -> web.Response:
        """The page, with the pager's links to the newest and the next older page."""
        path = request.path
        older = {**self.filters, "cursor": self.next_cursor} if self.next_cursor else None
        return render(
            request,
            template,
            status=422 if self.errors else 200,
            filters=self.filters,
            errors=self.errors,
            rows=self.rows,
            first_page=self.first_page,
            newest_url=f"{path}?{urlencode(self.filters)}",
            next_url=f"{path}?{urlencode(older)}" if older else None,
            **context,
        )


async def filtered_page(
    request: web.Request,
    filters: dict[str, str],
    fetch: Callable[[int | None], Awaitable[list[Any]]],
) -> FilteredPage:
    """The page the query string's cursor names. ``fetch(before_id)`` reads ``filters``
    into a query and asks for ``PAGE_SIZE + 1`` rows older than ``before_id``; an
    unreadable filter or cursor gives no rows and an error beside its field."""
    cursor = request.query.get("cursor") or None
    try:
        rows = await fetch(common.decode_cursor(cursor) if cursor else None)
    except common.Invalid as exc:
        return FilteredPage(filters, [], field_errors(exc), cursor is None, None)
    rows, next_cursor = common.next_page(rows, PAGE_SIZE)
    return FilteredPage(filters, rows, {}, cursor is None, next_cursor)
