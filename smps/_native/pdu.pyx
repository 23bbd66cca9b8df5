# cython: language_level=3
"""SMPP 3.4 PDU codec: framing, header, bodies, TLVs, responses (sans-I/O).

Layers, fastest first:

* ``Framer`` cuts a byte stream into whole PDUs on command_length (§3.2).
* ``header()`` and the inline accessors in pdu.pxd read the 16-octet header.
* ``decode_sm()`` is the proxy's per-message view of deliver_sm / submit_sm /
  data_sm: one pass over the mandatory fields and the TLVs, no dict, no list.
* ``make_resp()`` / ``make_generic_nack()`` answer a request in one call.
* ``decode()`` / ``encode()`` handle every body in full, driven by one table
  (``_TABLE``: command_id -> mandatory field layout, response kind).

Malformed input raises smps.errors.FramingError or PduError carrying the
command_status to answer with; anything else escaping from here is a bug.
Bad arguments from our own code raise ValueError.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.bytearray cimport PyByteArray_AS_STRING, PyByteArray_GET_SIZE
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy

from smps.errors import FramingError, PduError

DEFAULT_MAX_LENGTH = 65536

# The status enum as a Python type (the cpdef enum in pdu.pxd), used to give
# errors a readable status; unknown values come back as plain ints.
_StatusType = Status


cdef inline const unsigned char* _bytes_ptr(bytes b) noexcept:
    return <const unsigned char*>PyBytes_AS_STRING(b)


cdef object _pdu_error(str message, uint32_t status, uint32_t sequence, uint32_t command_id):
    return PduError(message, _StatusType(status), sequence, command_id)


# --------------------------------------------------------------------------
# Command names (§5.1.2): derived from the CommandId enum, the one table.

cdef dict _NAMES = {int(member): member.name.lower() for member in CommandId}


def command_name(uint32_t command_id):
    """Spec name of a command id ("deliver_sm"), or "unknown_0x..." for others."""
    name = _NAMES.get(command_id)
    if name is None:
        return f"unknown_0x{command_id:08x}"
    return name


def is_response(uint32_t command_id):
    """True for response ids (bit 31 set, §5.1.2), generic_nack included."""
    return pdu_is_response(command_id)


# --------------------------------------------------------------------------
# Framing (§3.2; reference sheet §1.4).

cdef class Framer:
    """Cuts an SMPP byte stream into whole PDUs, whatever the TCP segmentation.

    ``feed()`` only buffers; ``next_pdu()`` returns one PDU (a bytes object of
    exactly command_length octets) or None until more bytes arrive. Drain with
    ``next_pdu()`` (or iterate) after each ``feed()``: then the buffer holds at
    most one partial PDU plus the last chunk. Consumed bytes are dropped once per
    ``feed()`` by an offset, so many PDUs in one chunk cost linear time.

    A command_length below 16 or above ``max_length`` means the stream cannot
    be resynchronised: ``next_pdu()`` raises FramingError (status RINVCMDLEN)
    and keeps raising it; later data is dropped. The error is raised as soon as
    the 4 command_length octets are in, so a peer that sends a bad length and
    waits is answered at once; it carries the PDU's sequence and command_id
    when the 16 header octets came with them, else 0 (the sequence_number
    reserved for a generic_nack to a header that could not be read,
    reference sheet §1.3).
    """

    def __init__(self, Py_ssize_t max_length=DEFAULT_MAX_LENGTH):
        if max_length < HEADER_SIZE or max_length > 0xFFFFFFFF:
            raise ValueError(f"max_length must be 16..2**32-1, got {max_length}")
        self._buf = bytearray()
        self._start = 0
        self._max_length = max_length
        self._failure = None

    @property
    def max_length(self):
        return self._max_length

    @property
    def buffered(self):
        """Octets received and not yet returned as a PDU."""
        return PyByteArray_GET_SIZE(self._buf) - self._start

    @property
    def failed(self):
        """True once a framing error was seen; the connection must be closed."""
        return self._failure is not None

    cpdef feed(self, data):
        """Append received bytes (bytes, bytearray or memoryview)."""
        if self._failure is not None:
            return
        if self._start:
            # Compact once per feed: drop what next_pdu() already returned.
            del self._buf[:self._start]
            self._start = 0
        self._buf += data

    cpdef object next_pdu(self):
        """Return the next whole PDU as bytes, or None if it is not complete yet."""
        cdef Py_ssize_t avail, length
        cdef const unsigned char* p
        cdef bytes pdu
        if self._failure is not None:
            raise FramingError(*self._failure)
        avail = PyByteArray_GET_SIZE(self._buf) - self._start
        if avail < 4:
            return None
        p = <const unsigned char*>PyByteArray_AS_STRING(self._buf) + self._start
        length = pdu_command_length(p)
        if length < HEADER_SIZE or length > self._max_length:
            self._failure = (
                f"command_length {length} outside 16..{self._max_length}",
                _StatusType(RINVCMDLEN),
                pdu_sequence(p) if avail >= HEADER_SIZE else 0,
                pdu_command_id(p) if avail >= 8 else 0,
            )
            del self._buf[:]
            self._start = 0
            raise FramingError(*self._failure)
        if avail < length:
            return None
        pdu = PyBytes_FromStringAndSize(<const char*>p, length)
        self._start += length
        return pdu

    def __iter__(self):
        return self

    def __next__(self):
        pdu = self.next_pdu()
        if pdu is None:
            raise StopIteration
        return pdu


def header(bytes pdu):
    """(command_length, command_id, command_status, sequence_number) of a PDU (§3.2)."""
    if PyBytes_GET_SIZE(pdu) < HEADER_SIZE:
        raise _pdu_error("PDU shorter than the 16-octet header", RINVCMDLEN, 0, 0)
    cdef const unsigned char* p = _bytes_ptr(pdu)
    return (pdu_command_length(p), pdu_command_id(p), pdu_command_status(p), pdu_sequence(p))


cdef const unsigned char* _checked_header(bytes pdu) except NULL:
    """Pointer to a PDU whose header is present and whose command_length is its size."""
    cdef Py_ssize_t total = PyBytes_GET_SIZE(pdu)
    if total < HEADER_SIZE:
        raise _pdu_error("PDU shorter than the 16-octet header", RINVCMDLEN, 0, 0)
    cdef const unsigned char* p = _bytes_ptr(pdu)
    if pdu_command_length(p) != <uint32_t>total:
        raise _pdu_error(
            f"command_length {pdu_command_length(p)} but {total} octets given",
            RINVCMDLEN, pdu_sequence(p), pdu_command_id(p),
        )
    return p


# --------------------------------------------------------------------------
# The body table (§4 PDU definitions; reference sheet §2). A field is
# (name, kind, max octets, status when malformed). Cstr max includes the NUL.

cdef enum FieldKind:
    K_INT1 = 1          # Int1
    K_CSTR = 2          # C-Octet String, NUL within max octets
    K_TIME = 3          # Cstr of exactly 1 or 17 octets (§7.1)
    K_SM_LENGTH = 4     # Int1, 0..254, the length of the next field
    K_SHORT_MESSAGE = 5 # Ostr of sm_length octets

cdef enum Layout:
    L_FIELDS = 1        # mandatory fields from the table, then TLVs
    L_HEADER_ONLY = 2   # command_length must be 16
    L_RAW = 3           # recognised; body kept as fields["body"]

cdef enum RespKind:
    R_NONE = 0          # no response PDU exists (responses, outbind, alert_notification)
    R_EMPTY = 1         # header-only response
    R_MESSAGE_ID = 2    # message_id Cstr body
    R_SYSTEM_ID = 3     # bind_*_resp: system_id Cstr body
    R_ERROR_ONLY = 4    # body needs data we lack: header-only error responses only

# Which hot-path SmView slot a field fills (0 = none).
cdef enum:  # Slot
    S_NONE = 0
    S_SERVICE_TYPE
    S_SOURCE_ADDR_TON
    S_SOURCE_ADDR_NPI
    S_SOURCE_ADDR
    S_DEST_ADDR_TON
    S_DEST_ADDR_NPI
    S_DESTINATION_ADDR
    S_ESM_CLASS
    S_PROTOCOL_ID
    S_REGISTERED_DELIVERY
    S_DATA_CODING
    S_SHORT_MESSAGE
    S_COUNT

cdef enum:
    MAX_FIELDS = 24

cdef struct FieldSpec:
    int kind
    Py_ssize_t max_octets
    uint32_t status
    int slot

_SLOTS = {
    "service_type": S_SERVICE_TYPE,
    "source_addr_ton": S_SOURCE_ADDR_TON,
    "source_addr_npi": S_SOURCE_ADDR_NPI,
    "source_addr": S_SOURCE_ADDR,
    "dest_addr_ton": S_DEST_ADDR_TON,
    "dest_addr_npi": S_DEST_ADDR_NPI,
    "destination_addr": S_DESTINATION_ADDR,
    "esm_class": S_ESM_CLASS,
    "protocol_id": S_PROTOCOL_ID,
    "registered_delivery": S_REGISTERED_DELIVERY,
    "data_coding": S_DATA_CODING,
    "short_message": S_SHORT_MESSAGE,
}

def _int1(name):
    return (name, K_INT1, 1, RINVPARLEN)

_SERVICE_TYPE = ("service_type", K_CSTR, 6, RINVSERTYP)
_MESSAGE_ID = ("message_id", K_CSTR, 65, RINVMSGID)

# §4.1.1 bind_transmitter (receiver §4.1.3, transceiver §4.1.5 alike).
_BIND = (
    ("system_id", K_CSTR, 16, RINVSYSID),
    ("password", K_CSTR, 9, RINVPASWD),
    ("system_type", K_CSTR, 13, RINVSYSTYP),
    _int1("interface_version"),
    _int1("addr_ton"),
    _int1("addr_npi"),
    ("address_range", K_CSTR, 41, RINVPARLEN),
)
# §4.1.2 bind_*_resp (+ sc_interface_version TLV).
_BIND_RESP = (("system_id", K_CSTR, 16, RINVSYSID),)
# §4.1.7 outbind.
_OUTBIND = (("system_id", K_CSTR, 16, RINVSYSID), ("password", K_CSTR, 9, RINVPASWD))
# §4.4.1 submit_sm; §4.6.1 deliver_sm has the same layout.
_SM = (
    _SERVICE_TYPE,
    _int1("source_addr_ton"),
    _int1("source_addr_npi"),
    ("source_addr", K_CSTR, 21, RINVSRCADR),
    _int1("dest_addr_ton"),
    _int1("dest_addr_npi"),
    ("destination_addr", K_CSTR, 21, RINVDSTADR),
    _int1("esm_class"),
    _int1("protocol_id"),
    _int1("priority_flag"),
    ("schedule_delivery_time", K_TIME, 17, RINVSCHED),
    ("validity_period", K_TIME, 17, RINVEXPIRY),
    _int1("registered_delivery"),
    _int1("replace_if_present_flag"),
    _int1("data_coding"),
    _int1("sm_default_msg_id"),
    ("sm_length", K_SM_LENGTH, 1, RINVMSGLEN),
    ("short_message", K_SHORT_MESSAGE, 254, RINVMSGLEN),
)
# §4.4.2 submit_sm_resp, §4.6.2 deliver_sm_resp, §4.7.2 data_sm_resp.
_MESSAGE_ID_RESP = (_MESSAGE_ID,)
# §4.7.1 data_sm: 65-octet addresses, text only in message_payload.
_DATA_SM = (
    _SERVICE_TYPE,
    _int1("source_addr_ton"),
    _int1("source_addr_npi"),
    ("source_addr", K_CSTR, 65, RINVSRCADR),
    _int1("dest_addr_ton"),
    _int1("dest_addr_npi"),
    ("destination_addr", K_CSTR, 65, RINVDSTADR),
    _int1("esm_class"),
    _int1("registered_delivery"),
    _int1("data_coding"),
)
# §4.12.1 alert_notification.
_ALERT = (
    _int1("source_addr_ton"),
    _int1("source_addr_npi"),
    ("source_addr", K_CSTR, 65, RINVSRCADR),
    _int1("esme_addr_ton"),
    _int1("esme_addr_npi"),
    ("esme_addr", K_CSTR, 65, RINVPARLEN),
)
# §4.8.1 query_sm / §4.8.2 query_sm_resp.
_QUERY_SM = (
    _MESSAGE_ID,
    _int1("source_addr_ton"),
    _int1("source_addr_npi"),
    ("source_addr", K_CSTR, 21, RINVSRCADR),
)
_QUERY_SM_RESP = (
    _MESSAGE_ID,
    ("final_date", K_TIME, 17, RINVPARLEN),
    _int1("message_state"),
    _int1("error_code"),
)
# §4.9.1 cancel_sm.
_CANCEL_SM = (
    _SERVICE_TYPE,
    _MESSAGE_ID,
    _int1("source_addr_ton"),
    _int1("source_addr_npi"),
    ("source_addr", K_CSTR, 21, RINVSRCADR),
    _int1("dest_addr_ton"),
    _int1("dest_addr_npi"),
    ("destination_addr", K_CSTR, 21, RINVDSTADR),
)
# §4.10.1 replace_sm.
_REPLACE_SM = (
    _MESSAGE_ID,
    _int1("source_addr_ton"),
    _int1("source_addr_npi"),
    ("source_addr", K_CSTR, 21, RINVSRCADR),
    ("schedule_delivery_time", K_TIME, 17, RINVSCHED),
    ("validity_period", K_TIME, 17, RINVEXPIRY),
    _int1("registered_delivery"),
    _int1("sm_default_msg_id"),
    ("sm_length", K_SM_LENGTH, 1, RINVMSGLEN),
    ("short_message", K_SHORT_MESSAGE, 254, RINVMSGLEN),
)
_HEADER_ONLY = ()
_RAW = None

# command_id -> (mandatory body, what make_resp() answers it with).
_TABLE = (
    (BIND_RECEIVER, _BIND, R_SYSTEM_ID),
    (BIND_RECEIVER_RESP, _BIND_RESP, R_NONE),
    (BIND_TRANSMITTER, _BIND, R_SYSTEM_ID),
    (BIND_TRANSMITTER_RESP, _BIND_RESP, R_NONE),
    (BIND_TRANSCEIVER, _BIND, R_SYSTEM_ID),
    (BIND_TRANSCEIVER_RESP, _BIND_RESP, R_NONE),
    (OUTBIND, _OUTBIND, R_NONE),
    (UNBIND, _HEADER_ONLY, R_EMPTY),
    (UNBIND_RESP, _HEADER_ONLY, R_NONE),
    (ENQUIRE_LINK, _HEADER_ONLY, R_EMPTY),
    (ENQUIRE_LINK_RESP, _HEADER_ONLY, R_NONE),
    (GENERIC_NACK, _HEADER_ONLY, R_NONE),
    (SUBMIT_SM, _SM, R_MESSAGE_ID),
    (SUBMIT_SM_RESP, _MESSAGE_ID_RESP, R_NONE),
    (DELIVER_SM, _SM, R_MESSAGE_ID),
    (DELIVER_SM_RESP, _MESSAGE_ID_RESP, R_NONE),
    (DATA_SM, _DATA_SM, R_MESSAGE_ID),
    (DATA_SM_RESP, _MESSAGE_ID_RESP, R_NONE),
    (ALERT_NOTIFICATION, _ALERT, R_NONE),
    (QUERY_SM, _QUERY_SM, R_ERROR_ONLY),
    (QUERY_SM_RESP, _QUERY_SM_RESP, R_NONE),
    (CANCEL_SM, _CANCEL_SM, R_EMPTY),
    (CANCEL_SM_RESP, _HEADER_ONLY, R_NONE),
    (REPLACE_SM, _REPLACE_SM, R_EMPTY),
    (REPLACE_SM_RESP, _HEADER_ONLY, R_NONE),
    (SUBMIT_MULTI, _RAW, R_ERROR_ONLY),
    (SUBMIT_MULTI_RESP, _RAW, R_NONE),
    (BROADCAST_SM, _RAW, R_ERROR_ONLY),
    (BROADCAST_SM_RESP, _RAW, R_NONE),
    (QUERY_BROADCAST_SM, _RAW, R_ERROR_ONLY),
    (QUERY_BROADCAST_SM_RESP, _RAW, R_NONE),
    (CANCEL_BROADCAST_SM, _RAW, R_EMPTY),
    (CANCEL_BROADCAST_SM_RESP, _HEADER_ONLY, R_NONE),
)


cdef class _Command:
    """One row of _TABLE, compiled to a C array of FieldSpec for the walkers."""
    cdef uint32_t command_id
    cdef int layout
    cdef int resp_kind
    cdef bint body_optional
    cdef FieldSpec* specs
    cdef int nfields
    cdef tuple names
    cdef frozenset name_set

    def __cinit__(self, uint32_t command_id, layout, int resp_kind):
        self.command_id = command_id
        self.resp_kind = resp_kind
        self.specs = NULL
        self.nfields = 0
        self.names = ()
        if layout is None:
            self.layout = L_RAW
            self.name_set = frozenset(("body",))
        elif not layout:
            self.layout = L_HEADER_ONLY
            self.name_set = frozenset()
        else:
            self.layout = L_FIELDS
            if len(layout) > MAX_FIELDS:
                raise ValueError("too many mandatory fields")
            self.specs = <FieldSpec*>malloc(len(layout) * sizeof(FieldSpec))
            if self.specs == NULL:
                raise MemoryError()
            for i, (name, kind, max_octets, status) in enumerate(layout):
                self.specs[i].kind = kind
                self.specs[i].max_octets = max_octets
                self.specs[i].status = status
                self.specs[i].slot = _SLOTS.get(name, S_NONE)
            self.nfields = len(layout)
            self.names = tuple(field[0] for field in layout)
            self.name_set = frozenset(self.names)
        # v3.4 §4.1.2/§4.4.2: "body not returned if command_status is non-zero";
        # peers send such responses both with and without a body.
        self.body_optional = pdu_is_response(command_id) and self.layout == L_FIELDS

    def __dealloc__(self):
        free(self.specs)


cdef dict _COMMANDS = {int(row[0]): _Command(row[0], row[1], row[2]) for row in _TABLE}


cdef Py_ssize_t _walk(_Command cmd, const unsigned char* body, Py_ssize_t n,
                      Py_ssize_t* at, Py_ssize_t* ln, uint32_t sequence) except -1:
    """Check the mandatory fields of ``body`` (n octets) against ``cmd``'s layout.

    Stores each field's offset in ``at`` and its length (Int1: its value) in
    ``ln``; returns the offset where the TLVs start. Every read is bounded by n.
    """
    cdef Py_ssize_t pos = 0, limit, sm_length = 0
    cdef int i
    cdef const FieldSpec* f
    cdef const unsigned char* nul
    for i in range(cmd.nfields):
        f = &cmd.specs[i]
        if f.kind == K_INT1 or f.kind == K_SM_LENGTH:
            if pos >= n:
                raise _pdu_error(f"{cmd.names[i]}: body ends before it", f.status,
                                 sequence, cmd.command_id)
            at[i] = pos
            ln[i] = body[pos]
            if f.kind == K_SM_LENGTH:
                sm_length = body[pos]
                if sm_length > 254:   # §5.2.21: 0..254, 255 is illegal
                    raise _pdu_error("sm_length 255 is illegal", f.status, sequence,
                                     cmd.command_id)
            pos += 1
        elif f.kind == K_SHORT_MESSAGE:
            if sm_length > n - pos:
                raise _pdu_error(f"sm_length {sm_length} runs past the PDU end", f.status,
                                 sequence, cmd.command_id)
            at[i] = pos
            ln[i] = sm_length
            pos += sm_length
        else:
            limit = n - pos
            if limit > f.max_octets:
                limit = f.max_octets
            nul = <const unsigned char*>memchr(body + pos, 0, limit) if limit > 0 else NULL
            if nul == NULL:
                raise _pdu_error(
                    f"{cmd.names[i]}: no NUL within {f.max_octets} octets", f.status,
                    sequence, cmd.command_id)
            at[i] = pos
            ln[i] = nul - (body + pos)
            if f.kind == K_TIME and ln[i] != 0 and ln[i] != 16:   # §7.1: NULL or 16 chars
                raise _pdu_error(f"{cmd.names[i]}: {ln[i]} characters, not 0 or 16",
                                 f.status, sequence, cmd.command_id)
            pos += ln[i] + 1
    return pos


cdef int _tlv_stream_error(Py_ssize_t left, uint32_t sequence, uint32_t command_id) except -1:
    raise _pdu_error(f"TLV area corrupt: {left} octets cannot hold the next TLV",
                     RINVOPTPARSTREAM, sequence, command_id)


cdef list _tlv_list(const unsigned char* body, Py_ssize_t pos, Py_ssize_t n,
                    uint32_t sequence, uint32_t command_id):
    """(tag, value) of every TLV in wire order (§3.2.4); checks the stream (§5.3)."""
    cdef list out = []
    cdef Py_ssize_t vlen
    while n - pos >= 4:
        vlen = read_u16(body + pos + 2)
        if vlen > n - pos - 4:
            _tlv_stream_error(n - pos, sequence, command_id)
        out.append((read_u16(body + pos),
                    PyBytes_FromStringAndSize(<const char*>body + pos + 4, vlen)))
        pos += 4 + vlen
    if pos != n:
        _tlv_stream_error(n - pos, sequence, command_id)
    return out


# --------------------------------------------------------------------------
# Full decode / encode.

cdef class Pdu:
    """A decoded PDU: header values, mandatory fields by spec name, TLVs in order.

    ``fields`` maps names to int (Int1) or bytes (Cstr without its NUL, Ostr);
    commands kept raw (submit_multi, broadcast family, unknown ids) have
    ``fields["body"]``. A response received without a body has ``fields == {}``.
    ``tlvs`` holds every TLV as (tag, value bytes), unknown tags included.
    """

    def __init__(self, command_id, sequence, fields=None, tlvs=None, command_status=0):
        self.command_id = command_id
        self.command_status = command_status
        self.sequence = sequence
        self.fields = {} if fields is None else dict(fields)
        self.tlvs = [] if tlvs is None else list(tlvs)

    @property
    def name(self):
        return command_name(self.command_id)

    def tlv(self, int tag):
        """Value of the first TLV with this tag, or None."""
        for t, value in self.tlvs:
            if t == tag:
                return value
        return None

    def encode(self):
        """The PDU's wire form (see encode())."""
        return encode(self.command_id, self.sequence, self.fields, self.tlvs,
                      self.command_status)

    def __eq__(self, other):
        if not isinstance(other, Pdu):
            return NotImplemented
        cdef Pdu o = other
        return (self.command_id == o.command_id and self.command_status == o.command_status
                and self.sequence == o.sequence and self.fields == o.fields
                and self.tlvs == o.tlvs)

    def __repr__(self):
        return (f"Pdu({self.name}, seq={self.sequence}, status=0x{self.command_status:x}, "
                f"fields={self.fields!r}, tlvs={self.tlvs!r})")


