"""Where the writer's sync functions run: one connection of the async engine (MySQL),
or a stdlib sqlite3 connection in a thread of its own that notices when its file goes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from smps.errors import SmpsError
from smps.store.db import create_sync_engine

log = logging.getLogger("smps.store.writer")  # the writer's log, as before the split


class DatabaseGone(SmpsError):
    """The SQLite file the writer writes to was deleted or replaced while it ran."""


class EngineRunner:
    """Runs the writer's sync functions on one connection of the async engine (MySQL)."""

    def __init__(self, engine: AsyncEngine):
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._conn is None:
            self._conn = await self._engine.connect()
        return await self._conn.run_sync(function, *args, **kwargs)

    async def discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.invalidate()
            await conn.close()
        except Exception:
            log.debug("closing a failed writer connection", exc_info=True)

    async def close(self) -> None:
        # Not back to the pool: the session has the writer's sql_mode
        # (NO_BACKSLASH_ESCAPES, smps.store.batch_sql), which no other user expects.
        await self.discard()


WRITER_NICE = 10
"""How much lower the SQLite writer thread's CPU priority is than the process's."""


def _yield_cpu() -> None:
    """Lower this thread's CPU priority (Linux: a thread id is a process id to setpriority).

    A commit is a burst of CPU; on a core it shares with a worker, the kernel would
    give each a time slice of a few ms and the worker's answers would wait for it
    (smps bench, pinned to one core, p99 at half the maximum rate: 5.0 -> 2.5 ms). At a
    lower priority the worker preempts the writer as soon as it has work."""
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):  # not Linux, or a sandbox that forbids it
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + WRITER_NICE)


class ThreadRunner:
    """Runs them on a stdlib sqlite3 connection in a thread of its own (SQLite).

    One call per batch crosses threads, instead of one per statement through
    aiosqlite; the batch's SQLite work then overlaps the loop's (measured about
    twice as fast, see bench/test_writer_bench.py).
    """

    def __init__(self, async_engine: AsyncEngine):
        self._engine = create_sync_engine(async_engine.url)
        self._thread = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="smps-sqlite-writer", initializer=_yield_cpu
        )
        self._conn: Connection | None = None
        database = async_engine.url.database
        self._path = database if database and database != ":memory:" else None
        self._file: tuple[int, int] | None = None  # (st_dev, st_ino) of the file written to

    def _call(self, function: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        try:
            # Checked before (no connection would create an empty file there) and after
            # (a commit into a file deleted meanwhile is lost: not written, retried).
            self._check_file()
            if self._conn is None:
                self._conn = self._engine.connect()
                if self._path is not None and self._file is None:
                    status = os.stat(self._path)
                    self._file = (status.st_dev, status.st_ino)
            result = function(self._conn, *args, **kwargs)
            self._check_file()
            return result
        except BaseException:
            self._drop()
            raise

    def _check_file(self) -> None:
        """Raise DatabaseGone when the file first written to is no longer at its path."""
        if self._file is None:
            return
        try:
            status = os.stat(self._path)
        except FileNotFoundError:
            raise DatabaseGone(f"database file {self._path} is gone (deleted or moved)") from None
        if (status.st_dev, status.st_ino) != self._file:
            raise DatabaseGone(f"database file {self._path} was replaced by another file")

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()
                conn.close()
            except Exception:
                log.debug("closing a failed writer connection", exc_info=True)

    async def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        # Shielded: a cancelled caller must not leave the thread's work half-seen.
        return await asyncio.shield(
            loop.run_in_executor(self._thread, self._call, function, args, kwargs)
        )

    async def discard(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._drop)

    async def close(self) -> None:
        await self.discard()
        self._thread.shutdown(wait=True)
        self._engine.dispose()
