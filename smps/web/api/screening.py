"""``/api/v1/screening/test``: a message tried on the node's live screening rules,
counted in no velocity window; every rule that fires and the verdict come back.
The rules themselves are a configuration kind (``/api/v1/screening/rules``,
:mod:`~smps.web.api.configuration`). The admin UI's Screening page tries
messages through :func:`try_message` too."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from smps import config as cfg
from smps.proxy.screening import EntryError
from smps.proxy.screening_trial import ScreeningTrial, TrialMessage, TrialResult
from smps.store import common, entities
from smps.web.api.base import SCREENING, json_response, read_body


async def try_message(trial: ScreeningTrial, document: Any) -> TrialResult:
    """``document`` (a TrialMessage as JSON, numbers as text allowed) tried on the
    live rules; Invalid names the field, Conflict says which list file went bad."""
    try:
        message = msgspec.convert(document, TrialMessage, strict=False)
    except msgspec.ValidationError as exc:
        raise entities.validation_error(exc) from None
    try:
        return await trial.try_message(message)
    except cfg.InvalidValue as exc:
        raise common.Invalid(exc.reason, cfg.format_path(exc.path) or None) from None
    except EntryError as exc:
        raise common.Conflict(f"the screening rules cannot be built: {exc}") from None


async def _test(request: web.Request) -> web.Response:
    trial = request.app.get(SCREENING)
    if trial is None:
        raise web.HTTPServiceUnavailable(reason="trying messages is not available on this node")
    return json_response(await try_message(trial, await read_body(request)))


def add_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/screening/test", _test)  # changes nothing: any role may