cpdef Pdu decode(bytes pdu):
    """Decode one whole PDU (as returned by the Framer) into a Pdu.

    Raises PduError with the command_status to answer with when the body
    breaks the spec (field limits, sm_length, TLV stream, header-only PDU
    with a body). Unknown command ids decode with their body kept raw; the
    session answers them with generic_nack ESME_RINVCMDID.
    """
    cdef const unsigned char* p = _checked_header(pdu)
    cdef uint32_t command_id = pdu_command_id(p)
    cdef uint32_t sequence = pdu_sequence(p)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(pdu) - HEADER_SIZE
    cdef const unsigned char* body = p + HEADER_SIZE
    cdef Py_ssize_t at[MAX_FIELDS]
    cdef Py_ssize_t ln[MAX_FIELDS]
    cdef Py_ssize_t pos
    cdef int i, kind
    cdef _Command cmd = _COMMANDS.get(command_id)
    cdef Pdu out = Pdu.__new__(Pdu)
    out.command_id = command_id
    out.command_status = pdu_command_status(p)
    out.sequence = sequence
    out.fields = {}
    out.tlvs = []
    if cmd is None or cmd.layout == L_RAW:
        out.fields["body"] = pdu[HEADER_SIZE:]
    elif cmd.layout == L_HEADER_ONLY:
        if n:   # §3.2 / reference §1.4: header-only PDUs are exactly 16 octets
            raise _pdu_error(f"{command_name(command_id)} must be header-only, has {n} octets",
                             RINVCMDLEN, sequence, command_id)
    elif n or not cmd.body_optional:
        pos = _walk(cmd, body, n, at, ln, sequence)
        for i in range(cmd.nfields):
            kind = cmd.specs[i].kind
            if kind == K_INT1 or kind == K_SM_LENGTH:
                value = ln[i]
            else:
                value = PyBytes_FromStringAndSize(<const char*>body + at[i], ln[i])
            out.fields[cmd.names[i]] = value
        out.tlvs = _tlv_list(body, pos, n, sequence, command_id)
    return out


