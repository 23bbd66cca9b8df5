"""MariaDB killed in the middle of a run: records spool, replay in order, none lost, none twice.

Uses a MariaDB server of its own (fresh datadir under tmp_path, its own port and
socket, no grant tables), started and killed by the test; the shared server on
3306 is never touched.
"""

import asyncio
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy import text

from smps.store.db import Store
from smps.store.writer import DecisionWriter
from tests.store_db import make_decision

MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")

pytestmark = [
    pytest.mark.mariadb,
    pytest.mark.skipif(
        not (os.path.exists(MARIADBD) and INSTALL_DB),
        reason="needs mariadbd and mariadb-install-db",
    ),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateMariaDB:
    """One mariadbd on 127.0.0.1:<port> with its own datadir; start, kill, start again."""

    def __init__(self, base: Path):
        self.base = base
        self.datadir = base / "data"
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        subprocess.run(
            [
                INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=normal",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.base / 'mysqld.sock'}",
                f"--pid-file={self.base / 'mysqld.pid'}",
                "--skip-grant-tables",
                "--user=root",
                "--innodb-buffer-pool-size=32M",
                "--skip-log-bin",
                f"--log-error={self.base / 'error.log'}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError((self.base / "error.log").read_text()[-2000:]) from None
                time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=30)

    def url(self, database: str) -> str:
        return f"mysql+asyncmy://root@127.0.0.1:{self.port}/{database}"


@pytest.fixture
def private_mariadb(tmp_path):
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.start()
    try:
        yield server
    finally:
        server.kill()
        shutil.rmtree(server.base, ignore_errors=True)


async def test_server_killed_mid_run_loses_nothing_and_duplicates_nothing(
    private_mariadb, tmp_path
):
    from tests.store_db import mariadb_connect

    conn = await mariadb_connect(port=private_mariadb.port)
    async with conn.cursor() as cursor:
        await cursor.execute("CREATE DATABASE smps CHARACTER SET utf8mb4")
    conn.close()
    store = await Store.open(private_mariadb.url("smps"))
    writer = DecisionWriter(
        store,
        tmp_path / "spool",
        batch_size=200,
        flush_interval=0.01,
        buffer_limit=1000,
        retry_initial=0.05,
        retry_max=0.2,
        write_timeout=5,
    )
    await writer.start()
    total, killed_at = 20_000, 5_000
    try:
        for i in range(total):
            writer.put(make_decision(i))
            if i == killed_at:
                private_mariadb.kill()  # in the middle of whatever the writer was doing
            if i % 100 == 0:
                await asyncio.sleep(0.002)
        deadline = time.monotonic() + 30
        while writer.spooled == 0 or writer.pending > 1000:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert writer.written < total
        private_mariadb.start()
        deadline = time.monotonic() + 60
        while writer.written + writer.skipped < total:
            assert time.monotonic() < deadline, (writer.written, writer.skipped, writer.stats())
            await asyncio.sleep(0.05)
    finally:
        await writer.close()
    async with store.engine.connect() as db:
        sequences = list(
            (await db.execute(text("SELECT sequence FROM decisions ORDER BY id"))).scalars()
        )
        counted = (
            await db.execute(text("SELECT SUM(count) FROM minute_counters WHERE account = ''"))
        ).scalar()
    await store.close()
    assert sequences == list(range(total))  # none lost, none twice, in order
    assert counted == total  # counters exactly once too
    assert writer.spooled > 0
    assert writer.dropped == 0
