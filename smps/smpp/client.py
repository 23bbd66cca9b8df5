"""SMPS as an ESME: the binds to one SMSC, kept up with back-off.

For each configured SMSC, `SmscClient` keeps `binds` connections bound as
receiver or transceiver. A lost or refused connection is retried after an
exponential back-off with jitter between `reconnect.initial` and
`reconnect.max`, so a down SMSC sees no reconnect storm. A refusal is logged
as ERROR when it first happens or its reason changes, then at most every
few minutes while it lasts, never once per attempt. Whatever an attempt fails
with (refusal, network, a malformed response, even a bug) is retried the same
way; an exception of a type no attempt should raise has its traceback logged
once.

Every deliver_sm / data_sm is handed to the `on_message(session, pdu)`
handler, which must answer it exactly once with `session.respond()`; the proxy
core plugs in there. The default handler allows everything.

Stopping takes two steps so that nothing the SMSC sent goes unanswered:
`pause(turn_away)` stops the reconnecting and hands what still arrives to
`turn_away` (a temporary error, which the SMSC retries: on another bind or
node, or later), while the sessions keep reading; once the caller has answered
what was in flight, `stop()` unbinds. Pausing the reads instead would leave the
originals already on their way in the socket, unanswered, at the unbind.

`SmscClients` keeps one data plane's clients equal to the live SMSC list: a
change of the list starts, stops or rebinds only the SMSCs it concerns.
"""

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import msgspec

from smps._native.pdu import CommandId, Pdu, Status, command_name
from smps._native.states import BIND_STATE, Role, State
from smps.config import SmscConfig, TlsClientConfig
from smps.errors import ProtocolError, SmpsError
from smps.smpp.session import RESPONSE_BIT, Session

log = logging.getLogger("smps.smsc")

INTERFACE_VERSION = 0x34
SC_INTERFACE_VERSION = 0x0210
REPEAT_ERROR_EVERY = 300.0  # seconds between repeats of an unchanged bind failure
STABLE_BIND = 60.0  # a bind that lasted this long resets the back-off

# What a bind attempt fails with when the network or the SMSC lets it down (a
# malformed response is a ProtocolError). Any other exception is retried alike,
# its traceback logged once.
EXPECTED_ERRORS = (OSError, TimeoutError, SmpsError)

MessageHandler = Callable[["SmscSession", bytes], None]

# Plain ints: an enum member lookup per original costs more than the comparison.
MESSAGES = frozenset({int(CommandId.DELIVER_SM), int(CommandId.DATA_SM)})
_ALERT_NOTIFICATION = int(CommandId.ALERT_NOTIFICATION)


def allow_all(session: "SmscSession", pdu: bytes) -> None:
    """Default handler until the proxy core is plugged in: allow every message."""
    session.respond(pdu, Status.ROK)


class BindRefused(SmpsError):
    """The SMSC refused the bind: an error status, or an answer that is not the
    bind's own response (generic_nack, whatever its status, is a refusal)."""

    def __init__(self, status: int, answer: str | None = None):
        try:
            name = f"ESME_{Status(status).name}"
        except ValueError:
            name = "an unknown status"
        if answer is None:
            super().__init__(f"bind refused with {name} (0x{status:08X})")
        else:
            super().__init__(f"bind answered by {answer} with {name} (0x{status:08X})")
        self.status = status


