"""The database lease that fences a second active node when VRRP splits: one row
(holder, expiry, epoch) in ``ha_lease``, written with the database server's
clock, and the configuration it needs (MySQL/MariaDB, keepalived mode).

Not ``GET_LOCK()``, which any connection blip releases and Galera refuses. The
HA controller (`smps.ha.controller`) renews it every ttl/3 and steps down ttl/3
before it could expire unrenewed; a taker needs an expired row, and every
takeover adds one to ``epoch``, the fencing token written into decision records.
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import make_url

from smps.config import Config
from smps.errors import ConfigError


def check_config(config: Config) -> None:
    """Refuse HA settings that cannot work (ConfigError naming the key)."""
    lease = config.ha.lease
    if not lease.enabled:
        return
    if make_url(config.database.url).get_backend_name() != "mysql":
        raise ConfigError(
            "the lease needs a database both nodes share (MySQL/MariaDB); embedded SQLite "
            "has no shared arbiter, so leave the lease off there",
            path="ha.lease.enabled",
        )
    if config.ha.mode != "keepalived":
        raise ConfigError(
            "the lease fences keepalived's MASTER; it needs ha.mode: keepalived",
            path="ha.lease.enabled",
        )
    if lease.ttl < 1.0:
        raise ConfigError(
            f"expected at least 1s (renewed every ttl/3), got {lease.ttl}s", path="ha.lease.ttl"
        )


# Microseconds since the epoch by the database server's clock, in UTC whatever
# the session time zone (UNIX_TIMESTAMP(NOW()) is ambiguous in the DST hour).
_DB_NOW_US = "TIMESTAMPDIFF(MICROSECOND, '1970-01-01 00:00:00', UTC_TIMESTAMP(6))"


@dataclass(frozen=True)
class LeaseState:
    """The lease row as read at ``now_us`` (database clock)."""

    holder: str
    epoch: int
    expires_us: int
    now_us: int

    @property
    def valid(self) -> bool:
        return self.expires_us > self.now_us

    @property
    def expires_in(self) -> float:
        """Seconds until it expires (negative: expired that long ago)."""
        return (self.expires_us - self.now_us) / 1e6


class DbLease:
    """The lease row ``name`` in table ``ha_lease``, taken and renewed as ``holder``.

    Every operation is one short transaction that locks the row
    (``SELECT ... FOR UPDATE``) and writes times computed from the database's
    own clock. MySQL/MariaDB only.
    """

    def __init__(self, engine, holder: str, ttl: float, name: str = "smps"):
        self.engine = engine
        self.holder = holder
        self.ttl_us = int(ttl * 1e6)
        self.name = name

    async def acquire(self) -> LeaseState:
        """Renew the lease if this holder has it, take it if it expired; return the row after.

        The caller holds the lease when the returned holder is its own.
        """
        async with self.engine.begin() as conn:
            state = await self._locked_row(conn)
            if state.holder == self.holder and state.valid:
                await conn.execute(
                    text(
                        "UPDATE ha_lease SET expires_us = :expires, renewed_us = :now "
                        "WHERE name = :name"
                    ),
                    {"expires": state.now_us + self.ttl_us, "now": state.now_us, "name": self.name},
                )
                return LeaseState(
                    self.holder, state.epoch, state.now_us + self.ttl_us, state.now_us
                )
            if state.valid:
                return state
            epoch = state.epoch + 1
            await conn.execute(
                text(
                    "UPDATE ha_lease SET holder = :holder, epoch = :epoch, expires_us = :expires, "
                    "acquired_us = :now, renewed_us = :now WHERE name = :name"
                ),
                {
                    "holder": self.holder,
                    "epoch": epoch,
                    "expires": state.now_us + self.ttl_us,
                    "now": state.now_us,
                    "name": self.name,
                },
            )
            return LeaseState(self.holder, epoch, state.now_us + self.ttl_us, state.now_us)

    async def release(self) -> None:
        """Let the lease expire now, if this holder has it (call only once no longer serving)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                text(
                    f"UPDATE ha_lease SET expires_us = {_DB_NOW_US} "
                    f"WHERE name = :name AND holder = :holder AND expires_us > {_DB_NOW_US}"
                ),
                {"name": self.name, "holder": self.holder},
            )

    async def read(self) -> LeaseState:
        """The row as it is, without locking or changing it."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT holder, epoch, expires_us, {_DB_NOW_US} FROM ha_lease "
                        "WHERE name = :name"
                    ),
                    {"name": self.name},
                )
            ).first()
            if row is None:
                now = (await conn.execute(text(f"SELECT {_DB_NOW_US}"))).scalar_one()
                return LeaseState("", 0, 0, int(now))
        return LeaseState(row[0], int(row[1]), int(row[2]), int(row[3]))

    async def _locked_row(self, conn) -> LeaseState:
        query = text(
            f"SELECT holder, epoch, expires_us, {_DB_NOW_US} FROM ha_lease "
            "WHERE name = :name FOR UPDATE"
        )
        row = (await conn.execute(query, {"name": self.name})).first()
        if row is None:
            # First use of this database: make the row (a concurrent maker is ignored), lock it.
            await conn.execute(
                text(
                    "INSERT IGNORE INTO ha_lease "
                    "(name, holder, epoch, expires_us, acquired_us, renewed_us) "
                    "VALUES (:name, '', 0, 0, 0, 0)"
                ),
                {"name": self.name},
            )
            row = (await conn.execute(query, {"name": self.name})).one()
        return LeaseState(row[0], int(row[1]), int(row[2]), int(row[3]))


def holder_id(node_name: str) -> str:
    """Unique per process start, so a restarted node never renews its predecessor's lease."""
    return f"{node_name}@{socket.gethostname()}/{os.getpid()}-{secrets.token_hex(3)}"
