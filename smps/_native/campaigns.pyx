# cython: language_level=3, cdivision=True
"""Campaigns: the message fingerprints one worker sees most, counted in memory that
the master can map read-only and merge with the other workers' on demand.

`CampaignTable` is one worker's: ``observe`` once per whole message (its
fingerprint, `smps._native.fingerprint`). Memory is fixed at construction
(``size_for(capacity)`` octets of the buffer it is given; 16.2 MB for the
default 1,024 entries), however many texts go by: a heavy-hitters table.

Eviction (space-saving): a fingerprint not in a full table takes the entry with
the smallest count, and inherits that count as its ``error``: its count is
never below its true count and at most ``error`` above it (exactly so while no
count has been halved; see below). Every fingerprint seen more than N/capacity
times in a stream of N stays in the table. The eviction counts halve at each
full hour, so a campaign that stopped gives its entry up to new ones within a
few hours, while a live one holds it.

Per entry, in windows that slide (`CampaignView` reads them):

* messages and blocked messages in buckets: 10 s for windows up to 5 min (32
  buckets), 1 min up to 1 h (64), 15 min up to 24 h (96). A message counts in
  a window of W for between W − one bucket and W after it came (10 s, 1 min,
  15 min): a window is its buckets, the current one included. The count the
  fingerprint inherited counts in its windows while the bucket it was admitted
  in does (then the window holds every message it had).
* distinct senders and recipients: HyperLogLog, 2,048 registers of 4 bits
  (p = 11) per set, over XXH64 of the address; standard error 1.04/√2048 ≈
  2.3 % (measured: 1.3 % at 50 distinct, 1.9 % at 2,000, a bias up to +2 %
  near 5,000 where linear counting hands over to the harmonic mean; registers
  saturate beyond some 10⁷ distinct). Small sets are exact: up to 16 hashes
  are kept as they are before the registers are filled (a new entry clears no
  registers). Each window has two sets that take turns, each for half of it
  (2.5 min, 30 min, 12 h): the distinct count of a window is the union of the
  current half and the previous one, so it covers between W/2 and W.
* outcomes (allow, block, tempfail) by cause: a small id the caller keeps a
  table of (a rule, an NE account), up to 8 (outcome, cause) pairs per entry
  and an "other" count per outcome; counted in the same halves as the
  distinct sets.
* one example text (its first 160 characters in UTF-8) and whether its content
  may be shown (``content_allowed``: the reader masks it otherwise);
  first and last seen (epoch seconds; first: when the fingerprint took the entry).

Readers and the writer share no lock: each entry has a sequence number the
worker makes odd while it writes the entry (a seqlock); a reader copies the
entry and takes the copy only if the number was even and unchanged, else it
tries again (an entry left odd by a worker that died is skipped, ``torn``).
The buffer starts with a magic number, a layout version and the entry size; a
reader refuses any other (ValueError).

No I/O and no Python object per message beyond the arguments: observe costs
0.11 µs a call for a fingerprint in the table, 0.21 µs for a new one that takes
an entry (bench/README.md, "Campaigns"); the lines a new one will write are
fetched ahead, at the end of the call before.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport PyUnicode_READ
from libc.math cimport log
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

import msgspec

from smps._native.fingerprint cimport put_utf8, xxh64
from smps._native.velocity cimport mix_hash


cdef extern from "Python.h":
    int PyUnicode_KIND(object text)
    void* PyUnicode_DATA(object text)
    bint PyUnicode_IS_ASCII(object text)
    str PyUnicode_DecodeUTF8(const char* data, Py_ssize_t size, const char* errors)

cdef extern from *:
    """
    /* The seqlock (H.-J. Boehm, "Can seqlocks get along with programming language
       memory models?", 2012): odd while the one writer writes. */
    static inline void smps_seq_begin(uint32_t *seq) {
        __atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
        __atomic_thread_fence(__ATOMIC_RELEASE);
    }
    static inline void smps_seq_end(uint32_t *seq) {
        __atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);
    }
    static inline uint32_t smps_seq_load(const uint32_t *seq) {
        return __atomic_load_n(seq, __ATOMIC_ACQUIRE);
    }
    static inline void smps_seq_fence(void) {
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
    }
    """
    void smps_seq_begin(uint32_t* seq) noexcept nogil
    void smps_seq_end(uint32_t* seq) noexcept nogil
    uint32_t smps_seq_load(const uint32_t* seq) noexcept nogil
    void smps_seq_fence() noexcept nogil
    int __builtin_clz(unsigned int x) noexcept nogil
    void __builtin_prefetch(const void* address, int write) noexcept nogil

cdef extern from "<sched.h>" nogil:
    int sched_yield()


# The three kinds of window: bucket width, buckets, first bucket, the half a
# distinct set covers (s), as constants so that the writer divides by multiplying.
cdef enum:
    _WIDTH0 = 10
    _SIZE0 = 32
    _OFFSET0 = 0
    _HALF0 = 150
    _WIDTH1 = 60
    _SIZE1 = 64
    _OFFSET1 = 32
    _HALF1 = 1800
    _WIDTH2 = 900
    _SIZE2 = 96
    _OFFSET2 = 96
    _HALF2 = 43200

cdef uint32_t _NO_CAUSE = 0xFFFFFFFF
cdef uint64_t _MAGIC = 0x504D4143534D5053ULL  # "SMPSCAMP"

OUTCOME_ALLOW = 0
OUTCOME_BLOCK = 1
OUTCOME_TEMPFAIL = 2
OTHER_CAUSE = -1  # in Campaign.outcomes: a cause beyond the entry's 8, or none
VERSION = _VERSION

# The same for the reader, by tier.
cdef int64_t _WIDTH[_TIERS]
cdef int64_t _SIZE[_TIERS]
cdef int64_t _OFFSET[_TIERS]
cdef int64_t _HALF[_TIERS]
cdef int64_t _LONGEST[_TIERS]  # the longest window each serves
_WIDTH[:] = [_WIDTH0, _WIDTH1, _WIDTH2]
_SIZE[:] = [_SIZE0, _SIZE1, _SIZE2]
_OFFSET[:] = [_OFFSET0, _OFFSET1, _OFFSET2]
_HALF[:] = [_HALF0, _HALF1, _HALF2]
_LONGEST[:] = [300, 3600, 86400]
WINDOW_MAX = 86400


# The part of an entry before its buckets (192 octets), which a first read copies.
cdef Py_ssize_t _ENTRY_HEAD = (sizeof(Entry) - _BUCKETS * sizeof(Bucket) - 2 * _TIERS * sizeof(Half)
                               - _EXAMPLE_OCTETS)


cdef Py_ssize_t _slots_for(Py_ssize_t capacity) noexcept:
    cdef Py_ssize_t slots = 1
    while slots < 2 * capacity:
        slots <<= 1
    return slots


cdef Py_ssize_t _size_for(Py_ssize_t capacity) noexcept:
    return (sizeof(Header) + capacity * sizeof(Entry) + _slots_for(capacity) * sizeof(Slot)
            + capacity * (sizeof(Node) + sizeof(uint32_t)))


cdef inline void _register_add(uint8_t* registers, uint32_t v) noexcept nogil:
    cdef uint32_t index = v >> (32 - _HLL_BITS)
    cdef uint32_t rank = __builtin_clz((v << _HLL_BITS) | (1u << (_HLL_BITS - 1))) + 1
    cdef int shift = (index & 1) << 2
    cdef uint8_t* octet = &registers[index >> 1]
    if rank > 15:
        rank = 15
    if ((octet[0] >> shift) & 15) < rank:
        octet[0] = (octet[0] & ~(15 << shift)) | (rank << shift)


cdef inline void _distinct_add(uint8_t* registers, uint32_t* sparse, uint16_t* held,
                               uint32_t v) noexcept nogil:
    """Add a hash to a distinct set: kept as it is while there is room, then in the
    registers."""
    cdef uint16_t n = held[0]
    cdef uint16_t i
    if n != _DENSE:
        for i in range(n):
            if sparse[i] == v:
                return
        if n < _SPARSE:
            sparse[n] = v
            held[0] = n + 1
            return
        memset(registers, 0, _HLL_OCTETS)
        for i in range(n):
            _register_add(registers, sparse[i])
        held[0] = _DENSE
    _register_add(registers, v)


cdef inline void _start(Entry* entry, int t, int64_t b, int64_t slot) noexcept nogil:
    # A new occupant's buckets of one kind: the current one empty, the others not its.
    entry.head[t] = entry.valid_from[t] = b
    entry.buckets[slot].messages = 0
    entry.buckets[slot].blocked = 0


cdef inline void _tick(Entry* entry, int outcome, uint32_t cause, uint32_t sender,
                       uint32_t recipient, int t, int64_t b, int64_t slot, int64_t size,
                       int64_t offset, int64_t number) noexcept nogil:
    # One message in the windows of one kind: its bucket ``b`` (at ``slot``, b % size;
    # emptying those passed since the newest), its half ``number`` (started afresh if
    # it is a new one), distinct sets, cause. The caller divides, by constants.
    cdef int64_t passed, k
    cdef Half* half
    if b > entry.head[t]:
        if b - entry.head[t] >= size:
            memset(&entry.buckets[offset], 0, size * sizeof(Bucket))
        else:
            passed = slot
            for k in range(b - entry.head[t]):
                entry.buckets[offset + passed].messages = 0
                entry.buckets[offset + passed].blocked = 0
                passed = passed - 1 if passed else size - 1
        entry.head[t] = b
    entry.buckets[offset + slot].messages += 1
    entry.buckets[offset + slot].blocked += outcome == _BLOCK
    half = &entry.halves[2 * t + (number & 1)]
    if half.number != number or half.generation != entry.generation:
        half.number = number
        half.generation = entry.generation
        half.sparse[0] = half.sparse[1] = 0
        memset(half.causes, 0, sizeof(half.causes) + sizeof(half.other))
    _distinct_add(half.senders, half.sparse_senders, &half.sparse[0], sender)
    _distinct_add(half.recipients, half.sparse_recipients, &half.sparse[1], recipient)
    if cause < _CAUSES:
        half.causes[cause] += 1
    else:
        half.other[outcome] += 1


cdef inline void _prefetch(const Entry* entry, int64_t now) noexcept nogil:
    # The lines a message for a new occupant writes, asked for at once and ahead rather
    # than one miss after another (an entry of 16 KB is seldom in the cache).
    cdef const char* p = <const char*>entry
    __builtin_prefetch(p, 1)
    __builtin_prefetch(p + 64, 1)
    __builtin_prefetch(p + 128, 1)
    __builtin_prefetch(&entry.buckets[_OFFSET0 + (now // _WIDTH0) % _SIZE0], 1)
    __builtin_prefetch(&entry.buckets[_OFFSET1 + (now // _WIDTH1) % _SIZE1], 1)
    __builtin_prefetch(&entry.buckets[_OFFSET2 + (now // _WIDTH2) % _SIZE2], 1)
    _prefetch_half(&entry.halves[(now // _HALF0) & 1])
    _prefetch_half(&entry.halves[2 + ((now // _HALF1) & 1)])
    _prefetch_half(&entry.halves[4 + ((now // _HALF2) & 1)])


cdef inline void _prefetch_half(const Half* half) noexcept nogil:
    cdef const char* p = <const char*>half
    __builtin_prefetch(p, 1)
    __builtin_prefetch(p + 64, 1)
    __builtin_prefetch(p + 128, 1)


cdef class CampaignTable:
    """The campaigns one worker counts, in ``buffer`` (writable: an mmap of a memfd
    the master maps too, a bytearray in one process); it is initialised here."""

    def __init__(self, buffer, Py_ssize_t capacity=1024):
        cdef unsigned char[::1] view = buffer
        cdef Py_ssize_t need = _size_for(capacity) if 0 < capacity <= 1 << 20 else -1
        if need < 0:
            raise ValueError(f"campaign table: capacity {capacity} is not in 1..1048576")
        if view.shape[0] < need:
            raise ValueError(f"campaign table: {capacity} entries need {need} octets, "
                             f"the buffer has {view.shape[0]}")
        self.buffer = buffer
        memset(&view[0], 0, need)
        self.header = <Header*>&view[0]
        self.entries = <Entry*>(<char*>self.header + sizeof(Header))
        self.slots = <Slot*>(<char*>self.entries + capacity * sizeof(Entry))
        self.mask = _slots_for(capacity) - 1
        self.heap = <Node*>(<char*>self.slots + (self.mask + 1) * sizeof(Slot))
        self.position = <uint32_t*>(<char*>self.heap + capacity * sizeof(Node))
        self.header.version = _VERSION
        self.header.entry_octets = sizeof(Entry)
        self.header.capacity = capacity
        self.header.magic = _MAGIC  # last: a reader sees a table only once it is one

    @staticmethod
    def size_for(Py_ssize_t capacity=1024):
        """Octets of buffer a table of ``capacity`` entries needs."""
        return _size_for(capacity)

    @property
    def capacity(self):
        return self.header.capacity

    @property
    def used(self):
        return self.header.used

    @property
    def observed(self):
        return self.header.observed

    @property
    def evictions(self):
        """Fingerprints that took a counted one's entry."""
        return self.header.evictions

    cpdef void observe(self, uint64_t fingerprint, bytes sender, bytes recipient,
                       int64_t now_s, int outcome, int cause, str example=None,
                       bint content_allowed=False) except *:
        """Count one whole message: its fingerprint, sender and recipient (as the
        caller normalised them), the time in epoch seconds, its outcome
        (OUTCOME_*) and the cause that decided it (the caller's small id, 0-65535;
        another number: none), and its text, kept as the example if the entry has
        none (None: not known; ``content_allowed``: whether it may be shown)."""
        cdef uint64_t fp = fingerprint or 1  # 0 marks an unused entry
        cdef int64_t e
        cdef Entry* entry
        cdef uint32_t key, slot
        cdef int c
        if <unsigned int>outcome >= _OUTCOMES:
            raise ValueError(f"campaign table: outcome {outcome} is not one of 0, 1, 2")
        if now_s < 0:
            raise ValueError(f"campaign table: {now_s} is not a time")
        if sender is None or recipient is None:
            raise TypeError("campaign table: sender and recipient must be bytes")
        self._decay(now_s)
        e = self._find(fp)
        if e < 0:
            e = self._admit(fp, now_s)
        entry = &self.entries[e]
        smps_seq_begin(&entry.seq)
        key = (<uint32_t>outcome << 16) | <uint32_t>cause if 0 <= cause <= 0xFFFF else _NO_CAUSE
        slot = _CAUSES
        if key != _NO_CAUSE:
            for c in range(_CAUSES):
                if entry.cause_keys[c] == key or entry.cause_keys[c] == _NO_CAUSE:
                    entry.cause_keys[c] = key
                    slot = c
                    break
        self._count(entry, now_s, outcome, slot,
                    <uint32_t>(xxh64(<const uint8_t*><const char*>sender, len(sender), 0) >> 32),
                    <uint32_t>(xxh64(<const uint8_t*><const char*>recipient, len(recipient),
                                     0) >> 32))
        if example is not None and not entry.flags & _HAS_EXAMPLE:
            self._keep_example(entry, example, content_allowed)
        smps_seq_end(&entry.seq)
        self.header.observed += 1
        slot = self.position[e]
        self.heap[slot].count += 1
        self._sift_down(slot)
        if self.header.used == self.header.capacity:
            # The entry the next new fingerprint takes: its lines on their way meanwhile.
            _prefetch(&self.entries[self.heap[0].entry], now_s)

    cdef void _count(self, Entry* entry, int64_t now, int outcome, uint32_t cause,
                     uint32_t sender, uint32_t recipient) noexcept:
        cdef int64_t b0, b1, b2
        if now < entry.last_seen:
            now = entry.last_seen  # late: counted in the newest bucket and half
        entry.last_seen = now
        b0, b1, b2 = now // _WIDTH0, now // _WIDTH1, now // _WIDTH2
        _tick(entry, outcome, cause, sender, recipient, 0, b0, b0 % _SIZE0, _SIZE0, _OFFSET0,
              now // _HALF0)
        _tick(entry, outcome, cause, sender, recipient, 1, b1, b1 % _SIZE1, _SIZE1, _OFFSET1,
              now // _HALF1)
        _tick(entry, outcome, cause, sender, recipient, 2, b2, b2 % _SIZE2, _SIZE2, _OFFSET2,
              now // _HALF2)

    cdef void _keep_example(self, Entry* entry, str text, bint content_allowed) noexcept:
        cdef int kind = PyUnicode_KIND(text)
        cdef void* data = PyUnicode_DATA(text)
        cdef Py_ssize_t i, k = 0
        if PyUnicode_IS_ASCII(text):
            k = min(len(text), _EXAMPLE_CHARS)
            memcpy(entry.example, data, k)
        else:
            for i in range(min(len(text), _EXAMPLE_CHARS)):
                k = put_utf8(entry.example, k, PyUnicode_READ(kind, data, i))
        entry.example_octets = k
        entry.flags = _HAS_EXAMPLE | (_CONTENT_ALLOWED if content_allowed else 0)

    cdef int64_t _admit(self, uint64_t fp, int64_t now) noexcept:
        """An entry for a new fingerprint: a free one, else the one with the smallest
        count, whose count the newcomer inherits."""
        cdef uint32_t e
        cdef uint64_t error = 0
        cdef int c
        cdef Entry* entry
        if self.header.used < self.header.capacity:
            e = self.header.used
            self.heap[e].count = 0
            self.heap[e].entry = e
            self.position[e] = e
            self.header.used += 1
            self._sift_up(e)
        else:
            e = self.heap[0].entry
            error = self.heap[0].count
            self._forget(self.heap[0].fingerprint)
            self.header.evictions += 1
        self._index(fp, e)
        self.heap[self.position[e]].fingerprint = fp
        entry = &self.entries[e]
        smps_seq_begin(&entry.seq)
        entry.generation += 1
        entry.fingerprint = fp
        entry.error = error
        entry.admitted = entry.first_seen = entry.last_seen = now
        entry.flags = 0
        entry.example_octets = 0
        for c in range(_CAUSES):
            entry.cause_keys[c] = _NO_CAUSE
        _start(entry, 0, now // _WIDTH0, _OFFSET0 + (now // _WIDTH0) % _SIZE0)
        _start(entry, 1, now // _WIDTH1, _OFFSET1 + (now // _WIDTH1) % _SIZE1)
        _start(entry, 2, now // _WIDTH2, _OFFSET2 + (now // _WIDTH2) % _SIZE2)
        smps_seq_end(&entry.seq)
        return e

    cdef void _decay(self, int64_t now) noexcept:
        """Halve every eviction count at each new hour (an order-keeping change: the
        heap stays a heap)."""
        cdef int64_t hour = now // 3600
        cdef int64_t shift = hour - self.header.decayed_hour
        cdef uint32_t i
        if shift <= 0:
            return
        if self.header.decayed_hour:
            for i in range(self.header.used):
                self.heap[i].count >>= min(shift, 63)
        self.header.decayed_hour = hour

    # ---- the fingerprint index: linear probing, deletion by backward shift

    cdef int64_t _find(self, uint64_t fp) noexcept:
        cdef uint64_t i = mix_hash(fp) & self.mask
        while self.slots[i].entry:
            if self.slots[i].fingerprint == fp:
                return self.slots[i].entry - 1
            i = (i + 1) & self.mask
        return -1

    cdef void _index(self, uint64_t fp, uint32_t e) noexcept:
        cdef uint64_t i = mix_hash(fp) & self.mask
        while self.slots[i].entry:
            i = (i + 1) & self.mask
        self.slots[i].fingerprint = fp
        self.slots[i].entry = e + 1

    cdef void _forget(self, uint64_t fp) noexcept:
        cdef uint64_t i = mix_hash(fp) & self.mask
        cdef uint64_t j, home
        while self.slots[i].fingerprint != fp:
            if not self.slots[i].entry:
                return
            i = (i + 1) & self.mask
        j = i
        while True:
            j = (j + 1) & self.mask
            if not self.slots[j].entry:
                break
            home = mix_hash(self.slots[j].fingerprint) & self.mask
            # Slot j may move to the hole at i unless its home lies in (i, j].
            if ((j - home) & self.mask) >= ((j - i) & self.mask):
                self.slots[i] = self.slots[j]
                i = j
        self.slots[i].entry = 0

    # ---- the min-heap of eviction counts

    cdef void _sift_up(self, uint32_t i) noexcept:
        cdef Node node = self.heap[i]
        cdef uint32_t parent
        while i:
            parent = (i - 1) >> 1
            if self.heap[parent].count <= node.count:
                break
            self.heap[i] = self.heap[parent]
            self.position[self.heap[i].entry] = i
            i = parent
        self.heap[i] = node
        self.position[node.entry] = i

    cdef void _sift_down(self, uint32_t i) noexcept:
        cdef Node node = self.heap[i]
        cdef uint32_t n = self.header.used
        cdef uint32_t child
        while True:
            child = 2 * i + 1
            if child >= n:
                break
            if child + 1 < n and self.heap[child + 1].count < self.heap[child].count:
                child += 1
            if self.heap[child].count >= node.count:
                break
            self.heap[i] = self.heap[child]
            self.position[self.heap[i].entry] = i
            i = child
        self.heap[i] = node
        self.position[node.entry] = i


# ---- reading -------------------------------------------------------------------------


class Campaign(msgspec.Struct, frozen=True):
    """One fingerprint over a window, merged over the workers whose tables hold it.

    ``messages`` counts its messages in the window, the count it inherited on
    admission included while that is in the window: the true count lies
    between ``messages - error`` and ``messages``. ``senders`` and
    ``recipients`` are distinct counts (exact up to 16 per worker and half,
    else ±2.3 %), ``outcomes`` are ``(outcome, cause, messages)`` with
    OTHER_CAUSE for the rest; both over the window's last one or two halves
    (module docstring). ``rate``: messages per bucket, oldest first.
    ``example`` must be shown masked unless ``content_allowed``."""

    fingerprint: str
    messages: int
    senders: int
    recipients: int
    blocked: int
    outcomes: list
    example: str | None
    content_allowed: bool
    first_seen: int
    last_seen: int
    rate: list
    error: int


cdef Py_ssize_t _check(const unsigned char[::1] view) except -1:
    """The capacity of the campaign table in ``view``; ValueError if it holds none
    this reader can read."""
    cdef const Header* header
    if view.shape[0] < <Py_ssize_t>sizeof(Header):
        raise ValueError(f"campaign table: {view.shape[0]} octets hold no header")
    header = <const Header*>&view[0]
    if header.magic != _MAGIC:
        raise ValueError("campaign table: the buffer holds no campaign table")
    if header.version != _VERSION or header.entry_octets != sizeof(Entry):
        raise ValueError(
            f"campaign table: layout version {header.version} with {header.entry_octets}-octet "
            f"entries; this reader reads version {_VERSION} with {sizeof(Entry)}-octet entries")
    if not 0 < header.capacity <= 1 << 20 or _size_for(header.capacity) > view.shape[0]:
        raise ValueError(f"campaign table: {header.capacity} entries do not fit "
                         f"{view.shape[0]} octets")
    return header.capacity


cdef bint _copy(const Entry* entry, Entry* copy, int tier, bint whole) noexcept:
    """Copy what a read of ``tier`` needs of an entry the worker may be writing: the
    part before the buckets and the tier's buckets, and if ``whole`` the tier's
    halves and the example too. False if it stayed torn (a worker that died while
    writing it; a live one writes an entry for a fraction of a microsecond)."""
    cdef uint32_t seq
    cdef int tries
    for tries in range(_TRIES):
        seq = smps_seq_load(&entry.seq)
        if seq & 1:
            if tries > 10:
                sched_yield()
            continue
        memcpy(copy, entry, _ENTRY_HEAD)
        memcpy(&copy.buckets[_OFFSET[tier]], &entry.buckets[_OFFSET[tier]],
               _SIZE[tier] * sizeof(Bucket))
        if whole:
            memcpy(&copy.halves[2 * tier], &entry.halves[2 * tier], 2 * sizeof(Half))
            memcpy(copy.example, entry.example, _EXAMPLE_OCTETS)
        smps_seq_fence()
        if smps_seq_load(&entry.seq) == seq:
            return True
    return False


cdef bint _sane(const Entry* c, int tier) noexcept:
    # A reader must not trust the buffer (a worker with a bug, or memory that is
    # not a table): bucket numbers a time can give, in order.
    return 0 <= c.valid_from[tier] <= c.head[tier] < (<int64_t>1 << 40)


cdef uint64_t _window(const Entry* c, int tier, int64_t now_b, int64_t n, uint64_t* blocked,
                      list rate):
    """Messages of the entry copied in ``c`` in the last ``n`` buckets (adding
    the blocked to blocked[0] and each bucket to ``rate``, if not None)."""
    cdef int64_t i, b
    cdef uint64_t messages = 0
    cdef const Bucket* bucket
    if not _sane(c, tier):
        return 0
    for i in range(n):
        b = now_b - n + 1 + i
        if b < c.valid_from[tier] or b > c.head[tier] or c.head[tier] - b >= _SIZE[tier]:
            continue
        bucket = &c.buckets[_OFFSET[tier] + b % _SIZE[tier]]
        messages += bucket.messages
        blocked[0] += bucket.blocked
        if rate is not None:
            rate[i] += bucket.messages
    return messages


cdef inline bint _inherited_in(const Entry* c, int tier, int64_t now_b, int64_t n) noexcept:
    """Is the bucket the fingerprint was admitted in still in the window?"""
    return c.admitted // _WIDTH[tier] > now_b - n


cdef void _merge_registers(uint8_t* into, const uint8_t* registers) noexcept:
    cdef int i
    cdef uint8_t a, b
    for i in range(_HLL_OCTETS):
        a = into[i]
        b = registers[i]
        into[i] = max(a & 15, b & 15) | max(a & 0xF0, b & 0xF0)


cdef class _Distinct:
    """A distinct set merged from several: exact while every part held its hashes
    as they are, else registers merged by maximum."""

    cdef set exact
    cdef bint dense
    cdef uint8_t registers[_HLL_OCTETS]

    def __cinit__(self):
        self.exact = set()

    cdef void add(self, const uint32_t* sparse, uint16_t held, const uint8_t* registers):
        cdef uint16_t i
        if held == _DENSE:
            if not self.dense:
                memset(self.registers, 0, _HLL_OCTETS)
                self.dense = True
            _merge_registers(self.registers, registers)
            return
        for i in range(min(held, _SPARSE)):
            self.exact.add(sparse[i])

    cdef int64_t estimate(self):
        cdef double total = 0, m = 1 << _HLL_BITS, estimate
        cdef int i, zeros = 0
        cdef uint8_t r
        if not self.dense:
            return len(self.exact)
        for v in self.exact:
            _register_add(self.registers, v)
        for i in range(1 << _HLL_BITS):
            r = (self.registers[i >> 1] >> ((i & 1) << 2)) & 15
            zeros += r == 0
            total += 1.0 / (<uint64_t>1 << r)
        estimate = 0.7213 / (1 + 1.079 / m) * m * m / total
        if estimate <= 2.5 * m and zeros:
            estimate = m * log(m / zeros)  # linear counting
        return <int64_t>(estimate + 0.5)


@cython.final
cdef class CampaignView:
    """The campaigns of several workers' tables (read-only buffers are fine),
    merged: counts summed, distinct sets merged by register maximum (exactly the
    sets of the union), causes united, first seen the earliest, last seen the
    latest, one example. ``torn``: entries skipped in the last read because a
    worker left them half written."""

    cdef list buffers
    cdef Entry* copy
    cdef readonly uint64_t torn

    def __init__(self, buffers):
        self.buffers = list(buffers)
        for buffer in self.buffers:
            _check(buffer)

    def __cinit__(self):
        self.copy = <Entry*>PyMem_Malloc(sizeof(Entry))
        if self.copy == NULL:
            raise MemoryError()

    def __dealloc__(self):
        PyMem_Free(self.copy)

    cdef dict _counts(self, int tier, int64_t now_b, int64_t n):
        """fingerprint -> [messages, error, [(buffer, entry), ...]] of every campaign
        with messages in the window (a buffer no longer a table, as while its worker
        starts again, is skipped)."""
        cdef dict found = {}
        cdef const unsigned char[::1] view
        cdef const Entry* entries
        cdef Py_ssize_t capacity, e, i
        cdef uint64_t messages, blocked, error
        cdef list merged
        self.torn = 0
        for i, buffer in enumerate(self.buffers):
            view = buffer
            try:
                capacity = _check(view)
            except ValueError:
                continue
            entries = <const Entry*>(&view[0] + sizeof(Header))
            for e in range(capacity):
                if entries[e].fingerprint == 0:
                    continue
                if not _copy(&entries[e], self.copy, tier, False):
                    self.torn += 1
                    continue
                blocked = 0
                messages = _window(self.copy, tier, now_b, n, &blocked, None)
                if messages == 0:
                    continue
                error = self.copy.error if _inherited_in(self.copy, tier, now_b, n) else 0
                messages += error
                merged = found.get(self.copy.fingerprint)
                if merged is None:
                    found[self.copy.fingerprint] = [messages, error, [(i, e)]]
                else:
                    merged[0] += messages
                    merged[1] += error
                    merged[2].append((i, e))
        return found

    def campaigns(self, int64_t window_s, int64_t now_s, Py_ssize_t limit):
        """The ``limit`` campaigns with the most messages in the last ``window_s``
        seconds (at most 24 h) at ``now_s``, most first."""
        cdef int tier = _tier(window_s, now_s)
        cdef int64_t n = (window_s + _WIDTH[tier] - 1) // _WIDTH[tier]
        cdef int64_t now_b = now_s // _WIDTH[tier]
        found = self._counts(tier, now_b, n)
        top = sorted(found.items(), key=lambda item: (-item[1][0], item[0]))[:max(0, limit)]
        result = [self._campaign(fp, merged[2], tier, now_s, n) for fp, merged in top]
        return sorted(filter(None, result), key=lambda c: (-c.messages, c.fingerprint))

    def active(self, int64_t window_s, int64_t now_s, uint64_t min_messages):
        """Campaigns with at least ``min_messages`` messages in the window for sure
        (``messages - error``): a gauge, without one series per fingerprint."""
        cdef int tier = _tier(window_s, now_s)
        cdef int64_t n = (window_s + _WIDTH[tier] - 1) // _WIDTH[tier]
        found = self._counts(tier, now_s // _WIDTH[tier], n)
        return sum(1 for messages, error, _ in found.values() if messages - error >= min_messages)

    cdef object _campaign(self, uint64_t fp, list sources, int tier, int64_t now_s, int64_t n):
        """Read every entry of one campaign again, whole, and merge them."""
        cdef const unsigned char[::1] view
        cdef const Entry* entry
        cdef Entry* c = self.copy
        cdef const Half* half
        cdef int64_t now_b = now_s // _WIDTH[tier], number
        cdef uint64_t messages = 0, blocked = 0, error = 0
        cdef int64_t first_seen = 0, last_seen = 0
        cdef int k, h
        cdef uint32_t key
        cdef _Distinct senders = _Distinct(), recipients = _Distinct()
        cdef list rate = [0] * n
        cdef dict outcomes = {}
        example = None
        content_allowed = False
        seen = False
        for i, e in sources:
            view = self.buffers[i]
            entry = <const Entry*>(&view[0] + sizeof(Header)) + <Py_ssize_t>e
            if not _copy(entry, c, tier, True):
                self.torn += 1
                continue
            if c.fingerprint != fp:  # taken by another fingerprint since
                continue
            messages += _window(c, tier, now_b, n, &blocked, rate)
            if _inherited_in(c, tier, now_b, n):
                messages += c.error
                error += c.error
            first_seen = c.first_seen if not seen else min(first_seen, c.first_seen)
            last_seen = c.last_seen if not seen else max(last_seen, c.last_seen)
            seen = True
            for h in range(2):
                number = now_s // _HALF[tier] - h
                if number < 0:
                    continue
                half = &c.halves[2 * tier + number % 2]
                if half.number != number or half.generation != c.generation:
                    continue
                senders.add(half.sparse_senders, half.sparse[0], half.senders)
                recipients.add(half.sparse_recipients, half.sparse[1], half.recipients)
                for k in range(_CAUSES):
                    key = c.cause_keys[k]
                    if key != _NO_CAUSE and key >> 16 < <uint32_t>_OUTCOMES and half.causes[k]:
                        _add(outcomes, (key >> 16, key & 0xFFFF), half.causes[k])
                for k in range(_OUTCOMES):
                    if half.other[k]:
                        _add(outcomes, (k, OTHER_CAUSE), half.other[k])
            if example is None and c.flags & _HAS_EXAMPLE:
                example = PyUnicode_DecodeUTF8(<const char*>c.example,
                                               min(c.example_octets, <uint32_t>_EXAMPLE_OCTETS),
                                               "replace")
                content_allowed = bool(c.flags & _CONTENT_ALLOWED)
        if not seen:  # every entry torn or taken by another fingerprint since
            return None
        return Campaign(
            fingerprint=f"{fp:016x}",
            messages=messages,
            senders=senders.estimate(),
            recipients=recipients.estimate(),
            blocked=blocked,
            outcomes=sorted(((o, cause, count) for (o, cause), count in outcomes.items()),
                            key=lambda item: (-item[2], item[0], item[1])),
            example=example,
            content_allowed=content_allowed,
            first_seen=first_seen,
            last_seen=last_seen,
            rate=rate,
            error=error,
        )


cdef void _add(dict counts, tuple key, uint64_t n):
    counts[key] = counts.get(key, 0) + n


cdef int _tier(int64_t window_s, int64_t now_s) except -1:
    cdef int t
    if now_s < 0:
        raise ValueError(f"campaigns: {now_s} is not a time")
    if not 0 < window_s <= WINDOW_MAX:
        raise ValueError(f"campaigns: a window of {window_s} s is not in 1..{WINDOW_MAX}")
    for t in range(_TIERS):
        if window_s <= _LONGEST[t]:
            return t
    return _TIERS - 1


def read_campaigns(buffers, int64_t window_s, int64_t now_s, Py_ssize_t limit):
    """The top ``limit`` campaigns of several workers' tables (CampaignView.campaigns)."""
    return CampaignView(buffers).campaigns(window_s, now_s, limit)
