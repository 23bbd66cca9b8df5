# SMPP session core (session.pyx), for modules that send and answer in C: the
# dispatcher sends each copy with send_c and answers each original with respond_c.

from libc.stdint cimport uint32_t, uint64_t

from smps._native.pdu cimport Framer


cdef enum:
    _SLOTS = 256  # PDU counters per command id (session.pyx)


cdef class _Request:
    cdef uint32_t command_id
    cdef double sent_at
    cdef object callback
    cdef object context


cdef class SessionStats:
    cdef uint64_t _in[_SLOTS]
    cdef uint64_t _out[_SLOTS]
    cdef dict _other_in
    cdef dict _other_out
    cdef public dict errors
    cdef public Py_ssize_t timeouts
    cdef public Py_ssize_t unexpected_responses
    cdef public Py_ssize_t window_peak
    cdef public Py_ssize_t write_pauses
    cdef public double rtt_total
    cdef public Py_ssize_t rtt_count


cdef class SessionCore:
    cdef public str name
    cdef public object state
    cdef public object peer
    cdef public SessionStats stats
    cdef public double enquire_link
    cdef public double inactivity_timeout
    cdef public double response_timeout
    cdef public double unbind_grace
    cdef public Py_ssize_t window
    cdef public Py_ssize_t queue_limit
    cdef public Py_ssize_t write_buffer_max
    cdef public double write_stall_timeout
    cdef public object closed
    cdef public object on_message
    cdef object _event_loop
    cdef object _time               # _event_loop.time, looked up once
    cdef public object _allowed     # request ids the peer may send in this state
    cdef Framer _framer
    cdef double _tick_interval
    cdef object _transport
    cdef uint32_t _next_seq
    cdef dict _outstanding
    cdef object _queue              # deque of (pdu, callback, context, queued_at)
    cdef bytearray _wbuf            # what goes out at the end of this loop iteration
    cdef Py_ssize_t _high_water     # the transport's high-water mark
    cdef bint _flush_scheduled
    cdef double _last_rx
    cdef bint _enquire_outstanding
    cdef bint _closing              # the peer unbound: close once our requests are answered
    cdef object _tick_handle
    cdef set _callback_errors       # exception types a response callback raised, logged once
    cdef bint _flow_paused          # pause_reading(): the proxy has too much in flight
    cdef bint _write_paused         # pause_writing(): the peer does not read fast enough
    cdef bint _reading_paused       # the transport is not being read (either of the above)
    cdef double _stall_since
    cdef Py_ssize_t _stall_buffered

    cdef int _process(self) except -1
    cdef int _on_request_pdu(self, uint32_t command_id, uint32_t seq, bytes pdu) except -1
    cdef int _close_when_answered(self) except -1
    cdef int _fail_queued(self) except -1
    cdef int _run_callback(self, callback, context, status, pdu) except -1
    cdef uint32_t _allocate(self) noexcept
    cdef uint32_t _transmit(self, bytes pdu, callback, context) except 0
    cdef _Request _request(self, uint32_t command_id, callback, context)
    cdef int _drain_queue(self) except -1
    cdef int _write(self, bytes data) except -1
    cdef int _schedule_flush(self) except -1
    cdef int _flush_now(self) except -1
    cdef int _write_out(self) except -1
    cdef int _steer_reading(self) except -1
    cdef int _check_ceiling(self) except -1
    cdef int _check_stall(self, double now) except -1
    cdef int _close_stalled(self) except -1
    cdef int _abort_after_flush(self) except -1
    # send(), free_window and respond() for C callers.
    cdef long long send_c(self, bytes pdu, callback, context) except -2
    cdef Py_ssize_t free_window_c(self) noexcept
    cdef bytes respond_c(self, bytes request, uint32_t status)


cdef inline object respond(session, bytes request, uint32_t status):
    """Answer ``request`` on ``session``: in C for a SessionCore, else through its
    own respond() (a whole message's Riders, a mesh RemotePart, a test's fake)."""
    if isinstance(session, SessionCore):
        return (<SessionCore>session).respond_c(request, status)
    return session.respond(request, status)
