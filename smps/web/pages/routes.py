"""Routes: which messages (by SMSC, number prefix, service type, data coding) are
copied to which NE accounts; the list, the create and edit form, delete."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from smps.store import entities
from smps.store.db import Store
from smps.web.pages.common import Route
from smps.web.pages.entities import EntityPages
from smps.web.pages.forms import lines, number_or_text

_LISTS = ("source_prefix", "destination_prefix", "service_type", "data_coding")


class _RoutePages(EntityPages):
    """A route's lists are typed one per line; the accounts and SMSCs are ticked."""

    kind = entities.KINDS["routes"]
    what = "route"
    called = "route"
    new: ClassVar[Mapping[str, Any]] = {
        "name": "",
        "file_managed": False,
        **dict.fromkeys(("accounts", "smsc", *_LISTS), ()),  # every criterion empty
    }
    applies = "; it applies to new messages now"

    def document(self, form: Any, *, new: bool) -> dict[str, Any]:
        """The same for a new route and an edited one (a route has no secret)."""
        document: dict[str, Any] = {
            "name": str(form.get("name", "")).strip(),
            "accounts": [str(v) for v in form.getall("accounts", [])],
            "smsc": [str(v) for v in form.getall("smsc", [])],
            **{name: lines(form, name) for name in _LISTS},
        }
        document["data_coding"] = [number_or_text(v) for v in document["data_coding"]]
        return document

    def echo(self, form: Any) -> dict[str, Any]:
        return self.document(form, new=True)

    async def choices(self, store: Store) -> dict[str, Any]:
        """The NE accounts and SMSC connections a route may name, ticked on the form."""
        accounts = await entities.list_entities(store, entities.KINDS["accounts"])
        smscs = await entities.list_entities(store, entities.KINDS["smsc"])
        return {
            "account_names": [a["system_id"] for a in accounts],
            "smsc_names": [s["name"] for s in smscs],
        }


ROUTES: tuple[Route, ...] = _RoutePages().routes()
