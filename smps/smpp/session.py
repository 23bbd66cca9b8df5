"""The SMPP session core, shared by both sides of SMPS.

One `Session` is one TCP connection running SMPP over an asyncio Protocol
(not streams: `data_received` feeds the native framer and acts on whole PDUs).
It owns what every SMPP connection needs, whichever side it plays:

- framing and protocol errors: a bad command_length gets generic_nack
  ESME_RINVCMDLEN and the connection is closed; an unknown command id gets
  generic_nack ESME_RINVCMDID; a request not allowed in the current state gets
  its own *_resp with ESME_RINVBNDSTS (the table lives in `states.py`);
- sequence numbers 1..0x7FFFFFFF with wrap, and responses matched by number;
- a send window (requests outstanding) with a bounded wait queue behind it;
- one periodic tick per session (not per message) for response timeouts,
  enquire_link after idleness, the inactivity timeout and write stalls;
- unbind in both directions with a short grace period: a peer's unbind is
  answered at once, and the connection closes once the answers to what we had
  sent it are in (they may cross its unbind), at most `unbind_grace` later;
- writes coalesced per event-loop iteration, so a burst goes out in one writev;
- write back-pressure: when the peer does not read what it is sent (the
  transport's buffer passes its high-water mark), the session stops reading
  from it and holds new requests in its queue (`free_window` is then 0 at
  most, so the proxy sends copies to other binds); answers still go out. A
  peer that takes nothing off the buffer for `write_stall_timeout`, or lets it
  grow past `write_buffer_max`, is closed (error `write_stall`);
- a response callback that raises is logged with its traceback (once per
  session and exception type) and counted (error `callback_error`); the
  connection and its other requests go on;
- plain counters (no metrics library call per PDU).

The two roles subclass it: `client.SmscSession` (SMPS as ESME toward an SMSC)
and `server.NeSession` (SMPS as SMSC toward an NE).

What runs per PDU (framing, response matching, window, queue, writes,
counters, the tick) is the extension type `smps._native.session.SessionCore`
with its state in C fields; this module adds the control side: refusals by
state, state changes, control requests and unbind. Subclasses override the
hooks (`on_request`, `on_state_change`, `on_closed`), not `write`, `send` or
`_flush`: the core calls its own versions of those in C.
"""

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from smps._native.pdu import (
    CommandId,
    Pdu,
    Status,
    decode,
    encode,
    header,
    make_generic_nack,
    make_resp,
)
from smps._native.session import NO_RESPONSE, QUEUED, REFUSED, SessionCore, SessionStats
from smps._native.states import ALLOWED_REQUESTS, BIND_STATE, Role, State
from smps.errors import PduError, SmpsError

__all__ = [
    "NO_RESPONSE",
    "QUEUED",
    "REFUSED",
    "RESPONSE_BIT",
    "ResponseCallback",
    "Session",
    "SessionClosed",
    "SessionStats",
]

RESPONSE_BIT = 0x80000000
# NO_RESPONSE (-1): the status a response callback gets when no response came:
# timeout, connection lost, or the request was never sent.
# REFUSED (0) and QUEUED (-1): what `Session.send` returns when the request did
# not go out now.

ResponseCallback = Callable[[Any, int, bytes | None], None]
"""`callback(context, status, response_pdu)`; `status` is NO_RESPONSE and
`response_pdu` None when the peer never answered."""

KNOWN_REQUESTS = frozenset(
    c for c in CommandId if not c & RESPONSE_BIT and c != CommandId.GENERIC_NACK
)
# Requests that have no response PDU: an error about them is a generic_nack.
NO_RESPONSE_COMMANDS = frozenset({CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION})


class SessionClosed(SmpsError):
    """The connection closed before the request could be answered."""


