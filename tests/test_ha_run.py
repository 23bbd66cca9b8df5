"""HA wired into `smps run`: real processes, roles driven by `smps ha notify`.

A node in keepalived mode starts STANDBY (no SMSC bind, no NE listener),
binds once told MASTER, and on BACKUP answers every original in flight before
it unbinds. Two nodes against one simulated SMSC measure the failover time:
from the last answer of node A to the first answer of node B.
SQLite is enough here: without the lease, keepalived alone decides the role.
"""

import asyncio
import contextlib
import socket
import time

from smps._native.pdu import Status
from smps.sim.smsc import SimSmsc
from tests.helpers import until
from tests.nodes import PASSWORD, HaNode
from tests.peers import Ne


def refuses_connections(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return True
        # Connected: refused only if SMPS closes it at once (no listener behind it).
        sock.settimeout(0.5)
        with contextlib.suppress(TimeoutError):
            return sock.recv(1) == b""
        return False


async def test_keepalived_drives_the_role_of_smps_run(tmp_path):
    sim = SimSmsc(window=5000, response_timeout=30)
    node = HaNode(tmp_path, await sim.start())
    ne: Ne | None = None
    try:
        await node.start()
        smpp_port = node.report["smpp_port"]
        # STANDBY from the start: no SMSC bind, no NE listener, healthy as a standby.
        assert node.report["ha"]["role"] == "standby"
        # The workers' first statistics reached the master: sent a second after they
        # came up, so after any SMSC bind they would have started, were they active.
        await until(lambda: "smps_originals_received_total" in node.metrics_text())
        assert 'side="smsc"' not in node.metrics_text()  # no SMSC client in any worker
        assert sim.bound_sessions == []
        assert refuses_connections(smpp_port)
        code, health = node.health()
        assert code == 200 and health["ha"]["role"] == "standby"
        # keepalived has not spoken since the node started: the check fails.
        check = node.smps("ha", "check")
        assert check.returncode == 1 and "no state from keepalived" in check.stderr

        await node.notify("MASTER")
        await sim.wait_bound(2)  # one bind per worker
        await until(lambda: 'side="smsc"' in node.metrics_text())  # what standby lacked
        assert node.smps("ha", "check").returncode == 0
        ne = Ne(smpp_port, "antispam", PASSWORD, binds=2, delay=1.5)
        ne.client.start()
        await until(lambda: node.status()["ne_binds"].get("antispam") == 2)
        status = node.smps("status")
        assert "HA keepalived: active (keepalived MASTER)" in status.stdout, status.stdout

        # BACKUP under load: every original in flight is answered, then the binds go.
        numbers = [sim.send_deliver(short_message=b"h%d" % i) for i in range(300)]
        await until(lambda: len(ne.received) >= 300)
        assert not any(n in sim.answers for n in numbers)  # all wait for the NE (1.5 s)
        await node.notify("BACKUP")
        await until(lambda: not sim.bound_sessions)
        assert all(n in sim.answers for n in numbers)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert sim.missing == 0 and sim.duplicates == 0
        await until(lambda: ne.client.binds_up == 0)
        assert refuses_connections(smpp_port)
        report = node.status()
        assert report["ha"]["role"] == "standby" and report["ne_binds"] == {}

        # FAULT: /health says so with 503; the vrrp_script check still passes
        # (it judges the node, not its role), so keepalived can recover.
        await node.notify("FAULT")
        await until(lambda: node.health()[0] == 503)
        code, health = node.health()
        assert health["status"] == "fault" and "keepalived FAULT" in health["reason"]
        assert node.smps("ha", "check").returncode == 0
        metrics = node.metrics_text()
        assert 'smps_ha_role{role="fault"} 1.0' in metrics
        assert 'smps_ha_transitions_total{role="active"} 1.0' in metrics

        # MASTER again binds again.
        await node.notify("MASTER")
        await sim.wait_bound(2)
        assert node.health()[0] == 200
    finally:
        if ne is not None:
            await ne.client.stop()
        if node.process is not None:
            assert await node.stop() == 0
        await sim.stop()
    # No node running: the check fails.
    assert node.smps("ha", "check").returncode == 1


async def test_failover_between_two_nodes(tmp_path):
    """A active, B standby, both bound to one SMSC in turn; traffic all along.
    keepalived's moves are played by notify: A BACKUP, then (once A has left
    the SMSC, as the VIP would move) B MASTER."""
    sim = SimSmsc(window=5000, response_timeout=30)
    smsc_port = await sim.start()
    a = HaNode(tmp_path / "a", smsc_port, name="a")
    b = HaNode(tmp_path / "b", smsc_port, name="b")
    nes: list[Ne] = []
    sent_at: dict[int, float] = {}
    on_a: set[int] = set()
    sending = True

    async def traffic(a_sessions):
        while sending:
            if sim.bound_sessions:
                session = sim._pick_session()
                now = time.monotonic()
                number = sim.send_deliver(short_message=b"f", session=session)
                sent_at[number] = now
                if session in a_sessions:
                    on_a.add(number)
            await asyncio.sleep(0.002)

    try:
        await asyncio.gather(a.start(), b.start())
        assert a.report["smpp_port"] != b.report["smpp_port"]
        await a.notify("MASTER")
        await sim.wait_bound(2)
        a_sessions = set(sim.bound_sessions)
        for node in (a, b):
            ne = Ne(node.report["smpp_port"], "antispam", PASSWORD, binds=2)
            ne.client.start()
            nes.append(ne)
        await until(lambda: a.status()["ne_binds"].get("antispam") == 2)
        sender = asyncio.create_task(traffic(a_sessions))
        await until(lambda: len(sim.answers) >= 200)

        await a.notify("BACKUP")
        await until(lambda: not sim.bound_sessions)
        await b.notify("MASTER")
        await until(lambda: any(n not in on_a for n in sim.answers), timeout=10)
        await until(lambda: sum(1 for n in sim.answers if n not in on_a) >= 200)
        sending = False
        await sender
        await until(lambda: sim.answered + sim.missing >= sim.sent)

        def answered_at(number):
            return sent_at[number] + sim.answers[number][1]

        last_a = max(answered_at(n) for n in sim.answers if n in on_a)
        first_b = min(answered_at(n) for n in sim.answers if n not in on_a)
        print(
            f"\nfailover: {(first_b - last_a) * 1000:.0f} ms from the last answer of A to the "
            f"first answer of B (notify BACKUP to A, wait for its unbind, notify MASTER to B); "
            f"sent {sim.sent}, answered {sim.answered} (refused while A unbound: "
            f"{sum(1 for st, _ in sim.answers.values() if st != Status.ROK)}), "
            f"unanswered {sim.missing}, duplicates {sim.duplicates}"
        )
        assert first_b > last_a  # never two nodes answering at once
        assert sim.duplicates == 0
        # The only refusals are ones the SMSC sends again: "throttled" for originals
        # that reached A while it stood down, "incorrect bind status" once it had unbound.
        statuses = {status for status, _rtt in sim.answers.values()}
        assert statuses <= {Status.ROK, Status.RTHROTTLED, Status.RINVBNDSTS}
        assert b.status()["ne_binds"].get("antispam") == 2
        assert a.status()["ha"]["role"] == "standby" and b.status()["ha"]["role"] == "active"
    finally:
        sending = False
        for ne in nes:
            await ne.client.stop()
        for node in (a, b):
            if node.process is not None:
                await node.stop()
        await sim.stop()
