# A worker's campaign table (campaigns.pyx), for the dispatcher, which counts every
# whole message in C; the layout of the shared memory.

cimport cython
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef enum:
    _VERSION = 1
    _TIERS = 3
    _BUCKETS = 192  # 32 + 64 + 96
    _HLL_BITS = 11
    _HLL_OCTETS = 1024  # 2,048 registers of 4 bits
    _SPARSE = 16  # hashes kept as they are before the registers
    _DENSE = 0xFFFF
    _CAUSES = 8
    _OUTCOMES = 3
    _EXAMPLE_CHARS = 160
    _EXAMPLE_OCTETS = 640
    _HAS_EXAMPLE = 1
    _CONTENT_ALLOWED = 2
    _TRIES = 1000  # reads of an entry that a worker is writing, before it counts as torn
    _BLOCK = 1


cdef struct Bucket:
    uint32_t messages
    uint32_t blocked

cdef struct Half:  # one half-window of one kind of window: 2,240 octets
    int64_t number  # the half it counts: time // its length
    uint32_t generation  # the entry's occupant that started it
    uint16_t sparse[2]  # hashes in sparse_senders, sparse_recipients; _DENSE: in the registers
    uint32_t causes[_CAUSES]  # by the entry's cause_keys
    uint32_t other[_OUTCOMES]
    uint32_t pad
    uint32_t sparse_senders[_SPARSE]
    uint32_t sparse_recipients[_SPARSE]
    uint8_t senders[_HLL_OCTETS]
    uint8_t recipients[_HLL_OCTETS]

cdef struct Entry:  # 15,808 octets
    uint32_t seq  # odd while the worker writes
    uint32_t generation  # one more each time a fingerprint takes the entry
    uint64_t fingerprint  # 0: never used
    uint64_t error  # the count it inherited (space-saving)
    int64_t admitted  # when the fingerprint took the entry
    int64_t first_seen
    int64_t last_seen
    uint32_t flags
    uint32_t example_octets
    uint32_t cause_keys[_CAUSES]  # outcome << 16 | cause, _NO_CAUSE: free
    int64_t head[_TIERS]  # number of the newest bucket of each kind (time // width)
    int64_t valid_from[_TIERS]  # the first bucket of this occupant
    uint8_t pad[56]
    Bucket buckets[_BUCKETS]
    Half halves[_TIERS * 2]
    uint8_t example[_EXAMPLE_OCTETS]

cdef struct Header:  # 64 octets
    uint64_t magic
    uint32_t version
    uint32_t entry_octets
    uint32_t capacity
    uint32_t used
    uint64_t observed
    uint64_t evictions
    int64_t decayed_hour  # the hour the eviction counts were last halved in
    uint64_t pad[2]

cdef struct Slot:  # the fingerprint index (open addressing), the writer's alone
    uint64_t fingerprint
    uint32_t entry  # its index + 1; 0: empty
    uint32_t pad

cdef struct Node:  # the min-heap of eviction counts, the writer's alone
    uint64_t count
    uint64_t fingerprint  # the entry's, so that evicting reads no entry
    uint32_t entry
    uint32_t pad


@cython.final
cdef class CampaignTable:
    cdef readonly object buffer
    cdef Header* header
    cdef Entry* entries
    cdef Slot* slots
    cdef Node* heap
    cdef uint32_t* position  # an entry's place in the heap
    cdef uint64_t mask  # slots - 1

    cpdef void observe(self, uint64_t fingerprint, bytes sender, bytes recipient,
                       int64_t now_s, int outcome, int cause, str example=*,
                       bint content_allowed=*) except *
    cdef void _count(self, Entry* entry, int64_t now, int outcome, uint32_t cause,
                     uint32_t sender, uint32_t recipient) noexcept
    cdef void _keep_example(self, Entry* entry, str text, bint content_allowed) noexcept
    cdef int64_t _admit(self, uint64_t fp, int64_t now) noexcept
    cdef void _decay(self, int64_t now) noexcept
    cdef int64_t _find(self, uint64_t fp) noexcept
    cdef void _index(self, uint64_t fp, uint32_t e) noexcept
    cdef void _forget(self, uint64_t fp) noexcept
    cdef void _sift_up(self, uint32_t i) noexcept
    cdef void _sift_down(self, uint32_t i) noexcept
