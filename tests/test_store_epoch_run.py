"""Decisions carry the lease epoch (#11's fencing token) of the node that made them:
`smps run` with the lease on, on a private mariadbd, stamps what it decides while
holding epoch N with N."""

import asyncio

import pytest

from smps.sim.smsc import SimSmsc
from tests.helpers import until
from tests.nodes import PASSWORD, HaNode
from tests.peers import Ne
from tests.store_db import mariadb_connect
from tests.test_ha_failover import make_database

pytestmark = pytest.mark.mariadb


async def query(server, sql: str) -> list[tuple]:
    conn = await mariadb_connect(port=server.port, database="smps")
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(sql)
            return list(await cursor.fetchall())
    finally:
        conn.close()


async def test_decisions_written_under_lease_epoch_n_carry_n(private_mariadb, tmp_path):
    url = await make_database(private_mariadb)
    sim = SimSmsc(window=100)
    node = HaNode(
        tmp_path,
        await sim.start(),
        name="a",
        database={"url": url, "record": "all"},
        ha={
            "mode": "keepalived",
            "initial_role": "standby",
            "lease": {"enabled": True, "ttl": "3s"},
        },
    )
    ne: Ne | None = None
    try:
        await node.start()  # migrated; standby, so the lease is not taken yet
        # An earlier holder's expired lease at epoch 4: this node's takeover makes it 5.
        conn = await mariadb_connect(port=private_mariadb.port, database="smps")
        async with conn.cursor() as cursor:
            await cursor.execute(
                "INSERT INTO ha_lease VALUES ('smps', 'gone@elsewhere', 4, 0, 0, 0) "
                "ON DUPLICATE KEY UPDATE holder = 'gone@elsewhere', epoch = 4, expires_us = 0"
            )
        await conn.commit()
        conn.close()

        await node.notify("MASTER")
        await sim.wait_bound(2)
        ne = Ne(node.report["smpp_port"], "antispam", PASSWORD, binds=2)
        ne.client.start()
        await until(lambda: node.status()["ne_binds"].get("antispam") == 2)
        for _ in range(20):
            sim.send_deliver(short_message=b"e")
        await until(lambda: sim.answered == 20)

        async def written() -> list[tuple]:
            return await query(private_mariadb, "SELECT epoch, COUNT(*) FROM decisions GROUP BY 1")

        rows: list[tuple] = []
        for _ in range(100):
            rows = await written()
            if sum(count for _, count in rows) >= 20:
                break
            await asyncio.sleep(0.05)
        assert rows == [(5, 20)]
        assert node.health()[1]["ha"]["lease"]["epoch"] == 5
    finally:
        if ne is not None:
            await ne.client.stop()
        if node.process is not None:
            await node.stop()
        await sim.stop()
