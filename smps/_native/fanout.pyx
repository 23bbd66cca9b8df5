# cython: language_level=3
"""Copies of one PDU for several NEs, each with its own sequence number.

A proxy renumbers every copy it sends (SMPP 3.4 §2.5 / §5.1.4: each leg has
its own sequence space; reference sheet §1.3). Only the 4-octet
sequence_number at header offset 12 differs between copies, so each copy is
a fresh 16-octet header plus one memoryview of the original body shared by
all of them: ``transport.writelines([header, body])`` sends it without
copying the body per NE.
"""

from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE, PyByteArray_Resize
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.string cimport memcpy

from smps._native.pdu cimport HEADER_SIZE, pdu_command_id, pdu_command_length, write_u32


cdef bytes header_with_sequence(const unsigned char* hdr, uint32_t sequence):
    """A new 16-octet header: ``hdr``'s length, id and status, then ``sequence``.

    ``hdr`` must point at 16 readable octets (§3.2).
    """
    cdef bytes out = PyBytes_FromStringAndSize(NULL, HEADER_SIZE)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(out)
    memcpy(q, hdr, 12)
    write_u32(q + 12, sequence)
    return out


cdef const unsigned char* _whole_pdu(bytes pdu) except NULL:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(pdu)
    if n < HEADER_SIZE:
        raise ValueError("PDU shorter than the 16-octet header")
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(pdu)
    if pdu_command_length(p) != <size_t>n:
        raise ValueError("command_length does not match the PDU size")
    return p


cpdef list copies(bytes pdu, object sequences):
    """One (header, body) pair per new sequence number, ready for writelines().

    Every pair shares the same memoryview of ``pdu``'s body (no copy per NE);
    each header is its own 16-octet bytes object.
    """
    cdef const unsigned char* p = _whole_pdu(pdu)
    cdef memoryview body = memoryview(pdu)[HEADER_SIZE:]
    cdef list out = []
    cdef uint32_t sequence
    for seq in sequences:
        sequence = seq
        out.append((header_with_sequence(p, sequence), body))
    return out


cpdef bytes with_sequence(bytes pdu, uint32_t sequence):
    """A whole copy of ``pdu`` with a new sequence number, for simple paths."""
    cdef const unsigned char* p = _whole_pdu(pdu)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(pdu)
    cdef bytes out = PyBytes_FromStringAndSize(<const char*>p, n)
    write_u32(<unsigned char*>PyBytes_AS_STRING(out) + 12, sequence)
    return out


cpdef uint32_t append_with_sequence(bytearray out, bytes pdu, uint32_t sequence) except? 0:
    """Append ``pdu`` to a session's write buffer with a new sequence number;
    returns its command_id.

    The hot path of a copy: one memcpy into the buffer that goes out in one
    write per loop iteration, no bytes object per copy.
    """
    cdef const unsigned char* p = _whole_pdu(pdu)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(pdu)
    cdef Py_ssize_t at = PyByteArray_GET_SIZE(out)
    PyByteArray_Resize(out, at + n)
    cdef unsigned char* q = <unsigned char*>PyByteArray_AS_STRING(out) + at
    memcpy(q, p, n)
    write_u32(q + 12, sequence)
    return pdu_command_id(p)
