"""The running node as the admin side (UI and /api/v1) sees it: live numbers, and
kicking an NE account's binds, which every caller does through :func:`kick` so
that each kick is written to the audit log."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Protocol

import msgspec

from smps.store import audit_log
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
    ne_latency_ms: dict[str, float] = {}  # mean NE answer time over the last minute


class NodeView(Protocol):
    """The running node (the master adapts itself to this)."""

    def live_status(self) -> LiveStatus: ...

    def kick(self, system_id: str) -> int:
        """Unbind every live bind of an NE account (it may bind again); returns how many."""
        ...

    async def reload(self) -> str:
        """What SIGHUP does: read the configuration file again (and the list files its
        screening rules name) and apply it live; "applied", or why it was refused."""
        ...


class LatencyWindow:
    """Mean NE answer time per account over about the last ``span`` seconds, from the
    data plane's running sums (seconds, answers) of every answer, not only the
    decisions the database keeps. Read at most once a second; any number of readers."""

    def __init__(self, span: float = 60.0):
        self.span = span
        self._readings: deque[tuple[float, dict[str, Sequence[float]]]] = deque()

    def mean_ms(self, sums: dict[str, Sequence[float]], now: float) -> dict[str, float]:
        readings = self._readings
        while len(readings) > 1 and now - readings[1][0] >= self.span:
            readings.popleft()
        oldest = readings[0][1] if readings else {}  # the first reading: since the start
        if not readings or now - readings[-1][0] >= 1.0:
            readings.append((now, sums))
        means: dict[str, float] = {}
        for account, (seconds, answers) in sums.items():
            then_seconds, then_answers = oldest.get(account, (0.0, 0))
            if answers < then_answers:  # its data plane started again
                then_seconds, then_answers = 0.0, 0
            if answers > then_answers:
                means[account] = round(
                    1000 * (seconds - then_seconds) / (answers - then_answers), 1
                )
        return means


async def kick(store: Store, node: NodeView, system_id: str, actor: str) -> int:
    """Unbind every bind of NE account ``system_id`` and audit it; returns how many."""
    count = node.kick(system_id)
    log.warning("%s unbound %d binds of NE account %s", actor, count, system_id)
    await audit_log.record(store, actor, "kick", "ne_binds", system_id, after={"unbound": count})
    return count
