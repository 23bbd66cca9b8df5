# cython: language_level=3
"""The table of originals in flight: their targets' answers, verdicts and deadlines.

Sans-I/O: the caller passes ``now`` (seconds, from one monotonic clock) into
every call; there is no clock, loop or timer in here. The proxy calls
``add`` once per original and ``answer`` once per NE answer, both O(1) with
no Python allocation; one periodic tick calls ``expire``.

Lifecycle of an entry (docs/architecture.md §3):

    add -> PENDING --(rule decides | decide())--> DECIDED --> COMPLETE -> release
              \\---------------- deadline (expire) ---------------/

- DECIDED: the final verdict is known; the caller answers the SMSC exactly
  once, when ``answer`` returns ANSWER_DECIDED or ``expire`` says so.
- COMPLETE: the entry is decided and every target has answered, or the
  deadline passed (targets still waiting become NONE). The caller writes the
  decision record, then ``release``s the slot. Completion is reported exactly
  once: by ``answer`` (ANSWER_COMPLETE bit) or by ``expire``.
- Answers after DECIDED are recorded as late; answers for a completed,
  released or reused slot change nothing (ANSWER_UNKNOWN).
"""

cimport cython
from libc.math cimport isfinite
from libc.stdint cimport uint64_t
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, mmap, munmap

cdef int64_t _SLOT_MASK = 0xFFFFFFFF
cdef uint32_t _GENERATION_MASK = 0x7FFFFFFF  # keeps handles non-negative
cdef double _MAX_LATENCY_US = 4294967295.0

_REASON_NAMES = ("block", "all_allow", "timeout", "no_ne", "overload", "sticky")


def reason_name(int reason):
    """The decision record's name for a REASON_* code, e.g. ``"all_allow"``."""
    if not REASON_BLOCK <= reason <= REASON_STICKY:
        raise ValueError(f"unknown reason code {reason}")
    return _REASON_NAMES[reason - REASON_BLOCK]


cdef inline uint32_t _all_targets(const Entry* entry) noexcept:
    return <uint32_t>((<uint64_t>1 << entry.n_targets) - 1)


cdef inline uint32_t _latency_us(const Entry* entry, double now) noexcept:
    cdef double us = (now - entry.arrived_at) * 1e6 + 0.5  # rounded, not truncated
    if us <= 0.0:
        return 0
    if us >= _MAX_LATENCY_US:
        return <uint32_t>_MAX_LATENCY_US
    return <uint32_t>us


cdef inline Verdict _verdict(int outcome, int reason, int deciding) noexcept:
    cdef Verdict v
    v.outcome = <uint8_t>outcome
    v.reason = <uint8_t>reason
    v.deciding = <int8_t>deciding
    return v


# --------------------------------------------------------------------------
# Rules: how decisive answers combine. One ships; the table only calls
# Rule.on_answer, so others can be added without touching the table.

cdef class Rule:
    """Base of the combination rules. Subclass in Cython and implement on_answer."""

    def __init__(self):
        if type(self) is Rule:
            raise TypeError("Rule is abstract; use rule_by_name()")

    cdef Verdict on_answer(self, const Entry* entry, int target, int state,
                           int on_no_answer) noexcept:
        return _verdict(0, 0, -1)

    def __repr__(self):
        return f"<Rule {self.name}>"


cdef class BlockFirst(Rule):
    """docs/architecture.md §3: the first BLOCK from a decisive target decides at
    once; once every decisive target has answered, all ALLOW -> ALLOW, and any
    NONE among them -> the table's no-answer outcome, as if its deadline passed.
    Targets in monitor mode never decide."""

    def __init__(self):
        self.name = "block_first"

    cdef Verdict on_answer(self, const Entry* entry, int target, int state,
                           int on_no_answer) noexcept:
        if not (entry.decisive >> target) & 1:
            return _verdict(0, 0, -1)
        if state == BLOCK:
            return _verdict(OUTCOME_BLOCK, REASON_BLOCK, target)
        if entry.answered & entry.decisive != entry.decisive:
            return _verdict(0, 0, -1)
        if entry.no_answer & entry.decisive:
            return _verdict(on_no_answer, REASON_TIMEOUT, -1)
        return _verdict(OUTCOME_ALLOW, REASON_ALL_ALLOW, target)


_RULES = {"block_first": BlockFirst}


def rule_by_name(str name):
    """The combination rule called ``name`` (the only one shipped: "block_first")."""
    try:
        return _RULES[name]()
    except KeyError:
        raise ValueError(f"unknown verdict rule {name!r}; known: {', '.join(_RULES)}") from None


cdef inline int _check_outcome(int outcome) except -1:
    if not OUTCOME_ALLOW <= outcome <= OUTCOME_TEMPFAIL:
        raise ValueError(f"unknown outcome {outcome}")
    return 0