cdef uint32_t _u32(value, str what) except? 0xFFFFFFFF:
    if not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{what} {value!r} outside 0..2**32-1")
    return value


def encode(command_id, sequence, fields=None, tlvs=(), status=0):
    """Build a PDU's bytes from header values, mandatory fields and TLVs.

    Fields missing from ``fields`` take 0 or b"" (NULL); sm_length is derived
    from short_message. A response with a non-zero status and neither fields
    nor TLVs is encoded header-only (v3.4: body not returned on error), so
    encode(decode(x)) == x for every PDU decode() accepts except a bodyless
    response with status 0, which gains its NULL Cstr. Values
    outside their spec limits, unknown field names and bad TLVs raise
    ValueError: that is a bug in the caller, not bad input from a peer.
    """
    cdef uint32_t cid = _u32(command_id, "command_id")
    cdef uint32_t seq = _u32(sequence, "sequence")
    cdef uint32_t st = _u32(status, "status")
    cdef _Command cmd = _COMMANDS.get(cid)
    cdef bytearray out = bytearray(HEADER_SIZE)
    cdef int i, kind
    cdef Py_ssize_t limit
    cdef unsigned char* q
    if fields is None:
        fields = {}
    tlvs = list(tlvs)
    if cmd is None or cmd.layout == L_RAW:
        if set(fields) - {"body"}:
            raise ValueError(f"{command_name(cid)} is kept raw: only 'body' may be given")
        out += fields.get("body", b"")
    elif cmd.layout == L_HEADER_ONLY:
        if fields or tlvs:
            raise ValueError(f"{command_name(cid)} is header-only")
    else:
        unknown = set(fields) - cmd.name_set
        if unknown:
            raise ValueError(f"{command_name(cid)} has no field(s) {sorted(unknown)}")
        if not (cmd.body_optional and st != 0 and not fields and not tlvs):
            for i in range(cmd.nfields):
                name = cmd.names[i]
                kind = cmd.specs[i].kind
                if kind == K_INT1:
                    value = fields.get(name, 0)
                    if not 0 <= value <= 255:
                        raise ValueError(f"{name}={value!r} is not an Int1")
                    out.append(value)
                elif kind == K_SM_LENGTH:
                    short_message = fields.get("short_message", b"")
                    value = fields.get(name)
                    if value is not None and value != len(short_message):
                        raise ValueError(f"sm_length={value} but short_message has "
                                         f"{len(short_message)} octets")
                    if len(short_message) > 254:
                        raise ValueError("short_message longer than 254 octets")
                    out.append(len(short_message))
                elif kind == K_SHORT_MESSAGE:
                    out += fields.get(name, b"")
                else:
                    value = bytes(fields.get(name, b""))
                    limit = cmd.specs[i].max_octets - 1
                    if len(value) > limit or b"\0" in value:
                        raise ValueError(f"{name}={value!r}: over {limit} octets or has a NUL")
                    if kind == K_TIME and len(value) not in (0, 16):
                        raise ValueError(f"{name}={value!r}: a time is 0 or 16 characters")
                    out += value
                    out.append(0)
    for tag, value in tlvs:
        value = bytes(value)
        if not 0 <= tag <= 0xFFFF or len(value) > 0xFFFF:
            raise ValueError(f"TLV 0x{tag:x}: tag or length does not fit 16 bits")
        out += tag.to_bytes(2, "big") + len(value).to_bytes(2, "big") + value
    if len(out) > 0xFFFFFFFF:
        raise ValueError("PDU too long")
    q = <unsigned char*>PyByteArray_AS_STRING(out)
    write_u32(q, <uint32_t>len(out))
    write_u32(q + 4, cid)
    write_u32(q + 8, st)
    write_u32(q + 12, seq)
    return bytes(out)


