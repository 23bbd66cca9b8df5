# cython: boundscheck=False, wraparound=False
"""The dispatcher's message path in C (smps.proxy.dispatcher holds the rest).

Per original and per copy the proxy runs the same few steps: read the original,
judge it, send a copy to each target account, take each answer into the pending
table, answer the SMSC once the verdict is known, record and release it once
complete. In Python those steps cost more than everything else a worker does
(issue 23: about 60 % of the instructions per original were the interpreter's), so
they live here, on typed objects:

- `Original` (an original in flight), `Lane` (an NE account's binds, queue and
  token bucket) and `DispatcherStats` (the running totals) are extension types whose
  fields the path reads and adds to in C;
- `DispatchCore` is the base class of `smps.proxy.dispatcher.Dispatcher`: it holds
  `on_message`, the judging of an original, the copies, the answers, the reply and
  the completion. What happens rarely (a queued copy, a retry, a trace, a whole
  message, sticky blocks, screening verdicts that answer at once) stays in Python in
  the subclass, which these methods call by name.

Behaviour is exactly the Python dispatcher's (docs/architecture.md §3); the module
docstring of smps.proxy.dispatcher describes the path.
"""

from libc.stdint cimport int64_t, uint32_t, uint64_t

from smps._native.fingerprint cimport fingerprint
from smps._native.histogram cimport Histogram
from smps._native.numbers cimport AddressGate
from smps._native.pdu cimport SmView, decode_sm
from smps._native.pending cimport (
    ALLOW, ANSWER_COMPLETE, ANSWER_DECIDED, ANSWER_LATE, ANSWER_UNKNOWN, BLOCK, Entry, NONE,
    OUTCOME_ALLOW, OUTCOME_BLOCK, OUTCOME_TEMPFAIL, PendingTable, REASON_ALL_ALLOW,
    REASON_STICKY,
)
from smps._native.session cimport SessionCore
from smps._native.text cimport UdhInfo, plain_text, udh_scan

from smps._native.pending import reason_name

cdef enum:
    _NO_RESPONSE = -1  # smps._native.session: the callback status when no answer came
    _REFUSED = 0  # smps._native.session: Session.send sent nothing
    _MAX_OUTCOME = 4
    _MAX_REASON = 8

