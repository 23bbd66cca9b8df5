# cython: boundscheck=False, wraparound=False
"""The dispatcher's message path in C (smps.proxy.dispatcher holds the rest).

Per original and per copy the proxy runs the same few steps: read the original,
judge it, send a copy to each target account, take each answer into the pending
table, answer the SMSC once the verdict is known, record and release it once
complete. In Python those steps were most of a worker's instructions (issue 23:
82k per original at 3 NEs, 33k with them here; bench/README.md), so they live here,
on typed objects:

- `Original` (an original in flight), `Copy` (one copy sent: its answer's context),
  `Lane` (an NE account's binds, queue and token bucket) and `DispatcherStats` (the
  running totals) are extension types whose fields the path reads and adds to in C;
- `DispatchCore` is the base class of `smps.proxy.dispatcher.Dispatcher`: it holds
  `on_message`, the parts of whole messages (smps._native.assembly), the judging of
  an original, the copies, the answers, the reply and the completion. What happens
  rarely (a queued copy, a retry, a trace event, `segments` accounts, sticky blocks,
  screening verdicts, the record of a decision) stays in Python in the subclass,
  which these methods call by name.

Behaviour is exactly the Python dispatcher's (docs/architecture.md §3); the module
docstring of smps.proxy.dispatcher describes the path.
"""

cimport cython
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.math cimport rint
from posix.time cimport CLOCK_MONOTONIC, CLOCK_REALTIME, clock_gettime, timespec

from smps._native.assembly cimport Assembly, HeldMessage, Riders, part_of
from smps._native.campaigns cimport CampaignTable
from smps._native.fingerprint cimport fingerprint
from smps._native.histogram cimport Histogram
from smps._native.numbers cimport AddressGate
from smps._native.pdu cimport SmView, decode_sm
from smps._native.pending cimport (
    ALLOW, ANSWER_COMPLETE, ANSWER_DECIDED, ANSWER_LATE, ANSWER_UNKNOWN, BLOCK, Entry, NONE,
    WAITING,
    OUTCOME_ALLOW, OUTCOME_BLOCK, OUTCOME_TEMPFAIL, PendingTable, REASON_ALL_ALLOW,
    REASON_NO_NE, REASON_STICKY,
)
from smps._native.session cimport SessionCore, respond
from smps._native.text cimport UdhInfo, plain_text, udh_scan

import heapq
import time
from collections import deque

from smps._native.assembly import whole_pdu
from smps._native.pdu import command_name
from smps._native.pending import reason_name

cdef enum:
    _NO_RESPONSE = -1  # smps._native.session: the callback status when no answer came
    _REFUSED = 0  # smps._native.session: Session.send sent nothing
    _MAX_OUTCOME = 4
    _MAX_REASON = 8

cdef inline double _system_time(int clock) noexcept nogil:
    """time.monotonic() (CLOCK_MONOTONIC) or time.time() (CLOCK_REALTIME), read in C."""
    cdef timespec now
    clock_gettime(clock, &now)
    return now.tv_sec + now.tv_nsec * 1e-9


_OUTCOME_NAMES = {OUTCOME_ALLOW: "allow", OUTCOME_BLOCK: "block", OUTCOME_TEMPFAIL: "tempfail"}
cdef tuple _GSM7_UNPACKED = ("gsm7", False)  # an SMSC's alphabet unless its config says otherwise
# Reasons of the answers given here without the pending table (smps.proxy.verdicts).
_REASON_RECEIPT = "receipt"
_REASON_STICKY = "sticky"
_REASON_NO_NE = "no_ne"
_REASON_LATE_PART = "late_part"  # a part after its message was decided: the message's verdict
_REASON_INCOMPLETE = "incomplete"  # policy.on_incomplete allow | tempfail


