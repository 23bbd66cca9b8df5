"""Database fixtures shared by the store and API tests: every test runs on SQLite and MariaDB.

MariaDB is the shared server on 127.0.0.1:3306 (root, no password); each test
gets a database of its own, ``smps_test_<random>``, dropped afterwards. When
the server is not reachable the MariaDB half is skipped, except under CI
(``CI=true``), where that is a failure: .ci/run starts the server.

Import the fixtures into a test module with
``from tests.store_db import database_url, store  # noqa: F401``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import text

from smps.store.db import Store
from tests.helpers import free_port

MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}


async def mariadb_connect(**overrides):
    import asyncmy

    return await asyncmy.connect(**{**MARIADB, **overrides})


async def _create_database() -> str:
    name = f"smps_test_{uuid.uuid4().hex[:12]}"
    try:
        conn = await mariadb_connect()
    except OSError as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"MariaDB not reachable on 127.0.0.1:3306: {exc}")
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(
                f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
            )
    finally:
        conn.close()
    return name


async def drop_database(name: str) -> None:
    conn = await mariadb_connect()
    try:
        async with conn.cursor() as cursor:
            await cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    finally:
        conn.close()


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.mariadb)])
async def database_url(request, tmp_path):
    """A ``database.url`` for an empty database on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/smps.db"
        return
    name = await _create_database()
    try:
        yield f"mysql+asyncmy://root@127.0.0.1:3306/{name}"
    finally:
        await drop_database(name)


@pytest.fixture
async def store(database_url):
    """A migrated :class:`Store` on each engine."""
    opened = await Store.open(database_url)
    try:
        yield opened
    finally:
        await opened.close()


def make_decision(i: int, *, at: float | None = None, verdict: str = "block", **fields):
    """A decision record as the proxy core makes them, numbered ``i`` (also its sequence)."""
    import time

    from smps.proxy.records import Decision, NeResult

    at = time.time() if at is None else at
    results = [
        NeResult("antispam", verdict, 0x66 if verdict == "block" else 0, 1.5, False, True),
        NeResult("fraud", "allow", 0, 2.25, False, True),
    ]
    values = dict(
        arrived_us=round(at * 1e6) - 2000,
        decided_us=round(at * 1e6),
        smsc="smsc1",
        command="deliver_sm",
        sequence=i,
        source_addr="8613800138000",
        source_ton=1,
        source_npi=1,
        destination_addr=f"86139{i:08d}",
        dest_ton=1,
        dest_npi=1,
        esm_class=0,
        data_coding=8,
        concat_ref=None,
        concat_part=None,
        concat_total=None,
        verdict=verdict,
        reason="block" if verdict == "block" else "all_allow",
        status=0x66 if verdict == "block" else 0,
        deciding_account="antispam" if verdict == "block" else None,
        results=results,
    )
    values.update(fields)
    return Decision(**values)


async def scalar(store, sql: str):
    """One value from a query on the store's own engine."""
    async with store.engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


MARIADBD = "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")


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
