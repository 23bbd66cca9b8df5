# ruff: noqa: F811  (the mysql_url fixture imported from tests.test_ha)
"""Failover with the lease on, through real `smps run` processes and a private mariadbd.

Two nodes share one database (a mariadbd of the test's own, on its own port and
datadir) and one simulated SMSC that re-sends, as a real SMSC does, every
original that got no response once a node is bound again. keepalived is played
by the test: node B hears it through its notify FIFO, node A through
`smps ha notify`. What must hold:

- graceful failover (A told MASTER, then B BACKUP): A waits for the lease
  until B has answered what it had in flight and given the lease back;
- kill -9 of the active node A: B, told MASTER at once, becomes active only
  after A's lease has expired (by the database's clock), the SMSC's binds move
  to B, and every original gets exactly one answer overall (those in flight on
  A are re-sent by the SMSC and answered by B);
- A restarted and told a stale MASTER waits for the lease: never two active nodes;
- the database dies under the active node: it steps down before its lease can expire.

The failover times (last answer from one node to the first from the other) are
printed: `pytest tests/test_ha_failover.py -s`.
"""

import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

from smps._native.pdu import Status
from smps.ha.controller import HaController, Role
from smps.ha.keepalived import parse_notice
from smps.ha.lease import DbLease, holder_id
from smps.sim.smsc import SimSmsc, SimSmscSession
from smps.store.db import Store
from tests.helpers import until
from tests.nodes import PASSWORD, HaNode
from tests.peers import Ne
from tests.store_db import mariadb_connect
from tests.test_ha import Recorder, healthy, lease_config, mysql_url, settle  # noqa: F401

pytestmark = pytest.mark.mariadb

NE_DELAY = 0.1  # the NEs answer copies this late, so originals are in flight at any moment


