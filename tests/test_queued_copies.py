"""Copies that wait in an account's queue (window full, rate limit) while their
original's deadline passes, its verdict arrives, or a new bind joins.

Regression tests for the hardening issue: a queued copy at its original's
deadline used to crash the deadline tick (its original had been freed), after
which no deadline of the worker ever fired again; a bind joining an account
with queued copies got them before its bind_resp.
"""

import asyncio

import smpplib.client

from smps._native.pdu import Status
from tests.helpers import until
from tests.peers import hold
from tests.test_proxy import ACCOUNTS, BLOCK, ManualClock, proxy


def block(_view):
    return BLOCK


async def test_deadline_with_copies_queued_answers_every_original(make_config):
    """A silent NE with a small window: most copies wait in the account's queue
    when the deadline passes. Every original is answered (fail-open) exactly
    once, nothing stays in flight, and the tick keeps working afterwards."""
    clock = ManualClock()
    accounts = [{**ACCOUNTS[0], "window": 8}]
    async with proxy(make_config, accounts=accounts, clock=clock) as (sim, node, add_ne):
        silent = await add_ne("antispam", "pw1", hold)
        numbers = [sim.send_deliver() for _ in range(300)]
        lane = node.dispatcher.lanes["antispam"]
        await until(lambda: len(silent.held) == 8 and lane.waiting == 292)
        clock.advance(2.1)
        await until(lambda: len(sim.answers) == 300)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert node.dispatcher.in_flight == 0
        assert lane.waiting == 0 and not lane.queue
        assert node.dispatcher.stats.queue_dropped == 292
        assert node.dispatcher.stats.internal_errors == 0
        # The tick still runs: a later original waits for its own deadline again.
        silent.release(Status.ROK)  # late answers free the window
        await until(lambda: node.dispatcher.stats.late_answers == 8)
        later = sim.send_deliver()
        await until(lambda: len(silent.held) == 1)
        clock.advance(2.1)
        await until(lambda: later in sim.answers)
        assert sim.answers[later][0] == Status.ROK
        assert sim.duplicates == 0 and sim.missing == 0


async def test_ne_killed_while_copies_queue(make_config):
    """The NE drops with copies outstanding and queued: the outstanding ones
    count as NONE at once, the queued ones at the deadline; no original is
    left unanswered or answered twice, and later traffic is not throttled."""
    clock = ManualClock()
    accounts = [{**ACCOUNTS[0], "window": 8}]
    flow = {"max_inflight": 400}
    async with proxy(make_config, accounts=accounts, clock=clock, flow=flow) as (
        sim,
        node,
        add_ne,
    ):
        silent = await add_ne("antispam", "pw1", hold)
        numbers = [sim.send_deliver() for _ in range(300)]
        await until(lambda: len(silent.held) == 8)
        await silent.client.stop()
        await until(lambda: node.ne_server.registry.count("antispam") == 0)
        clock.advance(2.1)
        await until(lambda: len(sim.answers) == 300)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert node.dispatcher.in_flight == 0
        # Every slot is free again: 400 more go through (no NE: on_no_ne allow).
        more = [sim.send_deliver() for _ in range(400)]
        await until(lambda: all(n in sim.answers for n in more))
        assert {sim.answers[n][0] for n in more} == {Status.ROK}
        assert node.dispatcher.stats.throttled == 0
        assert node.dispatcher.stats.internal_errors == 0
        assert sim.duplicates == 0


async def test_queued_copies_withdrawn_once_decided(make_config):
    """A block from one account decides the original: its copies still queued
    for an enforcing account would change nothing, so they are never sent and
    the original completes without waiting for its deadline."""
    accounts = [{**ACCOUNTS[0], "window": 1}, ACCOUNTS[1]]
    async with proxy(make_config, accounts=accounts) as (sim, node, add_ne):
        slow = await add_ne("antispam", "pw1", hold)
        await add_ne("fraud", "pw2", block)
        numbers = [sim.send_deliver() for _ in range(5)]
        await until(lambda: len(sim.answers) == 5)
        assert {sim.answers[n][0] for n in numbers} == {BLOCK}
        dispatcher = node.dispatcher
        await until(lambda: dispatcher.stats.withdrawn == 4)
        assert dispatcher.lanes["antispam"].waiting == 0
        assert dispatcher.in_flight == 1  # the first still waits for antispam's answer
        slow.release(Status.ROK)
        await until(lambda: dispatcher.in_flight == 0)
        await asyncio.sleep(0.05)
        assert len(slow.received) == 1  # the withdrawn copies never went out
        assert sim.duplicates == 0


async def test_monitor_copies_still_sent_after_the_verdict(make_config):
    """A monitor account sees what it can: its queued copies stay queued after
    the verdict and go out as its window frees, before the deadline."""
    accounts = [{**ACCOUNTS[0], "window": 1, "mode": "monitor"}, ACCOUNTS[1]]
    async with proxy(make_config, accounts=accounts) as (sim, node, add_ne):
        monitor = await add_ne("antispam", "pw1", hold)
        await add_ne("fraud", "pw2", block)
        [sim.send_deliver() for _ in range(3)]
        await until(lambda: len(sim.answers) == 3)
        for seen in (1, 2, 3):
            await until(lambda seen=seen: len(monitor.held) == 1 and len(monitor.received) == seen)
            monitor.release(Status.ROK)
        await until(lambda: node.dispatcher.in_flight == 0)
        assert node.dispatcher.stats.withdrawn == 0
        assert sim.duplicates == 0


async def test_bind_resp_precedes_queued_copies(make_config):
    """A bind that joins an account with queued copies gets its bind_resp first
    (strict clients drop a session that sends anything before it): smpplib, an
    independent SMPP implementation, is the joining NE."""
    accounts = [{**ACCOUNTS[0], "window": 1}]
    async with proxy(make_config, accounts=accounts) as (sim, node, add_ne):
        await add_ne("antispam", "pw1", hold)
        [sim.send_deliver() for _ in range(5)]
        lane = node.dispatcher.lanes["antispam"]
        await until(lambda: lane.waiting == 4)

        def bind_and_read():
            client = smpplib.client.Client(
                "127.0.0.1", node.smpp_port, timeout=5, allow_unknown_opt_params=True
            )
            client.connect()
            try:
                response = client.bind_transceiver(system_id="antispam", password="pw1")
                following = client.read_pdu()
                return response.command, following.command
            finally:
                client.disconnect()

        first, second = await asyncio.to_thread(bind_and_read)
        assert first == "bind_transceiver_resp"
        assert second == "deliver_sm"  # then the copies that waited for a window
