"""SMPS as an SMSC: the listener the NEs bind to, their authentication, and
the registry of live binds.

A new connection must send a whole PDU within `server.first_pdu_timeout` and
its bind within `server.bind_timeout`; beyond `server.max_unbound` connections
not bound yet (`server.max_unbound_per_address` from one address) new ones are
closed at once. A bind is checked in this order: the (address, system_id) pair
is not locked out, the system_id exists, the source address is in the
account's `allowed_ips`, the password matches (constant-time; an unknown
system_id costs the same work), the account is enabled, the bind can receive
copies (not a transmitter) and `max_binds` is not reached. Every refusal is answered ESME_RBINDFAIL
`server.auth_failure_delay` after the bind arrived, whatever was wrong, so
neither the status nor the timing tells a guesser which part failed; the log
says (first refusal of a pair, then a summary per minute). Unknown system_ids,
wrong passwords and addresses outside `allowed_ips` count toward the lockout
(smps.smpp.bind_guard). A bind on a bound session gets ESME_RALYBND.
Passwords are never logged.
"""

import asyncio
import hmac
import ipaddress
import logging
import ssl
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from smps._native.pdu import CommandId, Status, decode, encode
from smps._native.states import BIND_STATE, Role, State
from smps.config import NeAccount, ServerConfig
from smps.errors import PduError
from smps.passwords import unknown_password_hash, verify_password
from smps.smpp.bind_guard import BindLockout, RefusalLog, UnboundLimit
from smps.smpp.session import RESPONSE_BIT, Session

log = logging.getLogger("smps.ne")

SC_INTERFACE_VERSION_TLV = (0x0210, b"\x34")
SERVER_SYSTEM_ID = b"SMPS"


class NeSession(Session):
    """One NE connection, SMPS being the SMSC."""

    role = Role.SMSC

    def __init__(self, server: "NeServer", **options: Any):
        super().__init__(**options)
        self.server = server
        self.account: NeAccount | None = None
        self.bound_at: float | None = None
        self._bind_timer: asyncio.TimerHandle | None = None
        self._binding = False
        self._admitted = False  # counted by the server's UnboundLimit until it leaves OPEN

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self.server.admit(self):
            transport.abort()
            return
        self._admitted = True
        deadline = self.server.cfg.first_pdu_deadline
        self._bind_timer = self._loop.call_later(deadline, self._first_pdu_due)

    def _first_pdu_due(self) -> None:
        if self.state is not State.OPEN:
            return
        cfg = self.server.cfg
        if not self.stats.pdus_in:
            self._close_unbound(
                "first_pdu_timeout", f"no whole PDU within {cfg.first_pdu_deadline:g}s"
            )
        else:
            later = cfg.bind_timeout - cfg.first_pdu_deadline
            self._bind_timer = self._loop.call_later(later, self._bind_timed_out)

    def _bind_timed_out(self) -> None:
        if self.state is State.OPEN and not self._binding:  # a bind's answer ends it otherwise
            self._close_unbound("bind_timeout", f"no bind within {self.server.cfg.bind_timeout:g}s")

    def _close_unbound(self, kind: str, why: str) -> None:
        self.stats.error(kind)
        self.server.dropped.note(self.peer[0], f"({kind})", f"{self.peer_text}: {why}; closing")
        self.abort_after_flush()

    @property
    def peer_text(self) -> str:
        return f"{self.peer[0]}:{self.peer[1]}" if self.peer else "unknown peer"

    def on_request(self, command_id: int, pdu: bytes) -> None:
        if command_id in BIND_STATE:
            if not self._binding:
                self._binding = True
                self.server.authenticate(self, command_id, pdu)
            else:
                self.reject(pdu, Status.RALYBND)
        else:
            # SMPS accepts no submissions from NEs: they only answer copies.
            self.stats.error("refused_request")
            self.reject(pdu, Status.RINVBNDSTS)

    def on_state_change(self, old: State, new: State) -> None:
        if old is State.OPEN and self._admitted:
            self.server.unbound.release(self.peer[0])
        # Leave the registry as soon as the bind ends, before the session fails
        # its outstanding copies: a retry must never pick this bind again.
        if new in (State.UNBOUND, State.CLOSED):
            self.server.registry.remove(self)
        if new is State.CLOSED and self._bind_timer is not None:
            self._bind_timer.cancel()

    def snapshot(self) -> dict[str, Any]:
        return {
            "account": self.account.system_id if self.account else None,
            "peer": self.peer_text,
            "state": self.state.value,
            "bound_at": self.bound_at,
            "outstanding": self.outstanding,
            "queued": self.queued,
            "window": self.window,
            **self.stats.snapshot(),
        }