# --------------------------------------------------------------------------
# Responses (§4: each request's *_resp; §4.3.1 generic_nack).

cpdef bytes make_resp(bytes request, uint32_t status=0, bytes message_id=b""):
    """The *_resp answering ``request`` with ``status``, same sequence number.

    submit_sm / deliver_sm / data_sm get a message_id Cstr body (a single NUL
    by default, SMPS's verdict form); bind_* get ``message_id`` as the
    system_id; unbind, enquire_link, cancel_sm, replace_sm get header-only
    responses; query_sm / submit_multi / broadcast_sm only header-only error
    responses (build a success with encode()). ValueError for PDUs that have
    no response (responses, generic_nack, outbind, alert_notification,
    unknown ids: answer those with make_generic_nack).
    """
    if PyBytes_GET_SIZE(request) < HEADER_SIZE:
        raise ValueError("request shorter than the 16-octet header")
    cdef const unsigned char* p = _bytes_ptr(request)
    cdef uint32_t command_id = pdu_command_id(p)
    cdef _Command cmd = _COMMANDS.get(command_id)
    cdef Py_ssize_t id_len = 0, body_len = 0, limit
    if cmd is None or cmd.resp_kind == R_NONE:
        raise ValueError(f"{command_name(command_id)} has no response PDU")
    if cmd.resp_kind == R_MESSAGE_ID or cmd.resp_kind == R_SYSTEM_ID:
        if message_id is not None:
            id_len = PyBytes_GET_SIZE(message_id)
        limit = 64 if cmd.resp_kind == R_MESSAGE_ID else 15
        if id_len > limit or (id_len and memchr(PyBytes_AS_STRING(message_id), 0, id_len)):
            raise ValueError(f"id {message_id!r}: over {limit} octets or has a NUL")
        body_len = id_len + 1
    elif cmd.resp_kind == R_ERROR_ONLY and status == 0:
        raise ValueError(f"a successful {command_name(command_id)}_resp needs encode()")
    cdef bytes out = PyBytes_FromStringAndSize(NULL, HEADER_SIZE + body_len)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(out)
    write_u32(q, <uint32_t>(HEADER_SIZE + body_len))
    write_u32(q + 4, command_id | RESPONSE_BIT)
    write_u32(q + 8, status)
    memcpy(q + 12, p + 12, 4)
    if body_len:
        if id_len:
            memcpy(q + HEADER_SIZE, PyBytes_AS_STRING(message_id), id_len)
        q[HEADER_SIZE + id_len] = 0
    return out


