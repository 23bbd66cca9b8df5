"""20,000 originals through SMPS while the NEs misbehave at random: blocking,
slow, silent, disconnecting. The SMSC must see exactly one response each."""

import asyncio

import pytest

from smps.app import Node
from smps.sim.ne import Latency, SimNe
from smps.sim.smsc import SimSmsc

MESSAGES = 20_000

pytestmark = pytest.mark.soak  # `make soak`; `make test` leaves it out


async def test_every_original_answered_exactly_once_under_chaos(make_config, tmp_path):
    sim = SimSmsc(window=2000, response_timeout=15.0)
    smsc_port = await sim.start()
    cfg = make_config(
        node={"state_dir": str(tmp_path)},
        log={"file": ""},
        smsc=[{"name": "smsc1", "host": "127.0.0.1", "port": smsc_port, "system_id": "smps",
               "password": "secret", "binds": 2}],
        server={"listen": "127.0.0.1:0"},
        web={"listen": "127.0.0.1:0"},
        ne_accounts=[
            {"system_id": "spam", "password": "pw1", "window": 512},
            {"system_id": "fraud", "password": "pw2", "window": 512},
            {"system_id": "audit", "password": "pw3", "window": 512},
        ],
        database={"record": "non_allow"},
    )  # fmt: skip
    node = Node(cfg)
    node_task = asyncio.create_task(node.run(handle_signals=False))
    nes: list[SimNe] = []
    try:
        await sim.wait_bound(2)  # by now SMPS's NE server listens on node.smpp_port
        port = node.smpp_port
        nes = [
            SimNe("127.0.0.1", port, system_id="spam", password="pw1", binds=2,
                  block_ratio=0.05, latency=Latency(0.005, "exp"), silent_ratio=0.01, seed=1),
            SimNe("127.0.0.1", port, system_id="fraud", password="pw2", binds=2,
                  block_ratio=0.02, latency=Latency(0.040, "uniform"), disconnect_every=1.5,
                  seed=2, reconnect_initial=0.05, reconnect_max=0.2),
            SimNe("127.0.0.1", port, system_id="audit", password="pw3", binds=2,
                  block_ratio=0.01, latency=Latency(0.300, "exp"), silent_ratio=0.02,
                  disconnect_ratio=0.0005, seed=3, reconnect_initial=0.05, reconnect_max=0.2),
        ]  # fmt: skip
        for ne in nes:
            ne.start()
        for ne in nes:
            await ne.wait_bound()
        summary = await sim.run(rate=2500, count=MESSAGES)
    finally:
        for ne in nes:
            await ne.stop()
        node.stop()
        await asyncio.wait_for(node_task, 15)
        await sim.stop()
    assert summary["sent"] == MESSAGES
    assert summary["missing"] == 0
    assert summary["duplicates"] == 0
    assert summary["answered"] == MESSAGES
    # The chaos really happened: binds dropped, copies went unanswered, blocks won.
    assert sum(ne.disconnects for ne in nes) >= 2
    decisions = node.dispatcher.stats.decisions
    assert decisions.get(("block", "block"), 0) > 0
    assert decisions.get(("allow", "timeout"), 0) > 0
    assert node.dispatcher.in_flight == 0