class SmscSession(Session):
    """One connection to an SMSC, SMPS being the ESME."""

    role = Role.ESME

    def __init__(self, *, smsc: str, on_message: MessageHandler, **options: Any):
        super().__init__(**options)
        self.smsc = smsc
        self.on_message = on_message
        self.sc_interface_version: int | None = None
        self.alerts = 0

    def on_request(self, command_id: int, pdu: bytes) -> None:
        # deliver_sm and data_sm went to on_message already (SessionCore).
        if command_id == _ALERT_NOTIFICATION:
            self.alerts += 1  # no response PDU exists (SMPP 3.4 §4.12)
        # OUTBIND while we are connecting ourselves: nothing to do.

    def _refuse(self, command_id: int, seq: int, pdu: bytes) -> None:
        """A deliver_sm or data_sm that crossed our unbind (standing down, stopping)
        gets ESME_RTHROTTLED, which the SMSC sends again (on another bind, or to the
        other node), not ESME_RINVBNDSTS, which it may take as final."""
        if command_id in MESSAGES and self.state is State.UNBOUND:
            self.stats.error("after_unbind")
            self.reject(pdu, Status.RTHROTTLED)
            return
        super()._refuse(command_id, seq, pdu)

    async def bind(self, cfg: SmscConfig) -> None:
        """Bind as cfg.bind; raises BindRefused, SessionClosed or TimeoutError."""
        command_id = (
            CommandId.BIND_RECEIVER if cfg.bind == "receiver" else CommandId.BIND_TRANSCEIVER
        )
        fields = {
            "system_id": cfg.system_id.encode(),
            "password": cfg.password.encode(),
            "system_type": cfg.system_type.encode(),
            "interface_version": INTERFACE_VERSION,
        }

        def bound(resp: Pdu) -> None:
            version = resp.tlv(SC_INTERFACE_VERSION)
            self.sc_interface_version = version[0] if version else None
            self.bound(BIND_STATE[command_id])

        request = self.request(command_id, fields, on_success=bound)
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel
        # that lands as the response arrives, and stop() would wait forever.
        async with asyncio.timeout(cfg.response_timeout):
            resp = await request
        if resp.command_id != command_id | RESPONSE_BIT:
            raise BindRefused(resp.command_status, command_name(resp.command_id))
        if resp.command_status != Status.ROK:
            raise BindRefused(resp.command_status)


