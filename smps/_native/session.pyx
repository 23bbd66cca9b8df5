# cython: language_level=3
"""The per-PDU core of an SMPP session, as an extension type.

`smps.smpp.session.Session` subclasses `SessionCore` and is what everyone
uses; its module docstring says what a session does. Here is what runs for
every PDU (framing, response matching, the send window and its queue, the
coalesced writes, the counters) plus the periodic tick, with the hot state in
C fields: as plain Python the worker spent more on attribute access, calls and
tuples than on the work itself. The control side (bind state changes, refusals,
control requests, unbind) stays in Python, called from here through ordinary
attribute lookups.
"""

import logging
from collections import deque

cimport cython
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_GetItem, PyDict_Next
from cpython.object cimport PyObject
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memcpy

from smps._native.fanout cimport append_with_sequence
from smps._native.pdu cimport (
    DATA_SM,
    DELIVER_SM,
    ENQUIRE_LINK,
    GENERIC_NACK,
    HEADER_SIZE,
    RESPONSE_BIT,
    RSYSERR,
    UNBIND,
    Framer,
    make_generic_nack,
    make_resp,
    pdu_command_id,
    pdu_command_status,
    pdu_sequence,
)

from smps._native.pdu import command_name, header
from smps.errors import FramingError, PduError
from smps._native.states import State

log = logging.getLogger("smps.smpp")

# Statuses a callback gets and what send() returns; documented in session.py.
cpdef enum:
    NO_RESPONSE = -1
    REFUSED = 0
    QUEUED = -1

cdef uint32_t MAX_SEQUENCE = 0x7FFFFFFF
# The transport's high-water mark (a quarter of write_buffer_max, at most this):
# room for a window of copies or one read's worth of answers before pausing.
cdef Py_ssize_t WRITE_HIGH_WATER = 256 * 1024
cdef object _CLOSED = State.CLOSED
cdef object _OPEN = State.OPEN
cdef object _UNBOUND = State.UNBOUND


@cython.final
@cython.freelist(64)
cdef class _Request:
    """One request waiting for its response: what `_outstanding` maps a sequence to."""



# PDU counters: one C slot per command id of 0x00-0x3F and 0x100-0x13F, the
# ranges SMPP uses (§5.1.2), requests then responses (_SLOTS, session.pxd); other
# ids go to a dict.


cdef inline int _slot(uint32_t command_id) noexcept nogil:
    cdef uint32_t low = command_id & 0x7FFFFFFF
    cdef int slot
    if low < 0x40:
        slot = low
    elif 0x100 <= low < 0x140:
        slot = low - 0xC0
    else:
        return -1
    return slot + 128 if command_id & RESPONSE_BIT else slot


cdef inline uint32_t _command_of(int slot) noexcept nogil:
    cdef uint32_t low = slot & 127
    return (RESPONSE_BIT if slot >= 128 else 0) | (low if low < 0x40 else low + 0xC0)


cdef inline int _count(uint64_t* counts, dict others, uint32_t command_id) except -1:
    cdef int slot = _slot(command_id)
    if slot >= 0:
        counts[slot] += 1
    else:
        others[command_id] = others.get(command_id, 0) + 1
    return 0


cdef dict _counts(const uint64_t* counts, dict others):
    cdef dict out = {}
    cdef int slot
    for slot in range(_SLOTS):
        if counts[slot]:
            out[_command_of(slot)] = counts[slot]
    out.update(others)
    return out


cdef class SessionStats:
    """Plain per-session counters; read by the stats line and the metrics export."""


    def __init__(self):
        self._other_in = {}
        self._other_out = {}
        self.errors = {}

    @property
    def pdus_in(self):
        """PDUs received by command id (a new dict each time)."""
        return _counts(self._in, self._other_in)

    @property
    def pdus_out(self):
        """PDUs sent by command id (a new dict each time)."""
        return _counts(self._out, self._other_out)

    def error(self, str kind):
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self):
        return {
            "pdus_in": {command_name(c): n for c, n in self.pdus_in.items()},
            "pdus_out": {command_name(c): n for c, n in self.pdus_out.items()},
            "errors": dict(self.errors),
            "timeouts": self.timeouts,
            "unexpected_responses": self.unexpected_responses,
            "window_peak": self.window_peak,
            "write_pauses": self.write_pauses,
            "rtt_avg_ms": round(1000 * self.rtt_total / self.rtt_count, 3)
            if self.rtt_count
            else None,
        }


