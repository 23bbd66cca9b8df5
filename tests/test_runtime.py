"""The worker-per-core runtime with real processes: a master started as
`python -m smps.runtime` with 2 workers, a simulated SMSC with 2 binds and
NEs on loopback sockets. Every test checks that each original got exactly one
answer (none duplicated)."""

import asyncio
import contextlib
import json
import os
import signal
import struct
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from smps._native.pdu import Status
from smps.runtime.control_socket import request
from smps.sim.smsc import SimSmsc
from tests.helpers import until
from tests.nodes import REPO, RunNode, sections
from tests.peers import (
    Ne,
    allow,
    bind,
    bind_status,
    closed_by_server,
    connect_raw,
    hold,
    raw_exchange,
)

PASSWORDS = {"antispam": "pw1", "fraud": "pw2", "audit": "pw3"}


class Node(RunNode):
    """`python -m smps.runtime` (the master of `smps run`), its database under tmp_path."""

    command = ("smps.runtime",)

    def __init__(
        self, tmp_path: Path, smsc_port: int, placement: str, accounts, policy=None, server=None
    ):
        super().__init__(
            tmp_path,
            sections(
                tmp_path,
                smsc_port,
                server={"listen": "127.0.0.1:0", "placement": placement, **(server or {})},
                ne_accounts=accounts,
                policy=policy or {},
            ),
        )

    def metrics(self) -> dict[str, float]:
        samples = {}
        for line in self.metrics_text().splitlines():
            if line.startswith("smps_"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def worker_of(self, account: str) -> dict:
        return next(w for w in self.status()["workers"] if w["ne_binds"].get(account))


@contextlib.asynccontextmanager
async def running(tmp_path, placement="balanced", accounts=None, policy=None, server=None):
    sim = SimSmsc(window=5000, response_timeout=30)
    port = await sim.start()
    accounts = accounts or [
        {"system_id": name, "password": pw, "max_binds": 2} for name, pw in PASSWORDS.items()
    ]
    node = Node(tmp_path, port, placement, accounts, policy, server)
    nes: list[Ne] = []

    async def add_ne(system_id, binds=1, expect=None, **options):
        ne = Ne(node.smpp_port, system_id, PASSWORDS.get(system_id, "pw"), binds=binds, **options)
        ne.client.start()
        nes.append(ne)
        expected = binds if expect is None else expect
        await until(lambda: node.status()["ne_binds"].get(system_id, 0) >= expected)
        return ne

    try:
        await node.start()
        await sim.wait_bound(2)
        yield sim, node, add_ne
    finally:
        for ne in nes:
            await ne.client.stop()
        await node.stop()
        await sim.stop()


async def settle(sim, nes):
    """Send probes until one reaches every NE: the workers have told each other
    which accounts they hold (announcements travel asynchronously)."""

    def reached_all(before):
        return all(len(ne.received) > b for ne, b in zip(nes, before, strict=True))

    for _ in range(200):
        before = [len(ne.received) for ne in nes]
        number = sim.send_deliver(destination_addr=b"probe")
        await until(lambda n=number, b=before: n in sim.answers or reached_all(b))
        await asyncio.sleep(0.02)
        if reached_all(before):
            return
    raise AssertionError("the mesh never carried a probe to every NE")


def copies_of(ne, count_from=0):
    return [pdu for pdu in ne.received[count_from:] if b"probe" not in pdu]


@pytest.mark.parametrize("placement", ["balanced", "reuseport"])
async def test_every_original_reaches_every_account_once(tmp_path, placement):
    async with running(tmp_path, placement) as (sim, node, add_ne):
        nes = [await add_ne(name) for name in PASSWORDS]
        await settle(sim, nes)
        sent_before = sim.sent
        numbers = [sim.send_deliver(short_message=b"m%d" % i) for i in range(300)]
        await until(lambda: all(n in sim.answers for n in numbers))
        await until(lambda: all(len(copies_of(ne)) >= 300 for ne in nes))
        assert sim.answered == sim.sent and sim.duplicates == 0
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        for ne in nes:
            assert len(copies_of(ne)) == 300  # every account, exactly once each
        assert len({s for s in sim.bound_sessions}) == 2  # one bind per worker
        await until(lambda: node.metrics().get("smps_originals_received_total", 0) >= sim.sent)
        counts = node.metrics()
        assert counts["smps_originals_received_total"] == sim.sent
        assert counts['smps_forwarded_copies_total{direction="out"}'] > 0
        assert sim.sent - sent_before == 300
    assert node.process.returncode == 0


async def test_balanced_placement_spreads_binds_and_holds_max_binds(tmp_path):
    accounts = [
        {"system_id": "antispam", "password": "pw1", "max_binds": 2},
        {"system_id": "fraud", "password": "pw2", "max_binds": 4},
    ]
    async with running(tmp_path, accounts=accounts) as (_sim, node, add_ne):
        await add_ne("fraud", binds=2)
        workers = node.status()["workers"]
        assert [w["ne_binds"].get("fraud") for w in workers] == [1, 1]
        # max_binds 2 holds across both workers: the third bind is refused.
        crowd = await add_ne("antispam", binds=3, expect=2)
        await until(lambda: crowd.client.bind_failures >= 1)
        assert node.status()["ne_binds"]["antispam"] == 2


async def test_bind_lockout_holds_across_workers(tmp_path):
    """Failed binds on one worker lock the (address, system_id) pair out on the
    other too: the master keeps the node's lockouts and pushes them to every worker."""
    accounts = [
        {"system_id": "antispam", "password": "pw1", "max_binds": 4, "allowed_ips": ["127.0.0.0/8"]}
    ]
    server = {"auth_failure_delay": "100ms", "auth_lockout_failures": 3}
    async with running(tmp_path, accounts=accounts, server=server) as (_sim, node, _add_ne):
        port = node.smpp_port
        clients = []

        def binds_by_worker():
            return [w["ne_binds"].get("antispam", 0) for w in node.status()["workers"]]

        try:
            clients.append(await asyncio.to_thread(bind, port, source="127.0.0.2"))
            await until(lambda: binds_by_worker() == [1, 0])
            # Balanced placement sends the next antispam binds to worker 1, the guesses too.
            for _ in range(3):
                status = await asyncio.to_thread(bind_status, port, password="guess")
                assert status == Status.RBINDFAIL
            clients.append(await asyncio.to_thread(bind, port, source="127.0.0.2"))
            await until(lambda: binds_by_worker() == [1, 1])
            # The next bind goes to worker 0, which saw none of the failures: still locked out.
            assert await asyncio.to_thread(bind_status, port) == Status.RBINDFAIL
            clients.append(await asyncio.to_thread(bind, port, source="127.0.0.3"))
            await until(lambda: binds_by_worker() == [2, 1])
        finally:
            for client in clients:
                client.disconnect()
        assert "127.0.0.1: locked out as 'antispam' on every worker" in node.log_text()


# Timers far beyond the socket reads below: what answers or closes is not them.
PATIENT = {"bind_timeout": "60s", "first_pdu_timeout": "60s"}


@pytest.mark.parametrize("placement", ["balanced", "reuseport"])
async def test_bad_first_command_length_gets_generic_nack(tmp_path, placement):
    """Answered by the master as it peeks (balanced) or by the worker's session
    (reuseport), as soon as the 4 length octets are in."""
    async with running(tmp_path, placement, server=PATIENT) as (_sim, node, _add_ne):
        for payload, sequence in [
            (struct.pack(">I", 0xFFFFFFFF), 0),
            (struct.pack(">I", 2**31), 0),
            (struct.pack(">I", 8), 0),
            (struct.pack(">IIII", 2**31, 0x09, 0, 77), 77),  # a whole header: its sequence
        ]:
            pdus, closed = await asyncio.to_thread(raw_exchange, node.smpp_port, payload, timeout=5)
            assert closed
            assert [(p.command_id, p.command_status, p.sequence) for p in pdus] == [
                (0x80000000, Status.RINVCMDLEN, sequence)
            ]
        assert await asyncio.to_thread(bind_status, node.smpp_port) == Status.ROK


async def test_unbound_connection_flood_is_capped(tmp_path):
    """Slow connections beyond server.max_unbound_per_address are closed at once
    by the master; a bind from another address is placed while the cap is full."""
    accounts = [{"system_id": "antispam", "password": "pw1", "allowed_ips": ["127.0.0.0/8"]}]
    server = {"max_unbound_per_address": 4, **PATIENT}
    async with running(tmp_path, accounts=accounts, server=server) as (_sim, node, _add_ne):
        junk = []
        try:
            for _ in range(10):
                junk.append(await asyncio.to_thread(connect_raw, node.smpp_port))
            for sock in junk[4:]:
                assert await asyncio.to_thread(closed_by_server, sock)
            for sock in junk[:4]:  # still being peeked at, open
                assert not await asyncio.to_thread(closed_by_server, sock, 0.01)
            status = await asyncio.to_thread(bind_status, node.smpp_port, source="127.0.0.2")
            assert status == Status.ROK
            refused = 'smps_ne_connections_refused_total{reason="max_unbound_per_address"}'
            assert node.metrics()[refused] == 6
        finally:
            for sock in junk:
                sock.close()


async def test_password_changed_at_runtime(tmp_path):
    async with running(tmp_path) as (_sim, node, add_ne):
        old = await add_ne("fraud")
        node.sections["ne_accounts"][1]["password"] = "changed"
        node.write()
        assert request(node.config.node.state_dir, {"cmd": "reload"})["result"] == "applied"
        fresh = Ne(node.smpp_port, "fraud", "changed")
        stale = Ne(node.smpp_port, "fraud", "pw2")
        for ne in (fresh, stale):
            ne.client.start()
        try:
            await until(lambda: node.status()["ne_binds"].get("fraud") == 2)
            # The node counts a bind when it answers it; the client, once it has read
            # the answer: wait for both sides.
            await until(lambda: fresh.client.binds_up == 1 and stale.client.bind_failures >= 1)
            assert stale.client.binds_up == 0
            assert old.client.binds_up == 1  # the bind made before the change stays up
        finally:
            for ne in (fresh, stale):
                await ne.client.stop()


async def test_worker_killed_under_load(tmp_path):
    """The worker holding the silent NE dies: its peer's forwarded copies turn
    NONE at once (long before the 30 s verdict timeout), the worker comes back,
    and the counters do not go back."""
    accounts = [
        {"system_id": name, "password": pw, "window": 1000} for name, pw in PASSWORDS.items()
    ]
    policy = {"timeout": "30s"}
    async with running(tmp_path, accounts=accounts, policy=policy) as (sim, node, add_ne):
        talker = await add_ne("antispam")
        silent = await add_ne("fraud", verdict=hold)
        await settle_two(sim, talker, silent)
        victim = node.worker_of("fraud")
        assert victim["index"] != node.worker_of("antispam")["index"]
        numbers = [sim.send_deliver(short_message=b"k%d" % i) for i in range(200)]
        await until(lambda: len(copies_of(silent)) >= 200)
        await until(lambda: node.metrics().get("smps_originals_received_total", 0) >= sim.sent)
        received_before = node.metrics()["smps_originals_received_total"]
        os.kill(victim["pid"], signal.SIGKILL)
        # Every original is settled: answered (the survivor's, its forwarded
        # copies turned NONE) or lost with the dead worker's SMSC connection.
        await until(lambda: sim.answered + sim.missing >= sim.sent, timeout=10)
        assert sim.duplicates == 0
        answered = [n for n in numbers if n in sim.answers]
        assert answered, "the surviving worker answered nothing"
        assert sim.missing > 0, "the dead worker's originals cannot have been answered"
        await until(lambda: all(w["up"] for w in node.status()["workers"]))
        await until(lambda: node.status()["workers"][victim["index"]]["pid"] != victim["pid"])
        status = node.status()
        assert status["workers"][victim["index"]]["restarts"] == 1
        await sim.wait_bound(2)
        await until(lambda: node.status()["ne_binds"].get("fraud") == 1)
        counts = node.metrics()
        assert counts["smps_originals_received_total"] >= received_before
        assert counts[f'smps_worker_restarts_total{{worker="{victim["index"]}"}}'] == 1
        # A new original still reaches both accounts, and the new worker carries the
        # silent NE's answer back: the original is answered long before the 30 s timeout.
        silent.verdict = allow
        await settle_two(sim, talker, silent)
        marks = len(talker.received), len(silent.received)
        number = sim.send_deliver(short_message=b"after the restart")
        await until(lambda: number in sim.answers, timeout=10)
        assert sim.answers[number][0] == Status.ROK
        assert len(talker.received) > marks[0] and len(silent.received) > marks[1]


async def settle_two(sim, first, second):
    await settle(sim, [first, second])


async def test_graceful_stop_under_load_loses_no_response(tmp_path):
    async with running(tmp_path) as (sim, node, add_ne):
        nes = [await add_ne(name, delay=0.3) for name in PASSWORDS]
        await settle(sim, nes)
        marks = [len(copies_of(ne)) for ne in nes]
        numbers = [sim.send_deliver(short_message=b"g%d" % i) for i in range(300)]
        # Every original has been read by a worker (its copies reached the NEs)...
        await until(
            lambda: all(len(copies_of(ne)) - m >= 300 for ne, m in zip(nes, marks, strict=True))
        )
        assert not all(n in sim.answers for n in numbers)  # ...and most wait for verdicts
        assert await node.stop() == 0
        assert all(n in sim.answers for n in numbers)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert sim.duplicates == 0 and sim.missing == 0
        assert "stopped" in node.log_text()


async def test_status_command_prints_workers(tmp_path):
    async with running(tmp_path) as (_sim, node, add_ne):
        await add_ne("audit")
        await until(lambda: node.status()["smsc_binds"].get("smsc1") == 2)  # from 1 s snapshots
        result = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from smps import config; from smps.runtime.status import show;"
                f"sys.exit(show(config.load({str(node.path)!r})))",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        assert "role active" in result.stdout
        assert "#0 pid" in result.stdout and "#1 pid" in result.stdout
        assert "audit:1" in result.stdout and "smsc1:2" in result.stdout
        health = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{node.report['http_port']}/health").read()
        )
        assert health["workers"] == {"up": 2, "configured": 2}


async def test_graceful_stop_with_traffic_still_arriving_answers_everything(tmp_path):
    """SIGTERM while the SMSC keeps sending: what was in flight gets its verdict,
    and what arrives while the node stops is answered ESME_RTHROTTLED (the SMSC
    sends it again), so the SMSC is left with no original unanswered."""
    async with running(tmp_path) as (sim, node, add_ne):
        nes = [await add_ne(name, delay=0.05) for name in PASSWORDS]
        await settle(sim, nes)
        sending = asyncio.create_task(sim.run(rate=500, duration=30))
        await until(lambda: sim.answered >= 500)
        assert await node.stop() == 0
        sim.stop_run()
        summary = await sending
        assert summary["missing"] == 0 and summary["duplicates"] == 0
        assert summary["sent"] == summary["answered"] > 500
        statuses = {status for status, *_ in sim.answers.values()}
        assert statuses <= {Status.ROK, Status.RTHROTTLED}