cpdef bytes make_generic_nack(uint32_t sequence, uint32_t status):
    """generic_nack (§4.3.1) with ``status``; sequence 0 when it was unreadable."""
    cdef bytes out = PyBytes_FromStringAndSize(NULL, HEADER_SIZE)
    cdef unsigned char* q = <unsigned char*>PyBytes_AS_STRING(out)
    write_u32(q, HEADER_SIZE)
    write_u32(q + 4, GENERIC_NACK)
    write_u32(q + 8, status)
    write_u32(q + 12, sequence)
    return out


# --------------------------------------------------------------------------
# Hot-path view of a short message PDU.

cdef class SmView:
    """What the proxy reads of every deliver_sm / submit_sm / data_sm.

    Built by decode_sm() in one pass over the mandatory fields and TLVs with
    the same checks as decode(). Integer fields are plain attributes; byte
    fields are cut from the PDU on first access; ``tlvs`` is built on demand.
    ``user_data`` is short_message, or the message_payload TLV when
    sm_length is 0 and for data_sm (§4.4.1, §4.7.1); it includes any UDH.
    """

    def __init__(self):
        raise TypeError("SmView is built by decode_sm()")

    cdef bytes _cut(self, Py_ssize_t at, Py_ssize_t length):
        if at < 0:
            return b""
        return PyBytes_FromStringAndSize(<const char*>_bytes_ptr(self.pdu) + at, length)

    @property
    def service_type(self):
        return self._cut(self._service_type_at, self._service_type_len)

    @property
    def source_addr(self):
        if self._source_addr is None:
            self._source_addr = self._cut(self._source_addr_at, self._source_addr_len)
        return self._source_addr

    @property
    def destination_addr(self):
        if self._destination_addr is None:
            self._destination_addr = self._cut(self._destination_addr_at,
                                               self._destination_addr_len)
        return self._destination_addr

    @property
    def user_data(self):
        if self._user_data is None:
            self._user_data = self._cut(self._user_data_at, self._user_data_len)
        return self._user_data

    @property
    def udhi(self):
        """User data starts with a UDH (esm_class bit 6, §5.2.12)."""
        return (self.esm_class & 0x40) != 0

    @property
    def message_type(self):
        """esm_class bits 5-2 (§5.2.12): 0x00 normal, 0x04 SMSC delivery receipt,
        0x08 SME delivery ack, 0x10 manual/user ack, 0x20 intermediate notification."""
        return self.esm_class & 0x3C

    @property
    def is_receipt(self):
        """SMSC-generated status report, not user content: a delivery receipt
        (0x04) or an intermediate delivery notification (0x20)."""
        cdef int kind = self.esm_class & 0x3C
        return kind == 0x04 or kind == 0x20

    @property
    def sar(self):
        """(sar_msg_ref_num, sar_total_segments, sar_segment_seqnum), or None
        unless all three SAR TLVs are present with their sizes (§5.3.2.22-24)."""
        if self._sar_ref < 0 or self._sar_total < 0 or self._sar_part < 0:
            return None
        return (self._sar_ref, self._sar_total, self._sar_part)

    @property
    def receipted_message_id(self):
        """receipted_message_id TLV without its NUL (receipts), or None."""
        if self._receipted_id_at < 0:
            return None
        return self._cut(self._receipted_id_at, self._receipted_id_len)

    @property
    def message_state(self):
        """message_state TLV (receipts, §5.2.28), or None."""
        return None if self._message_state < 0 else self._message_state

    @property
    def tlvs(self):
        """Every TLV as (tag, value) in wire order (built on each access)."""
        cdef Py_ssize_t n = PyBytes_GET_SIZE(self.pdu) - HEADER_SIZE
        return _tlv_list(_bytes_ptr(self.pdu) + HEADER_SIZE, self._tlvs_at, n,
                         self.sequence, self.command_id)

    def tlv(self, int tag):
        """Value of the first TLV with this tag, or None."""
        for t, value in self.tlvs:
            if t == tag:
                return value
        return None

    def __repr__(self):
        return (f"SmView({command_name(self.command_id)}, seq={self.sequence}, "
                f"{self.source_addr!r} -> {self.destination_addr!r}, "
                f"esm_class=0x{self.esm_class:02x}, data_coding=0x{self.data_coding:02x}, "
                f"{len(self.user_data)} octets)")


