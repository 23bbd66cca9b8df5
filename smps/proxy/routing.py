"""Which NE accounts get a copy of an original: the routes, compiled once per
configuration; with no routes every enabled account gets every message."""

from collections.abc import Iterable
from typing import Any

from smps._native.dispatch import Lane, decisive_mask
from smps.config import Route


class CompiledRoute:
    __slots__ = ("data_coding", "destination", "lanes", "service_type", "smsc", "source")

    def __init__(self, route: Route, lanes: dict[str, Lane]):
        self.source = tuple(p.encode() for p in route.source_prefix)
        self.destination = tuple(p.encode() for p in route.destination_prefix)
        self.smsc = frozenset(route.smsc)
        self.service_type = frozenset(s.encode() for s in route.service_type)
        self.data_coding = frozenset(route.data_coding)
        self.lanes = tuple(lanes[name] for name in route.accounts if name in lanes)

    def matches(self, view: Any, smsc: str) -> bool:
        return (
            (not self.source or view.source_addr.startswith(self.source))
            and (not self.destination or view.destination_addr.startswith(self.destination))
            and (not self.smsc or smsc in self.smsc)
            and (not self.service_type or view.service_type in self.service_type)
            and (not self.data_coding or view.data_coding in self.data_coding)
        )


class Router:
    """Selects target accounts; with no routes every enabled account gets every message."""

    def __init__(self, routes: Iterable[Route], lanes: dict[str, Lane]):
        enabled = {name: lane for name, lane in lanes.items() if lane.account.enabled}
        self.everyone = tuple(enabled.values())
        self.everyone_mask = decisive_mask(self.everyone)
        self.routes = [CompiledRoute(route, enabled) for route in routes]

    def targets(self, view: Any, smsc: str) -> tuple[Lane, ...]:
        if not self.routes:
            return self.everyone
        selected: dict[Lane, None] = {}
        for route in self.routes:
            if route.matches(view, smsc):
                selected.update(dict.fromkeys(route.lanes))
        return tuple(selected)
