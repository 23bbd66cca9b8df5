"""Pure-Python, struct-based SMPP codec doing the same work as smps._native.pdu.

It exists only to measure what compiling buys (bench/test_codec_bench.py). It
is written the way a competent Python developer would write it: bytes
methods, struct with precompiled formats, an offset instead of re-slicing the
buffer. Validation is lighter than the native codec's, which favours it.
"""

import struct

_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")
_TLV = struct.Struct(">HH")
_U16 = struct.Struct(">H")

DELIVER_SM_FIELDS = (
    ("service_type", "c"),
    ("source_addr_ton", "i"),
    ("source_addr_npi", "i"),
    ("source_addr", "c"),
    ("dest_addr_ton", "i"),
    ("dest_addr_npi", "i"),
    ("destination_addr", "c"),
    ("esm_class", "i"),
    ("protocol_id", "i"),
    ("priority_flag", "i"),
    ("schedule_delivery_time", "c"),
    ("validity_period", "c"),
    ("registered_delivery", "i"),
    ("replace_if_present_flag", "i"),
    ("data_coding", "i"),
    ("sm_default_msg_id", "i"),
)


class Framer:
    """Buffer with a read offset; compacts once per feed."""

    def __init__(self, max_length: int = 65536):
        self._buf = bytearray()
        self._start = 0
        self._max_length = max_length

    def feed(self, data) -> None:
        if self._start:
            del self._buf[: self._start]
            self._start = 0
        self._buf += data

    def next_pdu(self) -> bytes | None:
        buf, start = self._buf, self._start
        if len(buf) - start < 16:
            return None
        (length,) = _U32.unpack_from(buf, start)
        if length < 16 or length > self._max_length:
            raise ValueError("bad command_length")
        if len(buf) - start < length:
            return None
        self._start = start + length
        return bytes(buf[start : start + length])


def header(pdu: bytes) -> tuple[int, int, int, int]:
    return _HEADER.unpack_from(pdu)


def _cstr(pdu: bytes, pos: int) -> tuple[bytes, int]:
    end = pdu.index(b"\0", pos)
    return pdu[pos:end], end + 1


def _tlvs(pdu: bytes, pos: int) -> list[tuple[int, bytes]]:
    out = []
    end = len(pdu)
    while end - pos >= 4:
        tag, length = _TLV.unpack_from(pdu, pos)
        pos += 4
        if pos + length > end:
            raise ValueError("TLV past end")
        out.append((tag, pdu[pos : pos + length]))
        pos += length
    if pos != end:
        raise ValueError("stray TLV octets")
    return out


def decode_deliver_sm(pdu: bytes) -> dict:
    """Header, every mandatory field into a dict, TLVs into a list."""
    _, command_id, status, sequence = _HEADER.unpack_from(pdu)
    fields = {}
    pos = 16
    for name, kind in DELIVER_SM_FIELDS:
        if kind == "i":
            fields[name] = pdu[pos]
            pos += 1
        else:
            fields[name], pos = _cstr(pdu, pos)
    sm_length = pdu[pos]
    fields["sm_length"] = sm_length
    fields["short_message"] = pdu[pos + 1 : pos + 1 + sm_length]
    pos += 1 + sm_length
    return {
        "command_id": command_id,
        "sequence": sequence,
        "status": status,
        "fields": fields,
        "tlvs": _tlvs(pdu, pos),
    }


def decode_sm(pdu: bytes) -> tuple:
    """What the proxy reads of a deliver_sm: addresses, flags, user data, SAR."""
    _, command_id, _, sequence = _HEADER.unpack_from(pdu)
    service_type, pos = _cstr(pdu, 16)
    source_ton, source_npi = pdu[pos], pdu[pos + 1]
    source_addr, pos = _cstr(pdu, pos + 2)
    dest_ton, dest_npi = pdu[pos], pdu[pos + 1]
    destination_addr, pos = _cstr(pdu, pos + 2)
    esm_class = pdu[pos]
    _, pos = _cstr(pdu, pos + 3)  # protocol_id, priority_flag skipped; schedule time
    _, pos = _cstr(pdu, pos)  # validity_period
    registered_delivery, data_coding = pdu[pos], pdu[pos + 2]
    sm_length = pdu[pos + 4]
    user_data = pdu[pos + 5 : pos + 5 + sm_length]
    pos += 5 + sm_length
    ref = total = part = None
    end = len(pdu)
    while end - pos >= 4:
        tag, length = _TLV.unpack_from(pdu, pos)
        pos += 4
        if pos + length > end:
            raise ValueError("TLV past end")
        if tag == 0x0424 and not sm_length:
            user_data = pdu[pos : pos + length]
        elif tag == 0x020C and length == 2:
            (ref,) = _U16.unpack_from(pdu, pos)
        elif tag == 0x020E and length == 1:
            total = pdu[pos]
        elif tag == 0x020F and length == 1:
            part = pdu[pos]
        pos += length
    if pos != end:
        raise ValueError("stray TLV octets")
    sar = (ref, total, part) if None not in (ref, total, part) else None
    return (
        command_id,
        sequence,
        service_type,
        source_ton,
        source_npi,
        source_addr,
        dest_ton,
        dest_npi,
        destination_addr,
        esm_class,
        registered_delivery,
        data_coding,
        user_data,
        sar,
    )


def make_resp(request: bytes, status: int = 0, message_id: bytes = b"") -> bytes:
    """deliver_sm_resp / submit_sm_resp with a message_id Cstr body."""
    _, command_id, _, sequence = _HEADER.unpack_from(request)
    body = message_id + b"\0"
    return _HEADER.pack(16 + len(body), command_id | 0x80000000, status, sequence) + body


def copies(pdu: bytes, sequences) -> list[tuple[bytes, memoryview]]:
    """New header per sequence, one shared view of the body."""
    head = pdu[:12]
    body = memoryview(pdu)[16:]
    return [(head + _U32.pack(seq), body) for seq in sequences]
