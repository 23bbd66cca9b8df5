"""Decisions from a worker's RecordForwarder reach the master whole: every field, in
the same database rows, over a real control socket pair."""

import socket

import msgspec

from smps.proxy.records import Decision
from smps.runtime.control import ControlChannel
from smps.runtime.records import RECORDS, RecordForwarder, decode_records
from smps.store.writer import decision_rows
from tests.store_db import make_decision


async def test_decisions_cross_the_control_channel_unchanged():
    worker_end, master_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker = await ControlChannel.open(worker_end)
    master = await ControlChannel.open(master_end)
    try:
        sent = [
            make_decision(1),
            make_decision(2, verdict="allow", concat_ref=7, concat_part=2, concat_total=3),
            make_decision(3, deciding_account=None, results=[]),
        ]
        forwarder = RecordForwarder(worker)
        for decision in sent:
            forwarder.put(decision)
        forwarder.flush()
        message = await master.receive()
    finally:
        await worker.close()
        await master.close()
    assert message is not None and message["t"] == RECORDS
    received, traces = decode_records(message)
    assert traces == []
    assert all(isinstance(d, Decision) for d in received)
    assert [msgspec.structs.asdict(d) for d in received] == [
        msgspec.structs.asdict(d) for d in sent
    ]
    # The rows written (results as JSON objects) are those of the original decisions.
    assert decision_rows(received, 5) == decision_rows(sent, 5)
