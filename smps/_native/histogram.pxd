# Latency histograms (histogram.pyx), for modules that observe in C.

cdef enum:
    NBOUNDS = 12


cdef class Histogram:
    cdef unsigned long long _counts[NBOUNDS + 1]
    cdef readonly double total
    cdef readonly unsigned long long count

    cpdef void observe(self, double seconds)