class BindRegistry:
    """The live NE binds, by account; tells the proxy when binds come and go."""

    def __init__(self) -> None:
        self.by_account: dict[str, list[NeSession]] = {}
        self.listeners: list[Callable[[str, NeSession, bool], None]] = []

    def count(self, system_id: str) -> int:
        return len(self.by_account.get(system_id, ()))

    def add(self, session: NeSession) -> None:
        system_id = session.account.system_id
        self.by_account.setdefault(system_id, []).append(session)
        for listener in self.listeners:
            listener(system_id, session, True)

    def remove(self, session: NeSession) -> None:
        if session.account is None:
            return
        system_id = session.account.system_id
        binds = self.by_account.get(system_id)
        if binds and session in binds:
            binds.remove(session)
            if not binds:
                del self.by_account[system_id]
            for listener in self.listeners:
                listener(system_id, session, False)

    def sessions(self) -> Iterable[NeSession]:
        for binds in self.by_account.values():
            yield from binds


class NeServer:
    """Listens for NE binds on server.listen and authenticates them."""

    def __init__(self, cfg: ServerConfig, accounts: Iterable[NeAccount], *, copy_timeout: float):
        self.cfg = cfg
        self.accounts: dict[str, NeAccount] = {}
        self._networks: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
        self.registry = BindRegistry()
        self.lockout = BindLockout(cfg.auth_lockout_failures, cfg.auth_lockout)
        self.refusals = RefusalLog(log, "failed binds")
        self.unbound = UnboundLimit(cfg.max_unbound_per_address, cfg.max_unbound)
        self.dropped = RefusalLog(log, "NE connections closed before a bind")
        self.auth_failures = 0
        self.copy_timeout = copy_timeout
        self._server: asyncio.AbstractServer | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._ssl = server_ssl_context(cfg.tls) if cfg.tls else None
        # Binds of an account held by other worker processes, so that max_binds
        # holds across the node (the master keeps the count; see smps.runtime).
        self.binds_elsewhere: Callable[[str], int] = _none_elsewhere
        # Told at once when a bind is refused (the answer itself is delayed).
        self.refusal_listeners: list[Callable[[NeSession], None]] = []
        # Told of every bind that counts for the lockout: (address, system_id, succeeded).
        self.auth_listeners: list[Callable[[str, str, bool], None]] = []
        self.set_accounts(accounts)

    async def start(
        self, host: str | None = None, port: int | None = None, *, reuse_port: bool = False
    ) -> int:
        """Listen (on server.listen unless given); returns the bound port.

        With `reuse_port` every worker process listens on the same port and the
        kernel spreads connections over them (server.placement: reuseport)."""
        listen_host, listen_port = self.cfg.listen
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._new_session,
            host if host is not None else listen_host,
            port if port is not None else listen_port,
            ssl=self._ssl,
            reuse_address=True,
            reuse_port=reuse_port or None,
        )
        return self._server.sockets[0].getsockname()[1]

    async def adopt(self, sock) -> NeSession:
        """Serve a connection another process accepted (balanced placement):
        the bind PDU is still unread in the socket, so the session reads it itself."""
        loop = asyncio.get_running_loop()
        _transport, session = await loop.connect_accepted_socket(
            self._new_session, sock, ssl=self._ssl
        )
        return session

    async def stop_listening(self) -> None:
        """Stop accepting new NE connections; binds already up stay up."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def stop(self) -> None:
        """Stop listening and unbind every NE."""
        await self.stop_listening()
        self.refusals.close()
        self.dropped.close()
        await asyncio.gather(
            *(s.unbind() for s in list(self.registry.sessions())), return_exceptions=True
        )

    def set_accounts(self, accounts: Iterable[NeAccount]) -> None:
        """Apply a new account list live: binds of deleted or disabled accounts
        are unbound; other binds stay up (a new password applies to new binds)."""
        self.accounts = {a.system_id: a for a in accounts}
        # What an unknown system_id's password is checked against: the same work as
        # for a real account (a slow hash as soon as the API made one), for nothing.
        self._stand_in = (
            _StandIn(None, unknown_password_hash())
            if any(getattr(a, "password", None) is None for a in self.accounts.values())
            else _StandIn("\0" * 8, None)
        )
        self._networks = {
            a.system_id: [ipaddress.ip_network(n, strict=False) for n in a.allowed_ips]
            for a in self.accounts.values()
        }
        for session in list(self.registry.sessions()):
            account = self.accounts.get(session.account.system_id)
            if account is None or not account.enabled:
                log.warning(
                    "%s: account %s removed or disabled; unbinding",
                    session.peer_text,
                    session.account.system_id,
                )
                self._spawn(session.unbind())
            else:
                session.account = account

    def kick(self, system_id: str) -> int:
        """Unbind every bind of an account; returns how many."""
        sessions = list(self.registry.by_account.get(system_id, ()))
        for session in sessions:
            self._spawn(session.unbind())
        return len(sessions)

    def _spawn(self, coroutine) -> None:
        """Run an unbind in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def admit(self, session: NeSession) -> bool:
        """Whether a new connection fits under the caps on unbound connections."""
        over = self.unbound.admit(session.peer[0])
        if over is None:
            return True
        self.unbound.note_refusal(self.dropped, session.peer[0], over)
        return False

    def _new_session(self) -> NeSession:
        return NeSession(
            self,
            name="ne",
            enquire_link=self.cfg.enquire_link,
            inactivity_timeout=self.cfg.inactivity_timeout,
            response_timeout=self.copy_timeout,
            max_pdu_size=self.cfg.max_pdu_size,
            write_buffer_max=self.cfg.write_buffer_max,
            write_stall_timeout=self.cfg.write_stall_timeout,
        )

    # ---- authentication ----------------------------------------------------

    def authenticate(self, session: NeSession, command_id: int, pdu: bytes) -> None:
        self._spawn(self._authenticate(session, command_id, pdu))

    async def _authenticate(self, session: NeSession, command_id: int, pdu: bytes) -> None:
        answer_at = asyncio.get_running_loop().time() + self.cfg.auth_failure_delay
        try:
            bind = decode(pdu)
        except PduError as exc:
            self._refuse(session, pdu, answer_at, "?", f"malformed bind: {exc}", counts=False)
            return
        system_id = bind.fields["system_id"].decode("ascii", "replace")
        address = session.peer[0]
        account = self.accounts.get(system_id)
        if self.lockout.locked(address, system_id):
            reason, counts = "locked out after repeated failed binds", False
        elif account is None:
            await self._password_matches(self._stand_in, bind.fields["password"])
            reason, counts = "unknown system_id", True
        elif not self._address_allowed(account, address):
            # Before the password: an address that may not bind learns nothing about it.
            reason, counts = f"address {address} not in allowed_ips", True
        elif not await self._password_matches(account, bind.fields["password"]):
            reason, counts = "wrong password", True
        elif self.lockout.locked(address, system_id):  # by binds refused while this one was checked
            reason, counts = "locked out after repeated failed binds", False
        else:  # checked after the password, so counts are current after the await
            reason, counts = self._check(command_id, account), False
        if reason:
            self._refuse(session, pdu, answer_at, system_id, reason, counts=counts)
            return
        if not session.is_open:
            return
        self.lockout.succeeded(address, system_id)
        for listener in self.auth_listeners:
            listener(address, system_id, True)
        session.account = account
        session.window = account.window
        session.name = f"ne:{system_id}@{session.peer_text}"
        session.bound_at = time.time()
        session.bound(BIND_STATE[command_id])
        # The bind_resp goes first: joining the registry may hand the session
        # copies that waited for this account, and none may precede it.
        session.write(
            encode(
                command_id | RESPONSE_BIT,
                bind.sequence,
                {"system_id": SERVER_SYSTEM_ID},
                [SC_INTERFACE_VERSION_TLV],
            )
        )
        self.registry.add(session)
        log.info(
            "%s: bound as %s (%s); binds of %s in this process: %d (max_binds for the node: %d)",
            session.peer_text,
            system_id,
            CommandId(command_id).name.lower(),
            system_id,
            self.registry.count(system_id),
            account.max_binds,
        )

    @staticmethod
    async def _password_matches(account: Any, password: bytes) -> bool:
        """File accounts hold the password itself (constant-time compare); accounts
        made through the API hold a slow hash, verified off the event loop."""
        plain = getattr(account, "password", None)
        if plain is not None:
            return hmac.compare_digest(password, plain.encode())
        loop = asyncio.get_running_loop()
        text = password.decode("latin-1")
        return await loop.run_in_executor(None, verify_password, account.password_hash, text)

    def _address_allowed(self, account: Any, address: str) -> bool:
        peer = ipaddress.ip_address(address)
        return any(peer in net for net in self._networks[account.system_id])

    def _check(self, command_id: int, account: Any) -> str:
        """Why a bind with the right password is still refused; "" when it is not."""
        system_id = account.system_id
        if not account.enabled:
            return "account disabled"
        if command_id == CommandId.BIND_TRANSMITTER:
            return "transmitter bind cannot receive copies; bind as receiver or transceiver"
        if self.registry.count(system_id) + self.binds_elsewhere(system_id) >= account.max_binds:
            return f"max_binds {account.max_binds} reached"
        return ""

    def _refuse(
        self,
        session: NeSession,
        pdu: bytes,
        answer_at: float,
        system_id: str,
        reason: str,
        *,
        counts: bool,
    ) -> None:
        """ESME_RBINDFAIL at `answer_at` whatever the reason; `counts` when the
        refusal counts toward the lockout (a guess: unknown system_id, wrong
        password, address not allowed)."""
        self.auth_failures += 1
        session.stats.error("bind_refused")
        for listener in self.refusal_listeners:
            listener(session)
        address = session.peer[0]
        if counts:
            # Counted even when the peer has gone: hanging up early buys no extra guesses.
            locked_until = self.lockout.failed(address, system_id)
            for listener in self.auth_listeners:
                listener(address, system_id, False)
            if locked_until is not None:
                log.warning(
                    "%s: locked out as %r for %gs after %d failed binds (the right password "
                    "is refused too; other addresses are not affected)",
                    address,
                    system_id,
                    self.lockout.duration,
                    self.lockout.failures,
                )
        self.refusals.note(
            address,
            f"as {system_id!r}",
            f"{session.peer_text}: bind as {system_id!r} refused: {reason} "
            "(answered ESME_RBINDFAIL; more from this address are summarised)",
        )

        def answer() -> None:
            session.reject(pdu, Status.RBINDFAIL)
            session.abort_after_flush()

        if session.is_open:
            asyncio.get_running_loop().call_at(answer_at, answer)

    def snapshot(self) -> dict[str, Any]:
        return {
            "binds": {sid: len(b) for sid, b in self.registry.by_account.items()},
            "auth_failures": self.auth_failures,
        }


class _StandIn(NamedTuple):
    """Stands in for an account that does not exist, to check a password against."""

    password: str | None
    password_hash: str | None


def _none_elsewhere(system_id: str) -> int:
    return 0


def server_ssl_context(tls) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=tls.ca or None)
    context.load_cert_chain(tls.cert, tls.key)
    if tls.verify_client:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