async def make_database(server) -> str:
    conn = await mariadb_connect(port=server.port)
    async with conn.cursor() as cursor:
        await cursor.execute("CREATE DATABASE smps CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    conn.close()
    return server.url("smps")


async def lease_row(server) -> tuple[str, int, int]:
    """(holder, epoch, expires_us) of the lease, as stored; expires_us is UTC wall clock."""
    conn = await mariadb_connect(port=server.port, database="smps")
    try:
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT holder, epoch, expires_us FROM ha_lease WHERE name='smps'")
            holder, epoch, expires_us = await cursor.fetchone()
    finally:
        conn.close()
    return holder, int(epoch), int(expires_us)


def lease_node(directory: Path, smsc_port: int, name: str, url: str, ttl: float) -> HaNode:
    return HaNode(
        directory,
        smsc_port,
        name=name,
        database={"url": url},
        ha={
            "mode": "keepalived",
            "initial_role": "standby",
            "notify_fifo": str(directory / "keepalived.fifo"),
            "lease": {"enabled": True, "ttl": f"{ttl}s"},
        },
    )


class Fifo:
    """keepalived's end of a node's vrrp_notify_fifo: held open, one line per state change."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    async def open(self) -> None:
        async def opened() -> bool:
            with contextlib.suppress(FileNotFoundError, OSError):
                # ENXIO until the node has opened its reading end
                self.fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
                return True
            return False

        async with asyncio.timeout(10):
            while not await opened():
                await asyncio.sleep(0.02)

    def say(self, state: str, priority: int = 100) -> None:
        os.write(self.fd, f'INSTANCE "SMPS" {state} {priority}\n'.encode())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Traffic:
    """Originals from the SMSC every 2 ms on whichever session is bound (none: none sent)."""

    def __init__(self, sim: SimSmsc):
        self.sim = sim
        self.sending = True
        self.task = asyncio.create_task(self._send())

    async def _send(self) -> None:
        while self.sending:
            if self.sim.bound_sessions:
                self.sim.send_deliver(short_message=b"f")
            await asyncio.sleep(0.002)

    async def stop(self) -> None:
        self.sending = False
        await self.task


def answered_on(sim: SimSmsc, sessions: set[SimSmscSession]) -> list[float]:
    """Monotonic times of the answers that came on ``sessions``."""
    return sorted(at for session, at in sim.answered_on.values() if session in sessions)


async def new_binds(sim: SimSmsc, before: set[SimSmscSession], count: int = 2) -> set:
    await until(lambda: len(set(sim.bound_sessions) - before) >= count)
    return set(sim.bound_sessions) - before


def kill_node(node: HaNode) -> None:
    """kill -9 the master and every worker, as a crashed host would leave them."""
    report = node.status()
    pids = [report["pid"], *(w["pid"] for w in report["workers"] if w["pid"])]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    node.process.wait(timeout=10)


async def test_kill_9_with_the_lease_fails_over_after_expiry_and_loses_nothing(
    private_mariadb, tmp_path
):
    ttl = 2.0
    url = await make_database(private_mariadb)
    sim = SimSmsc(window=5000, response_timeout=30, resend_after=0.2)
    smsc_port = await sim.start()
    a = lease_node(tmp_path / "a", smsc_port, "a", url, ttl)
    b = lease_node(tmp_path / "b", smsc_port, "b", url, ttl)
    fifo_b = Fifo(b.dir / "keepalived.fifo")
    nes: list[Ne] = []
    traffic: Traffic | None = None
    try:
        # One after the other: two nodes storing the file's NE accounts at once can
        # collide on the unique key, and the loser exits (systemd restarts it).
        await a.start()
        await b.start()
        await fifo_b.open()

        # B active first, through its notify FIFO.
        fifo_b.say("MASTER")
        on_b1 = await new_binds(sim, set())
        for node in (a, b):
            ne = Ne(node.report["smpp_port"], "antispam", PASSWORD, binds=2, delay=NE_DELAY)
            ne.client.start()
            nes.append(ne)
        await until(lambda: b.status()["ne_binds"].get("antispam") == 2)
        traffic = Traffic(sim)
        await until(lambda: len(answered_on(sim, on_b1)) >= 200)

        # Graceful: keepalived promotes A a moment before it demotes B. A waits for the
        # lease until B has answered its originals in flight, unbound and given the lease back.
        await a.notify("MASTER")
        code, health = a.health()
        assert code == 503 and health["ha"]["lease"]["waiting"], health
        fifo_b.say("BACKUP")
        on_a = await new_binds(sim, on_b1)
        assert not set(sim.bound_sessions) & on_b1
        await until(lambda: len(answered_on(sim, on_a)) >= 200)
        graceful = answered_on(sim, on_a)[0] - answered_on(sim, on_b1)[-1]
        holder, epoch_a, _expires = await lease_row(private_mariadb)
        assert epoch_a == 2 and holder.startswith("a@")
        assert a.status()["ha"]["lease"]["held"]

        # kill -9 A (master and workers); keepalived tells B MASTER at once.
        resent_before_kill = sim.resent
        kill_node(a)
        fifo_b.say("MASTER")
        # Once the SMSC has seen A's connections close it has read every answer A wrote
        # before dying, and B cannot be bound yet (it waits for A's lease): what is
        # unanswered now is exactly what A left in flight.
        await until(lambda: not set(sim.bound_sessions) & on_a)
        in_flight_on_a = sim.sent - sim.answered - sim.missing
        last_a = answered_on(sim, on_a)[-1]
        a_expires_us = None
        b_waited = False
        async with asyncio.timeout(3 * ttl):
            while True:  # until B is active: B's /health, and A's lease as stored
                holder, epoch, expires_us = await lease_row(private_mariadb)
                if holder.startswith("a@"):
                    a_expires_us = expires_us
                code, health = b.health()
                if health["ha"]["role"] == "active":
                    break
                b_waited = b_waited or (code == 503 and health["ha"]["lease"]["waiting"])
                await asyncio.sleep(0.05)
        assert b_waited, "B never reported waiting for the lease"
        transition = health["ha"]["last_transition"]
        assert transition["at"] * 1e6 >= a_expires_us, (transition, a_expires_us)
        holder, epoch, _expires = await lease_row(private_mariadb)
        assert holder.startswith("b@") and epoch == epoch_a + 1
        assert health["ha"]["lease"]["epoch"] == epoch

        # The SMSC's binds move to B; what was in flight on A comes again and B answers it.
        on_b2 = await new_binds(sim, on_b1 | on_a)
        assert set(sim.bound_sessions) == on_b2
        await until(lambda: len(answered_on(sim, on_b2)) >= 200)
        kill_9 = answered_on(sim, on_b2)[0] - last_a

        # A restarts and hears a stale MASTER: it waits for the lease; never two active.
        await a.start()
        await a.notify("MASTER")
        a_waited = False
        watch_until = time.monotonic() + 1.5 * ttl
        while time.monotonic() < watch_until:
            code_a, health_a = a.health()
            _code_b, health_b = b.health()
            roles = (health_a["ha"]["role"], health_b["ha"]["role"])
            assert roles == ("standby", "active"), (health_a, health_b)
            a_waited = a_waited or (
                code_a == 503 and "waiting for the lease" in health_a["ha"]["reason"]
            )
            await asyncio.sleep(0.05)
        assert a_waited
        assert health_a["ha"]["lease"]["holder"].startswith("b@")
        assert set(sim.bound_sessions) == on_b2

        await traffic.stop()
        await until(lambda: sim.answered + sim.missing >= sim.sent, timeout=15)
        # Every original got exactly one answer overall, and a final one: none lost,
        # none twice, none refused (those on A when it died were re-sent and answered by B).
        assert sim.missing == 0 and sim.duplicates == 0
        assert sim.answered == sim.sent == len(sim.answers)
        assert {status for status, _rtt in sim.answers.values()} == {Status.ROK}
        assert sim.resent - resent_before_kill >= in_flight_on_a > 0
        print(
            f"\nfailover with the lease (ttl {ttl:g}s), last answer from one node to the first "
            f"from the other (NEs answer in {NE_DELAY * 1000:.0f} ms): "
            f"graceful {graceful * 1000:.0f} ms, kill -9 {kill_9 * 1000:.0f} ms; "
            f"sent {sim.sent}, answered {sim.answered}, in flight on A when killed "
            f"{in_flight_on_a}, re-sent by the SMSC {sim.resent}, duplicates {sim.duplicates}"
        )
    finally:
        fifo_b.close()
        if traffic is not None:
            await traffic.stop()
        for ne in nes:
            await ne.client.stop()
        await asyncio.gather(*(node.stop() for node in (a, b) if node.process is not None))
        await sim.stop()


async def test_active_node_steps_down_before_its_lease_expires_when_the_database_dies(
    private_mariadb, tmp_path
):
    ttl = 3.0
    url = await make_database(private_mariadb)
    sim = SimSmsc(window=5000, response_timeout=30, resend_after=0.2)
    node = lease_node(tmp_path, await sim.start(), "a", url, ttl)
    ne: Ne | None = None
    traffic: Traffic | None = None
    try:
        await node.start()
        await node.notify("MASTER")
        await sim.wait_bound(2)
        ne = Ne(node.report["smpp_port"], "antispam", PASSWORD, binds=2, delay=0.05)
        ne.client.start()
        await until(lambda: node.status()["ne_binds"].get("antispam") == 2)
        traffic = Traffic(sim)
        await until(lambda: sim.answered >= 100)

        private_mariadb.kill()
        unbound_at = None
        async with asyncio.timeout(3 * ttl):
            while True:
                _code, health = node.health()
                if unbound_at is None and not sim.bound_sessions:
                    unbound_at = time.time()
                if health["ha"]["role"] != "active" and unbound_at is not None:
                    break
                await asyncio.sleep(0.02)
        transition = health["ha"]["last_transition"]
        assert transition["role"] == "standby"
        assert "lost: lease not renewed in time" in transition["reason"]
        assert health["ha"]["lease"]["error"]

        # The database back: the lease as A last renewed it, and when it stopped serving.
        # keepalived BACKUP first, so that the node does not renew its row once it can.
        await node.notify("BACKUP")
        private_mariadb.start()
        holder, epoch, expires_us = await lease_row(private_mariadb)
        assert holder.startswith("a@") and epoch == 1
        assert transition["at"] * 1e6 < expires_us
        assert unbound_at * 1e6 < expires_us, (unbound_at, expires_us)
        print(
            f"\ndatabase killed: role standby {expires_us / 1e6 - transition['at']:.2f}s and "
            f"SMSC unbound {expires_us / 1e6 - unbound_at:.2f}s before the lease (ttl {ttl:g}s) "
            f"would have expired"
        )
        # MASTER again: the node holds the lease again and serves.
        await node.notify("MASTER")
        await until(lambda: node.health()[1]["ha"]["role"] == "active", timeout=4 * ttl)
        assert node.health()[1]["ha"]["lease"]["held"]
        await sim.wait_bound(2)

        await traffic.stop()
        await until(lambda: sim.answered + sim.missing >= sim.sent, timeout=15)
        assert sim.missing == 0 and sim.duplicates == 0 and sim.answered == sim.sent
    finally:
        if traffic is not None:
            await traffic.stop()
        if ne is not None:
            await ne.client.stop()
        if node.process is not None:
            await node.stop()
        await sim.stop()


async def test_a_stalled_master_cannot_keep_its_workers_serving_past_its_lease(
    private_mariadb, tmp_path
):
    """The master renews the lease, the workers serve: if the master stalls (here SIGSTOP),
    its workers stand down by themselves at the deadline it last gave them, before the
    lease can expire and the other node take over."""
    ttl = 2.0
    url = await make_database(private_mariadb)
    sim = SimSmsc(window=5000, response_timeout=30, resend_after=0.2)
    smsc_port = await sim.start()
    a = lease_node(tmp_path / "a", smsc_port, "a", url, ttl)
    b = lease_node(tmp_path / "b", smsc_port, "b", url, ttl)
    ne: Ne | None = None
    traffic: Traffic | None = None
    master_a = None
    try:
        await a.start()
        await b.start()
        master_a = a.status()["pid"]
        await a.notify("MASTER")
        on_a = await new_binds(sim, set())
        ne = Ne(a.report["smpp_port"], "antispam", PASSWORD, binds=2, delay=NE_DELAY)
        ne.client.start()
        await until(lambda: a.status()["ne_binds"].get("antispam") == 2)
        traffic = Traffic(sim)
        await until(lambda: len(answered_on(sim, on_a)) >= 100)

        os.kill(master_a, signal.SIGSTOP)  # the master only: its workers run on
        await b.notify("MASTER")
        on_b = await new_binds(sim, on_a)
        assert not set(sim.bound_sessions) & on_a  # A's workers left before B came
        await until(lambda: len(answered_on(sim, on_b)) >= 100)
        assert answered_on(sim, on_a)[-1] < answered_on(sim, on_b)[0]

        os.kill(master_a, signal.SIGCONT)  # A's master finds its lease gone: standby
        await until(lambda: a.health()[1]["ha"]["role"] == "standby")
        assert "lease not renewed in time" in a.health()[1]["ha"]["last_transition"]["reason"]
        assert set(sim.bound_sessions) == on_b

        await traffic.stop()
        await until(lambda: sim.answered + sim.missing >= sim.sent, timeout=15)
        assert sim.missing == 0 and sim.duplicates == 0 and sim.answered == sim.sent
    finally:
        if master_a is not None:
            os.kill(master_a, signal.SIGCONT)
        if traffic is not None:
            await traffic.stop()
        if ne is not None:
            await ne.client.stop()
        await asyncio.gather(*(node.stop() for node in (a, b) if node.process is not None))
        await sim.stop()


async def test_a_demoted_holder_gives_the_lease_back_once_drained_not_a_round_later(mysql_url):
    """With ttl 30 s the lease rounds are 10 s apart: the hand-back must not wait for one."""
    store = await Store.open(mysql_url)
    ttl = 30.0
    node = Recorder("a")
    ha = HaController(
        lease_config(ttl), node, health=healthy, lease=DbLease(store.engine, holder_id("a"), ttl)
    )
    try:
        await ha.start()
        ha.notify(parse_notice("MASTER"))
        await settle(ha, lambda: ha.role == Role.ACTIVE)
        assert (await ha.lease.read()).valid
        ha.notify(parse_notice("BACKUP"))  # the round this wakes finds the node still draining
        await settle(ha, lambda: ha.role == Role.STANDBY)
        async with asyncio.timeout(ttl / 6):
            while ha.epoch is not None or (await ha.lease.read()).valid:
                await asyncio.sleep(0.05)
    finally:
        await ha.stop()
        await store.close()