cpdef SmView decode_sm(bytes pdu):
    """Validate a deliver_sm, submit_sm or data_sm and return its SmView.

    Same checks and PduError statuses as decode(); any other command id
    raises PduError ESME_RINVCMDID.
    """
    cdef const unsigned char* p = _checked_header(pdu)
    cdef uint32_t command_id = pdu_command_id(p)
    cdef uint32_t sequence = pdu_sequence(p)
    if command_id != DELIVER_SM and command_id != SUBMIT_SM and command_id != DATA_SM:
        raise _pdu_error(f"{command_name(command_id)} is not a short message PDU",
                         RINVCMDID, sequence, command_id)
    cdef _Command cmd = <_Command>_COMMANDS[command_id]
    cdef const unsigned char* body = p + HEADER_SIZE
    cdef Py_ssize_t n = PyBytes_GET_SIZE(pdu) - HEADER_SIZE
    cdef Py_ssize_t at[MAX_FIELDS]
    cdef Py_ssize_t ln[MAX_FIELDS]
    cdef Py_ssize_t slot_at[S_COUNT]
    cdef Py_ssize_t slot_ln[S_COUNT]
    cdef Py_ssize_t pos, vlen, i
    cdef uint16_t tag
    cdef const unsigned char* value
    pos = _walk(cmd, body, n, at, ln, sequence)
    for i in range(S_COUNT):
        slot_at[i] = -1
        slot_ln[i] = 0
    for i in range(cmd.nfields):
        slot_at[cmd.specs[i].slot] = HEADER_SIZE + at[i]
        slot_ln[cmd.specs[i].slot] = ln[i]

    cdef SmView v = SmView.__new__(SmView)
    v.pdu = pdu
    v.command_id = command_id
    v.sequence = sequence
    v.source_addr_ton = <uint8_t>slot_ln[S_SOURCE_ADDR_TON]
    v.source_addr_npi = <uint8_t>slot_ln[S_SOURCE_ADDR_NPI]
    v.dest_addr_ton = <uint8_t>slot_ln[S_DEST_ADDR_TON]
    v.dest_addr_npi = <uint8_t>slot_ln[S_DEST_ADDR_NPI]
    v.esm_class = <uint8_t>slot_ln[S_ESM_CLASS]
    v.protocol_id = <uint8_t>slot_ln[S_PROTOCOL_ID]  # data_sm has none: 0
    v.registered_delivery = <uint8_t>slot_ln[S_REGISTERED_DELIVERY]
    v.data_coding = <uint8_t>slot_ln[S_DATA_CODING]
    v._service_type_at = slot_at[S_SERVICE_TYPE]
    v._service_type_len = slot_ln[S_SERVICE_TYPE]
    v._source_addr_at = slot_at[S_SOURCE_ADDR]
    v._source_addr_len = slot_ln[S_SOURCE_ADDR]
    v._destination_addr_at = slot_at[S_DESTINATION_ADDR]
    v._destination_addr_len = slot_ln[S_DESTINATION_ADDR]
    v._user_data_at = slot_at[S_SHORT_MESSAGE]
    v._user_data_len = slot_ln[S_SHORT_MESSAGE]
    v._tlvs_at = pos
    v._receipted_id_at = -1
    v._receipted_id_len = 0
    v._message_state = -1
    v._sar_ref = v._sar_total = v._sar_part = -1

    # One pass over the TLVs (§3.2.4, §5.3): check the stream, note the few the
    # proxy reads. The first occurrence of a tag wins.
    cdef bint want_payload = v._user_data_len == 0
    cdef bint payload_seen = False
    while n - pos >= 4:
        tag = read_u16(body + pos)
        vlen = read_u16(body + pos + 2)
        if vlen > n - pos - 4:
            _tlv_stream_error(n - pos, sequence, command_id)
        value = body + pos + 4
        if tag == TAG_MESSAGE_PAYLOAD:
            if want_payload and not payload_seen:
                v._user_data_at = HEADER_SIZE + pos + 4
                v._user_data_len = vlen
            payload_seen = True
        elif tag == TAG_SAR_MSG_REF_NUM:
            if vlen == 2 and v._sar_ref < 0:
                v._sar_ref = read_u16(value)
        elif tag == TAG_SAR_TOTAL_SEGMENTS:
            if vlen == 1 and v._sar_total < 0:
                v._sar_total = value[0]
        elif tag == TAG_SAR_SEGMENT_SEQNUM:
            if vlen == 1 and v._sar_part < 0:
                v._sar_part = value[0]
        elif tag == TAG_RECEIPTED_MESSAGE_ID:
            if v._receipted_id_at < 0:
                v._receipted_id_at = HEADER_SIZE + pos + 4
                # A Cstr: drop the NUL if the sender put one.
                v._receipted_id_len = vlen - 1 if vlen and value[vlen - 1] == 0 else vlen
        elif tag == TAG_MESSAGE_STATE:
            if vlen == 1 and v._message_state < 0:
                v._message_state = value[0]
        pos += 4 + vlen
    if pos != n:
        _tlv_stream_error(n - pos, sequence, command_id)
    return v