_OUTCOME_NAMES = {OUTCOME_ALLOW: "allow", OUTCOME_BLOCK: "block", OUTCOME_TEMPFAIL: "tempfail"}
cdef tuple _GSM7_UNPACKED = ("gsm7", False)  # an SMSC's alphabet unless its config says otherwise


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
        from collections import deque

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
    cdef public object clock
    cdef public object wall_clock
    cdef public object sink
    cdef public object tracer
    cdef public AddressGate trace_gate  # the tracer's: None without a tracer
    cdef public object campaigns  # a CampaignTable, or None: not counted
    cdef public object policy
    cdef public object router
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
    cdef uint32_t _status_of[_MAX_OUTCOME]  # outcome -> the SMSC's command_status

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
        cdef double now = self.clock()
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
            original = _original(session, pdu, view, None, self.wall_clock(), trace)
            original.answered = None
            self._reply_smsc_now(original, OUTCOME_ALLOW, "receipt", now)
            return
        concat = _udh_concat(view) if view.esm_class & 0x40 else view.sar
        original = _original(session, pdu, view, concat, self.wall_clock(), trace)
        if concat is not None:
            if self._assembling and _is_part(concat):
                self._take_part(original, now)
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
        session, trace = original.session, original.trace
        concat_key = original.concat_key
        if concat_key is not None and self.sticky.blocked(concat_key, now):
            self._reply_smsc_now(original, OUTCOME_BLOCK, "sticky", now)
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
        router = self.router
        targets = router.targets(view, session.smsc) if router.routes else router.everyone
        for lane in targets:
            if lane.binds:
                break
        else:  # no target has a bind (or there is no target)
            self._reply_smsc_now(original, self.policy.on_no_ne, "no_ne", now)
            return 0
        original.targets = targets
        mask = router.everyone_mask if targets is router.everyone else self._decisive_mask(targets)
        handle = self.pending.add(arrived, original, len(<tuple>targets), mask)
        if handle < 0:
            self._throttled(original, now)
            return 0
        if self._idle:
            self._fine_tick()  # in flight again: back to the fine tick
        if concat_key is not None:
            self._concat_in_flight.setdefault(concat_key, set()).add(handle)
        if self.read_pause.enabled:
            self.read_pause.added(session, len(self.pending))
        if not mask:
            # Only monitor accounts: they see the copy, but cannot decide.
            self.pending.decide(handle, self.policy.on_no_ne, 4, now)  # REASON_NO_NE
            self._reply_c(handle, original)
        if original.parts is not None:
            self._send_message_copies(original, handle, now)
            return 0
        pdu = original.pdu
        index = 0
        for lane in targets:
            # The common case: nothing queued, a bind free, a token.
            bind = None if lane.waiting else lane.pick_bind()
            if bind is not None and (not lane.tps or lane.take_token(now)):
                self._transmit_c(bind, lane, handle, index, pdu, now, original, False)
            else:
                self._hold_copy(lane, handle, index, now, original)
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
        context = (handle, index, lane, session, retried, now, original)
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

    def _take_ne_verdict(self, tuple context, long long status, response):
        """A copy's outcome, from its NE session: the NE's answer, or NO_RESPONSE
        (timeout, bind lost, never sent) — retried once on another bind if the
        bind dropped, else counted as that target's NONE."""
        cdef int64_t handle = context[0]
        cdef int index = context[1]
        cdef Lane lane = context[2]
        cdef double sent_at = context[5]
        cdef Original original = context[6]
        cdef double now = self.clock()
        cdef double latency
        cdef int state
        if status != _NO_RESPONSE:
            latency = now - sent_at
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
        elif not context[4] and not context[3].is_open and self._retry(lane, handle, index, now):
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
        session = original.session
        if isinstance(session, SessionCore):
            response = (<SessionCore>session).respond_c(original.pdu, status)
        else:  # a whole message's Riders, or a mesh RemotePart
            response = session.respond(original.pdu, status)
        self.decision_latency.observe(entry.decided_at - entry.arrived_at)
        self.stats._by_code[outcome][reason] += 1
        if original.trace is not None:
            original.trace.final(status, _OUTCOME_NAMES[outcome], reason_name(reason), response)
        if original.held is not None:
            self._withdraw_held(original, self.clock(), True)
        if original.parts is not None:
            self.assembly.decided(original.session.key, outcome, status, self.clock())
        if outcome == OUTCOME_BLOCK and reason != REASON_STICKY:
            self._block_message(original.concat_key, self.clock(), handle)
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
            self._record(handle, original)
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

    def _count_campaign_as(self, Original original, int outcome, int cause):
        """One whole message in the campaign table, with the number of what decided
        it (smps.proxy.campaigns.cause_id)."""
        self._count(original, outcome, cause)

    cdef int _count(self, Original original, int outcome, int cause) except -1:
        cdef SmView view = original.view
        self.campaigns.observe(original.fingerprint, view.source_addr, view.destination_addr,
                               <int64_t>self.wall_clock(), outcome - 1, cause, original.text,
                               self._show_content)
        return 0

    cdef int _decisive_mask(self, tuple targets) except -1:
        """Bit i set when target i is an enforcing account (the pending table's mask)."""
        cdef int mask = 0, index = 0
        cdef Lane lane
        for lane in targets:
            if lane.decisive:
                mask |= 1 << index
            index += 1
        return mask


cdef inline bint _is_part(tuple concat):
    """A part of a message of more than one (smps.proxy.assembly.part_of)."""
    return concat[1] > 1 and 1 <= concat[2] <= concat[1]


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
