"""What monitoring reads: /health says "degraded", with reasons, while the node serves
worse (an SMSC bind down for longer than its back-off, the database writer failing),
and /metrics asks for a token under web.metrics_auth. In-process nodes
(smps.app.Node) and, for the worker -> master path, `smps run`."""

import asyncio
import contextlib

import aiohttp
import pytest

from smps._native.pdu import Status
from smps.app import Node
from smps.sim.smsc import SimSmsc
from smps.store import decision_queries, tokens
from tests.helpers import until
from tests.nodes import RunNode, sections, smsc_section
from tests.test_proxy import proxy


@contextlib.asynccontextmanager
async def node_with_smsc(make_config, tmp_path, *, web=None, database=None):
    """An in-process node bound (or trying to bind) to a simulated SMSC; yields
    (sim, node, get) where ``get(path)`` returns (HTTP status, JSON or text)."""
    sim = SimSmsc()
    smsc_port = await sim.start()
    cfg = make_config(
        log={"file": ""},
        node={"state_dir": str(tmp_path / "var")},
        smsc=[smsc_section(smsc_port, reconnect={"initial": "50ms", "max": "200ms"})],
        server={"listen": "127.0.0.1:0"},
        web={"listen": "127.0.0.1:0", **(web or {})},
        database={"url": f"sqlite:///{tmp_path}/var/smps.db", **(database or {})},
    )
    node = Node(cfg)
    task = asyncio.create_task(node.run(handle_signals=False))
    try:
        await until(lambda: node.http_port is not None or task.done())
        async with aiohttp.ClientSession() as http:

            async def get(path, **options):
                url = f"http://127.0.0.1:{node.http_port}{path}"
                async with http.get(url, **options) as response:
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
        await sim.wait_bound()  # the first bind goes through; kick it, no rebind now
        sim.refuse_status = Status.RBINDFAIL
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


async def test_deleted_sqlite_file_spools_degrades_health_and_replays_after_restart(
    make_config, tmp_path, caplog
):
    """The SQLite file deleted under a running node: no record is counted as written
    into the unlinked file; they spool; /health, the metric and the log say so; the
    next start creates the database and replays the spool into it."""
    db_file = tmp_path / "smps.db"
    async with proxy(make_config, state_dir=tmp_path) as (sim, node, _add_ne):
        writer = node.writer
        sent = [sim.send_deliver() for _ in range(50)]
        await until(lambda: writer.written == 50)
        db_file.unlink()
        written = writer.written  # from here on, nothing reaches a readable file
        sent += [sim.send_deliver() for _ in range(50)]
        await until(lambda: writer.failing() is not None)
        async with aiohttp.ClientSession() as http:
            base = f"http://127.0.0.1:{node.http_port}"
            async with http.get(f"{base}/health") as response:
                assert response.status == 200
                health = await response.json()
            async with http.get(f"{base}/metrics") as response:
                metrics = await response.text()
        assert health["status"] == "degraded"
        (reason,) = health["reasons"]
        assert reason.startswith("database writer failing for ")
        assert (
            f"database file {db_file} is gone (deleted or moved); records are spooled to " in reason
        )
        assert "\nsmps_db_writer_failing 1.0\n" in metrics
        sent += [sim.send_deliver() for _ in range(50)]
        await until(lambda: len(sim.answers) == len(sent))
        await until(lambda: writer.spooled >= 100)  # the second 50 at least, in the spool
        assert writer.written == written
    assert writer.written == written and writer.dropped == 0
    assert writer.spooled == len(sent) - written  # every record not written is on disk
    errors = [r.getMessage() for r in caplog.records if r.name == "smps.store.writer"]
    assert any(
        m.startswith(
            f"database file {db_file} is gone (deleted or moved): nothing more is written to it"
        )
        and "Restart SMPS to create the database again" in m
        for m in errors
    ), errors
    assert not db_file.exists()  # no empty file made behind the operator's back

    async with proxy(make_config, state_dir=tmp_path) as (_sim, node, _add_ne):
        await until(lambda: node.writer.written == len(sent) - written)
        rows = await decision_queries.query_decisions(
            node.store, decision_queries.DecisionQuery(), limit=1000
        )
        assert len(rows) == len(sent) - written


async def test_metrics_auth_asks_prometheus_for_an_api_token(make_config, tmp_path):
    async with node_with_smsc(make_config, tmp_path, web={"metrics_auth": True}) as (
        _sim,
        node,
        get,
    ):
        status, body = await get("/metrics")
        assert (status, body) == (401, {"error": "missing bearer token"})
        wrong = {"headers": {"Authorization": "Bearer not-a-token"}}
        assert (await get("/metrics", **wrong))[0] == 401
        token = await tokens.create_token(node.store, "prometheus", "viewer")
        status, text = await get("/metrics", headers={"Authorization": f"Bearer {token}"})
        assert status == 200 and "\nsmps_db_records_written_total " in text
        assert (await get("/health"))[0] == 200  # /health stays open to load balancers


async def test_metrics_are_open_by_default(make_config, tmp_path):
    async with node_with_smsc(make_config, tmp_path) as (_sim, _node, get):
        status, text = await get("/metrics")
        assert status == 200 and "\nsmps_db_records_written_total " in text
