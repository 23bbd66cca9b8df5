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
  enquire_link after idleness, and the inactivity timeout;
- unbind in both directions with a short grace period;
- writes coalesced per event-loop iteration, so a burst goes out in one writev;
- plain counters (no metrics library call per PDU).

The two roles subclass it: `client.SmscSession` (SMPS as ESME toward an SMSC)
and `server.NeSession` (SMPS as SMSC toward an NE).
"""

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from smps._native.fanout import append_with_sequence
from smps._native.pdu import (
    CommandId,
    Framer,
    Pdu,
    Status,
    command_name,
    decode,
    encode,
    header,
    make_generic_nack,
    make_resp,
)
from smps.errors import FramingError, PduError, SmpsError
from smps.smpp.states import ALLOWED_REQUESTS, BIND_STATE, Role, State

log = logging.getLogger("smps.smpp")

MAX_SEQUENCE = 0x7FFFFFFF
RESPONSE_BIT = 0x80000000
NO_RESPONSE = -1
"""The status a response callback gets when no response came: timeout,
connection lost, or the request was never sent."""

REFUSED = 0
QUEUED = -1
"""What `Session.send` returns when the request did not go out now."""

ResponseCallback = Callable[[Any, int, bytes | None], None]
"""`callback(context, status, response_pdu)`; `status` is NO_RESPONSE and
`response_pdu` None when the peer never answered."""

KNOWN_REQUESTS = frozenset(
    c for c in CommandId if not c & RESPONSE_BIT and c != CommandId.GENERIC_NACK
)
# Requests that have no response PDU: an error about them is a generic_nack.
NO_RESPONSE_COMMANDS = frozenset({CommandId.OUTBIND, CommandId.ALERT_NOTIFICATION})
# The per-PDU path compares with these plain values: looking up an enum member
# (State.CLOSED, CommandId.UNBIND) costs about as much as the rest of a comparison.
_CLOSED = State.CLOSED
_ENQUIRE_LINK = int(CommandId.ENQUIRE_LINK)
_UNBIND = int(CommandId.UNBIND)
_GENERIC_NACK = int(CommandId.GENERIC_NACK)


class SessionClosed(SmpsError):
    """The connection closed before the request could be answered."""


class SessionStats:
    """Plain per-session counters; read by the stats line and the metrics export."""

    __slots__ = (
        "errors",
        "pdus_in",
        "pdus_out",
        "rtt_count",
        "rtt_total",
        "timeouts",
        "unexpected_responses",
        "window_peak",
    )

    def __init__(self) -> None:
        self.pdus_in: dict[int, int] = {}
        self.pdus_out: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.timeouts = 0
        self.unexpected_responses = 0
        self.window_peak = 0
        self.rtt_total = 0.0
        self.rtt_count = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "pdus_in": {command_name(c): n for c, n in self.pdus_in.items()},
            "pdus_out": {command_name(c): n for c, n in self.pdus_out.items()},
            "errors": dict(self.errors),
            "timeouts": self.timeouts,
            "unexpected_responses": self.unexpected_responses,
            "window_peak": self.window_peak,
            "rtt_avg_ms": round(1000 * self.rtt_total / self.rtt_count, 3)
            if self.rtt_count
            else None,
        }


class Session(asyncio.Protocol):
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
    ):
        self.name = name
        self.state = State.OPEN
        self.peer: tuple[str, int] | None = None
        self.stats = SessionStats()
        self.enquire_link = enquire_link
        self.inactivity_timeout = inactivity_timeout
        self.response_timeout = response_timeout
        self.window = window
        self.queue_limit = queue_limit
        self.unbind_grace = unbind_grace
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._framer = Framer(max_pdu_size)
        self._tick_interval = tick
        self._transport: asyncio.Transport | None = None
        self._next_seq = 1
        # seq -> (command_id, sent_at, callback, context); dicts keep insertion
        # order, so the oldest request is always first (one timeout for all).
        self._outstanding: dict[int, tuple[int, float, ResponseCallback, Any]] = {}
        self._queue: deque[tuple[bytes, ResponseCallback, Any, float]] = deque()
        self._wbuf = bytearray()  # what goes out at the end of this loop iteration
        self._flush_scheduled = False
        self._last_rx = 0.0
        self._enquire_outstanding = False
        self._tick_handle: asyncio.TimerHandle | None = None
        self._paused = False
        self._allowed = ALLOWED_REQUESTS[self.role][State.OPEN]

    # ---- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else None
        self._last_rx = self._loop.time()
        self._tick_handle = self._loop.call_later(self._tick_interval, self._tick)

    def data_received(self, data: bytes) -> None:
        self._last_rx = self._loop.time()
        self._framer.feed(data)
        self._process_buffered()

    def _process_buffered(self) -> None:
        framer = self._framer
        stats = self.stats
        counts = stats.pdus_in
        try:
            while not self._paused and (pdu := framer.next_pdu()) is not None:
                _length, command_id, status, seq = header(pdu)
                counts[command_id] = counts.get(command_id, 0) + 1
                if not command_id & RESPONSE_BIT:
                    self._on_request_pdu(command_id, seq, pdu)
                    if self.state is _CLOSED:
                        return
                    continue
                # A response, handled here rather than in a method: one per copy.
                entry = self._outstanding.pop(seq, None)
                if entry is None:
                    # Late or unknown: never answer a response (reference §4.3).
                    stats.unexpected_responses += 1
                    continue
                request_id, sent_at, callback, context = entry
                if command_id != request_id | RESPONSE_BIT and command_id != _GENERIC_NACK:
                    stats.error("mismatched_response")
                    status = Status.RSYSERR if status == 0 else status
                stats.rtt_total += self._loop.time() - sent_at
                stats.rtt_count += 1
                callback(context, status, pdu)
                if self._queue:
                    self._drain_queue()
                if self.state is _CLOSED:
                    return
        except FramingError as exc:
            self.stats.error("framing")
            log.warning("%s: framing error from %s: %s; closing", self.name, self.peer, exc)
            self.write(make_generic_nack(exc.sequence, exc.status))
            self.abort_after_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._set_state(State.CLOSED)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._transport = None
        self._wbuf = bytearray()
        outstanding, self._outstanding = self._outstanding, {}
        queued, self._queue = self._queue, deque()
        for _command, _sent, callback, context in outstanding.values():
            callback(context, NO_RESPONSE, None)
        for _pdu, callback, context, _queued_at in queued:
            callback(context, NO_RESPONSE, None)
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed(exc)

    # ---- hooks for the role subclasses -------------------------------------

    def on_request(self, command_id: int, pdu: bytes) -> None:
        """A request the state table allows; the subclass must answer it."""
        raise NotImplementedError

    def on_state_change(self, old: State, new: State) -> None:
        """Called on every state change (bound, unbound, closed)."""

    def on_closed(self, exc: Exception | None) -> None:
        """Called once when the connection is gone."""

    # ---- receiving ---------------------------------------------------------

    def _on_request_pdu(self, command_id: int, seq: int, pdu: bytes) -> None:
        if command_id not in self._allowed:
            self._refuse(command_id, seq, pdu)
        elif command_id == _ENQUIRE_LINK:
            self.write(make_resp(pdu))
        elif command_id == _UNBIND:
            self.write(make_resp(pdu))
            self._set_state(State.UNBOUND)
            self.abort_after_flush()
        else:
            try:
                self.on_request(command_id, pdu)
            except PduError as exc:
                self.stats.error("malformed_pdu")
                self.reject(pdu, exc.status)

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

    # ---- sending -----------------------------------------------------------

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    @property
    def queued(self) -> int:
        return len(self._queue)

    @property
    def free_window(self) -> int:
        """Requests that can go out now without waiting (negative when queued)."""
        return self.window - len(self._outstanding) - len(self._queue)

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def is_open(self) -> bool:
        return self._transport is not None and self.state is not _CLOSED

    def allocate_sequence(self) -> int:
        seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQUENCE else seq + 1
        return seq

    def send(self, pdu: bytes, callback: ResponseCallback, context: Any = None) -> int:
        """Send a request PDU under a fresh sequence number of this session.

        The PDU's own sequence number is replaced. Returns the sequence number
        used when the request went out now; QUEUED when the window is full and
        it waits in the session queue; REFUSED (0) when that is full too or the
        session is closed — then nothing was sent and the caller still owns
        the request. Otherwise `callback` runs exactly once.
        """
        if self._transport is None:
            return REFUSED
        if len(self._outstanding) < self.window and not self._queue:
            return self._transmit(pdu, callback, context)
        if len(self._queue) >= self.queue_limit:
            return REFUSED
        self._queue.append((pdu, callback, context, self._loop.time()))
        return QUEUED

    def _transmit(self, pdu: bytes, callback: ResponseCallback, context: Any) -> int:
        seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQUENCE else seq + 1
        # The copy goes straight into the write buffer with its new sequence number.
        command_id = append_with_sequence(self._wbuf, pdu, seq)
        outstanding = self._outstanding
        outstanding[seq] = (command_id, self._loop.time(), callback, context)
        stats = self.stats
        if len(outstanding) > stats.window_peak:
            stats.window_peak = len(outstanding)
        counts = stats.pdus_out
        counts[command_id] = counts.get(command_id, 0) + 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return seq

    def _drain_queue(self) -> None:
        queue = self._queue
        deadline = self._loop.time() - self.response_timeout
        while queue and len(self._outstanding) < self.window:
            pdu, callback, context, queued_at = queue.popleft()
            if queued_at < deadline:
                self.stats.timeouts += 1
                callback(context, NO_RESPONSE, None)
            else:
                self._transmit(pdu, callback, context)

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
        as the ESME_ROK response is read, before the next PDU of the same read:
        a bind must change the state before a deliver_sm right behind its resp.
        """
        future: asyncio.Future[Pdu] = self._loop.create_future()
        if self._transport is None:
            future.set_exception(SessionClosed(f"{self.name}: not connected"))
            return future
        seq = self.allocate_sequence()
        self._outstanding[seq] = (
            command_id,
            self._loop.time(),
            _resolve_request,
            (future, on_success),
        )
        self.write(encode(command_id, seq, fields, tlvs))
        return future

    def respond(self, request: bytes, status: int = 0, message_id: bytes = b"") -> bytes:
        """Answer a request received on this session; returns the response PDU."""
        response = make_resp(request, status, message_id)
        self.write(response)
        return response

    def write(self, data: bytes) -> None:
        """Queue one encoded PDU; everything queued in one loop iteration goes out in one writev."""
        if self._transport is None:
            return
        counts = self.stats.pdus_out
        command_id = header(data)[1]
        counts[command_id] = counts.get(command_id, 0) + 1
        self._wbuf += data
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._wbuf and self._transport is not None:
            # A fresh buffer each time: the transport may keep this one until sent.
            self._transport.write(self._wbuf)
            self._wbuf = bytearray()

    def pause_reading(self) -> None:
        """Act on no more requests from the peer (flow control): PDUs already
        received wait in the framer, the socket is not read."""
        if not self._paused and self._transport is not None:
            self._paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            if self._transport is not None:
                self._transport.resume_reading()
                self._loop.call_soon(self._process_buffered)

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

    def abort_after_flush(self) -> None:
        """Close once what is already written has gone out."""
        if self._transport is not None:
            self._flush()
            self._transport.close()

    async def unbind(self) -> None:
        """Unbind politely, wait briefly for unbind_resp, then close."""
        if self.state in (State.BOUND_TX, State.BOUND_RX, State.BOUND_TRX):
            future = self.request(CommandId.UNBIND)
            self._set_state(State.UNBOUND)
            with contextlib.suppress(TimeoutError, SessionClosed):
                async with asyncio.timeout(self.unbind_grace):  # not wait_for: see client.bind
                    await future
        self.abort_after_flush()
        if self._transport is not None or not self.closed.done():
            try:
                async with asyncio.timeout(self.unbind_grace):
                    await asyncio.shield(self.closed)
            except TimeoutError:
                if self._transport is not None:
                    self._transport.abort()

    def _tick(self) -> None:
        now = self._loop.time()
        outstanding = self._outstanding
        expired_before = now - self.response_timeout
        while outstanding:
            seq = next(iter(outstanding))
            _command_id, sent_at, callback, context = outstanding[seq]
            if sent_at > expired_before:
                break
            del outstanding[seq]
            self.stats.timeouts += 1
            callback(context, NO_RESPONSE, None)
        if self._queue:
            self._drain_queue()
        if self._transport is None:
            return
        idle = now - self._last_rx
        if idle >= self.inactivity_timeout:
            log.warning("%s: nothing from %s for %.0f s; closing", self.name, self.peer, idle)
            self.stats.error("inactivity")
            self.abort_after_flush()
            return
        if (
            self.enquire_link
            and idle >= self.enquire_link
            and not self._enquire_outstanding
            and self.state is not State.OPEN
        ):
            self._enquire_outstanding = True
            self.request(CommandId.ENQUIRE_LINK).add_done_callback(self._enquire_done)
        self._tick_handle = self._loop.call_later(self._tick_interval, self._tick)

    def _enquire_done(self, future: "asyncio.Future[Pdu]") -> None:
        self._enquire_outstanding = False
        if future.exception() is not None and self._transport is not None:
            log.warning("%s: no enquire_link_resp from %s; closing", self.name, self.peer)
            self.stats.error("enquire_link_timeout")
            self.abort_after_flush()


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
    if on_success is not None and response.command_status == 0:
        on_success(response)
    future.set_result(response)
