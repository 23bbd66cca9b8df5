# Phone number normalisation (numbers.pyx), for the screening engine; the trace
# rules' address gate, for the dispatcher.

cpdef bytes normalise_address(bytes addr, int ton, int npi, bytes country_code)


cpdef enum:
    SENDER = 1  # AddressGate.sides(): the source may be traced
    RECEIVER = 2  # the destination may be


cdef class AddressGate:
    cdef frozenset _sender_raw, _sender_stems, _receiver_raw, _receiver_stems
    cdef Py_ssize_t _sender_stem, _receiver_stem
    cdef readonly bint empty  # no rules: nothing is traced

    cpdef int sides(self, bytes source, bytes destination) except -1