cdef class Original:
    """An original in flight: what its answer and its record need."""

    cdef public object session
    cdef public bytes pdu
    cdef public SmView view
    cdef public object concat  # (ref, total, part) or None
    cdef public object concat_key  # (source, destination, ref) for sticky blocks, or None
    cdef public tuple targets  # the Lanes it was copied to
    cdef public double arrived_wall
    cdef public object trace  # None unless a trace rule matched
    cdef public object answered  # the accounts that answered; traced originals only
    cdef public list held  # its copies that waited in a lane's queue (HeldCopy)
    cdef public object rule  # the screening rule that fired (allow or monitor)
    # A whole message (smps.proxy.assembly): its parts' sequence numbers, in part order.
    cdef public list parts
    cdef public uint64_t fingerprint  # of its text (smps._native.fingerprint); 0: none
    cdef public str text  # its text, the campaign's example

    def __init__(self, session, bytes pdu, SmView view, concat, concat_key, tuple targets,
                 double arrived_wall, trace, answered):
        self.session = session
        self.pdu = pdu
        self.view = view
        self.concat = concat
        self.concat_key = concat_key
        self.targets = targets
        self.arrived_wall = arrived_wall
        self.trace = trace
        self.answered = answered


cdef Original _original(session, bytes pdu, SmView view, concat, double arrived_wall, trace):
    """An Original made without argument parsing (the common case of on_message)."""
    cdef Original original = Original.__new__(Original)
    original.session = session
    original.pdu = pdu
    original.view = view
    original.concat = concat
    original.targets = ()
    original.arrived_wall = arrived_wall
    original.trace = trace
    original.answered = None if trace is None else set()
    return original


@cython.final
@cython.freelist(256)
cdef class Copy:
    """One copy of an original sent to an NE account: what its answer settles (the
    session's callback context). C fields: no Python object per value, per copy."""

    cdef readonly int64_t handle  # the original's in the pending table
    cdef readonly int index  # the account's place among the original's targets
    cdef readonly Lane lane
    cdef readonly object session  # the bind it went on; None for a segments account's votes
    cdef readonly bint retried  # sent a second time, after its first bind dropped
    cdef readonly double sent_at
    cdef readonly Original original

    def __init__(self, int64_t handle, int index, Lane lane, session, bint retried,
                 double sent_at, Original original):
        self.handle, self.index, self.lane, self.session = handle, index, lane, session
        self.retried, self.sent_at, self.original = retried, sent_at, original


cdef Copy _copy(int64_t handle, int index, Lane lane, session, bint retried, double sent_at,
                Original original):
    cdef Copy copy = Copy.__new__(Copy)
    copy.handle, copy.index, copy.lane, copy.session = handle, index, lane, session
    copy.retried, copy.sent_at, copy.original = retried, sent_at, original
    return copy


cdef class Lane:
    """One NE account as the dispatcher sees it: its live binds, the copies waiting
    for a window or a token (`queue`; one sent or withdrawn stays until it reaches the
    head, `waiting` counts the others), and its token bucket (`tps`)."""

    cdef public str system_id
    cdef public list binds
    cdef public object queue
    cdef public Py_ssize_t waiting
    cdef public double tokens
    cdef public double refilled_at
    cdef public Py_ssize_t copies_sent
    cdef public Py_ssize_t monitor_answers  # answers while the account is in monitor mode
    cdef public Histogram latency  # copy sent → NE answer
    cdef public object account
    cdef public bint decisive
    cdef public bint whole  # a long message as one copy, or its parts
    cdef public long tps
    cdef public int cause  # its number in the campaign tables (smps.proxy.campaigns)
    cdef uint64_t _answers[4]  # by state: ALLOW, BLOCK, NONE

    def __init__(self, account):
        self.system_id = account.system_id
        self.binds = []
        self.queue = deque()
        self.tokens = float(account.tps)
        self.latency = Histogram()
        self.configure(account)

    def configure(self, account):
        self.account = account
        self.decisive = account.mode == "enforce"
        self.tps = account.tps
        self.whole = account.concat == "message"

    @property
    def answers(self):
        """Answers by state (pending.ALLOW, BLOCK, NONE)."""
        return {ALLOW: self._answers[ALLOW], BLOCK: self._answers[BLOCK],
                NONE: self._answers[NONE]}

    cpdef void count_answer(self, int state):
        """One more answer in `answers` (ALLOW, BLOCK or NONE)."""
        self._answers[state] += 1

    cpdef object pick_bind(self):
        """The bind with the most free window, or None when all are full."""
        best = None
        cdef Py_ssize_t free, best_free = 0
        for session in self.binds:
            if isinstance(session, SessionCore):
                free = (<SessionCore>session).free_window_c()
            else:
                free = session.free_window  # a mesh RemoteBind
            if free > best_free:
                best, best_free = session, free
        return best

    cpdef bint take_token(self, double now):
        if not self.tps:
            return True
        cdef double tokens = min(<double>self.tps, self.tokens + (now - self.refilled_at) * self.tps)
        self.refilled_at = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False


