"""The verdict policy: one form over the stored policy document (read-only when the
configuration file sets it, or for a role that may not change it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from smps.store import common, entities
from smps.web.pages.common import UI, VERDICTS, Route, actor, flash, render, see_other
from smps.web.pages.forms import field_errors, number_or_text, seconds

ON_INCOMPLETE = (
    ("judge_parts", "Judge the parts present"),
    ("allow", "Allow"),
    ("tempfail", "Temp-fail (the SMSC sends them again)"),
)


def _document(form: Mapping[str, Any]) -> dict[str, Any]:
    """The form as the policy document; durations and codes are read as in the file,
    an empty hold is the default (1 s, or the timeout when that is shorter)."""
    hold = str(form.get("concat_hold", "")).strip()
    return {
        "timeout": str(form.get("timeout", "")).strip(),
        "on_timeout": str(form.get("on_timeout", "")),
        "on_no_ne": str(form.get("on_no_ne", "")),
        "block_status": str(form.get("block_status", "")).strip(),
        "tempfail_status": str(form.get("tempfail_status", "")).strip(),
        "ne_block_codes": [
            code.strip()
            for code in str(form.get("ne_block_codes", "")).replace(",", " ").split()
            if code.strip()
        ],
        "inspect_receipts": form.get("inspect_receipts") == "on",
        "concat_window": str(form.get("concat_window", "")).strip(),
        "concat_sticky_block": form.get("concat_sticky_block") == "on",
        "concat_hold": hold or None,
        "on_incomplete": str(form.get("on_incomplete", "")),
        "concat_max_held": number_or_text(str(form.get("concat_max_held", "")).strip()),
    }


def _shown(policy: Mapping[str, Any]) -> dict[str, Any]:
    """Stored values as the form shows them: seconds as ``2s``, status codes in hex."""
    return {
        **policy,
        "timeout": seconds(policy["timeout"]),
        "concat_window": seconds(policy["concat_window"]),
        "concat_hold": "" if policy["concat_hold"] is None else seconds(policy["concat_hold"]),
        "block_status": f"0x{policy['block_status']:02X}",
        "tempfail_status": f"0x{policy['tempfail_status']:02X}",
        "ne_block_codes": ", ".join(f"0x{code:02X}" for code in policy["ne_block_codes"]),
    }


def _form(
    request: web.Request,
    policy: Mapping[str, Any],
    *,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    return render(
        request,
        "policy.html",
        status=status,
        page="policy",
        policy=policy,
        choices=VERDICTS,
        on_incomplete=ON_INCOMPLETE,
        errors=errors or {},
    )


async def _policy(request: web.Request) -> web.Response:
    return _form(request, _shown(await entities.get_policy(request.app[UI].store)))


async def _save(request: web.Request) -> web.StreamResponse:
    ui = request.app[UI]
    form = await request.post()
    document = _document(form)
    stored = await entities.get_policy(ui.store)
    try:
        await entities.put_policy(ui.store, document, actor(request))
    except common.Invalid as exc:
        shown = {
            **stored,
            **document,
            "ne_block_codes": ", ".join(document["ne_block_codes"]),
            "concat_hold": document["concat_hold"] or "",
        }
        return _form(request, shown, errors=field_errors(exc), status=422)
    except common.Conflict as exc:
        flash(request, "error", str(exc))
        raise see_other("/policy") from None
    flash(request, "ok", "Policy saved; it applies to messages arriving from now on.")
    raise see_other("/policy")


ROUTES: tuple[Route, ...] = (
    ("GET", "/policy", _policy, None),
    ("POST", "/policy", _save, "policy.write"),
)
