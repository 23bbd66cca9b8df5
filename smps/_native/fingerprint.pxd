# Text fingerprints (fingerprint.pyx), and for other modules the hash under them and
# UTF-8 one character at a time.

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy

cpdef uint64_t fingerprint(str text)


cdef inline Py_ssize_t put_utf8(uint8_t* out, Py_ssize_t k, uint32_t ch) noexcept nogil:
    """Write ch at out[k] in UTF-8 (a surrogate as itself, like "surrogatepass"); the
    next k."""
    if ch < 0x80:
        out[k] = ch
        return k + 1
    if ch < 0x800:
        out[k] = 0xC0 | (ch >> 6)
        out[k + 1] = 0x80 | (ch & 0x3F)
        return k + 2
    if ch < 0x10000:
        out[k] = 0xE0 | (ch >> 12)
        out[k + 1] = 0x80 | ((ch >> 6) & 0x3F)
        out[k + 2] = 0x80 | (ch & 0x3F)
        return k + 3
    out[k] = 0xF0 | (ch >> 18)
    out[k + 1] = 0x80 | ((ch >> 12) & 0x3F)
    out[k + 2] = 0x80 | ((ch >> 6) & 0x3F)
    out[k + 3] = 0x80 | (ch & 0x3F)
    return k + 4


# XXH64 (Yann Collet's xxHash, 64-bit), written from its specification
# (github.com/Cyan4973/xxHash, doc/xxhash_spec.md): four lanes over 32-octet
# stripes, so a 160-octet text costs a few dozen cycles where FNV-1a's one
# multiply per octet in a chain costs hundreds. Little-endian reads.

cdef inline uint64_t _xxh_rotl(uint64_t x, int r) noexcept nogil:
    return (x << r) | (x >> (64 - r))


cdef inline uint64_t _xxh_read64(const uint8_t* p) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return v


cdef inline uint32_t _xxh_read32(const uint8_t* p) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return v


cdef inline uint64_t _xxh_round(uint64_t acc, uint64_t lane) noexcept nogil:
    acc += lane * 0xC2B2AE3D27D4EB4FULL
    return _xxh_rotl(acc, 31) * 0x9E3779B185EBCA87ULL


cdef inline uint64_t _xxh_merge(uint64_t acc, uint64_t lane) noexcept nogil:
    acc ^= _xxh_round(0, lane)
    return acc * 0x9E3779B185EBCA87ULL + 0x85EBCA77C2B2AE63ULL


cdef inline uint64_t xxh64(const uint8_t* p, size_t n, uint64_t seed) noexcept nogil:
    cdef const uint8_t* end = p + n
    cdef uint64_t v1, v2, v3, v4, acc
    if n >= 32:
        v1 = seed + 0x9E3779B185EBCA87ULL + 0xC2B2AE3D27D4EB4FULL
        v2 = seed + 0xC2B2AE3D27D4EB4FULL
        v3 = seed
        v4 = seed - 0x9E3779B185EBCA87ULL
        while end - p >= 32:
            v1 = _xxh_round(v1, _xxh_read64(p))
            v2 = _xxh_round(v2, _xxh_read64(p + 8))
            v3 = _xxh_round(v3, _xxh_read64(p + 16))
            v4 = _xxh_round(v4, _xxh_read64(p + 24))
            p += 32
        acc = _xxh_rotl(v1, 1) + _xxh_rotl(v2, 7) + _xxh_rotl(v3, 12) + _xxh_rotl(v4, 18)
        acc = _xxh_merge(acc, v1)
        acc = _xxh_merge(acc, v2)
        acc = _xxh_merge(acc, v3)
        acc = _xxh_merge(acc, v4)
    else:
        acc = seed + 0x27D4EB2F165667C5ULL
    acc += n
    while end - p >= 8:
        acc ^= _xxh_round(0, _xxh_read64(p))
        acc = _xxh_rotl(acc, 27) * 0x9E3779B185EBCA87ULL + 0x85EBCA77C2B2AE63ULL
        p += 8
    if end - p >= 4:
        acc ^= <uint64_t>_xxh_read32(p) * 0x9E3779B185EBCA87ULL
        acc = _xxh_rotl(acc, 23) * 0xC2B2AE3D27D4EB4FULL + 0x165667B19E3779F9ULL
        p += 4
    while p < end:
        acc ^= p[0] * 0x27D4EB2F165667C5ULL
        acc = _xxh_rotl(acc, 11) * 0x9E3779B185EBCA87ULL
        p += 1
    acc ^= acc >> 33
    acc *= 0xC2B2AE3D27D4EB4FULL
    acc ^= acc >> 29
    acc *= 0x165667B19E3779F9ULL
    acc ^= acc >> 32
    return acc
