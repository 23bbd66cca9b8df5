# Sliding-window counters in shared memory (velocity.pyx), for the screening engine.

from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef enum:
    BUCKETS = 10  # a window slides in tenths

cdef struct Header:
    uint64_t magic
    uint64_t stripes
    uint64_t evictions  # keys pushed out while still counting (table too small)
    uint64_t stolen  # locks taken over from a process that died holding them
    uint64_t pad[4]

cdef struct Lock:  # one per cache line: workers locking nearby stripes do not collide
    uint32_t owner  # pid, 0 when free
    uint32_t pad[15]

cdef struct Slot:  # 64 octets
    uint64_t key  # 0: empty
    int64_t bucket  # absolute number of the newest bucket (now_ms // width_ms)
    uint32_t width_ms  # window / BUCKETS
    uint32_t used_s  # monotonic seconds of the last use, for eviction
    uint32_t counts[BUCKETS]

cdef inline uint64_t mix_hash(uint64_t h) noexcept nogil:
    # splitmix64's finaliser: every input bit reaches every output bit. Inline: the
    # screening engine and the campaign table call it once or more per message.
    h ^= h >> 30
    h *= 0xBF58476D1CE4E5B9ULL
    h ^= h >> 27
    h *= 0x94D049BB133111EBULL
    h ^= h >> 31
    return h


cdef class VelocityTable:
    cdef object buffer  # kept alive: the memory below is its
    cdef Header* header
    cdef Lock* locks
    cdef Slot* slots
    cdef uint64_t stripes
    cdef uint32_t pid

    cdef void _lock(self, uint64_t stripe) noexcept
    cdef Slot* _find(self, uint64_t key, int64_t now_ms, uint32_t width_ms,
                     bint create) noexcept
    cdef uint32_t _advance(self, Slot* slot, int64_t bucket) noexcept
    cpdef bint take(self, uint64_t key, int64_t now_ms, int64_t window_ms, uint32_t limit)
    cpdef void give_back(self, uint64_t key, int64_t now_ms, int64_t window_ms)
    cpdef uint32_t count(self, uint64_t key, int64_t now_ms, int64_t window_ms)
