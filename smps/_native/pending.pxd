# cython: language_level=3
"""C-level interface of the table of originals in flight, for modules that cimport it.

Layout, and why each message costs O(1) and no Python objects:

- ``Entry`` (56 octets) per slot, in one array of ``capacity`` slots. The
  state of up to 32 targets is kept as bitmasks (answered, blocked,
  no_answer, late), so a rule reads "have all decisive targets answered?"
  in one AND.
- ``TargetAnswer`` (8 octets: NE status and latency) in one array laid out
  target-major, ``[target * capacity + slot]``: the pages of targets that
  no original uses (say 4 to 31 when every route has 3 accounts) are never
  written, so they never become resident memory.
- Both arrays are mapped straight from the kernel (mmap), so a page is
  resident only once written. Slots come from a free list, fresh ones in
  order, so capacity never used costs address space only.
- While an entry waits for answers it sits in a doubly linked list in
  arrival order; one timeout applies to all, so deadlines are in that order
  too and ``expire`` only looks at the head. An entry that completes early
  is unlinked at once: nothing stale is left for the tick to skip.
- A handle is ``generation << 32 | slot``; the slot's generation changes on
  release, so an old handle never matches a reused slot.
- The one Python reference per entry is the caller's context, in a list.
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t


# State of one target (docs/architecture.md §1: ALLOW, BLOCK, or NONE = no usable
# answer). Python sees these as module-level ints.
cpdef enum:
    WAITING = 0
    ALLOW = 1
    BLOCK = 2
    NONE = 3

# Final outcome of an original; the proxy maps it to a command_status.
cpdef enum:
    OUTCOME_ALLOW = 1
    OUTCOME_BLOCK = 2
    OUTCOME_TEMPFAIL = 3

# Why the outcome was chosen (the "reason" of a decision record). The table
# sets the first three; the caller imposes the others with decide().
cpdef enum:
    REASON_BLOCK = 1
    REASON_ALL_ALLOW = 2
    REASON_TIMEOUT = 3
    REASON_NO_NE = 4
    REASON_OVERLOAD = 5
    REASON_STICKY = 6

# Result of PendingTable.answer(): one of PENDING, DECIDED, LATE, UNKNOWN,
# with COMPLETE or'ed in when the answer was the last one the entry waited for.
cpdef enum:
    ANSWER_PENDING = 0
    ANSWER_DECIDED = 1
    ANSWER_LATE = 2
    ANSWER_UNKNOWN = 4
    ANSWER_COMPLETE = 8

cpdef enum:
    MAX_TARGETS = 32


# Lifecycle of a slot: FREE -> PENDING -> DECIDED -> COMPLETE -> (release) FREE.
cdef enum Phase:
    PHASE_FREE = 0
    PHASE_PENDING = 1
    PHASE_DECIDED = 2
    PHASE_COMPLETE = 3


cdef struct Entry:
    double arrived_at
    double decided_at
    uint32_t generation
    int32_t prev            # arrival list while waiting; unused when free
    int32_t next            # arrival list while waiting; free list when free
    uint32_t decisive       # bit i: target i is in enforce mode
    uint32_t answered       # bit i: target i's state is no longer WAITING
    uint32_t blocked        # bit i: target i answered BLOCK
    uint32_t no_answer      # bit i: target i is NONE
    uint32_t late           # bit i: target i answered after the verdict
    uint8_t n_targets
    uint8_t phase
    uint8_t outcome         # OUTCOME_*, 0 while undecided
    uint8_t reason          # REASON_*, 0 while undecided
    int8_t deciding         # target whose answer decided, or -1


cdef struct TargetAnswer:
    uint32_t status         # the NE's command_status
    uint32_t latency_us     # arrival of the original to this answer


cdef struct Verdict:
    uint8_t outcome         # 0: not decided yet
    uint8_t reason
    int8_t deciding


cdef class Rule:
    """How the answers of decisive targets combine into a final verdict."""

    cdef readonly str name

    # Called for every answer while the entry is undecided, after ``entry``
    # records it. Returns outcome 0 to keep waiting.
    cdef Verdict on_answer(self, const Entry* entry, int target, int state,
                           int on_no_answer) noexcept


cdef class BlockFirst(Rule):
    pass


cdef class PendingTable:
    cdef Entry* _entries
    cdef TargetAnswer* _answers     # target-major: [target * capacity + slot]
    cdef list _contexts
    cdef Rule _rule
    cdef int32_t _capacity
    cdef int32_t _fresh             # slots below this have been used at least once
    cdef int32_t _free              # head of the free list, -1 when empty
    cdef int32_t _head              # oldest entry still waiting for answers
    cdef int32_t _tail
    cdef int32_t _in_flight         # added and not released
    cdef int32_t _pending           # added and not decided
    cdef double _timeout
    cdef int _on_no_answer

    cdef int32_t _slot_of(self, int64_t handle) noexcept
    cdef int32_t _valid_slot(self, int64_t handle) except -1
    cdef void _unlink(self, int32_t slot) noexcept
    cdef const Entry* _decided(self, int64_t handle) except NULL
    cdef void _settle(self, Entry* entry, int outcome, int reason, int deciding,
                      double now) noexcept

    cpdef int64_t add(self, double now, object context, int n_targets,
                      uint32_t decisive_mask) except -2
    cpdef int answer(self, int64_t handle, int target, int state, uint32_t status,
                     double now) except -1
    cpdef bint decide(self, int64_t handle, int outcome, int reason, double now) except -1
    cpdef list expire(self, double now)
    cpdef release(self, int64_t handle)
    cpdef object context(self, int64_t handle)
    cpdef tuple verdict(self, int64_t handle)
