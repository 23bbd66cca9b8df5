# cython: language_level=3
"""Phone number normalisation: the one form trace rules and screening lists are
matched against, so ``13800138000``, ``+8613800138000`` and ``008613800138000``
are one subscriber under ``country_code: "86"``. The table of cases is in
`smps.proxy.tracer`'s docstring; this is its compiled implementation (it runs
for every screened original, twice)."""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

SHORT_CODE_MAX = 6  # digits; TON 0 numbers this short are short codes
NATIONAL_MIN = 7  # digits of the shortest national significant number
E164_MAX = 15
TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL, TON_ALPHANUMERIC = 0, 1, 2, 5


cdef inline bint _phone_npi(int npi) noexcept:
    return npi == 0 or npi == 1 or npi == 6 or npi == 8  # unknown, E.164, land mobile, national


cdef inline bint _all_digits(const char* p, Py_ssize_t n) noexcept:
    cdef Py_ssize_t i
    if n == 0:
        return False
    for i in range(n):
        if p[i] < 48 or p[i] > 57:
            return False
    return True


cdef inline bytes _cut(const char* p, Py_ssize_t n):
    return PyBytes_FromStringAndSize(p, n)


cpdef bytes normalise_address(bytes addr, int ton, int npi, bytes country_code):
    """The form rules are matched against (see `smps.proxy.tracer` for the table)."""
    cdef const char* p = PyBytes_AS_STRING(addr)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(addr)
    cdef Py_ssize_t cc = PyBytes_GET_SIZE(country_code)
    cdef Py_ssize_t skip = 0
    cdef bint international
    if ton > TON_NATIONAL or not _phone_npi(npi):  # alphanumeric, short-code TONs, not phone
        return addr
    if n >= 1 and p[0] == 43:  # "+"
        skip, international = 1, True
    elif n >= 2 and p[0] == 48 and p[1] == 48:  # "00"
        skip, international = 2, True
    else:
        international = ton == TON_INTERNATIONAL or cc == 0
    p += skip
    n -= skip
    if not _all_digits(p, n):  # also the empty address
        return addr
    if international:
        return addr if skip == 0 else _cut(p, n)
    if p[0] == 48:  # national trunk prefix "0", under TON 2 or TON 0
        return country_code + _cut(p + 1, n - 1)
    if ton == TON_NATIONAL:
        return country_code + addr
    # TON 0 without prefix: analyse the digits.
    if n <= SHORT_CODE_MAX:
        return addr
    if addr.startswith(country_code) and n >= cc + NATIONAL_MIN:
        return addr
    if NATIONAL_MIN <= n <= E164_MAX - cc:
        return country_code + addr
    return addr


cdef class AddressGate:
    """Which side of an original may be a traced number, from its addresses as sent,
    before any normalisation: the exact raw forms of each side's rules and their
    prefixes' raw forms cut to one length (smps.proxy.trace_match.Side). Nearly every
    original has neither, and the gate says so with two set lookups, in C, for each
    original (`sides`); a tracer loads it whenever its rules change."""

    def __init__(self):
        self.load(frozenset(), frozenset(), 0, frozenset(), frozenset(), 0)

    def load(self, frozenset sender_raw, frozenset sender_stems, Py_ssize_t sender_stem,
             frozenset receiver_raw, frozenset receiver_stems, Py_ssize_t receiver_stem):
        self._sender_raw, self._sender_stems = sender_raw, sender_stems
        self._sender_stem = sender_stem
        self._receiver_raw, self._receiver_stems = receiver_raw, receiver_stems
        self._receiver_stem = receiver_stem
        self.empty = not (sender_raw or sender_stems or receiver_raw or receiver_stems)

    cpdef int sides(self, bytes source, bytes destination) except -1:
        """SENDER | RECEIVER: the sides whose address may normalise to a rule's number."""
        cdef int found = 0
        if self.empty:
            return 0
        if source in self._sender_raw or (
            self._sender_stems and source[: self._sender_stem] in self._sender_stems
        ):
            found = SENDER
        if destination in self._receiver_raw or (
            self._receiver_stems and destination[: self._receiver_stem] in self._receiver_stems
        ):
            found |= RECEIVER
        return found
