"""Campaigns: every whole message counted by its content fingerprint, so that an
analyst sees what floods the network now, from how many senders to how many
recipients, and blocks it in one click (docs/campaigns.md).

Each worker counts in its own `CampaignTable` (smps._native.campaigns), in a
memfd the master made for its slot (`campaign_memory`): the master maps every
slot's read-only and merges them when asked (`CampaignReader`); a worker that
restarts starts its table anew. A single-process node counts in a private one.

A decision's cause (the screening rule or the NE account that decided) is kept
in the table as a small number, `cause_id`: a hash of the name, the same in
every process; the reader names it from the configuration's rules and accounts.
Two names may share a number (about 1 in 65,000 for a pair): their counts are
then shown under both names.
"""

import functools
import mmap
import os
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgspec
from prometheus_client.core import GaugeMetricFamily, Metric

from smps._native.campaigns import Campaign, CampaignTable, CampaignView
from smps.config import Config

CAPACITY = 1024  # campaigns per worker table: about 16 MB (smps._native.campaigns)
CAUSES = 65_521  # cause ids are 0..CAUSES-1 (the table keeps 16 bits)
NO_CAUSE = -1
WINDOWS = {"5m": 300, "1h": 3_600, "24h": 86_400}
OUTCOME_NAMES = ("allow", "block", "tempfail")  # the table's outcome numbers
ACTIVE_MIN = 10  # messages in 5 minutes that make a fingerprint an active campaign
MASKED = "(content hidden: trace.decode_content is off)"


@functools.cache  # a handful of names, looked up once per message
def cause_id(name: str) -> int:
    """The table's number for a rule id or an NE account name."""
    return zlib.crc32(name.encode("utf-8")) % CAUSES


def campaign_memory() -> int:
    """A memfd holding an empty campaign table, for one worker slot."""
    fd = os.memfd_create("smps-campaigns", os.MFD_CLOEXEC)
    size = CampaignTable.size_for(CAPACITY)
    os.ftruncate(fd, size)
    with mmap.mmap(fd, size) as memory:
        CampaignTable(memory, CAPACITY)
    return fd


def attach_campaign_table(fd: int) -> CampaignTable:
    """A worker's table, in the memfd of its slot, made empty."""
    return CampaignTable(mmap.mmap(fd, os.fstat(fd).st_size), CAPACITY)


def private_campaign_table() -> CampaignTable:
    """A table for one process alone (the single-process node, tests)."""
    return CampaignTable(bytearray(CampaignTable.size_for(CAPACITY)), CAPACITY)


class CampaignOut(msgspec.Struct, frozen=True):
    """One campaign as the API returns it (a `Campaign` with causes by name)."""

    fingerprint: str
    messages: int
    senders: int
    recipients: int
    blocked: int
    blocked_share: float
    by_cause: list[dict]  # {"outcome", "cause", "messages"}, most first
    example: str
    first_seen: int  # epoch seconds
    last_seen: int
    rate: list[int]  # messages per bucket over the window, oldest first
    error: int  # messages may count up to this many of another text (heavy-hitters bound)
    rule: str | None = None  # the fingerprint rule that lists it, if any


class CampaignReader:
    """The campaigns of every worker's table, merged on each read (the master's, or
    a single-process node's), named from the live configuration ``config()``."""

    def __init__(self, buffers: Iterable[Any], config: Callable[[], Config]):
        self.view = CampaignView(list(buffers))
        self.config = config

    @classmethod
    def of_fds(cls, fds: Iterable[int], config: Callable[[], Config]) -> "CampaignReader":
        memory = [mmap.mmap(fd, os.fstat(fd).st_size, prot=mmap.PROT_READ) for fd in fds]
        return cls(memory, config)

    def screening_enabled(self) -> bool:
        return self.config().screening.enabled

    def top(self, window: str, limit: int, now: float | None = None) -> tuple[int, list]:
        """(the time the windows end at, the ``limit`` biggest campaigns of ``window``,
        a key of WINDOWS): causes by name, the fingerprint rule that lists each, the
        example masked unless trace.decode_content."""
        config = self.config()
        by_id: dict[int, list[str]] = {}
        names = [r.id for r in config.screening.rules] + [a.system_id for a in config.ne_accounts]
        for name in names:
            by_id.setdefault(cause_id(name), []).append(name)
        rules = {
            entry.strip().lower(): rule.id
            for rule in config.screening.rules
            if rule.type == "fingerprint" and rule.enabled
            for entry in rule.entries
        }
        now_s = int(time.time() if now is None else now)
        content = config.trace.decode_content
        campaigns = self.view.campaigns(WINDOWS[window], now_s, limit)
        return now_s, [_out(c, by_id, rules, content) for c in campaigns]

    def active(self, window: str, min_messages: int, now: float | None = None) -> int:
        """Campaigns with at least ``min_messages`` in ``window`` (a Prometheus gauge)."""
        return self.view.active(WINDOWS[window], int(time.time() if now is None else now),
                                min_messages)  # fmt: skip


def campaign_metrics(reader: CampaignReader) -> Iterator[Metric]:
    """smps_campaigns_active: campaigns are not exported one by one (a label per
    fingerprint would be unbounded), only how many there are."""
    yield GaugeMetricFamily(
        "smps_campaigns_active",
        f"Campaigns (texts by fingerprint) with at least {ACTIVE_MIN} messages in the last "
        "5 minutes, over the workers.",
        reader.active("5m", ACTIVE_MIN),
    )


def _out(c: Campaign, by_id: dict[int, list[str]], rules: dict[str, str],
         content_allowed: bool) -> CampaignOut:  # fmt: skip
    causes = sorted(
        (
            {
                "outcome": OUTCOME_NAMES[outcome],
                "cause": " / ".join(by_id.get(cause, [])) or None,
                "messages": messages,
            }
            for outcome, cause, messages in c.outcomes
        ),
        key=lambda row: -row["messages"],
    )
    shown = c.example if content_allowed and c.content_allowed else MASKED
    return CampaignOut(
        fingerprint=c.fingerprint,
        messages=c.messages,
        senders=c.senders,
        recipients=c.recipients,
        blocked=c.blocked,
        blocked_share=round(c.blocked / c.messages, 4) if c.messages else 0.0,
        by_cause=causes,
        example=shown or "",
        first_seen=c.first_seen,
        last_seen=c.last_seen,
        rate=list(c.rate),
        error=c.error,
        rule=rules.get(c.fingerprint),
    )
