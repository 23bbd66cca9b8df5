"""The records SMPS makes, one struct each all the way through the processes:
the decision for one original, and the events of a traced one.

A `Decision` is made by the dispatcher (subject to `database.record`; in C, positionally
in field order: `DispatchCore._decision` in smps/_native/dispatch.pyx) and handed
to a sink; a worker sends it to the master as it is (msgpack), the writer turns
it into a ``decisions`` row, and the API returns it read back, with what storing
added (:class:`smps.store.rows.StoredDecision`). The default sink keeps the last
N in memory for the API and the demo.

A `TraceEvent` is what the tracer makes of each step of a traced original: a
worker sends it to the master over the control channel (msgpack), live watchers
get it as it is; it becomes JSON only at the edges (the day files, the
database's ``event`` column, the HTTP API and its Server-Sent Events).
"""

from collections import deque
from collections.abc import Iterator
from typing import Protocol

import msgspec


# gc=False: a record refers to nothing that refers back, so it makes no cycle, and
# untracked it is no object for each collection to walk (docs/architecture.md §4).
class NeResult(msgspec.Struct, frozen=True, gc=False):
    """One NE account's part in a decision."""

    account: str
    verdict: str  # allow | block | none | waiting (never answered before the deadline)
    status: int | None  # the NE's command_status; None when it never answered
    latency_ms: float | None
    late: bool  # answered after the final verdict was sent
    decisive: bool  # False for monitor-mode accounts


class Decision(msgspec.Struct, frozen=True, gc=False):
    arrived_us: int  # epoch microseconds, as stored
    decided_us: int
    smsc: str
    command: str  # deliver_sm | data_sm
    sequence: int  # the SMSC's sequence number
    source_addr: str
    source_ton: int
    source_npi: int
    destination_addr: str
    dest_ton: int
    dest_npi: int
    esm_class: int
    data_coding: int
    concat_ref: int | None
    concat_part: int | None
    concat_total: int | None
    verdict: str  # allow | block | tempfail
    reason: str  # block | all_allow | timeout | no_ne | overload | sticky | receipt | rule
    status: int  # command_status sent to the SMSC
    deciding_account: str | None
    results: list[NeResult]
    rule_id: str | None = None  # the screening rule that decided or fired (smps.proxy.screening)
    # A whole message's parts: the SMSC's sequence number of each, in part order
    # (0 for a part that never came); None for a message that came in one piece.
    parts: list[int] | None = None
    # The content fingerprint of the (whole) message, 16 hex digits: its campaign
    # (smps._native.fingerprint); None when it has no text (binary data, receipts).
    fingerprint: str | None = None


def should_record(record: str, verdict: str, reason: str, traced: bool, rule: bool = False) -> bool:
    """The ``database.record`` policy (all | non_allow | none): is a decision with
    ``verdict`` for ``reason`` recorded? Traced messages always are; so are, unless
    ``none``, those a screening ``rule`` fired on (monitor hits too).

    ``non_allow`` keeps every decision but the plain allows: the NEs' own allow
    (``all_allow``) and receipts, which pass uninspected. An allow by failing
    open (timeout, no NE, overload) is kept: it is the one that needs looking into.
    """
    if traced or record == "all":
        return True
    return record == "non_allow" and (
        rule or verdict != "allow" or reason not in ("all_allow", "receipt")
    )


class DecisionSink(Protocol):
    def put(self, decision: Decision) -> None: ...


class FanOutSink:
    """Hands every decision to several sinks (the recent-decisions list and the database)."""

    def __init__(self, *sinks: DecisionSink):
        self.sinks = sinks

    def put(self, decision: Decision) -> None:
        for sink in self.sinks:
            sink.put(decision)


class MemorySink:
    """Keeps the newest `limit` decisions; the default sink."""

    def __init__(self, limit: int = 10_000):
        self._items: deque[Decision] = deque(maxlen=limit)

    def put(self, decision: Decision) -> None:
        self._items.append(decision)

    def __iter__(self) -> Iterator[Decision]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def newest(self, count: int = 100) -> list[Decision]:
        return list(self._items)[-count:][::-1]


# ---- trace events ---------------------------------------------------------------


class ConcatInfo(msgspec.Struct, frozen=True):
    """Where a segment belongs: `id` is the same for every part of one message."""

    id: str
    mechanism: str  # udh8 | udh16 | sar
    ref: int
    total: int
    part: int


class UdhInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    length: int
    ies: list[str]  # "IEI:hex data", e.g. "00:420301"
    concat: list[int] | None = None  # ref, total, part
    ports: list[int] | None = None  # destination, origin
    single_shift: int = 0  # national language ids (1 = Turkish, ...)
    locking_shift: int = 0


class Reassembled(msgspec.Struct, frozen=True, omit_defaults=True):
    """The whole of a concatenated message, on the event of the part that completed it."""

    parts: list[str]  # message_id of each part, in part order
    text: str | None = None  # None unless every part allowed content
    encoding: str | None = None
    note: str | None = None


class TlvInfo(msgspec.Struct, frozen=True):
    tag: int
    name: str
    value: str


class TraceEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One step of a traced original. Content fields are set only when allowed."""

    message_id: str
    ts_us: int  # epoch microseconds
    # received | part_received | held | screened | copy_sent | answered | timeout | final
    # | part_answered | dropped
    kind: str
    direction: str  # smsc->smps | smps->ne | ne->smps | smps->smsc | smps
    smsc: str
    source_addr: str  # normalised
    destination_addr: str
    source_addr_raw: str
    destination_addr_raw: str
    command: str = ""
    status: int | None = None
    sequence: int | None = None
    account: str | None = None
    bind: str | None = None
    worker: int | None = None
    verdict: str | None = None
    latency_ms: float | None = None
    late: bool | None = None
    reason: str | None = None
    rules: list[str] | None = None  # the rule numbers that matched (received only)
    content: bool = False  # whether content decoding was allowed for this message
    concat: ConcatInfo | None = None
    fields: dict[str, int | str] | None = None
    tlvs: list[TlvInfo] | None = None
    pdu_hex: str | None = None
    text: str | None = None
    encoding: str | None = None
    note: str | None = None
    udh: UdhInfo | None = None
    reassembled: Reassembled | None = None


class TraceSink(Protocol):
    """Takes finished events; must not block (it is called on the data plane)."""

    def put(self, event: TraceEvent) -> None: ...
