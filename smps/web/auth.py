"""Admin UI sign-in: users and passwords, server-side sessions, CSRF tokens,
login throttling, and what each role may do.

Sessions live in the master's memory (one master serves the UI): a random
256-bit id in a cookie that is HttpOnly, SameSite=Strict and, under TLS,
Secure. Each session carries its own CSRF token, which every state-changing
request must echo (form field ``csrf`` or header ``X-CSRF-Token``). Password
checks are CPU-bound hashes, so they run in the default executor, never on
the event loop. Failed logins are counted per user name from one client
address, and per client address; past the limit the login is refused before
any hash is computed.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from smps import passwords
from smps.store import admin_users, common, schema
from smps.store.db import Store
from smps.store.roles import ROLES

log = logging.getLogger("smps.web.auth")

COOKIE = "smps_session"
ADMIN_PASSWORD_ENV = "SMPS_ADMIN_PASSWORD"
FIRST_ADMIN = "admin"

# What each role may do beyond reading: the one table behind the admin UI's
# routes and /api/v1 alike. Admins may do everything; operators run incidents
# (traces, kicking binds, switching accounts and screening rules on and off);
# viewers only read (and try messages on the screening rules, which changes nothing).
ACTIONS = frozenset(
    {
        "accounts.write",
        "accounts.toggle",  # enable or disable an NE account, nothing else
        "smsc.write",
        "routes.write",
        "policy.write",
        "traces.write",
        "screening.write",
        "screening.toggle",  # enable or disable a screening rule, nothing else
        "screening.try",  # try a message on the rules (changes nothing; a POST for its text)
        "sessions.kick",
        "users.write",
        "config.reload",  # read the configuration file and its list files again (SIGHUP)
        "session.end",  # signing oneself out
    }
)
OPERATOR_ACTIONS = frozenset(
    {"accounts.toggle", "screening.toggle", "sessions.kick", "traces.write"}
)
EVERYONE_ACTIONS = frozenset({"session.end", "screening.try"})

# The action that changing each kind of configuration entity needs.
KIND_ACTIONS = {
    "accounts": "accounts.write",
    "smsc": "smsc.write",
    "routes": "routes.write",
    "trace_rules": "traces.write",
    "screening_rules": "screening.write",
    "policy": "policy.write",
}
# The kinds whose entities an operator may switch on and off (a change of ``enabled`` alone).
TOGGLE_ACTIONS = {"accounts": "accounts.toggle", "screening_rules": "screening.toggle"}


def allowed(role: str, action: str | None) -> bool:
    """May ``role`` do ``action``? ``None`` is reading, which every role may."""
    if action is not None and action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if role not in ROLES:
        return False
    if action is None or action in EVERYONE_ACTIONS:
        return True
    if role == "admin":
        return True
    return role == "operator" and action in OPERATOR_ACTIONS


def change_action(kind: str, patch: Mapping[str, Any] | None = None) -> str:
    """The action a change of ``kind`` needs: a patch that only switches an NE
    account or a screening rule on or off is its toggle, anything else the kind's write."""
    if kind in TOGGLE_ACTIONS and isinstance(patch, Mapping) and set(patch) == {"enabled"}:
        return TOGGLE_ACTIONS[kind]
    return KIND_ACTIONS[kind]


# -------------------------------------------------------------------------- users


@dataclass(frozen=True)
class User:
    name: str
    role: str


# Verified against when the user does not exist, so a wrong name costs as much
# time as a wrong password and does not reveal which names exist.
_DUMMY_HASH = passwords.hash_password(secrets.token_hex(16))


async def check_password(store: Store, name: str, password: str) -> User | None:
    """The enabled user ``name`` when ``password`` is theirs, else None."""
    table = schema.users
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table).where(table.c.name == name))
        row = result.mappings().first()
    stored = row["password_hash"] if row is not None else _DUMMY_HASH
    loop = asyncio.get_running_loop()
    matches = await loop.run_in_executor(None, passwords.verify_password, stored, password)
    if row is None or not matches or not row["enabled"]:
        return None
    return User(row["name"], row["role"])