cdef class DispatcherStats:
    """A dispatcher's totals since it started, what the data plane's snapshot reports
    each second; the message path adds to them in C."""

    cdef public Py_ssize_t received
    cdef public Py_ssize_t copies_sent
    cdef public Py_ssize_t late_answers
    cdef public Py_ssize_t queue_dropped  # copies that found no bind, a full queue or no time
    cdef public Py_ssize_t withdrawn  # queued copies not sent because the verdict was known
    cdef public Py_ssize_t retried
    cdef public Py_ssize_t throttled
    cdef public Py_ssize_t internal_errors  # bugs caught where they would have stopped it
    # Whole messages (smps.proxy.assembly): judged [incomplete, complete]; parts judged
    # alone because concat_max_held messages were held; retries of a part already held;
    # parts after their message's verdict; parts sent to their owner.
    cdef public list whole_messages
    cdef public Py_ssize_t concat_overflow
    cdef public Py_ssize_t duplicate_parts
    cdef public Py_ssize_t late_parts
    cdef public Py_ssize_t parts_forwarded
    cdef public Py_ssize_t campaign_blocks  # messages a fingerprint rule blocked
    cdef dict _decided  # (verdict, reason) -> count, for the answers made in Python
    cdef uint64_t _by_code[_MAX_OUTCOME][_MAX_REASON]  # the pending table's verdicts

    def __init__(self):
        self.whole_messages = [0, 0]
        self._decided = {}

    def decided(self, str verdict, str reason):
        key = (verdict, reason)
        self._decided[key] = self._decided.get(key, 0) + 1

    @property
    def decisions(self):
        """Decisions by (verdict, reason)."""
        cdef dict out = dict(self._decided)
        cdef int outcome, reason
        for outcome in range(_MAX_OUTCOME):
            for reason in range(_MAX_REASON):
                if self._by_code[outcome][reason]:
                    key = (_OUTCOME_NAMES[outcome], reason_name(reason))
                    out[key] = out.get(key, 0) + self._by_code[outcome][reason]
        return out