cpdef bytes with_user_data(SmView view, bytes user_data, uint8_t esm_class):
    """The PDU of ``view`` carrying ``user_data`` as its whole message: in
    message_payload, short_message empty (sm_length 0), esm_class replaced, the
    SAR and message_payload TLVs it had left out and its other TLVs kept. How
    the parts of a long message become one PDU (smps.proxy.assembly), spliced
    from the first part's octets without decoding its fields again."""
    if PyBytes_GET_SIZE(user_data) > 0xFFFF:
        raise ValueError(f"user data of {PyBytes_GET_SIZE(user_data)} octets cannot be a TLV")
    cdef const unsigned char* p = _bytes_ptr(view.pdu)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(view.pdu)
    cdef Py_ssize_t mandatory_end = HEADER_SIZE + view._tlvs_at
    cdef Py_ssize_t keep = mandatory_end  # data_sm: no short_message
    if view.command_id != DATA_SM:
        keep -= 1  # the sm_length octet, and the short_message after it
        if 0 <= view._user_data_at < mandatory_end:
            keep -= view._user_data_len
    cdef Py_ssize_t pos = mandatory_end, vlen, out_size = keep + (view.command_id != DATA_SM)
    cdef uint16_t tag
    while pos + 4 <= size:  # decode_sm checked the stream
        tag = read_u16(p + pos)
        vlen = read_u16(p + pos + 2)
        if not _whole_message_drops(tag):
            out_size += 4 + vlen
        pos += 4 + vlen
    out_size += 4 + PyBytes_GET_SIZE(user_data)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, out_size)
    cdef unsigned char* o = <unsigned char*>PyBytes_AS_STRING(out)
    memcpy(o, p, keep)
    o[view._destination_addr_at + view._destination_addr_len + 1] = esm_class
    cdef Py_ssize_t w = keep
    if view.command_id != DATA_SM:
        o[w] = 0  # sm_length
        w += 1
    pos = mandatory_end
    while pos + 4 <= size:
        tag = read_u16(p + pos)
        vlen = read_u16(p + pos + 2)
        if not _whole_message_drops(tag):
            memcpy(o + w, p + pos, 4 + vlen)
            w += 4 + vlen
        pos += 4 + vlen
    write_u16(o + w, TAG_MESSAGE_PAYLOAD)
    write_u16(o + w + 2, <uint16_t>PyBytes_GET_SIZE(user_data))
    memcpy(o + w + 4, _bytes_ptr(user_data), PyBytes_GET_SIZE(user_data))
    write_u32(o, <uint32_t>out_size)
    return out


cdef inline bint _whole_message_drops(uint16_t tag) noexcept:
    return (tag == TAG_MESSAGE_PAYLOAD or tag == TAG_SAR_MSG_REF_NUM
            or tag == TAG_SAR_TOTAL_SEGMENTS or tag == TAG_SAR_SEGMENT_SEQNUM)
