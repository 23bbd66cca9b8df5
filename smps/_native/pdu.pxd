# cython: language_level=3
"""C-level interface of the SMPP PDU codec, for modules that cimport it.

Contract of the raw accessors below: ``p`` points at a PDU of at least 16
octets (the header, SMPP 3.4 §3.2). Every PDU the Framer returns satisfies
this; anything else must be length-checked by the caller first.
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t


# SMPP 3.4 §5.1.2 command_id values (reference sheet §1.2). The one table:
# Python sees it as the IntEnum ``CommandId``.
cpdef enum CommandId:
    GENERIC_NACK = 0x80000000
    BIND_RECEIVER = 0x00000001
    BIND_RECEIVER_RESP = 0x80000001
    BIND_TRANSMITTER = 0x00000002
    BIND_TRANSMITTER_RESP = 0x80000002
    QUERY_SM = 0x00000003
    QUERY_SM_RESP = 0x80000003
    SUBMIT_SM = 0x00000004
    SUBMIT_SM_RESP = 0x80000004
    DELIVER_SM = 0x00000005
    DELIVER_SM_RESP = 0x80000005
    UNBIND = 0x00000006
    UNBIND_RESP = 0x80000006
    REPLACE_SM = 0x00000007
    REPLACE_SM_RESP = 0x80000007
    CANCEL_SM = 0x00000008
    CANCEL_SM_RESP = 0x80000008
    BIND_TRANSCEIVER = 0x00000009
    BIND_TRANSCEIVER_RESP = 0x80000009
    OUTBIND = 0x0000000B
    ENQUIRE_LINK = 0x00000015
    ENQUIRE_LINK_RESP = 0x80000015
    SUBMIT_MULTI = 0x00000021
    SUBMIT_MULTI_RESP = 0x80000021
    ALERT_NOTIFICATION = 0x00000102
    DATA_SM = 0x00000103
    DATA_SM_RESP = 0x80000103
    BROADCAST_SM = 0x00000111
    BROADCAST_SM_RESP = 0x80000111
    QUERY_BROADCAST_SM = 0x00000112
    QUERY_BROADCAST_SM_RESP = 0x80000112
    CANCEL_BROADCAST_SM = 0x00000113
    CANCEL_BROADCAST_SM_RESP = 0x80000113


# SMPP 3.4 §5.1.3 command_status values (reference sheet §3), ESME_ prefix
# dropped; v5.0 additions 0x100-0x106 included. Python sees ``Status``.
cpdef enum Status:
    ROK = 0x00
    RINVMSGLEN = 0x01
    RINVCMDLEN = 0x02
    RINVCMDID = 0x03
    RINVBNDSTS = 0x04
    RALYBND = 0x05
    RINVPRTFLG = 0x06
    RINVREGDLVFLG = 0x07
    RSYSERR = 0x08
    RINVSRCADR = 0x0A
    RINVDSTADR = 0x0B
    RINVMSGID = 0x0C
    RBINDFAIL = 0x0D
    RINVPASWD = 0x0E
    RINVSYSID = 0x0F
    RCANCELFAIL = 0x11
    RREPLACEFAIL = 0x13
    RMSGQFUL = 0x14
    RINVSERTYP = 0x15
    RINVNUMDESTS = 0x33
    RINVDLNAME = 0x34
    RINVDESTFLAG = 0x40
    RINVSUBREP = 0x42
    RINVESMCLASS = 0x43
    RCNTSUBDL = 0x44
    RSUBMITFAIL = 0x45
    RINVSRCTON = 0x48
    RINVSRCNPI = 0x49
    RINVDSTTON = 0x50
    RINVDSTNPI = 0x51
    RINVSYSTYP = 0x53
    RINVREPFLAG = 0x54
    RINVNUMMSGS = 0x55
    RTHROTTLED = 0x58
    RINVSCHED = 0x61
    RINVEXPIRY = 0x62
    RINVDFTMSGID = 0x63
    RX_T_APPN = 0x64
    RX_P_APPN = 0x65
    RX_R_APPN = 0x66
    RQUERYFAIL = 0x67
    RINVOPTPARSTREAM = 0xC0
    ROPTPARNOTALLWD = 0xC1
    RINVPARLEN = 0xC2
    RMISSINGOPTPARAM = 0xC3
    RINVOPTPARAMVAL = 0xC4
    RDELIVERYFAILURE = 0xFE
    RUNKNOWNERR = 0xFF
    RSERTYPUNAUTH = 0x100
    RPROHIBITED = 0x101
    RSERTYPUNAVAIL = 0x102
    RSERTYPDENIED = 0x103
    RINVDCS = 0x104
    RINVSRCADDRSUBUNIT = 0x105
    RINVDSTADDRSUBUNIT = 0x106


# TLV tags the hot path looks at (SMPP 3.4 §5.3.2, reference sheet §5.2).
cdef enum:
    TAG_RECEIPTED_MESSAGE_ID = 0x001E
    TAG_SAR_MSG_REF_NUM = 0x020C
    TAG_SAR_TOTAL_SEGMENTS = 0x020E
    TAG_SAR_SEGMENT_SEQNUM = 0x020F
    TAG_SC_INTERFACE_VERSION = 0x0210
    TAG_MESSAGE_PAYLOAD = 0x0424
    TAG_MESSAGE_STATE = 0x0427

# Header layout, SMPP 3.4 §3.2: four big-endian Int4.
cdef enum:
    HEADER_SIZE = 16
    RESPONSE_BIT = 0x80000000


cdef inline uint16_t read_u16(const unsigned char* p) noexcept nogil:
    return <uint16_t>((<uint16_t>p[0] << 8) | p[1])


cdef inline uint32_t read_u32(const unsigned char* p) noexcept nogil:
    return ((<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16)
            | (<uint32_t>p[2] << 8) | <uint32_t>p[3])


cdef inline void write_u16(unsigned char* p, uint16_t v) noexcept nogil:
    p[0] = <unsigned char>(v >> 8)
    p[1] = <unsigned char>v


cdef inline void write_u32(unsigned char* p, uint32_t v) noexcept nogil:
    p[0] = <unsigned char>(v >> 24)
    p[1] = <unsigned char>(v >> 16)
    p[2] = <unsigned char>(v >> 8)
    p[3] = <unsigned char>v


cdef inline uint32_t pdu_command_length(const unsigned char* p) noexcept nogil:
    return read_u32(p)


cdef inline uint32_t pdu_command_id(const unsigned char* p) noexcept nogil:
    return read_u32(p + 4)


cdef inline uint32_t pdu_command_status(const unsigned char* p) noexcept nogil:
    return read_u32(p + 8)


cdef inline uint32_t pdu_sequence(const unsigned char* p) noexcept nogil:
    return read_u32(p + 12)


cdef inline bint pdu_is_response(uint32_t command_id) noexcept nogil:
    return (command_id & RESPONSE_BIT) != 0


cdef class Framer:
    """Cuts a TCP byte stream into whole PDUs (see pdu.pyx)."""
    cdef bytearray _buf
    cdef Py_ssize_t _start
    cdef Py_ssize_t _max_length
    cdef tuple _failure

    cpdef feed(self, data)
    cpdef object next_pdu(self)


cdef class Pdu:
    cdef public uint32_t command_id
    cdef public uint32_t command_status
    cdef public uint32_t sequence
    cdef public dict fields
    cdef public list tlvs


cdef class SmView:
    cdef readonly bytes pdu
    cdef readonly uint32_t command_id
    cdef readonly uint32_t sequence
    cdef readonly uint8_t source_addr_ton
    cdef readonly uint8_t source_addr_npi
    cdef readonly uint8_t dest_addr_ton
    cdef readonly uint8_t dest_addr_npi
    cdef readonly uint8_t esm_class
    cdef readonly uint8_t protocol_id
    cdef readonly uint8_t registered_delivery
    cdef readonly uint8_t data_coding
    # Offsets into ``pdu`` of the fields exposed as bytes; built on demand.
    cdef Py_ssize_t _service_type_at, _service_type_len
    cdef Py_ssize_t _source_addr_at, _source_addr_len
    cdef Py_ssize_t _destination_addr_at, _destination_addr_len
    cdef Py_ssize_t _user_data_at, _user_data_len
    cdef Py_ssize_t _receipted_id_at, _receipted_id_len
    cdef Py_ssize_t _tlvs_at
    cdef int _message_state
    cdef int _sar_ref, _sar_total, _sar_part
    cdef bytes _source_addr, _destination_addr, _user_data

    cdef bytes _cut(self, Py_ssize_t at, Py_ssize_t length)


cpdef SmView decode_sm(bytes pdu)
cpdef Pdu decode(bytes pdu)
cpdef bytes make_resp(bytes request, uint32_t status=*, bytes message_id=*)
cpdef bytes make_generic_nack(uint32_t sequence, uint32_t status)
