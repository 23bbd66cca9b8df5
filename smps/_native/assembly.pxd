# Whole-message verdicts (assembly.pyx): the held messages, for the dispatcher's
# native path.

cpdef bint part_of(concat) except -1


cdef class Riders:
    cdef public tuple key  # (SMSC, source, destination, ref, total)
    cdef public list parts
    cdef public list segments
    cdef public object trace

    cpdef respond(self, bytes _pdu, int status)


cdef class HeldMessage:
    cdef public Riders riders
    cdef public int total
    cdef public double first_at
    cdef public double first_wall
    cdef public dict numbers
    cdef public bint judging


cdef class Assembly:
    cdef public dict messages
    cdef public dict held
    cdef dict _decided
    cdef public double hold
    cdef public Py_ssize_t max_held
    cdef public double window

    cpdef HeldMessage add(self, tuple key, original, double now)
    cpdef take(self, tuple key)
    cpdef decided(self, tuple key, int outcome, int status, double now)
    cpdef tuple verdict_of(self, tuple key, double now)