class Session(SessionCore, asyncio.Protocol):
    """One SMPP connection; subclasses add what their role does with requests."""

    role: Role

    def __init__(
        self,
        *,
        name: str,
        enquire_link: float = 30.0,
        inactivity_timeout: float = 120.0,
        response_timeout: float = 10.0,
        window: int = 64,
        queue_limit: int = 1024,
        max_pdu_size: int = 65536,
        unbind_grace: float = 1.0,
        tick: float = 0.1,
        write_buffer_max: int = 4 * 1024 * 1024,
        write_stall_timeout: float = 10.0,
    ):
        loop = asyncio.get_running_loop()
        super().__init__(loop, name, max_pdu_size, tick)
        self.enquire_link = enquire_link
        self.inactivity_timeout = inactivity_timeout
        self.response_timeout = response_timeout
        self.window = window
        self.queue_limit = queue_limit
        self.unbind_grace = unbind_grace
        self.write_buffer_max = write_buffer_max
        self.write_stall_timeout = write_stall_timeout
        self.closed = loop.create_future()
        self._allowed = ALLOWED_REQUESTS[self.role][State.OPEN]

    # ---- hooks for the role subclasses -------------------------------------

    def on_request(self, command_id: int, pdu: bytes) -> None:
        """A request the state table allows; the subclass must answer it."""
        raise NotImplementedError

    def on_state_change(self, old: State, new: State) -> None:
        """Called on every state change (bound, unbound, closed)."""

    def on_closed(self, exc: Exception | None) -> None:
        """Called once when the connection is gone."""

    # ---- receiving: what the state table does not allow --------------------

    def _refuse(self, command_id: int, seq: int, pdu: bytes) -> None:
        if command_id not in KNOWN_REQUESTS:
            self.stats.error("unknown_command")
            self.write(make_generic_nack(seq, Status.RINVCMDID))
        elif command_id in BIND_STATE and self.state in BIND_STATE.values():
            self.stats.error("already_bound")
            self.reject(pdu, Status.RALYBND)
        else:
            self.stats.error("wrong_state")
            self.reject(pdu, Status.RINVBNDSTS)

    def reject(self, request: bytes, status: int) -> None:
        """Answer a request with an error status (generic_nack if it has no resp)."""
        _length, command_id, _status, seq = header(request)
        if command_id in NO_RESPONSE_COMMANDS:
            self.write(make_generic_nack(seq, status))
        else:
            self.write(make_resp(request, status))

    # ---- control requests --------------------------------------------------

    def request(
        self,
        command_id: int,
        fields: Mapping[str, Any] | None = None,
        tlvs: Iterable[tuple[int, bytes]] = (),
        *,
        on_success: Callable[[Pdu], None] | None = None,
    ) -> "asyncio.Future[Pdu]":
        """Send a control request (bind, unbind, enquire_link) outside the window.

        Returns a future of the decoded response; it fails with SessionClosed
        when no response comes (timeout or connection lost). `on_success` runs
        as the request's own response with ESME_ROK is read (never for a
        generic_nack), before the next PDU of the same read:
        a bind must change the state before a deliver_sm right behind its resp.
        """
        future: asyncio.Future[Pdu] = self._loop.create_future()
        if self.transport is None:
            future.set_exception(SessionClosed(f"{self.name}: not connected"))
            return future
        seq = self._expect(command_id, _resolve_request, (future, on_success))
        self.write(encode(command_id, seq, fields, tlvs))
        return future

    # ---- lifecycle ---------------------------------------------------------

    def _set_state(self, new: State) -> None:
        old = self.state
        if old is new:
            return
        self.state = new
        self._allowed = ALLOWED_REQUESTS[self.role][new]
        self.on_state_change(old, new)

    def bound(self, state: State) -> None:
        """Mark the session bound (called by the role once the bind succeeded)."""
        self._set_state(state)

    async def unbind(self) -> None:
        """Unbind politely, wait briefly for unbind_resp, then close."""
        if self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
            future = self.request(CommandId.UNBIND)
            self._set_state(State.UNBOUND)
            with contextlib.suppress(TimeoutError, SessionClosed):
                async with asyncio.timeout(self.unbind_grace):  # not wait_for: see client.bind
                    await future
        self.abort_after_flush()
        if self.transport is not None or not self.closed.done():
            try:
                async with asyncio.timeout(self.unbind_grace):
                    await asyncio.shield(self.closed)
            except TimeoutError:
                if self.transport is not None:
                    self.transport.abort()


def _resolve_request(context: tuple, status: int, pdu: bytes | None) -> None:
    future, on_success = context
    if future.done():
        return
    if pdu is None:
        future.set_exception(SessionClosed("no response"))
        return
    try:
        response = decode(pdu)
    except PduError as exc:
        future.set_exception(exc)
        return
    # `status` is the core's: an answer of another command counts as an error. Neither
    # it nor a generic_nack (even with status 0) is the request's success.
    if on_success is not None and status == 0 and response.command_id != CommandId.GENERIC_NACK:
        on_success(response)
    future.set_result(response)
