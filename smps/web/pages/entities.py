"""The pages of a kind of configuration row the UI lists, creates, edits and deletes
(NE accounts, SMSC connections, routes, screening rules): one flow, told how each
kind's form reads and shows a row.

Rows go through :mod:`smps.store.entities` like the API's: validated with the file's
rules, refused when file-managed, audited. A refused form is shown again with
what the user typed (never a password).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

from aiohttp import web

from smps.store import common, entities
from smps.store.db import Store
from smps.web import auth
from smps.web.node import LiveStatus
from smps.web.pages.common import UI, Route, actor, error_page, flash, render, see_other
from smps.web.pages.forms import form_page, submit

Row = Mapping[str, Any]


class EntityPages(ABC):
    """The pages of one kind at ``/<kind>``: the list (``<kind>.html``), ``/new``,
    ``/{key}`` (``<called>_form.html``) and ``/{key}/delete``; changes need the
    kind's action (:data:`auth.KIND_ACTIONS`). A subclass says how its form reads
    and shows a row."""

    kind: ClassVar[entities.Kind]
    what: ClassVar[str]  # "NE account": in messages and on the not-found page
    called: ClassVar[str]  # what the form page calls the row: "account"
    new: ClassVar[Row]  # a new row as the empty form shows it
    applies: ClassVar[str] = ""  # said after "created" or "saved"

    @abstractmethod
    def document(self, form: Row, *, new: bool) -> dict[str, Any]:
        """The form as the API's document."""

    @abstractmethod
    def echo(self, form: Row) -> dict[str, Any]:
        """What the user typed, shown again beside the errors (never a password)."""

    def shown(self, row: Row) -> dict[str, Any]:
        """A stored row as the form shows it."""
        return dict(row)

    async def choices(self, store: Store) -> dict[str, Any]:
        """More for the form page (a route's accounts and SMSCs to tick)."""
        return {}

    def live(self, status: LiveStatus) -> dict[str, Any]:
        """The node's live state the list shows beside the rows."""
        return {}

    async def listed(self, request: web.Request, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """More the list shows beside the rows (a screening rule's hits)."""
        return {}

    @property
    def path(self) -> str:
        return f"/{self.kind.name}"

    def routes(self) -> tuple[Route, ...]:
        """The list, new, create, edit, save and delete pages."""
        base, action = self.path, auth.KIND_ACTIONS[self.kind.name]
        return (
            ("GET", base, self._list, None),
            ("GET", f"{base}/new", self._new, None),
            ("POST", base, self._create, action),
            ("GET", f"{base}/{{key}}", self._edit, None),
            ("POST", f"{base}/{{key}}", self._save, action),
            ("POST", f"{base}/{{key}}/delete", self._delete, action),
        )

    def _said(self, key: str, done: str) -> str:
        return f"{self.what[0].upper()}{self.what[1:]} {key} {done}."

    async def _form(self, request: web.Request, row: Row, **form: Any) -> web.Response:
        extra = await self.choices(request.app[UI].store)
        template, page = f"{self.called}_form.html", self.kind.name
        return form_page(request, template, page, **{self.called: row}, **form, **extra)

    async def _row_or_404(self, request: web.Request) -> Row | web.Response:
        key = request.match_info["key"]
        try:
            return await entities.get_entity(request.app[UI].store, self.kind, key)
        except common.NotFound:
            return error_page(
                request, 404, f"No such {self.what}", f"There is no {self.what} {key!r}."
            )

    async def _list(self, request: web.Request) -> web.Response:
        return await self.list_page(request)

    async def list_page(
        self, request: web.Request, *, status: int = 200, **context: Any
    ) -> web.Response:
        """The rows in ``<kind>.html``, with the node's live state of them, what
        :meth:`listed` adds and ``context`` (which wins)."""
        ui = request.app[UI]
        rows = await entities.list_entities(ui.store, self.kind)
        shown = {**self.live(ui.node.live_status()), **await self.listed(request, rows), **context}
        template = f"{self.kind.name}.html"
        return render(request, template, status=status, page=self.kind.name, rows=rows, **shown)

    async def _new(self, request: web.Request) -> web.Response:
        return await self._form(request, dict(self.new), new=True)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()

        async def create() -> str:
            document = self.document(form, new=True)
            created = await entities.create(
                request.app[UI].store, self.kind, document, actor(request)
            )
            return self._said(created[self.kind.key], "created" + self.applies)

        shown = {**self.new, **self.echo(form)}
        return await submit(
            request, create, partial(self._form, request, shown, new=True), self.path
        )

    async def _edit(self, request: web.Request) -> web.Response:
        row = await self._row_or_404(request)
        if isinstance(row, web.Response):
            return row
        return await self._form(request, self.shown(row), new=False)

    async def _save(self, request: web.Request) -> web.StreamResponse:
        stored = await self._row_or_404(request)
        if isinstance(stored, web.Response):
            return stored
        key = stored[self.kind.key]
        form = await request.post()

        async def save() -> str:
            document = {**self.document(form, new=False), self.kind.key: key}
            store = request.app[UI].store
            await entities.update(store, self.kind, key, document, actor(request), merge=False)
            return self._said(key, "saved" + self.applies)

        shown = {**self.shown(stored), **self.echo(form), self.kind.key: key}
        return await submit(
            request, save, partial(self._form, request, shown, new=False), self.path
        )

    async def _delete(self, request: web.Request) -> web.StreamResponse:
        key = request.match_info["key"]
        try:
            await entities.delete_entity(request.app[UI].store, self.kind, key, actor(request))
            flash(request, "ok", self._said(key, "deleted"))
        except (common.Conflict, common.NotFound) as exc:
            flash(request, "error", str(exc))
        raise see_other(self.path)
