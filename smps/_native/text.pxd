# Message text of SMPP short messages: UDH, GSM 7-bit, UCS-2/UTF-16 (sans-I/O).
#
# For cimporters: the proxy looks at the UDH of every UDHI message to find the
# concatenation info, so udh_scan() reads it into a C struct without creating
# any Python object. Everything else goes through the Python API of text.pyx.

cdef struct UdhInfo:
    Py_ssize_t length      # octets including the UDHL octet (0 when absent)
    int ref_bits           # 8 (IEI 0x00), 16 (IEI 0x08), 0 = no usable concat IE
    int concat_ref
    int concat_total
    int concat_part
    bint has_ports         # IEI 0x04 (8-bit) or 0x05 (16-bit) seen
    int port_dest
    int port_orig
    int single_shift       # IEI 0x24 language id, 0 if absent
    int locking_shift      # IEI 0x25 language id, 0 if absent


# Read the UDH at data[0:size] (23.040 §9.2.3.24) into info. Returns 1 when
# well formed, 0 when malformed (UDHL + 1 > size, or an IE running past
# UDHL); info.length is still set when UDHL itself fits, so a caller can skip
# the header. Never raises, needs no GIL.
cdef int udh_scan(const unsigned char* data, Py_ssize_t size, UdhInfo* info) noexcept nogil


cdef class Udh:
    cdef readonly Py_ssize_t length
    cdef readonly object concat
    cdef readonly int ref_bits
    cdef readonly object ports
    cdef readonly int single_shift
    cdef readonly int locking_shift
    cdef readonly list ies


cdef class Decoded:
    cdef readonly str text
    cdef readonly str encoding
    cdef readonly Udh udh
    cdef readonly str note
    cdef readonly Py_ssize_t replaced


cpdef str plain_text(bytes user_data, int data_coding, int esm_class=*,
                     str default_alphabet=*, bint gsm7_packed=*)
