"""Decisions and trace events (both as themselves) from a worker's RecordForwarder
reach the master whole: every field, over a real control socket pair."""

import gc
import socket

import msgspec

from smps.proxy.records import TraceEvent
from smps.runtime.control import ControlChannel
from smps.runtime.records import (
    RECORDS,
    RecordForwarder,
    decode_records,
)
from smps.store.rows import decision_row
from tests.store_db import make_decision


async def forwarded(decisions=(), events=()) -> dict:
    """The one message a worker's RecordForwarder sends for these records, as the
    master receives it over a real socket pair."""
    worker_end, master_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker = await ControlChannel.open(worker_end)
    master = await ControlChannel.open(master_end)
    try:
        forwarder = RecordForwarder(worker)
        for decision in decisions:
            forwarder.put(decision)
        for event in events:
            forwarder.put_trace(event)
        forwarder.flush()
        message = await master.receive()
    finally:
        await worker.close()
        await master.close()
    assert message is not None and message["t"] == RECORDS
    return message


async def test_decisions_cross_the_control_channel_unchanged():
    sent = [
        make_decision(1),
        make_decision(2, verdict="allow", concat_ref=7, concat_part=2, concat_total=3),
        make_decision(3, deciding_account=None, results=[]),
        make_decision(4, rule_id="loan-spam"),
        make_decision(5, concat_ref=7, concat_total=3, parts=[10, 0, 12]),  # a whole message
        make_decision(6, fingerprint="5eed000000c0ffee"),  # its text's, its campaign
    ]
    received, traces = decode_records(await forwarded(decisions=sent))
    assert traces == []
    # the structs the dispatcher made, field for field, for the master's writer
    assert [msgspec.to_builtins(d) for d in received] == [msgspec.to_builtins(d) for d in sent]
    assert [decision_row(d, 4) for d in received] == [decision_row(d, 4) for d in sent]
    # untracked by the garbage collector (Decision's gc=False), its results too
    assert not any(gc.is_tracked(d) for d in received)
    assert not any(gc.is_tracked(r) for d in received for r in d.results)


async def test_trace_events_cross_the_control_channel_unchanged():
    event = TraceEvent(
        "m-9", 1_700_000_000_000_001, "answered", "ne->smps", "smsc1", "8613800138000",
        "8613900000001", "13800138000", "+8613900000001", account="antispam", status=0x66,
        verdict="block", latency_ms=1.25, pdu_hex="00000010", fields={"esm_class": 0},
    )  # fmt: skip
    decisions, events = decode_records(await forwarded(events=[event]))
    assert decisions == []
    assert events == [event]  # for the writer and for live watchers alike