cdef void* _map(size_t size) except NULL:
    """Fresh zero pages straight from the kernel, resident only once written.

    Not malloc: a heap chunk may reuse pages already resident, and the table
    counts on the pages of unused slots and target columns staying free.
    """
    cdef void* p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if p == MAP_FAILED:
        raise MemoryError(f"cannot map {size} bytes for the pending table")
    return p


cdef inline int _check_timeout(double timeout) except -1:
    if not (isfinite(timeout) and timeout > 0.0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout}")
    return 0


# --------------------------------------------------------------------------

cdef class PendingTable:
    """Originals in flight, each with up to MAX_TARGETS target NE accounts.

    ``capacity`` is fixed (the proxy passes ``flow.max_inflight``); all
    memory is allocated here, and ``add`` returns -1 when every slot is taken.
    ``timeout`` (seconds) is one value for every entry: its deadline is
    ``arrived_at + timeout``. ``on_no_answer`` is the outcome for an original
    whose decisive targets did not all answer usably in time.
    """

    def __cinit__(self, Py_ssize_t capacity, double timeout, Rule rule=None,
                  int on_no_answer=OUTCOME_ALLOW):
        if not 1 <= capacity <= 0x7FFFFFFF:
            raise ValueError(f"capacity must be from 1 to {0x7FFFFFFF}, got {capacity}")
        _check_timeout(timeout)
        _check_outcome(on_no_answer)
        self._capacity = <int32_t>capacity  # first: __dealloc__ unmaps by it
        self._entries = <Entry*>_map(capacity * sizeof(Entry))
        self._answers = <TargetAnswer*>_map(capacity * MAX_TARGETS * sizeof(TargetAnswer))
        self._contexts = [None] * capacity
        self._rule = rule if rule is not None else BlockFirst()
        self._fresh = 0
        self._free = -1
        self._head = -1
        self._tail = -1
        self._in_flight = 0
        self._pending = 0
        self._timeout = timeout
        self._on_no_answer = on_no_answer

    def __dealloc__(self):
        if self._entries is not NULL:
            munmap(self._entries, self._capacity * sizeof(Entry))
        if self._answers is not NULL:
            munmap(self._answers, self._capacity * MAX_TARGETS * sizeof(TargetAnswer))

    # ---- properties -----------------------------------------------------------

    def __len__(self):
        """Entries added and not yet released."""
        return self._in_flight

    @property
    def pending_count(self):
        """Entries still waiting for their final verdict."""
        return self._pending

    @property
    def capacity(self):
        return self._capacity

    @property
    def timeout(self):
        return self._timeout

    def set_timeout(self, double timeout):
        """Change the timeout. It applies to every entry, in flight or new, so
        deadlines stay in arrival order and a shorter timeout takes effect at
        the next tick instead of after the older, longer deadlines."""
        _check_timeout(timeout)
        self._timeout = timeout

    @property
    def on_no_answer(self):
        """Outcome when the decisive targets did not all answer usably in time."""
        return self._on_no_answer

    @on_no_answer.setter
    def on_no_answer(self, int outcome):
        _check_outcome(outcome)
        self._on_no_answer = outcome

    @property
    def rule(self):
        return self._rule

    # ---- handles ----------------------------------------------------------------

    cdef int32_t _slot_of(self, int64_t handle) noexcept:
        """The slot a live handle names, or -1 (stale, released, reused, bogus)."""
        if handle < 0:
            return -1
        cdef int64_t slot = handle & _SLOT_MASK
        if slot >= self._fresh:
            return -1
        cdef const Entry* entry = &self._entries[slot]
        if entry.phase == PHASE_FREE or entry.generation != <uint32_t>(handle >> 32):
            return -1
        return <int32_t>slot

    cdef int32_t _valid_slot(self, int64_t handle) except -1:
        cdef int32_t slot = self._slot_of(handle)
        if slot < 0:
            raise KeyError(f"no entry for handle {handle:#x} (released or never added)")
        return slot

    cdef void _unlink(self, int32_t slot) noexcept:
        """Take a completed entry off the arrival list."""
        cdef Entry* entry = &self._entries[slot]
        if entry.prev >= 0:
            self._entries[entry.prev].next = entry.next
        else:
            self._head = entry.next
        if entry.next >= 0:
            self._entries[entry.next].prev = entry.prev
        else:
            self._tail = entry.prev

    cdef void _settle(self, Entry* entry, int outcome, int reason, int deciding,
                      double now) noexcept:
        entry.phase = PHASE_DECIDED
        entry.outcome = <uint8_t>outcome
        entry.reason = <uint8_t>reason
        entry.deciding = <int8_t>deciding
        entry.decided_at = now
        self._pending -= 1

    # ---- the per-message path ----------------------------------------------------

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cpdef int64_t add(self, double now, object context, int n_targets,
                      uint32_t decisive_mask) except -2:
        """Add an original that arrived at ``now`` and return its handle, or -1
        when the table is full (the caller throttles).

        Target ``i`` (0 <= i < n_targets) is decisive when bit ``i`` of
        ``decisive_mask`` is set. With no decisive target nothing can decide:
        the caller must call decide() itself, at once.
        """
        if not 0 <= n_targets <= MAX_TARGETS:
            raise ValueError(f"n_targets must be from 0 to {MAX_TARGETS}, got {n_targets}")
        if n_targets < MAX_TARGETS and decisive_mask >> n_targets:
            raise ValueError(f"decisive_mask {decisive_mask:#x} names targets beyond {n_targets}")
        cdef int32_t slot
        if self._free >= 0:
            slot = self._free
            self._free = self._entries[slot].next
        elif self._fresh < self._capacity:
            slot = self._fresh
            self._fresh += 1
            self._entries[slot].generation = 0
        else:
            return -1
        cdef Entry* entry = &self._entries[slot]
        entry.arrived_at = now
        entry.decided_at = 0.0
        entry.decisive = decisive_mask
        entry.answered = 0
        entry.blocked = 0
        entry.no_answer = 0
        entry.late = 0
        entry.n_targets = <uint8_t>n_targets
        entry.phase = PHASE_PENDING
        entry.outcome = 0
        entry.reason = 0
        entry.deciding = -1
        entry.next = -1
        entry.prev = self._tail
        if self._tail >= 0:
            self._entries[self._tail].next = slot
        else:
            self._head = slot
        self._tail = slot
        self._contexts[slot] = context
        self._in_flight += 1
        self._pending += 1
        return (<int64_t>entry.generation << 32) | slot

    cpdef int answer(self, int64_t handle, int target, int state, uint32_t status,
                     double now) except -1:
        """Record target ``target``'s answer: ``state`` ALLOW, BLOCK or NONE and
        the NE's command_status. Returns ANSWER_PENDING, ANSWER_DECIDED (answer
        the SMSC now), ANSWER_LATE (recorded, already decided) or ANSWER_UNKNOWN
        (stale handle or a repeated answer: ignored), with ANSWER_COMPLETE
        or'ed in when the entry is now complete (record it and release it).
        """
        cdef int32_t slot = self._slot_of(handle)
        if slot < 0:
            return ANSWER_UNKNOWN
        cdef Entry* entry = &self._entries[slot]
        if not 0 <= target < entry.n_targets:
            raise IndexError(f"target {target} out of range for {entry.n_targets} targets")
        if not ALLOW <= state <= NONE:
            raise ValueError(f"an answer's state must be ALLOW, BLOCK or NONE, got {state}")
        cdef uint32_t bit = <uint32_t>1 << target
        if entry.answered & bit:
            return ANSWER_UNKNOWN
        entry.answered |= bit
        if state == BLOCK:
            entry.blocked |= bit
        elif state == NONE:
            entry.no_answer |= bit
        cdef TargetAnswer* stored = &self._answers[<Py_ssize_t>target * self._capacity + slot]
        stored.status = status
        stored.latency_us = _latency_us(entry, now)

        cdef int result
        cdef Verdict verdict
        if entry.phase == PHASE_PENDING:
            verdict = self._rule.on_answer(entry, target, state, self._on_no_answer)
            if verdict.outcome == 0:
                return ANSWER_PENDING
            self._settle(entry, verdict.outcome, verdict.reason, verdict.deciding, now)
            result = ANSWER_DECIDED
        else:
            entry.late |= bit
            result = ANSWER_LATE
        if entry.answered == _all_targets(entry):
            entry.phase = PHASE_COMPLETE
            self._unlink(slot)
            result |= ANSWER_COMPLETE
        return result

    cpdef bint decide(self, int64_t handle, int outcome, int reason, double now) except -1:
        """Impose the final verdict (no NE bound, overload, sticky block...).

        Returns False, changing nothing, when the entry was already decided.
        The entry still completes through answer() (its last target's answer)
        or expire(), so its targets' answers are recorded; one whose targets
        had all answered before this call completes at its deadline.
        """
        cdef int32_t slot = self._valid_slot(handle)
        _check_outcome(outcome)
        if not REASON_BLOCK <= reason <= REASON_STICKY:
            raise ValueError(f"unknown reason code {reason}")
        cdef Entry* entry = &self._entries[slot]
        if entry.phase != PHASE_PENDING:
            return False
        self._settle(entry, outcome, reason, -1, now)
        return True

    cpdef list expire(self, double now):
        """Complete every entry whose deadline (arrived_at + timeout) is <= now.

        Returns ``[(handle, needs_answer), ...]`` in arrival order. Every
        entry returned is COMPLETE: targets still waiting became NONE (latency
        = time until now). ``needs_answer`` is True for entries that were still
        undecided: the table decided them ``on_no_answer`` (REASON_TIMEOUT) and
        the caller must answer the SMSC for them. For all of them the caller
        writes the record and calls release().
        """
        cdef list expired = []
        cdef int32_t slot
        cdef Entry* entry
        cdef uint32_t missing
        cdef uint32_t latency
        cdef int target
        cdef bint needs_answer
        while self._head >= 0:
            slot = self._head
            entry = &self._entries[slot]
            if entry.arrived_at + self._timeout > now:
                break
            self._unlink(slot)
            needs_answer = entry.phase == PHASE_PENDING
            if needs_answer:
                self._settle(entry, self._on_no_answer, REASON_TIMEOUT, -1, now)
            missing = _all_targets(entry) & ~entry.answered
            if missing:
                latency = _latency_us(entry, now)
                for target in range(entry.n_targets):
                    if (missing >> target) & 1:
                        self._answers[<Py_ssize_t>target * self._capacity + slot] = (
                            TargetAnswer(0, latency)
                        )
                entry.no_answer |= missing
                entry.answered |= missing
            entry.phase = PHASE_COMPLETE
            expired.append(((<int64_t>entry.generation << 32) | slot, needs_answer))
        return expired

    @cython.boundscheck(False)
    @cython.wraparound(False)
    cpdef release(self, int64_t handle):
        """Free a COMPLETE entry's slot; its handle is stale from now on."""
        cdef int32_t slot = self._valid_slot(handle)
        cdef Entry* entry = &self._entries[slot]
        if entry.phase != PHASE_COMPLETE:
            raise ValueError("only a complete entry can be released")
        entry.phase = PHASE_FREE
        entry.generation = (entry.generation + 1) & _GENERATION_MASK
        entry.next = self._free
        self._free = slot
        self._contexts[slot] = None
        self._in_flight -= 1

    # ---- reading an entry (for the SMSC answer and the decision record) ------

    cpdef object context(self, int64_t handle):
        """The object given to add(), or None when the handle is stale."""
        cdef int32_t slot = self._slot_of(handle)
        if slot < 0:
            return None
        return self._contexts[slot]

    def is_decided(self, int64_t handle):
        """True once the final verdict is known (DECIDED or COMPLETE)."""
        return self._entries[self._valid_slot(handle)].phase >= PHASE_DECIDED

    def is_complete(self, int64_t handle):
        """True once the entry waits for nothing: record it and release it."""
        return self._entries[self._valid_slot(handle)].phase == PHASE_COMPLETE

    cpdef tuple verdict(self, int64_t handle):
        """(outcome, reason, seconds from arrival to verdict) of a decided entry:
        what answering the SMSC needs, in one call."""
        cdef const Entry* entry = self._decided(handle)
        return (entry.outcome, entry.reason, entry.decided_at - entry.arrived_at)

    def outcome(self, int64_t handle):
        """OUTCOME_ALLOW, OUTCOME_BLOCK or OUTCOME_TEMPFAIL of a decided entry."""
        return self._decided(handle).outcome

    def reason(self, int64_t handle):
        """The REASON_* code of a decided entry (see reason_name())."""
        return self._decided(handle).reason

    def deciding_target(self, int64_t handle):
        """Index of the target whose answer decided, or -1 (timeout, or imposed)."""
        return self._decided(handle).deciding

    def decided_at(self, int64_t handle):
        """The ``now`` at which the verdict was decided."""
        return self._decided(handle).decided_at

    def arrived_at(self, int64_t handle):
        """The ``now`` given to add(); the deadline is this plus the timeout."""
        return self._entries[self._valid_slot(handle)].arrived_at

    def targets(self, int64_t handle):
        """Per target: (state, status, latency_us, late). status and latency_us
        are 0 while WAITING; a NONE set by the deadline has status 0."""
        cdef int32_t slot = self._valid_slot(handle)
        cdef const Entry* entry = &self._entries[slot]
        cdef list out = []
        cdef int target
        cdef int state
        cdef uint32_t bit
        cdef TargetAnswer stored
        for target in range(entry.n_targets):
            bit = <uint32_t>1 << target
            if not entry.answered & bit:
                out.append((WAITING, 0, 0, False))
                continue
            if entry.blocked & bit:
                state = BLOCK
            elif entry.no_answer & bit:
                state = NONE
            else:
                state = ALLOW
            stored = self._answers[<Py_ssize_t>target * self._capacity + slot]
            out.append((state, stored.status, stored.latency_us, bool(entry.late & bit)))
        return out

    cdef const Entry* _decided(self, int64_t handle) except NULL:
        cdef const Entry* entry = &self._entries[self._valid_slot(handle)]
        if entry.phase < PHASE_DECIDED:
            raise ValueError("the entry is not decided yet")
        return entry
