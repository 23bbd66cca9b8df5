"""The running node as the admin side (UI and /api/v1) sees it: live numbers, and
kicking an NE account's binds, which every caller does through :func:`kick` so
that each kick is written to the audit log."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Protocol

import msgspec

from smps.proxy.records import Decision
from smps.store import repo
from smps.store.db import Store

log = logging.getLogger("smps.web.node")


class SmscLive(msgspec.Struct, frozen=True):
    name: str
    binds_up: int
    binds: int  # configured


class LiveStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What the dashboard shows live; counters are cumulative since the node started."""

    node: str
    role: str  # HA role: active | standby
    workers: int
    uptime_s: float
    smsc: list[SmscLive]
    ne_binds: dict[str, int]  # live binds per NE account
    received: int  # originals received
    in_flight: int
    verdicts: dict[str, int]  # final verdicts by kind: allow, block, tempfail
    ne_latency_ms: dict[str, float] = {}  # mean NE answer time over recent decisions


class NodeView(Protocol):
    """The running node (the master adapts itself to this)."""

    def live_status(self) -> LiveStatus: ...

    def kick(self, system_id: str) -> int:
        """Unbind every live bind of an NE account (it may bind again); returns how many."""
        ...


def mean_latency(decisions: Iterable[Decision]) -> dict[str, float]:
    """Mean answer latency per NE account over ``decisions`` (allow and block answers,
    late ones included; copies never answered have no latency to count)."""
    totals: dict[str, list[float]] = {}
    for decision in decisions:
        for result in decision.results:
            if result.verdict in ("allow", "block") and result.latency_ms is not None:
                entry = totals.setdefault(result.account, [0.0, 0.0])
                entry[0] += result.latency_ms
                entry[1] += 1
    return {account: round(total / count, 1) for account, (total, count) in totals.items()}


async def kick(store: Store, node: NodeView, system_id: str, actor: str) -> int:
    """Unbind every bind of NE account ``system_id`` and audit it; returns how many."""
    count = node.kick(system_id)
    log.warning("%s unbound %d binds of NE account %s", actor, count, system_id)
    await repo.record(store, actor, "kick", "ne_binds", system_id, after={"unbound": count})
    return count
