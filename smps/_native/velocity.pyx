# cython: language_level=3
"""Sliding-window counters in memory that every worker of a node shares.

The screening engine's velocity rules (`smps._native.screen`) count here, so a
limit of 50 messages in 10 s lets exactly 50 through however the SMSC spreads a
sender's messages over binds and workers: the master creates the memory (a
memfd) and hands it to every worker; a single-process node uses private memory.
"""

cimport cython
from libc.errno cimport errno, ESRCH
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memset

cdef extern from "<signal.h>" nogil:
    int kill(int pid, int sig)

cdef extern from "<sched.h>" nogil:
    int sched_yield()

cdef extern from "<unistd.h>" nogil:
    int getpid()

cdef extern from *:
    """
    static inline int smps_lock_try(uint32_t *word, uint32_t expected, uint32_t owner) {
        return __atomic_compare_exchange_n(word, &expected, owner, 0,
                                           __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
    }
    static inline uint32_t smps_lock_owner(uint32_t *word) {
        return __atomic_load_n(word, __ATOMIC_RELAXED);
    }
    static inline void smps_lock_release(uint32_t *word) {
        __atomic_store_n(word, 0, __ATOMIC_RELEASE);
    }
    static inline void smps_add_u64(uint64_t *word, uint64_t n) {
        __atomic_fetch_add(word, n, __ATOMIC_RELAXED);
    }
    """
    bint smps_lock_try(uint32_t* word, uint32_t expected, uint32_t owner) nogil
    uint32_t smps_lock_owner(uint32_t* word) nogil
    void smps_lock_release(uint32_t* word) nogil
    void smps_add_u64(uint64_t* word, uint64_t n) nogil

cdef enum:
    _PROBE = 8  # slots looked at for a key, within its stripe
    _STRIPE_SLOTS = 64  # slots under one lock
    _SPIN_BEFORE_YIELD = 200
    _YIELDS_BEFORE_CHECK = 2000  # then is the lock's owner still alive?

cdef uint64_t _MAGIC = 0x534D505356454C31ULL  # "SMPSVEL1"


