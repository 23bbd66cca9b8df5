"""Decision and trace records as rows of the ``decisions`` and ``traces`` tables.

Kept apart from the writer so that a worker can turn its records into rows (it
sends rows, not records, to the master's writer) without importing the database
layer.
"""

from typing import Protocol

import msgspec

from smps.proxy.records import Decision

_encode_json = msgspec.json.Encoder().encode

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


def decision_row(d: Decision) -> tuple:
    """A decision as a row in DECISION_COLUMNS order, but for the last column, the lease
    epoch, which the writer adds (it knows the lease the node serves under).

    Strings from outside SMPS (PDUs, configuration) are cut to their column widths;
    command, verdict and reason are SMPS's own words, all shorter than 16.
    """
    account = d.deciding_account
    return (
        round(d.arrived_at * 1_000_000),
        round(d.decided_at * 1_000_000),
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
    )


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
