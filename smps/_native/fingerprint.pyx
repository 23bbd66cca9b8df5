# cython: language_level=3
"""Content fingerprints: one 64-bit number per text, the same for every text of a
campaign that varies only in what spammers vary.

The normal form (``normalised``): letters case-folded (Unicode's simple lower
case), each run of digits one ``#``, each run of whitespace one space (none at
either end), and after a host name (``bad.example``, ``www.x.co.uk``,
``bad[.]example``; behind ``http://``, ``hxxp://`` or no scheme) the path or
query, up to the next whitespace or non-ASCII letter, one
``/``. So "Code
1234 at bad.example/x7Gh2" and "code 98 at bad.example/Qq91" are one campaign.
A host name is a label, a dot and a last label of two letters or more, as
`smps._native.screen.find_domains` reads them ("1.5/kg" has none).

The fingerprint is XXH64 (seed 0) of the normal form in UTF-8, written here from
xxHash's specification (fingerprint.pxd). Measured against FNV-1a on the same
normal form (bench/README.md, "Campaigns"): XXH64 adds about 20 ns to a
160-character text, FNV-1a about 150 (one multiply per octet, each waiting for
the last); the PyPI package ``xxhash`` needs a bytes object and a Python call
(about 150 ns) for the same number. The normal form is made 16 characters at a
time with SSE2 where the text is ASCII (GSM 7-bit texts mostly are): a 160-
character GSM text costs about 0.1-0.2 us in all, a character at a time about
three times more.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from cpython.unicode cimport Py_UNICODE_ISDIGIT, Py_UNICODE_ISSPACE, Py_UNICODE_TOLOWER
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "Python.h":
    int PyUnicode_KIND(object text)
    void* PyUnicode_DATA(object text)
    str PyUnicode_DecodeUTF8(const char* data, Py_ssize_t size, const char* errors)


# Sixteen ASCII characters at once: their normal form (lower case, '#' for a digit,
# ' ' for whitespace) and which of them are digits and whitespace, as bit masks.
# 0 (nothing written that counts) when one of them needs a closer look: not ASCII,
# or '/' and '?', where a URL's path may start.
cdef extern from *:
    """
    #if defined(__SSE2__)
    #include <emmintrin.h>
    static inline int smps_fold16(__m128i x, uint8_t *out, unsigned *digits, unsigned *spaces) {
        __m128i special = _mm_or_si128(_mm_cmpeq_epi8(x, _mm_set1_epi8('/')),
                                       _mm_cmpeq_epi8(x, _mm_set1_epi8('?')));
        if (_mm_movemask_epi8(_mm_or_si128(x, special)))
            return 0;
        __m128i upper = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('A' - 1)),
                                      _mm_cmplt_epi8(x, _mm_set1_epi8('Z' + 1)));
        __m128i digit = _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8('0' - 1)),
                                      _mm_cmplt_epi8(x, _mm_set1_epi8('9' + 1)));
        /* Python's ASCII whitespace: ' ', \\t \\n \\v \\f \\r and 0x1C-0x1F */
        __m128i space = _mm_or_si128(
            _mm_cmpeq_epi8(x, _mm_set1_epi8(' ')),
            _mm_or_si128(_mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(0x08)),
                                       _mm_cmplt_epi8(x, _mm_set1_epi8(0x0E))),
                         _mm_and_si128(_mm_cmpgt_epi8(x, _mm_set1_epi8(0x1B)),
                                       _mm_cmplt_epi8(x, _mm_set1_epi8(0x20)))));
        __m128i folded = _mm_add_epi8(x, _mm_and_si128(upper, _mm_set1_epi8(0x20)));
        __m128i marks = _mm_or_si128(_mm_and_si128(digit, _mm_set1_epi8('#')),
                                     _mm_and_si128(space, _mm_set1_epi8(' ')));
        folded = _mm_or_si128(_mm_andnot_si128(_mm_or_si128(digit, space), folded), marks);
        _mm_storeu_si128((__m128i *)out, folded);
        *digits = (unsigned)_mm_movemask_epi8(digit);
        *spaces = (unsigned)_mm_movemask_epi8(space);
        return 1;
    }
    static inline int smps_fold16_ucs1(const uint8_t *s, uint8_t *out, unsigned *digits,
                                       unsigned *spaces) {
        return smps_fold16(_mm_loadu_si128((const __m128i *)s), out, digits, spaces);
    }
    static inline int smps_fold16_ucs2(const uint16_t *s, uint8_t *out, unsigned *digits,
                                       unsigned *spaces) {
        __m128i lo = _mm_loadu_si128((const __m128i *)s);
        __m128i hi = _mm_loadu_si128((const __m128i *)(s + 8));
        __m128i wide = _mm_and_si128(_mm_or_si128(lo, hi), _mm_set1_epi16((short)0xFF80));
        if (_mm_movemask_epi8(_mm_cmpeq_epi16(wide, _mm_setzero_si128())) != 0xFFFF)
            return 0;  /* not all ASCII (packing would saturate them) */
        return smps_fold16(_mm_packus_epi16(lo, hi), out, digits, spaces);
    }
    #else
    static inline int smps_fold16_ucs1(const uint8_t *s, uint8_t *out, unsigned *digits,
                                       unsigned *spaces) { return 0; }
    static inline int smps_fold16_ucs2(const uint16_t *s, uint8_t *out, unsigned *digits,
                                       unsigned *spaces) { return 0; }
    #endif
    """
    bint smps_fold16_ucs1(const uint8_t* s, uint8_t* out, unsigned* digits,
                          unsigned* spaces) noexcept nogil
    bint smps_fold16_ucs2(const uint16_t* s, uint8_t* out, unsigned* digits,
                          unsigned* spaces) noexcept nogil


ctypedef fused ucs_t:  # the three layouts of a str (PEP 393)
    uint8_t
    uint16_t
    uint32_t

cdef enum:
    _STACK = 1024  # octets of normal form on the stack: texts up to 252 characters
    # ASCII character classes
    _OTHER = 0
    _SPACE = 1
    _DIGIT = 2
    _LETTER = 3
    _SLASH = 4  # '/' or '?': a URL's path or query may start here

cdef uint8_t _CLASS[128]
cdef uint8_t _NORMAL[128]  # an ASCII character in the normal form


cdef void _load_tables() noexcept:
    cdef int c
    for c in range(128):
        _CLASS[c] = _OTHER
        _NORMAL[c] = c
        if 0x41 <= c <= 0x5A:
            _CLASS[c] = _LETTER
            _NORMAL[c] = c + 0x20
        elif 0x61 <= c <= 0x7A:
            _CLASS[c] = _LETTER
        elif 0x30 <= c <= 0x39:
            _CLASS[c] = _DIGIT
            _NORMAL[c] = 0x23
        elif c == 0x20 or 0x09 <= c <= 0x0D or 0x1C <= c <= 0x1F:
            _CLASS[c] = _SPACE
            _NORMAL[c] = 0x20
        elif c == 0x2F or c == 0x3F:
            _CLASS[c] = _SLASH


_load_tables()


cdef inline bint _no_case_nor_digit(uint32_t ch) noexcept nogil:
    # Kana, CJK ideographs, Hangul: letters the Unicode database need not be asked about.
    return 0x3040 <= ch <= 0x9FFF or 0xAC00 <= ch <= 0xD7A3


cdef inline bint _wide_space(uint32_t ch) noexcept:
    # Outside these ranges no character is whitespace (Unicode 15).
    return (ch <= 0xA0 or ch == 0x1680 or 0x2000 <= ch <= 0x3000) and Py_UNICODE_ISSPACE(ch)


cdef inline bint _domain_char(uint32_t ch) noexcept:
    if ch < 0x80:
        return _CLASS[ch] == _LETTER or _CLASS[ch] == _DIGIT or ch == 0x2D
    return not _wide_space(ch)


cdef inline bint _tld_char(uint32_t ch) noexcept:
    if ch < 0x80:
        return _CLASS[ch] == _LETTER
    return not (_wide_space(ch) or Py_UNICODE_ISDIGIT(ch))


cdef bint _after_host(const ucs_t* s, Py_ssize_t j) noexcept:
    """Does a host name end at s[j], the character before a '/' or '?': a last label
    of two letters or more, after a dot ("[.]", "(dot)", ... too) that follows a
    letter, digit or hyphen?"""
    cdef Py_ssize_t letters = 0
    cdef uint32_t close, opening
    while j >= 0 and _tld_char(s[j]):
        j -= 1
        letters += 1
    if letters < 2 or j < 1:
        return False
    close = s[j]
    if close == 0x2E:
        j -= 1
    elif close == 0x5D or close == 0x29 or close == 0x7D:  # ']', ')', '}'
        opening = close - 1 if close == 0x29 else close - 2
        if j >= 3 and s[j - 1] == 0x2E and s[j - 2] == opening:
            j -= 3
        elif (j >= 5 and (s[j - 1] | 0x20) == 0x74 and (s[j - 2] | 0x20) == 0x6F
              and (s[j - 3] | 0x20) == 0x64 and s[j - 4] == opening):  # "dot"
            j -= 5
        else:
            return False
    else:
        return False
    return j >= 0 and _domain_char(s[j])


cdef inline bint _in_path(uint32_t ch) noexcept:
    # A URL's path is ASCII; it ends at whitespace or a letter of another script (a
    # CJK text goes on without a space). A character whose normal form is ASCII (a
    # digit, the Kelvin sign) is taken as the path's: the normal form is its own.
    if ch < 0x80:
        return _CLASS[ch] != _SPACE
    if _no_case_nor_digit(ch) or _wide_space(ch):
        return False
    return Py_UNICODE_ISDIGIT(ch) or Py_UNICODE_TOLOWER(ch) < 0x80


cdef inline bint _fold16(const ucs_t* s, uint8_t* out, unsigned* digits,
                         unsigned* spaces) noexcept:
    if ucs_t is uint8_t:
        return smps_fold16_ucs1(s, out, digits, spaces)
    elif ucs_t is uint16_t:
        return smps_fold16_ucs2(s, out, digits, spaces)
    else:  # astral characters (emoji): rare enough for one at a time
        return False


cdef Py_ssize_t _normal_form(const ucs_t* s, Py_ssize_t n, uint8_t* out) noexcept:
    """Write the normal form of s[:n] to out (room for 4 * n + 16 octets) in UTF-8;
    its length. A whitespace run keeps its first character (as ' ') and a digit
    run its first (as '#'); the space a text ends with is dropped at the end."""
    cdef Py_ssize_t i = 0, k = 0, start, j
    cdef uint32_t ch
    cdef uint8_t cls
    cdef unsigned int space, digit, was_space = 0, was_digit = 0, spaces, digits, keep
    while i < n and (_CLASS[s[i]] == _SPACE if s[i] < 0x80 else _wide_space(s[i])):
        i += 1
    while i < n:
        if i + 16 <= n and _fold16(s + i, out + k, &digits, &spaces):
            keep = ~((spaces & ((spaces << 1) | was_space))
                     | (digits & ((digits << 1) | was_digit))) & 0xFFFF
            was_space = (spaces >> 15) & 1
            was_digit = (digits >> 15) & 1
            i += 16
            if keep == 0xFFFF:
                k += 16
                continue
            start = k
            for j in range(16):  # drop the second and later of each run, in place
                out[k] = out[start + j]
                k += (keep >> j) & 1
            continue
        # A character at a time, to the end of this block of 16.
        for j in range(min(16, n - i)):
            if i >= n:  # a URL's path took the rest
                break
            ch = s[i]
            i += 1
            if ch < 0x80:
                cls = _CLASS[ch]
                space = cls == _SPACE
                digit = cls == _DIGIT
                out[k] = _NORMAL[ch]
                k += ((space & was_space) | (digit & was_digit)) ^ 1
                was_space = space
                was_digit = digit
                if cls == _SLASH and _after_host(s, i - 2):
                    out[k - 1] = 0x2F
                    while i < n and _in_path(s[i]):
                        i += 1
                continue
            if _no_case_nor_digit(ch):
                was_space = was_digit = 0
                k = put_utf8(out, k, ch)
            elif _wide_space(ch):
                if not was_space:
                    out[k] = 0x20
                    k += 1
                was_space = 1
                was_digit = 0
            elif Py_UNICODE_ISDIGIT(ch):
                if not was_digit:
                    out[k] = 0x23
                    k += 1
                was_space = 0
                was_digit = 1
            else:
                was_space = was_digit = 0
                k = put_utf8(out, k, <uint32_t>Py_UNICODE_TOLOWER(ch))
    if k and out[k - 1] == 0x20:
        k -= 1
    return k


cdef Py_ssize_t _normalise(str text, uint8_t* out) noexcept:
    cdef int kind = PyUnicode_KIND(text)
    cdef void* data = PyUnicode_DATA(text)
    if kind == 1:
        return _normal_form(<const uint8_t*>data, len(text), out)
    if kind == 2:
        return _normal_form(<const uint16_t*>data, len(text), out)
    return _normal_form(<const uint32_t*>data, len(text), out)


cpdef uint64_t fingerprint(str text):
    """The text's fingerprint: XXH64 of its normal form in UTF-8."""
    cdef uint8_t stack[_STACK]
    cdef uint8_t* out = stack
    cdef Py_ssize_t length = 4 * len(text) + 16
    cdef uint64_t h
    if length > _STACK:
        out = <uint8_t*>PyMem_Malloc(length)
        if out == NULL:
            raise MemoryError()
    h = xxh64(out, _normalise(text, out), 0)
    if out != stack:
        PyMem_Free(out)
    return h


def normalised(str text):
    """The normal form the fingerprint hashes (for tests, and to show what a
    campaign's texts have in common)."""
    cdef uint8_t* out = <uint8_t*>PyMem_Malloc(4 * len(text) + 16)
    if out == NULL:
        raise MemoryError()
    try:
        return PyUnicode_DecodeUTF8(<char*>out, _normalise(text, out), "surrogatepass")
    finally:
        PyMem_Free(out)