cdef class DispatchCore:
    """The per-original, per-copy and per-answer steps of the Dispatcher (its base)."""

    cdef public PendingTable pending
    cdef public DispatcherStats stats
    cdef public Histogram decision_latency  # original received → verdict sent
    cdef object _clock
    cdef object _wall_clock
    cdef bint _monotonic  # the clock is time.monotonic: read in C
    cdef bint _realtime  # the wall clock is time.time: read in C
    cdef public object sink
    cdef public object tracer
    cdef public AddressGate trace_gate  # the tracer's: None without a tracer
    cdef public CampaignTable campaigns  # None: not counted
    cdef public object policy
    cdef public object router
    # What the router gives when it has no routes (every enabled account) and its
    # decisive mask, read once per configuration: nearly every original takes them.
    cdef public bint _routed
    cdef public tuple _everyone
    cdef public uint32_t _everyone_mask
    cdef public bint _pause_reads  # flow.on_overload: pause (read_pause.enabled)
    cdef public object sticky
    cdef public object read_pause
    cdef public object _screen  # the screening engine, or None
    cdef public object _block_codes  # frozenset of the NE statuses that block
    cdef public dict _alphabets  # SMSC name -> (default alphabet, packed)
    cdef public dict _concat_in_flight  # sticky key -> handles of its segments in flight
    cdef public object _ne_verdict_callback  # bound once, not per copy
    cdef public bint inspect_receipts
    cdef public bint sticky_enabled
    cdef public bint _assembling
    cdef public bint _record_all
    cdef public bint _record_non_allow
    cdef public bint _idle  # the tick runs slowly because nothing is in flight
    cdef public bint _show_content  # trace.decode_content: a campaign's example text shown
    cdef public Assembly assembly  # whole messages held (smps._native.assembly)
    # The worker's mesh when parts of a message may be owned by another worker
    # (`owner_link(key)`: the link to the owner, or None for this worker).
    cdef public object part_router
    # Parts sent to their owner worker, by forward id: (original, sent at, the link
    # to the owner), oldest first.
    cdef public dict _parts_away
    cdef public uint32_t _next_part_id
    cdef public list _message_deadlines  # heap of (deadline, handle) of whole messages
    cdef public object _on_incomplete  # policy.on_incomplete's outcome; None: judge the parts
    cdef uint32_t _status_of[_MAX_OUTCOME]  # outcome -> the SMSC's command_status
    # The record structs (smps.proxy.records.Decision, NeResult) and the state names
    # (smps.proxy.verdicts.STATE_NAMES), given by the Dispatcher: layers below the proxy
    # do not import it.
    cdef object _Decision
    cdef object _NeResult
    cdef dict _state_names

    def _set_record_types(self, decision, result, dict state_names):
        self._Decision, self._NeResult, self._state_names = decision, result, state_names

    @property
    def clock(self):
        """Seconds, for deadlines (time.monotonic, or a test's clock)."""
        return self._clock

    @clock.setter
    def clock(self, clock):
        self._clock, self._monotonic = clock, clock is time.monotonic

    @property
    def wall_clock(self):
        """Epoch seconds, for records (time.time, or a test's clock)."""
        return self._wall_clock

    @wall_clock.setter
    def wall_clock(self, clock):
        self._wall_clock, self._realtime = clock, clock is time.time

    cdef inline double _now(self) except? -1.0:
        return _system_time(CLOCK_MONOTONIC) if self._monotonic else self._clock()

    cdef inline double _wall_now(self) except? -1.0:
        return _system_time(CLOCK_REALTIME) if self._realtime else self._wall_clock()

    def _set_outcome_status(self, dict outcome_status):
        """The policy's status per outcome (VerdictPolicy.outcome_status)."""
        for outcome, status in outcome_status.items():
            self._status_of[<int>outcome] = status

    # ---- originals -----------------------------------------------------------

    def on_message(self, session, bytes pdu not None):
        """Handle one deliver_sm / data_sm from an SMSC; answers it exactly once.

        A malformed PDU raises PduError before anything is recorded; the
        session answers it with the error status.
        """
        cdef SmView view = decode_sm(pdu)
        cdef double now = self._now()
        cdef int kind
        cdef Original original
        self.stats.received += 1
        trace = None
        if self.trace_gate is not None and self.trace_gate.sides(view.source_addr,
                                                                 view.destination_addr):
            trace = self.tracer.match(view, session.smsc)
            if trace is not None:
                trace.received(pdu, view, session.smsc)
        kind = view.esm_class & 0x3C
        if (kind == 0x04 or kind == 0x20) and not self.inspect_receipts:  # a receipt
            original = _original(session, pdu, view, None, self._wall_now(), trace)
            original.answered = None
            self._reply_smsc_now(original, OUTCOME_ALLOW, _REASON_RECEIPT, now)
            return
        concat = _udh_concat(view) if view.esm_class & 0x40 else view.sar
        original = _original(session, pdu, view, concat, self._wall_now(), trace)
        if concat is not None:
            if self._assembling and part_of(concat):
                self._take_part_c(original, now)
                return
            if self.sticky_enabled:
                original.concat_key = (view.source_addr, view.destination_addr, concat[0])
        self._judge_c(original, now, now)

    def _judge(self, Original original, double now, double arrived):
        """Judge an original (a single message, a part judged alone, or a whole
        message that arrived at ``arrived``): sticky block, screening rules,
        then copies to the routed NE accounts."""
        self._judge_c(original, now, arrived)

    cdef int _judge_c(self, Original original, double now, double arrived) except -1:
        cdef SmView view = original.view
        cdef Lane lane
        cdef int64_t handle
        cdef int index
        cdef tuple targets
        cdef uint32_t mask
        session, trace = original.session, original.trace
        concat_key = original.concat_key
        if concat_key is not None and self.sticky.blocked(concat_key, now):
            self._reply_smsc_now(original, OUTCOME_BLOCK, _REASON_STICKY, now)
            return 0
        # The text once, for the campaign fingerprint and the screening rules.
        alphabet = self._alphabets.get(session.smsc, _GSM7_UNPACKED)
        text = plain_text(view.user_data, view.data_coding, view.esm_class, alphabet[0],
                          alphabet[1])
        if text:
            original.text = text
            original.fingerprint = fingerprint(text) or 1
        if self._screen is not None and self._screened(original, now, text):
            return 0
        if self._routed:
            targets = self.router.targets(view, session.smsc)
            mask = decisive_mask(targets)
        else:
            targets, mask = self._everyone, self._everyone_mask
        for lane in targets:
            if lane.binds:
                break
        else:  # no target has a bind (or there is no target)
            self._reply_smsc_now(original, self.policy.on_no_ne, _REASON_NO_NE, now)
            return 0
        original.targets = targets
        handle = self.pending.add(arrived, original, len(<tuple>targets), mask)
        if handle < 0:
            self._throttled(original, now)
            return 0
        if self._idle:
            self._fine_tick()  # in flight again: back to the fine tick
        if concat_key is not None:
            self._concat_in_flight.setdefault(concat_key, set()).add(handle)
        if self._pause_reads:
            self.read_pause.added(session, len(self.pending))
        if not mask:
            # Only monitor accounts: they see the copy, but cannot decide.
            self.pending.decide(handle, self.policy.on_no_ne, REASON_NO_NE, now)
            self._reply_c(handle, original)
        if original.parts is not None:
            self._send_message_copies(original, handle, now)
            return 0
        pdu = original.pdu
        index = 0
        for lane in targets:
            self._send_copy(lane, handle, index, pdu, now, original)
            index += 1
        return 0

    cdef inline int _send_copy(self, Lane lane, int64_t handle, int index, bytes pdu,
                               double now, Original original) except -1:
        """One copy: sent now in the common case (nothing queued, a bind free, a
        token), else it waits in the account's queue."""
        bind = None if lane.waiting else lane.pick_bind()
        if bind is not None and (not lane.tps or lane.take_token(now)):
            self._transmit_c(bind, lane, handle, index, pdu, now, original, False)
        else:
            self._hold_copy(lane, handle, index, now, original)
        return 0

    # ---- whole messages (smps._native.assembly) ------------------------------

    cdef int _take_part_c(self, Original original, double now) except -1:
        """A part of a concatenated message: to the worker that owns its message,
        or held here until the message is complete."""
        key = message_key(original)
        if self.part_router is not None:
            link = self.part_router.owner_link(key)
            if link is not None:
                self._next_part_id = ident = (self._next_part_id + 1) & 0xFFFFFFFF
                self._parts_away[ident] = (original, now, link)
                link.forward_part(ident, key[0], original.pdu)
                self.stats.parts_forwarded += 1
                if self._idle:
                    self._fine_tick()
                return 0
        self._hold_part_c(key, original, now)
        return 0

    def _hold_part(self, tuple key, Original original, double now):
        self._hold_part_c(key, original, now)

    cdef int _hold_part_c(self, tuple key, Original original, double now) except -1:
        cdef Assembly assembly = self.assembly
        cdef HeldMessage message
        cdef Riders riders
        decided = assembly.verdict_of(key, now)
        if decided is not None:  # a straggler: its message's verdict, at once
            self.stats.late_parts += 1
            self._reply_smsc_now(original, decided[0], _REASON_LATE_PART, now, decided[1])
            return 0
        message = assembly.add(key, original, now)
        if message is None:  # as many messages held as concat_max_held: judged alone
            self.stats.concat_overflow += 1
            self._judge_alone(original, now)
            return 0
        if message.numbers[original.concat[2]] is not original:
            self.stats.duplicate_parts += 1  # an SMSC's retry: answered with its message
        riders = message.riders
        if original.trace is not None:
            if riders.trace is None:
                riders.trace = original.trace
            elif riders.trace is not original.trace:  # its own trace: one per message
                riders.trace.received(original.pdu, original.view, key[0], "part_received")
        if not message.judging:
            if len(message.numbers) == message.total:
                self._judge_held_c(key, message, now)
            elif self._idle:
                self._fine_tick()
        return 0

    def _judge_held(self, tuple key, HeldMessage message, double now):
        self._judge_held_c(key, message, now)

    cdef int _judge_held_c(self, tuple key, HeldMessage message, double now) except -1:
        """Judge a held message; one that raises (a bug) has its parts answered as
        if no verdict came in time, instead of leaving them to wait."""
        try:
            self._judge_message(key, message, now)
        except Exception:
            self.internal_error("judging a whole message")
            outcome = self.policy.on_timeout
            status = self.policy.status_for(outcome)
            message.riders.respond(b"", status)
            self.assembly.decided(key, outcome, status, now)
        return 0

    cdef int _judge_message(self, tuple key, HeldMessage message, double now) except -1:
        """Judge the parts present as one message (all of them, or what came before
        concat_hold); every part gets its verdict."""
        cdef Riders riders = message.riders
        cdef dict numbers = message.numbers
        cdef Original original, part
        cdef int n
        self.assembly.take(key)
        complete = len(numbers) == message.total
        self.stats.whole_messages[complete] += 1
        order = sorted(numbers)
        riders.segments = [(<Original>numbers[n]).pdu for n in order]
        pdu = whole_pdu(message, self._alphabets.get(key[0], _GSM7_UNPACKED))
        original = _original(riders, pdu, decode_sm(pdu), (key[3], key[4], None),
                             message.first_wall, riders.trace)
        parts = []
        for n in range(1, message.total + 1):
            part = numbers.get(n)
            parts.append(0 if part is None else part.view.sequence)
        original.parts = parts
        if riders.trace is not None:
            riders.trace.held(len(numbers), message.total,
                              round((now - message.first_at) * 1000, 3))
        if not complete and self._on_incomplete is not None:
            self._reply_smsc_now(original, self._on_incomplete, _REASON_INCOMPLETE, now)
            return 0
        self._judge_c(original, now, message.first_at)
        return 0

    cdef int _send_message_copies(self, Original original, int64_t handle,
                                  double now) except -1:
        """A whole message's copies: one to each `message` account, the parts to
        each `segments` account. Its deadline runs from its first part."""
        cdef Lane lane
        cdef int index = 0
        cdef double deadline = self.pending.arrived_at(handle) + self.pending.timeout
        heapq.heappush(self._message_deadlines, (deadline, handle))
        pdu = original.pdu
        for lane in original.targets:
            if lane.whole:
                self._send_copy(lane, handle, index, pdu, now, original)
            else:
                self._send_segments(lane, handle, index, now, original)
            index += 1
        return 0

    cdef bint _screened(self, Original original, double now, text) except -1:
        """The screening rules' verdict; True when that answered the original."""
        judged = self._screen.judge(original.view, original.session.smsc, int(now * 1000),
                                    True, text, original.fingerprint)
        if judged is None:
            return False
        return self._take_screening(original, judged, now)

    # ---- copies and answers ----------------------------------------------------

    def _transmit(self, session, Lane lane, int64_t handle, int index, bytes pdu, double now,
                  Original original, bint retried):
        self._transmit_c(session, lane, handle, index, pdu, now, original, retried)

    cdef int _transmit_c(self, session, Lane lane, int64_t handle, int index, bytes pdu,
                         double now, Original original, bint retried) except -1:
        # The copy's context carries the original, so its answer needs no lookup.
        context = _copy(handle, index, lane, session, retried, now, original)
        if isinstance(session, SessionCore):
            sequence = (<SessionCore>session).send_c(pdu, self._ne_verdict_callback, context)
        else:  # a mesh RemoteBind
            sequence = session.send(pdu, self._ne_verdict_callback, context)
        if sequence == _REFUSED:  # the bind closed under us: no answer from the account
            self._settle_c(lane, handle, index, NONE, 0, now, original, None, -1.0)
            return 0
        self.stats.copies_sent += 1
        lane.copies_sent += 1
        if original.trace is not None:
            original.trace.copy_sent(lane.system_id, session.name, 0, sequence, pdu)
        return 0

    def _take_ne_verdict(self, Copy copy, long long status, response):
        """A copy's outcome, from its NE session: the NE's answer, or NO_RESPONSE
        (timeout, bind lost, never sent) — retried once on another bind if the
        bind dropped, else counted as that target's NONE."""
        cdef int64_t handle = copy.handle
        cdef int index = copy.index
        cdef Lane lane = copy.lane
        cdef Original original = copy.original
        cdef double now = self._now()
        cdef double latency
        cdef int state
        if status != _NO_RESPONSE:
            latency = now - copy.sent_at
            lane.latency.observe(latency)
            # The NE's status: ESME_ROK allows, one of policy.ne_block_codes blocks,
            # anything else is no usable answer.
            if status == 0:
                state = ALLOW
            elif status in self._block_codes:
                state = BLOCK
            else:
                state = NONE
            self._settle_c(lane, handle, index, state, <uint32_t>status, now, original, response,
                           latency)
        elif not copy.retried and not copy.session.is_open and self._retry(lane, handle, index,
                                                                            now):
            return
        else:
            self._settle_c(lane, handle, index, NONE, 0, now, original, None, -1.0)
        if lane.waiting:
            self._drain(lane, now)

    def _settle_target(self, Lane lane, int64_t handle, int index, int state, uint32_t status,
                       double now, Original original, response=None, latency=None):
        """Put one target's state into the pending table and act on what that
        makes of the original: reply to the SMSC once decided, record it once
        complete (it may be decided already: the answer is late)."""
        self._settle_c(lane, handle, index, state, status, now, original, response,
                       -1.0 if latency is None else latency)

    cdef int _settle_c(self, Lane lane, int64_t handle, int index, int state, uint32_t status,
                       double now, Original original, response, double latency) except -1:
        # latency < 0: the copy got no answer from the NE.
        lane.count_answer(state)
        cdef int result = self.pending.answer(handle, index, state, status, now)
        if not lane.decisive:
            # A monitor account never decides, so its answers are never late: counted apart.
            result &= ~ANSWER_LATE
            if latency >= 0:
                lane.monitor_answers += 1
        if result == ANSWER_UNKNOWN:
            self.stats.late_answers += lane.decisive
            return 0
        if original.trace is not None:
            self._trace_ne_verdict(original, lane, state, status, response,
                                   None if latency < 0 else latency, result)
        if result & ANSWER_DECIDED:
            self._reply_c(handle, original)
        elif result & ANSWER_LATE:
            self.stats.late_answers += 1
        if result & ANSWER_COMPLETE:
            self._complete_c(handle, original)
        return 0

    # ---- verdicts --------------------------------------------------------------

    def _reply_smsc(self, int64_t handle, Original original):
        """The verdict is known: the SMSC's one answer, then what the verdict
        settles (queued copies withdrawn, the message's other segments blocked)."""
        self._reply_c(handle, original)

    cdef int _reply_c(self, int64_t handle, Original original) except -1:
        cdef const Entry* entry = self.pending._decided(handle)
        cdef int outcome = entry.outcome, reason = entry.reason
        cdef uint32_t status = self._status_of[outcome]
        response = respond(original.session, original.pdu, status)
        self.decision_latency.observe(entry.decided_at - entry.arrived_at)
        self.stats._by_code[outcome][reason] += 1
        if original.trace is not None:
            original.trace.final(status, _OUTCOME_NAMES[outcome], reason_name(reason), response)
        if original.held is not None:
            self._withdraw_held(original, self._now(), True)
        if original.parts is not None:
            self.assembly.decided((<Riders>original.session).key, outcome, status, self._now())
        if outcome == OUTCOME_BLOCK and reason != REASON_STICKY:
            self._block_message(original.concat_key, self._now(), handle)
        return 0

    def _complete(self, int64_t handle, Original original):
        self._complete_c(handle, original)

    cdef int _complete_c(self, int64_t handle, Original original) except -1:
        cdef const Entry* entry
        cdef int outcome, reason, deciding
        if original.held is not None:
            self._withdraw_held(original, 0.0, False)
        if original.trace is not None:
            self._close_trace(handle, original)
        entry = self.pending._decided(handle)
        outcome, reason, deciding = entry.outcome, entry.reason, entry.deciding
        if original.fingerprint and self.campaigns is not None:
            if deciding >= 0:
                self._count(original, outcome, (<Lane>original.targets[deciding]).cause)
            else:
                self._count_campaign(original, outcome, original.rule)
        if (
            original.trace is not None
            or self._record_all
            or (
                self._record_non_allow
                and (outcome != OUTCOME_ALLOW or reason != REASON_ALL_ALLOW
                     or original.rule is not None)
            )
        ):
            self.sink.put(self._record(handle, original))
        key = original.concat_key
        if key is not None:
            handles = self._concat_in_flight[key]
            handles.discard(handle)
            if not handles:
                del self._concat_in_flight[key]
        self.pending.release(handle)
        if self.read_pause.paused:
            self.read_pause.released(len(self.pending))
        return 0

    cdef object _record(self, int64_t handle, Original original):
        """The decision record of a complete original."""
        cdef const Entry* entry = self.pending._decided(handle)
        cdef int outcome = entry.outcome, deciding = entry.deciding
        cdef double decided = original.arrived_wall + (entry.decided_at - entry.arrived_at)
        cdef tuple targets = original.targets
        reason = reason_name(entry.reason)
        results = []
        cdef Lane lane
        cdef int index = 0
        for state, status, latency_us, late in self.pending.targets(handle):
            lane = targets[index]
            results.append(self._NeResult(  # positional, in field order
                lane.system_id,  # account
                self._state_names[state],  # verdict
                status if state == ALLOW or state == BLOCK or status else None,
                latency_us / 1000 if state != WAITING else None,  # latency_ms
                bool(late) and lane.decisive,  # a monitor account's answer is never late
                lane.decisive,
            ))
            index += 1
        return self._decision(original, decided, _OUTCOME_NAMES[outcome], reason,
                              self._status_of[outcome],
                              (<Lane>targets[deciding]).system_id if deciding >= 0 else None,
                              results)

    cpdef object _decision(self, Original original, double decided, str verdict, str reason,
                           uint32_t status, deciding, list results):
        """The record of one original decided at ``decided`` (epoch seconds): a
        smps.proxy.records.Decision, made positionally, in its field order."""
        cdef SmView view = original.view
        concat = original.concat
        return self._Decision(
            <int64_t>rint(original.arrived_wall * 1_000_000),  # arrived_us
            <int64_t>rint(decided * 1_000_000),  # decided_us
            original.session.smsc,
            command_name(view.command_id),  # command
            view.sequence,
            view.source_addr.decode("latin-1"),
            view.source_addr_ton,
            view.source_addr_npi,
            view.destination_addr.decode("latin-1"),
            view.dest_addr_ton,
            view.dest_addr_npi,
            view.esm_class,
            view.data_coding,
            concat[0] if concat else None,  # concat_ref
            concat[2] if concat else None,  # concat_part
            concat[1] if concat else None,  # concat_total
            verdict,
            reason,
            status,
            deciding,  # deciding_account
            results,
            original.rule,  # rule_id
            original.parts,
            f"{original.fingerprint:016x}" if original.fingerprint else None,
        )

    def _count_campaign_as(self, Original original, int outcome, int cause):
        """One whole message in the campaign table, with the number of what decided
        it (smps.proxy.campaigns.cause_id)."""
        self._count(original, outcome, cause)

    cdef int _count(self, Original original, int outcome, int cause) except -1:
        cdef SmView view = original.view
        self.campaigns.observe(original.fingerprint, view.source_addr, view.destination_addr,
                               <int64_t>self._wall_now(), outcome - 1, cause, original.text,
                               self._show_content)
        return 0



cpdef uint32_t decisive_mask(tuple targets) except? 0xFFFFFFFF:
    """Bit i set when target i is an enforcing account (the pending table's mask)."""
    cdef uint32_t mask = 0
    cdef int index = 0
    cdef Lane lane
    for lane in targets:
        if lane.decisive:
            mask |= (<uint32_t>1) << index
        index += 1
    return mask


cpdef tuple message_key(Original part):
    """The message a part belongs to (smps._native.assembly): (SMSC, source,
    destination, ref, total)."""
    cdef SmView view = part.view
    concat = part.concat
    return (part.session.smsc, view.source_addr, view.destination_addr, concat[0], concat[1])


def udh_concat(SmView view):
    """(ref, total, part) of a concatenated original, from its UDH or its SAR TLVs;
    None when it has neither."""
    return _udh_concat(view) if view.esm_class & 0x40 else view.sar


cdef object _udh_concat(SmView view):
    """(ref, total, part) of a segment with a UDH, from it or else the SAR TLVs."""
    cdef bytes data = view.user_data
    cdef UdhInfo info
    if udh_scan(<const unsigned char*><char*>data, len(data), &info) and info.ref_bits:
        return (info.concat_ref, info.concat_total, info.concat_part)
    return view.sar
