"""Whether the record writer's database writes succeed (:mod:`smps.store.writer`).

After ``FAILING_AFTER`` failed writes in a row, or at once when the SQLite file it
writes to was deleted or replaced (its path gone, or another inode there: a connection
would go on committing into the unlinked file, and every row counted as written would be
lost), the writer is *failing*: it says so in the log (once, then a summary every
``report_interval``), in :meth:`~smps.store.writer.DecisionWriter.failing` (for /health)
and in ``smps_db_writer_failing``, and it moves what waits in memory to the spool, where
new batches go too, so a stop or crash loses none. The first successful write ends it;
the spool is then replayed. A vanished SQLite file is not made again while the node runs
(the API, the admin UI and the live configuration still hold the old one): the writer
spools until SMPS restarts, when the start-up migrations create the file afresh and the
spool is replayed into it, or until the same file is put back.

This module keeps that state and logs its turns; the writer spools.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from smps.store.writer_runners import DatabaseGone

log = logging.getLogger("smps.store.writer")  # the writer's log

FAILING_AFTER = 3  # failed writes in a row that make the writer "failing"


class WriteHealth:
    """The writer's current outage, if any: since when, how many failed writes in a row,
    and, once that makes it failing, why."""

    def __init__(self, spool_dir: Path):
        self.spool_dir = spool_dir  # named in the log: where the records go meanwhile
        self.outage_since: float | None = None  # loop.time() of the first failed write
        self.failures = 0  # failed writes in a row
        self.failure: str | None = None  # why the writer is failing; None while it is not

    @property
    def failing(self) -> bool:
        return self.failure is not None

    def failed(self, exc: Exception) -> bool:
        """Count a failed write and log the first; True when it just made the writer
        failing (the caller then spools what waits in memory)."""
        self.failures += 1
        if isinstance(exc, DatabaseGone):
            reason = str(exc)
        else:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            reason = f"{type(exc).__name__}: {first_line}"
        if self.outage_since is None:
            self.outage_since = asyncio.get_running_loop().time()
            if not isinstance(exc, DatabaseGone):
                log.warning("database write failed (%s); retrying, records are kept", reason)
        if self.failure is not None or (
            self.failures < FAILING_AFTER and not isinstance(exc, DatabaseGone)
        ):
            return False
        self.failure = reason
        if isinstance(exc, DatabaseGone):
            log.error(
                "%s: nothing more is written to it, records are spooled to %s. Restart "
                "SMPS to create the database again (the spool is then replayed into it), "
                "or put the same file back",
                reason,
                self.spool_dir,
            )
        else:
            log.error(
                "database writes keep failing (%d in a row; %s); records are spooled to %s "
                "until a write succeeds",
                self.failures,
                reason,
                self.spool_dir,
            )
        return True

    def succeeded(self, spooled_batches: int) -> None:
        """A write succeeded: an outage, if there was one, ends (logged with its length)."""
        if self.outage_since is None:
            return
        lasted = asyncio.get_running_loop().time() - self.outage_since
        if self.failure is not None:
            log.warning(
                "database writes resumed after %.1fs of failing; replaying %d spooled batches",
                lasted,
                spooled_batches,
            )
        else:
            log.warning("database writes resumed after %.1fs", lasted)
        self.outage_since, self.failures, self.failure = None, 0, None

    def describe(self) -> str | None:
        """Why the database writes are failing and for how long (for /health), or None."""
        if self.failure is None:
            return None
        lasted = asyncio.get_running_loop().time() - self.outage_since
        return (
            f"database writer failing for {lasted:.0f} s: {self.failure}; records are "
            f"spooled to {self.spool_dir}"
        )