def velocity_table_size(Py_ssize_t keys):
    """Octets of shared memory for a table of about ``keys`` counters."""
    cdef Py_ssize_t stripes = max(1, (keys + _STRIPE_SLOTS - 1) // _STRIPE_SLOTS)
    return sizeof(Header) + stripes * (sizeof(Lock) + _STRIPE_SLOTS * sizeof(Slot))


cdef class VelocityTable:
    """Sliding-window counters over a writable buffer that every worker of the node
    maps (a memfd the master creates, or private memory in one process).

    Each key (a rule and a sender, a recipient, a pair or a fingerprint, hashed
    to 64 bits) has ten buckets of a tenth of its window: a message leaves the
    count between 0.9 and 1 window after it was counted. Keys live in stripes
    of 64 slots, each under its own lock (a word in the shared memory, taken
    with an atomic compare-and-swap; a lock whose owner died is taken over);
    a new key takes a free or idle slot near its place, else the least recently
    used one (counted in ``evictions``): memory is fixed, however many senders.
    """

    def __init__(self, buffer, bint initialise=False):
        cdef unsigned char[::1] view = buffer
        cdef Py_ssize_t size = view.shape[0]
        if size < <Py_ssize_t>(sizeof(Header) + sizeof(Lock) + _STRIPE_SLOTS * sizeof(Slot)):
            raise ValueError(f"velocity table: {size} octets is too small")
        self.buffer = buffer
        self.header = <Header*>&view[0]
        self.stripes = (size - sizeof(Header)) // (sizeof(Lock) + _STRIPE_SLOTS * sizeof(Slot))
        self.locks = <Lock*>(<char*>self.header + sizeof(Header))
        self.slots = <Slot*>(<char*>self.locks + self.stripes * sizeof(Lock))
        self.pid = <uint32_t>getpid()
        if initialise:
            memset(self.header, 0, size)
            self.header.magic = _MAGIC
            self.header.stripes = self.stripes
        elif self.header.magic != _MAGIC or self.header.stripes != self.stripes:
            raise ValueError("velocity table: the shared memory holds no table of this size")

    @property
    def capacity(self):
        return self.stripes * _STRIPE_SLOTS

    @property
    def evictions(self):
        return self.header.evictions

    @property
    def stolen_locks(self):
        return self.header.stolen

    def used(self, int64_t now_ms):
        """Keys still counting something (a scan of the whole table: for tests and
        the operator, never on the message path)."""
        cdef uint64_t i, n = 0
        cdef Slot* slot
        for i in range(self.stripes * _STRIPE_SLOTS):
            slot = &self.slots[i]
            if slot.key and now_ms // slot.width_ms - slot.bucket < BUCKETS:
                n += 1
        return n

    cdef void _lock(self, uint64_t stripe) noexcept:
        cdef uint32_t* word = &self.locks[stripe].owner
        cdef uint32_t owner
        cdef int spins = 0, yields = 0
        while not smps_lock_try(word, 0, self.pid):
            spins += 1
            if spins < _SPIN_BEFORE_YIELD:
                continue
            sched_yield()
            yields += 1
            if yields >= _YIELDS_BEFORE_CHECK:
                yields = 0
                owner = smps_lock_owner(word)
                if owner and owner != self.pid and kill(owner, 0) != 0 and errno == ESRCH:
                    if smps_lock_try(word, owner, self.pid):
                        smps_add_u64(&self.header.stolen, 1)
                        return

    cdef Slot* _find(self, uint64_t key, int64_t now_ms, uint32_t width_ms,
                     bint create) noexcept:
        """The key's slot in its (locked) stripe; with ``create``, a new one if absent:
        an empty slot, or one whose own window holds nothing any more (each key has
        its rule's width: a slot's age is read in its own buckets), else the least
        recently used."""
        cdef Slot* base = &self.slots[(key % self.stripes) * _STRIPE_SLOTS]
        cdef uint64_t start = (key // self.stripes) % _STRIPE_SLOTS
        cdef Slot* slot
        cdef Slot* spare = NULL
        cdef Slot* oldest = NULL
        cdef int i
        for i in range(_PROBE):
            slot = &base[(start + i) % _STRIPE_SLOTS]
            if slot.key == key:
                return slot
            if spare == NULL and (
                slot.key == 0 or now_ms // slot.width_ms - slot.bucket >= BUCKETS
            ):
                spare = slot
            if oldest == NULL or slot.used_s < oldest.used_s:
                oldest = slot
        if not create:
            return NULL
        if spare == NULL:
            spare = oldest
            smps_add_u64(&self.header.evictions, 1)
        memset(spare, 0, sizeof(Slot))
        spare.key = key
        spare.bucket = now_ms // width_ms
        spare.width_ms = width_ms
        spare.used_s = <uint32_t>(now_ms // 1000)
        return spare

    cdef uint32_t _advance(self, Slot* slot, int64_t bucket) noexcept:
        """Move the slot's newest bucket to ``bucket`` (emptying the ones passed); the
        count over the window."""
        cdef int64_t b
        cdef uint32_t total = 0
        cdef int i
        if bucket - slot.bucket >= BUCKETS:
            memset(slot.counts, 0, sizeof(slot.counts))
        else:
            b = slot.bucket + 1
            while b <= bucket:
                slot.counts[b % BUCKETS] = 0
                b += 1
        if bucket > slot.bucket:
            slot.bucket = bucket
        for i in range(BUCKETS):
            total += slot.counts[i]
        return total

    cpdef bint take(self, uint64_t key, int64_t now_ms, int64_t window_ms, uint32_t limit):
        """Count one message for ``key`` if fewer than ``limit`` were counted in the
        window; False (nothing counted) when the limit is reached."""
        cdef uint32_t width_ms = <uint32_t>max(1, window_ms // BUCKETS)
        key = key or 1  # 0 marks an empty slot
        cdef int64_t bucket = now_ms // width_ms
        cdef uint64_t stripe = key % self.stripes
        cdef Slot* slot
        cdef bint taken
        self._lock(stripe)
        slot = self._find(key, now_ms, width_ms, True)
        slot.used_s = <uint32_t>(now_ms // 1000)
        taken = self._advance(slot, bucket) < limit
        if taken:
            slot.counts[bucket % BUCKETS] += 1
        smps_lock_release(&self.locks[stripe].owner)
        return taken

    cpdef void give_back(self, uint64_t key, int64_t now_ms, int64_t window_ms):
        """Undo a ``take`` of this instant (a later rule blocked the message)."""
        cdef uint32_t width_ms = <uint32_t>max(1, window_ms // BUCKETS)
        key = key or 1  # 0 marks an empty slot
        cdef int64_t bucket = now_ms // width_ms
        cdef uint64_t stripe = key % self.stripes
        cdef Slot* slot
        self._lock(stripe)
        slot = self._find(key, now_ms, width_ms, False)
        if slot != NULL:
            self._advance(slot, bucket)
            if slot.counts[bucket % BUCKETS]:
                slot.counts[bucket % BUCKETS] -= 1
        smps_lock_release(&self.locks[stripe].owner)

    cpdef uint32_t count(self, uint64_t key, int64_t now_ms, int64_t window_ms):
        """Messages counted for ``key`` in the window (nothing changes)."""
        cdef uint32_t width_ms = <uint32_t>max(1, window_ms // BUCKETS)
        key = key or 1  # 0 marks an empty slot
        cdef int64_t bucket = now_ms // width_ms
        cdef uint64_t stripe = key % self.stripes
        cdef Slot* slot
        cdef Slot copy
        cdef uint32_t total = 0
        self._lock(stripe)
        slot = self._find(key, now_ms, width_ms, False)
        if slot != NULL:
            copy = slot[0]
            total = self._advance(&copy, bucket)
        smps_lock_release(&self.locks[stripe].owner)
        return total