async def ensure_first_admin(store: Store, environ: dict[str, str] | None = None) -> bool:
    """With no users yet, create ``admin`` from $SMPS_ADMIN_PASSWORD; True if created.

    There is never a built-in password: without the variable the UI cannot be
    signed into until ``smps user add NAME --role admin`` has been run.
    """
    environ = os.environ if environ is None else environ
    async with store.engine.connect() as conn:
        users = (await conn.execute(select(func.count()).select_from(schema.users))).scalar_one()
    if users:
        return False
    password = environ.get(ADMIN_PASSWORD_ENV, "")
    if not password:
        log.warning(
            "admin UI has no users: run `smps user add NAME --role admin`, "
            "or start once with %s set",
            ADMIN_PASSWORD_ENV,
        )
        return False
    try:
        await admin_users.add_user(
            store, FIRST_ADMIN, password, "admin", actor=f"env:{ADMIN_PASSWORD_ENV}"
        )
    except common.Invalid as exc:
        log.error("%s not used: %s", ADMIN_PASSWORD_ENV, exc.message)
        return False
    except common.Conflict:
        return False  # another process made it first
    log.info("admin UI user %r created from %s", FIRST_ADMIN, ADMIN_PASSWORD_ENV)
    return True


# ----------------------------------------------------------------------- sessions


@dataclass
class Session:
    id: str
    user: User
    csrf: str
    created: float
    last_seen: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # shown once, after a redirect

    def csrf_ok(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented, self.csrf)


class Sessions:
    """Signed-in sessions by id; idle ones expire, and every one ends after ``max_age``."""

    def __init__(
        self,
        *,
        idle: float = 1800.0,
        max_age: float = 12 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.idle = idle
        self.max_age = max_age
        self.clock = clock
        self._by_id: dict[str, Session] = {}

    def start(self, user: User) -> Session:
        self._prune()
        now = self.clock()
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32), now, now)
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self._by_id.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle or now - session.created > self.max_age:
            del self._by_id[session_id]
            return None
        session.last_seen = now
        return session

    def end(self, session_id: str) -> None:
        self._by_id.pop(session_id, None)

    def end_user(self, name: str) -> None:
        """Sign a user out everywhere (after a password change or removal)."""
        for sid in [sid for sid, s in self._by_id.items() if s.user.name == name]:
            del self._by_id[sid]

    def _prune(self) -> None:
        now = self.clock()
        for sid in [
            sid
            for sid, s in self._by_id.items()
            if now - s.last_seen > self.idle or now - s.created > self.max_age
        ]:
            del self._by_id[sid]


# ----------------------------------------------------------------------- throttle


@dataclass
class LoginThrottle:
    """Failed logins in a sliding window, per (user name, client address) and per
    client address.

    A key over its limit is refused until its oldest failure leaves the window.
    A user is locked out only from the address that guessed wrong: counted by
    name alone, wrong passwords from anywhere would lock the admin out
    everywhere. A successful login clears its (user, address) count, not the
    address's.
    """

    per_user: int = 5  # failures for one user name from one address
    per_address: int = 20  # failures from one address, whatever the names
    window: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[tuple[str, ...], deque[float]] = field(default_factory=dict)

    def retry_after(self, user: str, address: str) -> float:
        """Seconds until a login for (user, address) may be tried; 0 when it may now."""
        now = self.clock()
        wait = 0.0
        for key, limit in (
            (("user", user, address), self.per_user),
            (("addr", address), self.per_address),
        ):
            times = self._recent(key, now)
            if len(times) >= limit:
                wait = max(wait, times[0] + self.window - now)
        return wait

    def failed(self, user: str, address: str) -> None:
        now = self.clock()
        for key in (("user", user, address), ("addr", address)):
            self._recent(key, now).append(now)

    def succeeded(self, user: str, address: str) -> None:
        self._failures.pop(("user", user, address), None)

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        if len(self._failures) > 100_000:  # bound memory under a spray of names
            horizon = now - self.window
            self._failures = {k: v for k, v in self._failures.items() if v and v[-1] > horizon}
        times = self._failures.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times