def client_ssl_context(tls: TlsClientConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca or None)
    if tls.cert:
        context.load_cert_chain(tls.cert, tls.key or None)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class SmscClient:
    """Keeps cfg.binds connections to one SMSC bound until stop()."""

    def __init__(
        self,
        cfg: SmscConfig,
        on_message: MessageHandler = allow_all,
        *,
        name_prefix: str = "",
        logger: logging.Logger = log,
    ):
        """``logger``: where the bind loop's lines go (an NE simulator, which binds with
        this client too, logs them as itself rather than as an SMSC connection)."""
        self.cfg = cfg
        self.log = logger
        self.on_message = on_message
        self.sessions: set[SmscSession] = set()
        self.reconnects = 0
        self.bind_failures = 0
        self.attempt_times: list[float] = []  # monotonic time of each connect attempt
        self._name_prefix = name_prefix
        self._ssl = client_ssl_context(cfg.tls) if cfg.tls else None
        self._tasks: list[asyncio.Task[None]] = []
        self._held: list[SmscSession] = []  # bound when pause() stopped the reconnecting
        self._unexpected_seen: set[type[Exception]] = set()  # their tracebacks were logged
        # Bind name -> time.monotonic() since when it has had no bind (lost or never made).
        self._unbound_since: dict[str, float] = {}
        self.last_error: str | None = None  # why the latest failed attempt failed

    @property
    def binds_up(self) -> int:
        return sum(1 for s in self.sessions if s.state in BIND_STATE.values())

    def start(self) -> None:
        for index in range(self.cfg.binds):
            name = f"{self._name_prefix}{self.cfg.name}#{index}"
            self._tasks.append(asyncio.create_task(self._keep_bound(name), name=name))

    def pause(self, turn_away: MessageHandler) -> None:
        """Take no more originals from this SMSC: no reconnecting; bound sessions
        stay bound and reading (to answer what is in flight) until stop(), and
        hand what still arrives to `turn_away`."""
        self.on_message = turn_away
        self._held = list(self.sessions)  # the tasks forget their session when cancelled
        for task in self._tasks:
            task.cancel()
        for session in self._held:
            session.on_message = turn_away
            session.resume_reading()  # the proxy may have paused it (flow control)

    async def stop(self) -> None:
        """Stop reconnecting, unbind every session politely."""
        sessions = set(self.sessions) | set(self._held)
        self._held = []
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(s.unbind() for s in sessions), return_exceptions=True)

    async def _connect_and_bind(self, name: str) -> SmscSession:
        """One attempt; a half-open connection never outlives a failure or a cancel."""
        cfg = self.cfg
        loop = asyncio.get_running_loop()
        session: SmscSession | None = None
        try:
            async with asyncio.timeout(cfg.response_timeout):
                _transport, session = await loop.create_connection(
                    lambda: self._new_session(name), cfg.host, cfg.port, ssl=self._ssl
                )
            await session.bind(cfg)
            return session
        except BaseException:
            if session is not None and session.transport is not None:
                session.transport.abort()
            raise

    async def _keep_bound(self, name: str) -> None:
        """One bind, kept up until cancelled; while it is down, `down_reason` knows since when."""
        self._unbound_since[name] = time.monotonic()
        try:
            await self._bind_and_rebind(name)
        finally:
            self._unbound_since.pop(name, None)

    async def _bind_and_rebind(self, name: str) -> None:
        cfg = self.cfg
        delay = cfg.reconnect.initial
        last_error: str | None = None
        last_logged = 0.0
        failures = 0
        while True:
            self.attempt_times.append(time.monotonic())
            try:
                session = await self._connect_and_bind(name)
            except Exception as exc:  # any: a bug or a peer's oddity must not end the loop
                if isinstance(exc, BindRefused):
                    self.bind_failures += 1
                failures += 1
                reason = self.last_error = _describe(exc)
                now = time.monotonic()
                if reason != last_error or now - last_logged >= REPEAT_ERROR_EVERY:
                    self.log.error(
                        "%s: cannot bind to %s:%d: %s (attempt %d; retrying with back-off "
                        "up to %g s)",
                        name,
                        cfg.host,
                        cfg.port,
                        reason,
                        failures,
                        cfg.reconnect.max,
                        exc_info=self._first_of_unexpected(exc),
                    )
                    last_error, last_logged = reason, now
                else:
                    self.log.debug("%s: bind attempt %d failed: %s", name, failures, reason)
            else:
                if failures:
                    self.log.info(
                        "%s: bound to %s:%d after %d failed attempts",
                        name,
                        cfg.host,
                        cfg.port,
                        failures,
                    )
                else:
                    self.log.info("%s: bound to %s:%d as %s", name, cfg.host, cfg.port, cfg.bind)
                failures, last_error, self.last_error = 0, None, None
                bound_at = time.monotonic()
                del self._unbound_since[name]
                self.sessions.add(session)
                try:
                    await asyncio.shield(session.closed)
                finally:
                    self.sessions.discard(session)
                    self._unbound_since[name] = time.monotonic()
                self.reconnects += 1
                self.log.warning(
                    "%s: connection to %s:%d lost; reconnecting", name, cfg.host, cfg.port
                )
                if time.monotonic() - bound_at >= STABLE_BIND:
                    delay = cfg.reconnect.initial
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, cfg.reconnect.max)

    def down_reason(self, now: float) -> str | None:
        """Why this SMSC makes the node degraded (/health): some of its binds have had
        no bind for longer than ``reconnect.max``, the longest back-off, so they are
        not just reconnecting. None when every bind is up or only briefly down."""
        limit = self.cfg.reconnect.max
        down = [now - since for since in self._unbound_since.values() if now - since > limit]
        if not down:
            return None
        reason = (
            f"SMSC {self.cfg.name}: {len(down)} of {self.cfg.binds} binds unbound for longer "
            f"than reconnect.max ({limit:g} s; longest {max(down):.0f} s)"
        )
        if self.last_error is not None:
            reason += f"; last error: {self.last_error}"
        return reason

    def _first_of_unexpected(self, exc: Exception) -> Exception | None:
        """``exc`` when it is of a type no bind attempt should raise, the first time
        that type is seen: its traceback is logged once (it may be a bug)."""
        kind = type(exc)
        if isinstance(exc, EXPECTED_ERRORS) or kind in self._unexpected_seen:
            return None
        self._unexpected_seen.add(kind)
        return exc

    def _new_session(self, name: str) -> SmscSession:
        cfg = self.cfg
        return SmscSession(
            smsc=cfg.name,
            on_message=self.on_message,
            name=name,
            enquire_link=cfg.enquire_link,
            response_timeout=cfg.response_timeout,
            inactivity_timeout=max(cfg.enquire_link * 3, cfg.response_timeout * 2),
            write_buffer_max=cfg.write_buffer_max,
            write_stall_timeout=cfg.write_stall_timeout,
        )

    def snapshot(self) -> dict[str, Any]:
        return {
            "name": self.cfg.name,
            "binds_up": self.binds_up,
            "binds": self.cfg.binds,
            "reconnects": self.reconnects,
            "bind_failures": self.bind_failures,
        }


