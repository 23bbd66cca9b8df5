"""Decision and trace records as rows of the ``decisions`` and ``traces`` tables, and
decisions read back.

A decision is one struct from the dispatcher to the API (:mod:`smps.proxy.records`):
:func:`decision_row` is how the writer stores it, :class:`StoredDecision` how it
comes back, with what storing added.
"""

from collections.abc import Mapping
from typing import Any, Protocol

import msgspec

from smps.proxy.records import Decision, NeResult
from smps.store.common import iso, plain

_encode_json = msgspec.json.Encoder().encode
_decode_results = msgspec.json.Decoder(list[NeResult]).decode
_decode_parts = msgspec.json.Decoder(list[int]).decode

DECISION_COLUMNS = (
    "arrived_us",
    "decided_us",
    "smsc",
    "command",
    "sequence",
    "source_addr",
    "source_ton",
    "source_npi",
    "destination_addr",
    "dest_ton",
    "dest_npi",
    "esm_class",
    "data_coding",
    "concat_ref",
    "concat_part",
    "concat_total",
    "verdict",
    "reason",
    "status",
    "deciding_account",
    "results",
    "epoch",
    "rule_id",
    "parts",
    "fingerprint",
)
TRACE_COLUMNS = (
    "message_id",
    "ts_us",
    "kind",
    "source_addr",
    "destination_addr",
    "account",
    "event",
)


class TraceEvent(Protocol):
    """What :func:`trace_row` needs of a trace event (any msgspec Struct)."""

    message_id: str
    ts_us: int
    kind: str
    source_addr: str
    destination_addr: str
    account: str | None


def decision_row(d: Decision, epoch: int | None) -> tuple:
    """A decision as a row in DECISION_COLUMNS order; ``epoch`` is the lease the node
    serves under, which the writer knows.

    Strings from outside SMPS (PDUs, configuration) are cut to their column widths;
    command, verdict and reason are SMPS's own words, all shorter than 16, and the
    fingerprint its own 16 hex digits.
    """
    account = d.deciding_account
    rule = d.rule_id
    return (
        d.arrived_us,
        d.decided_us,
        d.smsc[:64],
        d.command,
        d.sequence,
        d.source_addr[:65],
        d.source_ton,
        d.source_npi,
        d.destination_addr[:65],
        d.dest_ton,
        d.dest_npi,
        d.esm_class,
        d.data_coding,
        d.concat_ref,
        d.concat_part,
        d.concat_total,
        d.verdict,
        d.reason,
        d.status,
        account[:16] if account else None,
        _encode_json(d.results).decode(),
        epoch,
        rule[:64] if rule else None,
        None if d.parts is None else _encode_json(d.parts).decode(),
        d.fingerprint,
    )


class StoredDecision(Decision, frozen=True, kw_only=True):
    """A decision as the ``decisions`` table keeps it and the API returns it: the
    record, plus what storing gave it and its times for people to read."""

    id: int  # the table's
    epoch: int | None  # the HA lease epoch (fencing token) the node held; null without a lease
    arrived_at: str  # arrived_us in ISO 8601 UTC
    decided_at: str


def stored_decision(row: Mapping[str, Any]) -> StoredDecision:
    """A ``decisions`` row read back (the inverse of :func:`decision_row`)."""
    fields = plain(row)
    fields["results"] = _decode_results(row["results"])
    if row["parts"] is not None:
        fields["parts"] = _decode_parts(row["parts"])
    fields["arrived_at"] = iso(row["arrived_us"])
    fields["decided_at"] = iso(row["decided_us"])
    return StoredDecision(**fields)


def trace_row(event: TraceEvent) -> tuple:
    """A trace event as a row in TRACE_COLUMNS order; the whole event kept as JSON."""
    return (
        str(event.message_id)[:64],
        int(event.ts_us),
        str(event.kind)[:32],
        event.source_addr[:65],
        event.destination_addr[:65],
        event.account[:16] if event.account else None,
        _encode_json(event).decode(),
    )
