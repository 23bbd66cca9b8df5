"""Trace events: what the tracer makes of each step of a traced original, and the
sink interface they go to.

A `TraceEvent` is the one form of an event inside SMPS: the tracer makes it, a
worker sends it to the master over the control channel (msgpack), live
watchers get it as it is; it becomes JSON only at the edges (the day files, the
database's ``event`` column, the HTTP API and its Server-Sent Events).
"""

from typing import Protocol

import msgspec


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
    kind: str  # received | screened | copy_sent | answered | timeout | final | dropped
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