def needs_rebind(old: SmscConfig, new: SmscConfig) -> bool:
    """Whether a change touches the connection; the decoding settings apply to live binds."""
    unchanged = msgspec.structs.replace(
        old, default_alphabet=new.default_alphabet, gsm7_packed=new.gsm7_packed
    )
    return unchanged != new


class SmscClients:
    """One data plane's SmscClients by SMSC name, made to follow the live SMSC list."""

    def __init__(
        self,
        on_message: MessageHandler = allow_all,
        *,
        turn_away: MessageHandler = allow_all,
        name_prefix: str = "",
    ):
        self.on_message = on_message
        self.turn_away = turn_away  # answers originals once their SMSC is paused
        self.name_prefix = name_prefix
        self.clients: dict[str, SmscClient] = {}
        self._lock = asyncio.Lock()  # one change at a time, in the order they came

    def __iter__(self) -> Iterator[SmscClient]:
        return iter(list(self.clients.values()))

    def __len__(self) -> int:
        return len(self.clients)

    async def apply(
        self, configs: list[SmscConfig], answer_in_flight: Callable[[], Awaitable[Any]]
    ) -> None:
        """Start the new SMSCs, stop the removed ones, rebind the changed ones,
        leave the others bound.

        A client that goes first turns away new originals and stays bound while
        `answer_in_flight()` runs, so what it delivered is answered before the unbind.
        """
        async with self._lock:
            wanted = {cfg.name: cfg for cfg in configs}
            going = [
                client
                for name, client in self.clients.items()
                if name not in wanted or needs_rebind(client.cfg, wanted[name])
            ]
            for client in going:
                del self.clients[client.cfg.name]
                client.pause(self.turn_away)
            for name, client in self.clients.items():
                client.cfg = wanted[name]  # decoding settings only
            if going:
                await answer_in_flight()
                await asyncio.gather(*(c.stop() for c in going), return_exceptions=True)
                log.info("SMSC binds stopped: %s", ", ".join(c.cfg.name for c in going))
            for name, cfg in wanted.items():
                if name not in self.clients:
                    client = SmscClient(cfg, self.on_message, name_prefix=self.name_prefix)
                    client.start()
                    self.clients[name] = client

    def pause(self) -> None:
        """Every SMSC: no reconnecting, new originals turned away (see SmscClient.pause)."""
        for client in self.clients.values():
            client.pause(self.turn_away)

    async def stop(self) -> None:
        """Unbind from every SMSC (the caller has answered what was in flight)."""
        async with self._lock:
            clients, self.clients = list(self.clients.values()), {}
            await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(exc, ProtocolError):
        return f"malformed response from the SMSC: {exc}"
    if not isinstance(exc, SmpsError):
        return f"unexpected {type(exc).__name__}: {exc}"
    return str(exc)
