"""Trace rules for the tracer: loaded from the database and reloaded on change."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from sqlalchemy import select

from smps import config as cfg
from smps.store.db import ConfigListener, Store
from smps.store.entities import KINDS, validate


class RuleTarget(Protocol):
    """What :func:`reload_trace_rules` needs of a tracer (``smps.proxy.tracer.Tracer``)."""

    def set_rules(
        self, rules: Iterable[cfg.TraceRule], decode_content_default: bool, country_code: str
    ) -> None: ...


async def load_trace_rules(store: Store) -> list[cfg.TraceRule]:
    """Every trace rule in the database: the file's (synced at start) and the API's."""
    kind = KINDS["trace_rules"]
    table = kind.table
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table.c.number, table.c.settings).order_by(table.c.id))
        rows = result.all()
    return [validate(kind, {**settings, "number": number}) for number, settings in rows]


async def reload_trace_rules(store: Store, tracer: RuleTarget, config: cfg.Config) -> None:
    """Give ``tracer`` the database's rules, under the file's content policy and country code."""
    rules = await load_trace_rules(store)
    tracer.set_rules(rules, config.trace.decode_content, config.trace.country_code)


def trace_rules_listener(store: Store, tracer: RuleTarget, config: cfg.Config) -> ConfigListener:
    """A store listener that reloads the tracer's rules after each trace rule change."""

    async def on_change(entity: str, _key: str) -> None:
        if entity == "trace_rules":
            await reload_trace_rules(store, tracer, config)

    return on_change
