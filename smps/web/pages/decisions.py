"""The decisions page: recorded verdicts, filtered and paged, and their CSV export.

The filters are the API's (:class:`DecisionParams`, :func:`decision_query`), and
the export is the API's CSV writer on the UI's session instead of a bearer token.
"""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
from aiohttp import web

from smps.store import common, decision_queries, entities
from smps.store.rows import StoredDecision
from smps.web.api.decisions import DecisionParams, decision_query, write_decisions_csv
from smps.web.pages.common import PAGE_SIZE, UI, VERDICTS, Route, error_page
from smps.web.pages.forms import filtered_page

REASONS = ("block", "all_allow", "timeout", "no_ne", "overload", "sticky", "receipt", "rule",
           "late_part", "incomplete")  # fmt: skip


def _filters(request: web.Request) -> dict[str, str]:
    """The non-empty filter fields of the query string (an empty field means "any")."""
    names = (*decision_queries.DECISION_FILTERS, "since", "until")
    return {name: request.query[name].strip() for name in names if request.query.get(name, "")}


def _params(filters: dict[str, str]) -> DecisionParams:
    """The filters as the API reads them; Invalid names a wrong one."""
    try:
        params = msgspec.convert(filters, DecisionParams)
    except msgspec.ValidationError as exc:
        raise entities.validation_error(exc) from None
    return params


async def _decisions(request: web.Request) -> web.Response:
    store = request.app[UI].store
    filters = _filters(request)

    async def fetch(before: int | None) -> list[StoredDecision]:
        query = decision_query(_params(filters))
        return await decision_queries.query_decisions(
            store, query, limit=PAGE_SIZE + 1, before_id=before
        )

    listing = await filtered_page(request, filters, fetch)
    return listing.render(
        request,
        "decisions.html",
        page="decisions",
        verdicts=VERDICTS,
        reasons=REASONS,
        csv_url="/decisions.csv?" + urlencode(filters),
    )


async def _export(request: web.Request) -> web.StreamResponse:
    """The API's CSV export, on the UI's session instead of a bearer token."""
    try:
        params = _params(_filters(request))
        decision_query(params)  # an unreadable time is refused here, not half-way through
    except common.Invalid as exc:
        return error_page(request, 422, "Invalid filter", f"{exc.field}: {exc.message}")
    return await write_decisions_csv(request, request.app[UI].store, params)


ROUTES: tuple[Route, ...] = (
    ("GET", "/decisions", _decisions, None),
    ("GET", "/decisions.csv", _export, None),
)
