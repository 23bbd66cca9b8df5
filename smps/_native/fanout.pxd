# cython: language_level=3
"""C-level interface of the fan-out copier, for modules that cimport it."""

from libc.stdint cimport uint32_t


cdef bytes header_with_sequence(const unsigned char* hdr, uint32_t sequence)

cpdef list copies(bytes pdu, object sequences)
cpdef bytes with_sequence(bytes pdu, uint32_t sequence)
cpdef uint32_t append_with_sequence(bytearray out, bytes pdu, uint32_t sequence) except? 0
