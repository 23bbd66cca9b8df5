"""/health says "degraded", with reasons, while the node serves worse: an SMSC bind
down for longer than its back-off, the database writer failing. In-process nodes
(smps.app.Node) and, for the worker -> master path, `smps run`."""

import asyncio
import contextlib

import aiohttp
import pytest

from smps._native.pdu import Status
from smps.app import Node
from smps.sim.smsc import SimSmsc
from tests.helpers import until
from tests.nodes import RunNode, sections


@contextlib.asynccontextmanager
async def node_with_smsc(make_config, tmp_path, *, web=None, database=None):
    """An in-process node bound (or trying to bind) to a simulated SMSC; yields
    (sim, node, get) where ``get(path)`` returns (HTTP status, JSON or text)."""
    sim = SimSmsc()
    smsc_port = await sim.start()
    cfg = make_config(
        log={"file": ""},
        node={"state_dir": str(tmp_path / "var")},
        smsc=[
            {
                "name": "smsc1",
                "host": "127.0.0.1",
                "port": smsc_port,
                "system_id": "smps",
                "password": "secret",
                "reconnect": {"initial": "50ms", "max": "200ms"},
            }
        ],
        server={"listen": "127.0.0.1:0"},
        web={"listen": "127.0.0.1:0", **(web or {})},
        database={"url": f"sqlite:///{tmp_path}/var/smps.db", **(database or {})},
    )
    node = Node(cfg)
    task = asyncio.create_task(node.run(handle_signals=False))
    try:
        await until(lambda: node.http_port is not None or task.done())
        async with aiohttp.ClientSession() as http:

            async def get(path):
                async with http.get(f"http://127.0.0.1:{node.http_port}{path}") as response:
                    if response.content_type == "application/json":
                        return response.status, await response.json()
                    return response.status, await response.text()

            yield sim, node, get
    finally:
        node.stop()
        await asyncio.wait_for(task, 10)
        await sim.stop()


@pytest.mark.parametrize(("strict", "code"), [(False, 200), (True, 503)])
async def test_smsc_unbound_longer_than_its_back_off_degrades_health(
    make_config, tmp_path, strict, code
):
    async with node_with_smsc(make_config, tmp_path, web={"health_strict": strict}) as (
        sim,
        node,
        get,
    ):
        sim.refuse_status = Status.RBINDFAIL
        await sim.wait_bound()  # the first bind went through; kick it, no rebind now
        next(iter(sim.sessions)).transport.abort()

        async def degraded():
            return (await get("/health"))[1]["status"] == "degraded"

        await until(degraded)
        status, health = await get("/health")
        assert status == code
        (reason,) = health["reasons"]
        assert reason.startswith(
            "SMSC smsc1: 1 of 1 binds unbound for longer than reconnect.max (0.2 s; longest "
        )
        assert reason.endswith("last error: bind refused with ESME_RBINDFAIL (0x0000000D)")
        sim.refuse_status = Status.ROK
        await until(lambda: node.smsc_clients.clients["smsc1"].binds_up == 1)
        status, health = await get("/health")
        assert (status, health["status"], health["reasons"]) == (200, "ok", [])


async def test_run_workers_report_smsc_down_to_the_masters_health(tmp_path):
    """`smps run`: each worker's SMSC binds reach the master's /health (strict: 503)."""
    sim = SimSmsc(refuse_status=Status.RBINDFAIL)
    port = await sim.start()
    node = RunNode(
        tmp_path,
        sections(
            tmp_path,
            port,
            reconnect=("50ms", "200ms"),
            web={"listen": "127.0.0.1:0", "health_strict": True},
        ),
    )
    try:
        await node.start()
        await until(lambda: node.health()[0] == 503 and len(node.health()[1]["reasons"]) == 2)
        _code, health = node.health()
        assert health["status"] == "degraded" and health["workers"]["up"] == 2
        assert sorted(r.split(": SMSC smsc1: ")[0] for r in health["reasons"]) == [
            "worker 0",
            "worker 1",
        ]
        assert all("ESME_RBINDFAIL" in r for r in health["reasons"])
        sim.refuse_status = Status.ROK
        await until(lambda: node.health()[0] == 200, timeout=15)
        assert node.health()[1]["status"] == "ok" and node.health()[1]["reasons"] == []
    finally:
        await node.stop()
        await sim.stop()
