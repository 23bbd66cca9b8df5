"""What a data plane counts, as typed structs: the report a worker sends the master
once a second over the control channel (msgpack), and what the single-process
node reads from its own data plane.

`smps.runtime.plane.DataPlane.snapshot` makes a `PlaneReport`. The master keeps,
per worker position, the counters of earlier processes in that position
(`smps.runtime.supervisor.WorkerSlot`), so that a counter never goes back when a
worker restarts, and sums the positions with `add`. The status report, the admin
UI and the per-minute counts read the fields; `smps.runtime.metrics` exports
them, each `Counters` field as the Prometheus family of its name with ``smps_``
in front.
"""

from typing import TypeVar

import msgspec

from smps._native.histogram import BUCKETS, Histogram
from smps.runtime.control import Message
from smps.store.minute_counts import Totals

STATS = "stats"  # the control message type

S = TypeVar("S", bound=msgspec.Struct)


def _no_observations() -> list[int]:
    return [0] * (len(BUCKETS) + 1)


class Latency(msgspec.Struct, array_like=True):
    """A latency histogram's running totals: observations per bucket of
    `BUCKETS` (not cumulative; the last is above every bound), their sum in
    seconds and their number."""

    buckets: list[int] = msgspec.field(default_factory=_no_observations)
    seconds: float = 0.0
    count: int = 0

    @classmethod
    def of(cls, histogram: Histogram) -> "Latency":
        return cls(histogram.counts, histogram.total, histogram.count)


class Counters(msgspec.Struct, kw_only=True):
    """Running totals since a data plane (or the master) started: they only grow.
    A dict's keys are the family's label values, in the order `metrics.LABELS` names
    them. Each process fills what it counts; the rest stays zero."""

    originals_received: int = 0
    verdicts: dict[tuple[str, str], int] = {}  # (verdict, reason)
    decision_seconds: Latency = msgspec.field(default_factory=Latency)
    screening_hits: dict[tuple[str, str], int] = {}  # (rule id, action)
    screened: int | None = None  # None: no screening engine (nor its two families)
    screening_seconds: float | None = None
    copies_sent: dict[str, int] = {}  # account
    ne_answers: dict[tuple[str, str], int] = {}  # (account, allow | block | none)
    ne_answer_seconds: dict[str, Latency] = {}  # account
    late_answers: int = 0
    monitor_answers: dict[str, int] = {}  # account (in monitor mode)
    throttled: int = 0
    copies_dropped: int = 0
    copies_retried: int = 0
    copies_withdrawn: int = 0
    internal_errors: int = 0
    pdu_errors: dict[str, int] = {}  # kind
    smsc_reconnects: dict[str, int] = {}  # SMSC
    auth_failures: int = 0
    ne_connections_refused: dict[str, int] = {}  # reason (the cap reached)
    forwarded_copies: dict[str, int] = {}  # direction: a worker's, through the mesh
    whole_messages: dict[str, int] = {}  # complete | incomplete
    concat_overflow: int = 0
    concat_duplicate_parts: int = 0
    concat_late_parts: int = 0
    concat_parts_forwarded: int = 0
    campaign_blocks: int = 0
    records_forward_dropped: dict[str, int] = {}  # kind: a worker's, to the master


class Gauges(msgspec.Struct, kw_only=True):
    """What a data plane holds now."""

    in_flight: int = 0
    concat_held: int = 0  # messages whose parts are held for the others
    smsc_binds: dict[str, int] = {}  # binds up per SMSC
    ne_binds: dict[str, int] = {}  # binds per NE account


class PlaneReport(msgspec.Struct, kw_only=True):
    """One data plane's snapshot: its counters, its gauges, and why its SMSC binds
    make the node degraded (`SmscClient.down_reason`)."""

    counters: Counters = msgspec.field(default_factory=Counters)
    gauges: Gauges = msgspec.field(default_factory=Gauges)
    smsc_down: list[str] = []


_encode = msgspec.msgpack.Encoder().encode
_decode_report = msgspec.msgpack.Decoder(PlaneReport).decode


def stats_message(report: PlaneReport) -> Message:
    return {"t": STATS, "report": _encode(report)}


def read_stats(message: Message) -> PlaneReport:
    """The master's side of `stats_message`."""
    return _decode_report(message["report"])


def add(first: S, *more: S) -> S:
    """Field by field sums of structs of one type (dicts by key, lists by position):
    totals over processes."""
    for other in more:
        first = type(first)(
            **{
                name: _add(getattr(first, name), getattr(other, name))
                for name in first.__struct_fields__
            }
        )
    return first


def _add(one, other):
    if one is None or other is None:  # counted by one of them only
        return other if one is None else one
    if isinstance(one, dict):
        total = dict(one)
        for name, value in other.items():
            total[name] = _add(total[name], value) if name in total else value
        return total
    if isinstance(one, list):
        return [a + b for a, b in zip(one, other, strict=True)]
    if isinstance(one, msgspec.Struct):
        return add(one, other)
    return one + other


def verdict_totals(counters: Counters) -> Totals:
    """The running totals the per-minute counts grow from (`smps.store.minute_counts`):
    final verdicts under account "", each NE account's answers under its name."""
    totals: Totals = {}
    for (verdict, _reason), count in counters.verdicts.items():
        totals["", verdict] = totals.get(("", verdict), 0) + count
    for (account, verdict), count in counters.ne_answers.items():
        if count:
            totals[account, verdict] = count
    return totals