cdef class SessionCore:
    """Framing, response matching, window, queue and writes of one connection."""

    # deliver_sm and data_sm go to on_message(session, pdu) when it is set (an SMSC
    # session: the dispatcher), straight from here; other requests to on_request.
    # seq -> _Request; dicts keep insertion order, so the oldest request is
    # always first (one timeout for all).
    # Reading stops for either of two reasons, each cleared on its own:
    # While write-paused: when the peer last took bytes off the buffer, and its size then.

    def __init__(self, loop, str name, Py_ssize_t max_pdu_size, double tick):
        self._loop = loop
        self.name = name
        self.state = _OPEN
        self.stats = SessionStats()
        self._framer = Framer(max_pdu_size)
        self._tick_interval = tick
        self._next_seq = 1
        self._outstanding = {}
        self._queue = deque()
        self._wbuf = bytearray()
        self._callback_errors = set()

    @property
    def _loop(self):
        return self._event_loop

    @_loop.setter
    def _loop(self, loop):
        self._event_loop = loop
        self._time = loop.time

    # ---- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport):
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else None
        self._high_water = min(self.write_buffer_max // 4, WRITE_HIGH_WATER)
        transport.set_write_buffer_limits(self._high_water, self._high_water // 4)
        self._last_rx = self._time()
        self._tick_handle = self._event_loop.call_later(self._tick_interval, self._tick)

    def data_received(self, data):
        self._last_rx = self._time()
        self._framer.feed(data)
        self._process()

    def _process_buffered(self):
        self._process()

    cdef int _process(self) except -1:
        cdef Framer framer = self._framer
        cdef SessionStats stats = self.stats
        cdef object found
        cdef bytes pdu
        cdef const unsigned char* p
        cdef uint32_t command_id, status, seq
        cdef _Request entry
        try:
            while not self._reading_paused:
                found = framer.next_pdu()
                if found is None:
                    return 0
                pdu = <bytes>found
                p = <const unsigned char*>PyBytes_AS_STRING(pdu)
                command_id = pdu_command_id(p)
                status = pdu_command_status(p)
                seq = pdu_sequence(p)
                _count(stats._in, stats._other_in, command_id)
                if not command_id & RESPONSE_BIT:
                    self._on_request_pdu(command_id, seq, pdu)
                    if self.state is _CLOSED:
                        return 0
                    if PyByteArray_GET_SIZE(self._wbuf) >= self._high_water:
                        # A read full of requests: hand their answers over now, so
                        # a peer that does not read them pauses us before the next.
                        self._write_out()
                    continue
                found = self._outstanding.pop(seq, None)
                if found is None:
                    # Late or unknown: never answer a response (reference §4.3).
                    stats.unexpected_responses += 1
                    continue
                entry = <_Request>found
                if command_id != (entry.command_id | RESPONSE_BIT) and command_id != GENERIC_NACK:
                    stats.error("mismatched_response")
                    if status == 0:
                        status = RSYSERR
                # Measured to the read that brought it: no clock call per response.
                stats.rtt_total += self._last_rx - entry.sent_at
                stats.rtt_count += 1
                self._run_callback(entry.callback, entry.context, status, pdu)
                if self._closing and not self._outstanding:
                    self._abort_after_flush()
                    return 0
                if self._queue:
                    self._drain_queue()
                if self.state is _CLOSED:
                    return 0
        except FramingError as exc:
            stats.error("framing")
            log.warning("%s: framing error from %s: %s; closing", self.name, self.peer, exc)
            self._write(make_generic_nack(exc.sequence, exc.status))
            self._abort_after_flush()
        return 0

    cdef int _on_request_pdu(self, uint32_t command_id, uint32_t seq, bytes pdu) except -1:
        if command_id not in self._allowed:
            self._refuse(command_id, seq, pdu)
        elif command_id == ENQUIRE_LINK:
            self._write(make_resp(pdu))
        elif command_id == UNBIND:
            self._write(make_resp(pdu))
            self._set_state(_UNBOUND)
            self._close_when_answered()
        else:
            try:
                if self.on_message is not None and (command_id == DELIVER_SM
                                                    or command_id == DATA_SM):
                    self.on_message(self, pdu)
                else:
                    self.on_request(command_id, pdu)
            except PduError as exc:
                self.stats.error("malformed_pdu")
                self.reject(pdu, exc.status)
        return 0

    cdef int _close_when_answered(self) except -1:
        """The peer unbound. Answers to requests we sent it may have crossed its
        unbind on the wire: wait for them, up to unbind_grace, then close (an
        SMSC that closed at once lost the answers to deliveries in flight).
        Requests still queued here are never sent."""
        self._fail_queued()
        if not self._outstanding:
            self._abort_after_flush()
            return 0
        self._closing = True
        self._event_loop.call_later(self.unbind_grace, self.abort_after_flush)
        return 0

    cdef int _fail_queued(self) except -1:
        """Requests queued here that will never be sent: NO_RESPONSE to each."""
        queued, self._queue = self._queue, deque()
        for _pdu, callback, context, _queued_at in queued:
            self._run_callback(callback, context, NO_RESPONSE, None)
        return 0

    cdef int _run_callback(self, callback, context, status, pdu) except -1:
        """Hand a request's outcome to its callback. A callback that raises is a
        bug of its owner, not of this connection: closing it would fail every
        other request on it, so the error is logged (with its traceback, once per
        session and exception type), counted, and the session goes on."""
        try:
            callback(context, status, pdu)
        except Exception as exc:
            self.stats.error("callback_error")
            if type(exc) not in self._callback_errors:
                self._callback_errors.add(type(exc))
                log.error(
                    "%s: response callback %r raised %s; the session goes on "
                    "(logged once per session and exception type, counted as callback_error)",
                    self.name, callback, type(exc).__name__, exc_info=exc,
                )
        return 0

    def connection_lost(self, exc):
        self._set_state(_CLOSED)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        self._transport = None
        self._wbuf = bytearray()
        outstanding, self._outstanding = self._outstanding, {}
        cdef _Request entry
        for entry in outstanding.values():
            self._run_callback(entry.callback, entry.context, NO_RESPONSE, None)
        self._fail_queued()
        if not self.closed.done():
            self.closed.set_result(None)
        self.on_closed(exc)

    # ---- sending -----------------------------------------------------------

    @property
    def outstanding(self):
        return len(self._outstanding)

    @property
    def queued(self):
        return len(self._queue)

    @property
    def free_window(self):
        """Requests that can go out now without waiting (negative when queued;
        0 at most while the peer is not reading what it was sent)."""
        return self.free_window_c()

    cdef Py_ssize_t free_window_c(self) noexcept:
        cdef Py_ssize_t free = self.window - len(self._outstanding) - len(self._queue)
        return min(free, 0) if self._write_paused else free

    @property
    def write_paused(self):
        """Whether the peer is behind on reading (transport over its high-water mark)."""
        return self._write_paused

    @property
    def reading_paused(self):
        """Whether the session has stopped reading from the peer (flow control or write pause)."""
        return self._reading_paused

    @property
    def write_buffered(self):
        """Bytes written and not yet taken by the peer: the transport's buffer and this
        iteration's writes."""
        if self._transport is None:
            return 0
        return self._transport.get_write_buffer_size() + PyByteArray_GET_SIZE(self._wbuf)

    @property
    def transport(self):
        return self._transport

    @property
    def is_open(self):
        return self._transport is not None and self.state is not _CLOSED

    cdef uint32_t _allocate(self) noexcept:
        cdef uint32_t seq = self._next_seq
        self._next_seq = 1 if seq >= MAX_SEQUENCE else seq + 1
        return seq

    def send(self, bytes pdu not None, callback, context=None):
        """Send a request PDU under a fresh sequence number of this session.

        The PDU's own sequence number is replaced. Returns the sequence number
        used when the request went out now; QUEUED when the window is full and
        it waits in the session queue (also while the peer is not reading what
        it was sent); REFUSED (0) when that is full too or the session is
        closed — then nothing was sent and the caller still owns the request.
        Otherwise `callback` runs exactly once.
        """
        return self.send_c(pdu, callback, context)

    cdef long long send_c(self, bytes pdu, callback, context) except -2:
        if self._transport is None:
            return REFUSED
        if len(self._outstanding) < self.window and not self._queue and not self._write_paused:
            return self._transmit(pdu, callback, context)
        if len(self._queue) >= self.queue_limit:
            return REFUSED
        self._queue.append((pdu, callback, context, self._time()))
        return QUEUED

    cdef uint32_t _transmit(self, bytes pdu, callback, context) except 0:
        cdef uint32_t seq = self._allocate()
        # The copy goes straight into the write buffer with its new sequence number.
        cdef uint32_t command_id = append_with_sequence(self._wbuf, pdu, seq)
        cdef dict outstanding = self._outstanding
        outstanding[seq] = self._request(command_id, callback, context)
        cdef SessionStats stats = self.stats
        if len(outstanding) > stats.window_peak:
            stats.window_peak = len(outstanding)
        _count(stats._out, stats._other_out, command_id)
        self._schedule_flush()
        return seq

    cdef _Request _request(self, uint32_t command_id, callback, context):
        cdef _Request entry = _Request.__new__(_Request)
        entry.command_id = command_id
        entry.sent_at = self._time()
        entry.callback = callback
        entry.context = context
        return entry

    def _expect(self, uint32_t command_id, callback, context):
        """A fresh sequence number whose response goes to `callback` (control
        requests, outside the window); the caller writes the request."""
        cdef uint32_t seq = self._allocate()
        self._outstanding[seq] = self._request(command_id, callback, context)
        return seq

    cdef int _drain_queue(self) except -1:
        queue = self._queue
        cdef double deadline = self._time() - self.response_timeout
        while queue and len(self._outstanding) < self.window and not self._write_paused:
            pdu, callback, context, queued_at = queue.popleft()
            if queued_at < deadline:
                self.stats.timeouts += 1
                self._run_callback(callback, context, NO_RESPONSE, None)
            else:
                self._transmit(pdu, callback, context)
        return 0

    def respond(self, bytes request not None, uint32_t status=0, bytes message_id=b""):
        """Answer a request received on this session; returns the response PDU."""
        response = make_resp(request, status, message_id)
        self._write(response)
        return response

    cdef bytes respond_c(self, bytes request, uint32_t status):
        cdef bytes response = make_resp(request, status)
        self._write(response)
        return response

    def write(self, bytes data not None):
        """Queue one encoded PDU; everything queued in one loop iteration goes out in one writev."""
        self._write(data)

    cdef int _write(self, bytes data) except -1:
        if self._transport is None:
            return 0
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        if n < HEADER_SIZE:
            header(data)  # raises the codec's error
        cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(data)
        _count(self.stats._out, self.stats._other_out, pdu_command_id(p))
        cdef Py_ssize_t at = PyByteArray_GET_SIZE(self._wbuf)
        PyByteArray_Resize(self._wbuf, at + n)
        memcpy(PyByteArray_AS_STRING(self._wbuf) + at, p, n)
        self._schedule_flush()
        return 0

    cdef int _schedule_flush(self) except -1:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._event_loop.call_soon(self._flush)
        return 0

    def _flush(self):
        self._flush_now()

    cdef int _flush_now(self) except -1:
        self._flush_scheduled = False
        return self._write_out()

    cdef int _write_out(self) except -1:
        if PyByteArray_GET_SIZE(self._wbuf) and self._transport is not None:
            # A fresh buffer each time: the transport may keep this one until sent.
            self._transport.write(self._wbuf)
            self._wbuf = bytearray()
            if self._write_paused:
                self._check_ceiling()
        return 0

    # ---- flow control ------------------------------------------------------
    #
    # Reading: pause_reading()/resume_reading() are the proxy's (too much in
    # flight); pause_writing()/resume_writing() are the transport's, at its
    # water marks (the peer does not read what it is sent). Either one stops
    # reading from the peer, so a peer that sends without reading is pushed
    # back by TCP instead of growing this process. While write-paused, send()
    # holds new requests in the queue and free_window is 0 at most, so copies
    # go to other binds; answers still go out, bounded by write_buffer_max.
    # A peer that takes nothing for write_stall_timeout is closed (by the tick).

    def pause_reading(self):
        """Act on no more requests from the peer (flow control): PDUs already
        received wait in the framer, the socket is not read."""
        if not self._flow_paused and self._transport is not None:
            self._flow_paused = True
            self._steer_reading()

    def resume_reading(self):
        if self._flow_paused:
            self._flow_paused = False
            self._steer_reading()

    def pause_writing(self):
        """The transport's buffer is over its high-water mark (asyncio flow control)."""
        if self._transport is None:
            return
        self._write_paused = True
        self._stall_since = self._time()
        self._stall_buffered = self._transport.get_write_buffer_size()
        self.stats.write_pauses += 1
        self._steer_reading()

    def resume_writing(self):
        """The transport's buffer is down to its low-water mark: send what waited."""
        self._write_paused = False
        if self._transport is None:
            return
        if self._queue:
            self._drain_queue()
        self._steer_reading()

    cdef int _steer_reading(self) except -1:
        """Read from the peer unless one of the two reasons to stop holds."""
        cdef bint pause = self._flow_paused or self._write_paused
        if pause == self._reading_paused or self._transport is None:
            return 0
        self._reading_paused = pause
        if pause:
            self._transport.pause_reading()
        else:
            # The session held reading itself: the peer's silence meanwhile was not idleness.
            self._last_rx = self._time()
            self._transport.resume_reading()
            self._event_loop.call_soon(self._process_buffered)
        return 0

    cdef int _check_ceiling(self) except -1:
        """Close at once when what waits for the peer passes write_buffer_max."""
        cdef Py_ssize_t buffered = self._transport.get_write_buffer_size()
        if buffered > self.write_buffer_max:
            log.warning(
                "%s: %d bytes waiting for %s to read, over write_buffer_max (%d); closing",
                self.name, buffered, self.peer, self.write_buffer_max,
            )
            self._close_stalled()
        return 0

    cdef int _check_stall(self, double now) except -1:
        """From the tick, while write-paused: close a peer that has taken nothing
        off the buffer for write_stall_timeout."""
        cdef Py_ssize_t buffered = self._transport.get_write_buffer_size()
        if buffered < self._stall_buffered:
            self._stall_since = now
        self._stall_buffered = buffered
        if now - self._stall_since >= self.write_stall_timeout:
            log.warning(
                "%s: %s has read nothing for %.1f s with %d bytes waiting for it; closing",
                self.name, self.peer, now - self._stall_since, buffered,
            )
            self._close_stalled()
        return 0

    cdef int _close_stalled(self) except -1:
        # abort, not close: close() would wait for the buffer to drain, which it never does.
        self.stats.error("write_stall")
        self._transport.abort()
        return 0

    # ---- lifecycle ---------------------------------------------------------

    def abort_after_flush(self):
        """Close once what is already written has gone out."""
        self._abort_after_flush()

    cdef int _abort_after_flush(self) except -1:
        if self._transport is not None:
            self._flush_now()
            self._transport.close()
        return 0

    def _tick(self):
        cdef double now = self._time()
        cdef double expired_before = now - self.response_timeout
        cdef dict outstanding = self._outstanding
        cdef Py_ssize_t pos
        cdef PyObject* key
        cdef PyObject* value
        cdef _Request entry
        while outstanding:
            pos = 0
            PyDict_Next(outstanding, &pos, &key, &value)
            entry = <_Request>value
            if entry.sent_at > expired_before:
                break
            seq = <object>key
            del outstanding[seq]
            self.stats.timeouts += 1
            self._run_callback(entry.callback, entry.context, NO_RESPONSE, None)
        if self._queue:
            self._drain_queue()
        if self._transport is None:
            return
        if self._write_paused:
            self._check_stall(now)
        if self._reading_paused:
            # Not reading: silence is ours, and an enquire_link_resp could not be read.
            self._tick_handle = self._event_loop.call_later(self._tick_interval, self._tick)
            return
        cdef double idle = now - self._last_rx
        if idle >= self.inactivity_timeout:
            log.warning("%s: nothing from %s for %.0f s; closing", self.name, self.peer, idle)
            self.stats.error("inactivity")
            self._abort_after_flush()
            return
        if (
            self.enquire_link
            and idle >= self.enquire_link
            and not self._enquire_outstanding
            and self.state is not _OPEN
        ):
            self._enquire_outstanding = True
            self.request(ENQUIRE_LINK).add_done_callback(self._enquire_done)
        self._tick_handle = self._event_loop.call_later(self._tick_interval, self._tick)

    def _enquire_done(self, future):
        self._enquire_outstanding = False
        if future.exception() is not None and self._transport is not None:
            log.warning("%s: no enquire_link_resp from %s; closing", self.name, self.peer)
            self.stats.error("enquire_link_timeout")
            self._abort_after_flush()
