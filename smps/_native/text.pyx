# cython: language_level=3
"""Message text of SMPP short messages: UDH, GSM 7-bit, UCS-2/UTF-16 (sans-I/O).

What lives here, by caller:

* the proxy: ``udh_scan()`` (C level, text.pxd) and ``parse_udh()`` read the
  User Data Header (3GPP TS 23.040 §9.2.3.24) for concatenation info;
* the tracer: ``decode()`` turns short_message / message_payload into text for
  any data_coding (SMPP 3.4 §5.2.19) and never raises on bytes: what cannot be
  decoded becomes U+FFFD and is counted and described in ``Decoded.note``;
  ``reassemble()`` joins concatenated parts, decoding once;
* the screening engine: ``plain_text()``, the same text without the notes;
* the simulators: ``split()`` builds realistic (concatenated) user data, on top
  of the GSM 7-bit (TS 23.038 §6.1.2, §6.2.1, Annex A) and UCS-2 encoders.

GSM 7-bit in SMPP comes unpacked (one septet per octet, the norm) or packed
(septets LSB first, as on the air, 23.038 §6.1.2.1); which one is a per-link
setting because nothing in the PDU says so. Packed user data after a UDH
starts at the next septet boundary, after ``(7 - 8*U % 7) % 7`` fill bits
(23.040 §9.2.3.24).

Trailing padding of packed septets. SMPP carries the length in octets, so a
decoder finds ``(8*octets - fill) // 7`` septets; when that division is exact
the last septet may be 7 bits of padding. 23.038 §6.1.2.3 (CBS and USSD
packing) pads with CR there; careless senders leave zero bits, which read as
'@'. Rule applied here
(only when no septet count is given): in that position a final CR or '@' is
padding and is dropped. A genuine final '@' or CR exactly filling the last
octet is therefore lost; pass ``septets=`` to ``gsm7_decode`` when the count is
known. The encoder pads with CR per 23.038, and ``split()`` never ends a
non-final part with '@' or CR in that position.
"""

import unicodedata

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memset

cdef extern from "Python.h":
    enum: PyUnicode_4BYTE_KIND
    object PyUnicode_FromKindAndData(int kind, const void* buffer, Py_ssize_t size)
    object PyUnicode_DecodeLatin1(const char* s, Py_ssize_t size, const char* errors)

include "gsm_tables.pxi"

cdef enum:
    _STACK_CHARS = 320       # decode buffer on the stack; longer texts use the heap
    _ESC = 0x1B
    _CR = 0x0D
    _REPLACEMENT = 0xFFFD
    _LANGUAGES = 4           # NLI 0 (default), 1 Turkish, 2 Spanish, 3 Portuguese
    UDHI = 0x40              # esm_class bit 6: user data begins with a UDH (SMPP §5.2.12)
    _CONCAT_UDH_OCTETS = 6   # 05 00 03 ref total part

# Segment capacities (smpp-reference §8.5): 140 octets of TP-UD.
GSM7_SINGLE = 160
GSM7_PART = 153        # after the 6-octet 8-bit concat UDH (7 septet slots)
UCS2_SINGLE = 70
UCS2_PART = 67


cdef inline const unsigned char* _ptr(bytes b) noexcept:
    return <const unsigned char*>PyBytes_AS_STRING(b)


cdef inline bytes _as_bytes(object data):
    if type(data) is bytes:
        return <bytes>data
    return bytes(data)


cdef str _plural(Py_ssize_t n, str word):
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------
# Tables, loaded once from gsm_tables.pxi into C arrays (decode) and dicts
# (encode). Unsupported language ids fall back to NLI 0.

cdef Py_UCS4 _LOCKING[_LANGUAGES][128]
cdef Py_UCS4 _SHIFT[_LANGUAGES][128]      # 0 = undefined after ESC
cdef list _ENCODE_LOCKING = []            # per NLI: {char: septet}
cdef list _ENCODE_SHIFT = []              # per NLI: {char: septet after ESC}


cdef int _load_tables() except -1:
    cdef int lang, code
    for lang in range(_LANGUAGES):
        table = LOCKING_TABLES[lang] or DEFAULT_LOCKING
        locking = {}
        for code in range(128):
            _LOCKING[lang][code] = ord(table[code])
            if code != _ESC:
                locking.setdefault(table[code], code)
        _LOCKING[lang][_ESC] = 0x20   # never read: ESC is handled before lookup
        shift = {}
        memset(_SHIFT[lang], 0, sizeof(_SHIFT[lang]))
        for code, char in SINGLE_SHIFT_TABLES[lang].items():
            _SHIFT[lang][code] = ord(char)
            shift.setdefault(char, code)
        _ENCODE_LOCKING.append(locking)
        _ENCODE_SHIFT.append(shift)
    return 0


_load_tables()


cdef inline bint _has_table(int lang, bint locking) noexcept:
    # Spanish (2) has a single shift table only (23.038 Annex A.3).
    return 0 <= lang < _LANGUAGES and not (locking and LOCKING_TABLES[lang] is None)


cdef int _check_languages(int single_shift, int locking_shift) except -1:
    if not _has_table(single_shift, False):
        raise ValueError(f"no single shift table for language id {single_shift}")
    if not _has_table(locking_shift, True):
        raise ValueError(f"no locking shift table for language id {locking_shift}")
    return 0


# --------------------------------------------------------------------------
# User Data Header, 23.040 §9.2.3.24: UDHL, then IEI / IEDL / data until UDHL
# octets are consumed.

cdef inline void _set_concat(UdhInfo* info, int bits, int ref, int total, int part) noexcept nogil:
    # 23.040 §9.2.3.24.1: total 0, part 0 or part > total -> ignore the IE.
    # A repeated IE: the last valid one wins.
    if total == 0 or part == 0 or part > total:
        return
    info.ref_bits = bits
    info.concat_ref = ref
    info.concat_total = total
    info.concat_part = part


cdef int udh_scan(const unsigned char* data, Py_ssize_t size, UdhInfo* info) noexcept nogil:
    cdef Py_ssize_t end, i, d
    cdef unsigned char iei, iedl
    memset(info, 0, sizeof(UdhInfo))
    if size < 1:
        return 0
    end = <Py_ssize_t>data[0] + 1
    if end > size:
        return 0
    info.length = end
    i = 1
    while i < end:
        if i + 2 > end:
            return 0                                # IEI without IEDL
        iei = data[i]
        iedl = data[i + 1]
        d = i + 2
        if d + iedl > end:
            return 0                                # IE runs past UDHL
        if iei == 0x00 and iedl == 3:               # §9.2.3.24.1 concat, 8-bit ref
            _set_concat(info, 8, data[d], data[d + 1], data[d + 2])
        elif iei == 0x08 and iedl == 4:             # §9.2.3.24.8 concat, 16-bit ref
            _set_concat(info, 16, (data[d] << 8) | data[d + 1], data[d + 2], data[d + 3])
        elif iei == 0x04 and iedl == 2:             # §9.2.3.24.3 ports, 8-bit
            info.has_ports = True
            info.port_dest = data[d]
            info.port_orig = data[d + 1]
        elif iei == 0x05 and iedl == 4:             # §9.2.3.24.4 ports, 16-bit
            info.has_ports = True
            info.port_dest = (data[d] << 8) | data[d + 1]
            info.port_orig = (data[d + 2] << 8) | data[d + 3]
        elif iei == 0x24 and iedl == 1:             # §9.2.3.24.15 single shift
            info.single_shift = data[d]
        elif iei == 0x25 and iedl == 1:             # §9.2.3.24.16 locking shift
            info.locking_shift = data[d]
        i = d + iedl
    return 1


cdef class Udh:
    """A well-formed User Data Header (23.040 §9.2.3.24), as parse_udh() reads it.

    ``length`` counts the UDHL octet too; ``concat`` is ``(ref, total, part)``
    from IEI 0x00 (``ref_bits`` 8) or 0x08 (16), or None; ``ports`` is
    ``(dest, orig)`` from IEI 0x04 / 0x05, or None; ``single_shift`` /
    ``locking_shift`` are the language ids of IEI 0x24 / 0x25 (0 if absent);
    ``ies`` lists every IE as ``(iei, data)`` in order, known or not.
    """

    def __repr__(self):
        return (
            f"Udh(length={self.length}, concat={self.concat!r}, ref_bits={self.ref_bits}, "
            f"ports={self.ports!r}, single_shift={self.single_shift}, "
            f"locking_shift={self.locking_shift}, ies={self.ies!r})"
        )


cdef Udh _make_udh(bytes data, const UdhInfo* info):
    # Only for a UDH udh_scan() accepted: the IE walk needs no checks.
    cdef const unsigned char* p = _ptr(data)
    cdef Py_ssize_t i = 1
    cdef int iedl
    cdef Udh udh = Udh.__new__(Udh)
    udh.length = info.length
    udh.ref_bits = info.ref_bits
    udh.concat = (
        (info.concat_ref, info.concat_total, info.concat_part) if info.ref_bits else None
    )
    udh.ports = (info.port_dest, info.port_orig) if info.has_ports else None
    udh.single_shift = info.single_shift
    udh.locking_shift = info.locking_shift
    udh.ies = []
    while i < info.length:
        iedl = p[i + 1]
        udh.ies.append((p[i], data[i + 2 : i + 2 + iedl]))
        i += 2 + iedl
    return udh


def parse_udh(user_data) -> Udh | None:
    """Read the UDH at the start of user data; None when it is malformed.

    Malformed means UDHL + 1 > len(user_data) or an IE running past UDHL
    (23.040 §9.2.3.24); it never raises on any bytes.
    """
    cdef bytes data = _as_bytes(user_data)
    cdef UdhInfo info
    if not udh_scan(_ptr(data), PyBytes_GET_SIZE(data), &info):
        return None
    return _make_udh(data, &info)


cdef tuple _take_udh(bytes data, list notes):
    """(Udh or None, octets to skip) for user data with UDHI set."""
    cdef UdhInfo info
    if udh_scan(_ptr(data), PyBytes_GET_SIZE(data), &info):
        return _make_udh(data, &info), info.length
    notes.append("malformed UDH")
    # When UDHL itself fits, the text still starts after it.
    return None, info.length


cdef inline int _fill_bits(Py_ssize_t udh_octets) noexcept nogil:
    # 23.040 §9.2.3.24: packed text starts at the next septet boundary.
    return (7 - (8 * udh_octets) % 7) % 7


# --------------------------------------------------------------------------
# Decoders. They count what they could not decode instead of raising.

cdef struct _Counts:
    Py_ssize_t invalid          # octets >= 0x80 where 7-bit or ASCII was expected
    Py_ssize_t bad_escape       # ESC + undefined code, ESC ESC, or a final lone ESC
    Py_ssize_t lone_surrogate   # UTF-16 surrogate without its partner
    Py_ssize_t odd_octet        # last octet of an odd-length UCS-2 payload


cdef Py_ssize_t _describe(const _Counts* c, list notes):
    if c.invalid:
        notes.append(_plural(c.invalid, "undecodable octet") + " replaced")
    if c.bad_escape:
        notes.append(
            _plural(c.bad_escape, "unknown GSM escape") + " shown as base character or space"
        )
    if c.odd_octet:
        notes.append("odd UCS-2 length")
    if c.lone_surrogate:
        notes.append(_plural(c.lone_surrogate, "lone surrogate") + " replaced")
    return c.invalid + c.bad_escape + c.odd_octet + c.lone_surrogate


cdef str _gsm_septets_to_str(const unsigned char* s, Py_ssize_t n, int locking, int single,
                             _Counts* counts):
    # One septet per octet (unpacked). 23.038 §6.2.1.1: ESC + code reads the
    # single shift table; an undefined code shows the locking-table character
    # (note 1), ESC ESC and a lone final ESC show a space.
    cdef Py_UCS4 stack[_STACK_CHARS]
    cdef Py_UCS4* out = stack
    cdef const Py_UCS4* lock = _LOCKING[locking]
    cdef const Py_UCS4* shift = _SHIFT[single]
    cdef Py_ssize_t i = 0, k = 0
    cdef unsigned char c
    cdef unsigned int u
    if n > _STACK_CHARS:
        out = <Py_UCS4*>PyMem_Malloc(n * sizeof(Py_UCS4))
        if out == NULL:
            raise MemoryError()
    try:
        while i < n:
            c = s[i]
            i += 1
            if c >= 0x80:
                u = _REPLACEMENT
                counts.invalid += 1
            elif c != _ESC:
                u = lock[c]
            elif i == n:
                u = 0x20
                counts.bad_escape += 1
            else:
                c = s[i]
                i += 1
                if c >= 0x80:
                    u = _REPLACEMENT
                    counts.invalid += 1
                elif c == _ESC:
                    u = 0x20
                    counts.bad_escape += 1
                else:
                    u = shift[c]
                    if u == 0:
                        u = lock[c]
                        counts.bad_escape += 1
            out[k] = <Py_UCS4>u
            k += 1
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, k)
    finally:
        if out != stack:
            PyMem_Free(out)


cdef str _ucs2_to_str(const unsigned char* p, Py_ssize_t n, _Counts* counts):
    # UTF-16BE (smpp-reference §8.6): pairs D800-DBFF + DC00-DFFF make one
    # astral character; a surrogate without its partner becomes U+FFFD.
    cdef Py_UCS4 stack[_STACK_CHARS]
    cdef Py_UCS4* out = stack
    cdef Py_ssize_t units = n >> 1, i = 0, k = 0
    cdef unsigned int u, low
    if units + 1 > _STACK_CHARS:
        out = <Py_UCS4*>PyMem_Malloc((units + 1) * sizeof(Py_UCS4))
        if out == NULL:
            raise MemoryError()
    try:
        while i < units:
            u = (p[2 * i] << 8) | p[2 * i + 1]
            i += 1
            if 0xD800 <= u <= 0xDFFF:
                if u <= 0xDBFF and i < units:
                    low = (p[2 * i] << 8) | p[2 * i + 1]
                    if 0xDC00 <= low <= 0xDFFF:
                        u = 0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                        i += 1
                        out[k] = <Py_UCS4>u
                        k += 1
                        continue
                u = _REPLACEMENT
                counts.lone_surrogate += 1
            out[k] = <Py_UCS4>u
            k += 1
        if n & 1:
            out[k] = _REPLACEMENT
            k += 1
            counts.odd_octet = 1
        return PyUnicode_FromKindAndData(PyUnicode_4BYTE_KIND, out, k)
    finally:
        if out != stack:
            PyMem_Free(out)


cdef str _ascii_to_str(bytes payload, _Counts* counts):
    # IA5 (data_coding 1): 7-bit; each octet >= 0x80 becomes one U+FFFD.
    cdef const unsigned char* p = _ptr(payload)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(payload)
    for i in range(n):
        if p[i] >= 0x80:
            counts.invalid += 1
    return payload.decode("ascii", "replace")


# --------------------------------------------------------------------------
# Septet packing, 23.038 §6.1.2.1: septet i at bit offset fill + 7*i, LSB first.

cdef inline int _septet_at(const unsigned char* p, Py_ssize_t n, int fill,
                           Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t bit = fill + 7 * i
    cdef Py_ssize_t at = bit >> 3
    cdef int shift = bit & 7
    cdef int v = p[at] >> shift
    if shift > 1 and at + 1 < n:
        v |= p[at + 1] << (8 - shift)
    return v & 0x7F


cdef bytes _unpack(const unsigned char* p, Py_ssize_t n, int fill, Py_ssize_t septets):
    """Packed septets -> one septet per octet. septets < 0: derive the count
    from the octet length and drop padding (module docstring)."""
    cdef Py_ssize_t bits = 8 * n - fill
    cdef Py_ssize_t available = bits // 7 if bits > 0 else 0
    cdef Py_ssize_t count = available, i
    cdef int last
    cdef bytes out
    cdef unsigned char* o
    if septets >= 0:
        count = min(septets, available)
    elif available and bits % 7 == 0:
        last = _septet_at(p, n, fill, available - 1)
        if (last == 0 or last == _CR) and not (
            available > 1 and _septet_at(p, n, fill, available - 2) == _ESC
        ):
            count = available - 1
    out = PyBytes_FromStringAndSize(NULL, count)
    o = <unsigned char*>PyBytes_AS_STRING(out)
    for i in range(count):
        o[i] = _septet_at(p, n, fill, i)
    return out


cdef bytes _pack(bytes septets, int fill):
    # Pads with one CR when exactly 7 bits would be left over (23.038 §6.1.2.3).
    cdef const unsigned char* s = _ptr(septets)
    cdef Py_ssize_t m = PyBytes_GET_SIZE(septets), i, bit, at, nbytes
    cdef int shift, v
    cdef bint pad
    cdef bytes out
    cdef unsigned char* o
    if m == 0:
        return b""
    pad = (fill + 7 * m) % 8 == 1
    nbytes = (fill + 7 * (m + pad) + 7) // 8
    out = PyBytes_FromStringAndSize(NULL, nbytes)
    o = <unsigned char*>PyBytes_AS_STRING(out)
    memset(o, 0, nbytes)
    for i in range(m + pad):
        v = s[i] & 0x7F if i < m else _CR
        bit = fill + 7 * i
        at = bit >> 3
        shift = bit & 7
        o[at] |= (v << shift) & 0xFF
        if shift > 1:
            o[at + 1] |= v >> (8 - shift)
    return out


# --------------------------------------------------------------------------
# GSM 7-bit and UCS-2 public codec.

cdef Py_ssize_t _gsm_cost(str text, dict locking, dict shift):
    """Septets text needs (ESC pairs count 2), or -1 if not representable."""
    cdef Py_ssize_t total = 0
    for char in text:
        if char in locking:
            total += 1
        elif char in shift:
            total += 2
        else:
            return -1
    return total


cdef bytes _to_septets(str text, dict locking, dict shift):
    out = bytearray()
    for char in text:
        code = locking.get(char)
        if code is None:
            code = shift.get(char)
            if code is None:
                raise ValueError(
                    f"{char!r} (U+{ord(char):04X}) is not in the GSM 7-bit alphabet"
                    " with these shift tables"
                )
            out.append(_ESC)
        out.append(code)
    return bytes(out)


def gsm7_encode(str text, *, bint packed=False, int fill_bits=0, int single_shift=0,
                int locking_shift=0) -> bytes:
    """Encode text as GSM 7-bit septets (23.038 §6.2.1 and Annex A tables).

    Unpacked: one septet per octet. Packed: septets LSB first after
    ``fill_bits`` zero bits (the UDH fill, 0..6), CR-padded when 7 bits would
    be left. Raises ValueError for a character the tables cannot represent.
    """
    _check_languages(single_shift, locking_shift)
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    septets = _to_septets(text, _ENCODE_LOCKING[locking_shift], _ENCODE_SHIFT[single_shift])
    return _pack(septets, fill_bits) if packed else septets


def gsm7_decode(data, *, bint packed=False, int fill_bits=0, int single_shift=0,
                int locking_shift=0, septets=None) -> tuple[str, int]:
    """Decode GSM 7-bit user data (no UDH) -> (text, characters replaced).

    ``septets`` is the septet count when known (it removes the trailing
    padding ambiguity of packed data; see the module docstring). Invalid
    octets (>= 0x80, unpacked) become U+FFFD; unknown escapes show the base
    character. Never raises on bytes.
    """
    cdef bytes raw = _as_bytes(data)
    cdef Py_ssize_t count = -1
    cdef _Counts counts
    _check_languages(single_shift, locking_shift)
    if not 0 <= fill_bits <= 6:
        raise ValueError("fill_bits must be 0..6")
    if septets is not None:
        count = septets
        if count < 0:
            raise ValueError("septets must be >= 0")
    if packed:
        raw = _unpack(_ptr(raw), PyBytes_GET_SIZE(raw), fill_bits, count)
    elif 0 <= count < PyBytes_GET_SIZE(raw):
        raw = raw[:count]
    memset(&counts, 0, sizeof(counts))
    text = _gsm_septets_to_str(_ptr(raw), PyBytes_GET_SIZE(raw), locking_shift, single_shift,
                               &counts)
    return text, counts.invalid + counts.bad_escape


def is_gsm7(str text, *, int single_shift=0, int locking_shift=0) -> bool:
    """True when every character of text is in the chosen GSM 7-bit tables."""
    _check_languages(single_shift, locking_shift)
    return _gsm_cost(text, _ENCODE_LOCKING[locking_shift], _ENCODE_SHIFT[single_shift]) >= 0


def gsm7_length(str text, *, int single_shift=0, int locking_shift=0) -> int:
    """Septets text takes in GSM 7-bit, escapes counting 2; ValueError if it can't."""
    _check_languages(single_shift, locking_shift)
    cdef Py_ssize_t n = _gsm_cost(text, _ENCODE_LOCKING[locking_shift],
                                  _ENCODE_SHIFT[single_shift])
    if n < 0:
        raise ValueError("text is not representable in the GSM 7-bit alphabet")
    return n


def ucs2_encode(str text) -> bytes:
    """UTF-16BE without BOM (data_coding 8 as sent in practice, smpp-reference §8.6).

    Astral characters become surrogate pairs; a lone surrogate in ``text``
    raises UnicodeEncodeError (a ValueError).
    """
    return text.encode("utf-16-be")


def ucs2_decode(data) -> tuple[str, int]:
    """UTF-16BE -> (text, characters replaced); lone surrogates and an odd
    final octet become U+FFFD. Never raises on bytes."""
    cdef bytes raw = _as_bytes(data)
    cdef _Counts counts
    memset(&counts, 0, sizeof(counts))
    text = _ucs2_to_str(_ptr(raw), PyBytes_GET_SIZE(raw), &counts)
    return text, counts.lone_surrogate + counts.odd_octet


# --------------------------------------------------------------------------
# data_coding dispatch (smpp-reference §7): one table of 256 kinds, built once.

cdef enum Kind:
    K_DEFAULT         # 0x00: the per-link default alphabet
    K_GSM7
    K_ASCII
    K_LATIN1
    K_UCS2
    K_BINARY          # 8-bit data, shown as hex
    K_UNDECODED       # a character set or value we do not decode: hex + note
    K_COMPRESSED      # 23.038 §4 compressed text (23.042): hex + note

cdef unsigned char _DCS_KIND[256]

_ALPHABET_KINDS = {"gsm7": K_GSM7, "ascii": K_ASCII, "latin1": K_LATIN1}
_ENCODING_NAMES = {K_ASCII: "ascii", K_LATIN1: "latin1", K_UCS2: "ucs2"}


cdef Kind _classify(int dcs) noexcept:
    cdef int alphabet
    if dcs == 0x00:
        return K_DEFAULT
    if dcs == 0x01:                  # IA5 / ASCII
        return K_ASCII
    if dcs == 0x02 or dcs == 0x04:   # octet unspecified (binary)
        return K_BINARY
    if dcs == 0x03:                  # ISO-8859-1
        return K_LATIN1
    if dcs == 0x08:                  # UCS2, carried as UTF-16BE
        return K_UCS2
    if dcs < 0x10:                   # JIS, Cyrillic, Hebrew, pictogram, Kanji, KS C 5601, reserved
        return K_UNDECODED
    if dcs < 0x40:                   # 23.038 §4 general data coding, 00xx xxxx
        if dcs & 0x20:
            return K_COMPRESSED
        alphabet = (dcs >> 2) & 0x03     # bits 3-2: GSM7, 8-bit, UCS2, reserved
        if alphabet == 0:
            return K_GSM7
        if alphabet == 1:
            return K_BINARY
        if alphabet == 2:
            return K_UCS2
        return K_UNDECODED
    if 0xC0 <= dcs <= 0xDF:          # message waiting indication, GSM7
        return K_GSM7
    if 0xE0 <= dcs <= 0xEF:          # message waiting indication, UCS2
        return K_UCS2
    if dcs >= 0xF0:                  # data coding / message class: bit 2 = 8-bit
        return K_BINARY if dcs & 0x04 else K_GSM7
    return K_UNDECODED               # 0x40-0xBF: reserved in SMPP


cdef int _load_dcs_kinds() except -1:
    cdef int dcs
    for dcs in range(256):
        _DCS_KIND[dcs] = _classify(dcs)
    return 0


_load_dcs_kinds()


cdef int _kind_of(int data_coding, str default_alphabet) except -1:
    if not 0 <= data_coding <= 0xFF:
        raise ValueError("data_coding must be 0..255")
    cdef int kind = _DCS_KIND[data_coding]
    if kind == K_DEFAULT:
        alphabet = _ALPHABET_KINDS.get(default_alphabet)
        if alphabet is None:
            raise ValueError(f"default_alphabet must be one of {sorted(_ALPHABET_KINDS)}")
        return alphabet
    return kind


cdef int _udh_languages(Udh udh, list notes, int* locking, int* single) except -1:
    # 23.038 §6.2.1.2.4: the tables named by IEI 0x25 / 0x24, when we have them.
    locking[0] = 0
    single[0] = 0
    if udh is None:
        return 0
    if udh.locking_shift:
        if _has_table(udh.locking_shift, True):
            locking[0] = udh.locking_shift
        else:
            notes.append(f"no locking shift table for language {udh.locking_shift}, default used")
    if udh.single_shift:
        if _has_table(udh.single_shift, False):
            single[0] = udh.single_shift
        else:
            notes.append(f"no single shift table for language {udh.single_shift}, default used")
    return 0


cdef Decoded _make_decoded(str text, str encoding, Udh udh, list notes, Py_ssize_t replaced):
    cdef Decoded result = Decoded.__new__(Decoded)
    result.text = text
    result.encoding = encoding
    result.udh = udh
    result.note = "; ".join(notes)
    result.replaced = replaced
    return result


cdef Decoded _decode_payloads(int kind, int dcs, bint packed, list datas, list offsets,
                              Udh udh, list notes):
    """Decode the text of one message given as parts (data, UDH octets to skip).

    GSM7 parts are joined as septets (an ESC ending one part applies to the
    next), everything else as raw octets (a UTF-16 pair may straddle parts);
    then the whole is decoded once (smpp-reference §9.3).
    """
    cdef _Counts counts
    cdef int locking, single
    cdef Py_ssize_t offset
    cdef Py_ssize_t i
    cdef bytes data, payload
    cdef list pieces = []
    memset(&counts, 0, sizeof(counts))
    for i in range(len(datas)):
        data = datas[i]
        offset = offsets[i]
        if kind == K_GSM7 and packed:
            pieces.append(_unpack(_ptr(data) + offset, PyBytes_GET_SIZE(data) - offset,
                                  _fill_bits(offset), -1))
        else:
            pieces.append(data[offset:] if offset else data)
    payload = pieces[0] if len(pieces) == 1 else b"".join(pieces)

    if kind == K_GSM7:
        _udh_languages(udh, notes, &locking, &single)
        text = _gsm_septets_to_str(_ptr(payload), PyBytes_GET_SIZE(payload), locking, single,
                                   &counts)
        encoding = "gsm7-packed" if packed else "gsm7"
    elif kind == K_UCS2:
        text = _ucs2_to_str(_ptr(payload), PyBytes_GET_SIZE(payload), &counts)
        encoding = "ucs2"
    elif kind == K_LATIN1:
        text = PyUnicode_DecodeLatin1(PyBytes_AS_STRING(payload), PyBytes_GET_SIZE(payload), NULL)
        encoding = "latin1"
    elif kind == K_ASCII:
        text = _ascii_to_str(payload, &counts)
        encoding = "ascii"
    else:
        text = payload.hex(" ")
        encoding = "binary"
        if kind == K_UNDECODED:
            notes.append(f"data_coding 0x{dcs:02X} not decoded, shown as hex")
        elif kind == K_COMPRESSED:
            notes.append(f"compressed text (data_coding 0x{dcs:02X}) shown as hex")
    return _make_decoded(text, encoding, udh, notes, _describe(&counts, notes))


cdef class Decoded:
    """Text of a short message, as decode() / reassemble() found it.

    ``encoding`` is one of "gsm7", "gsm7-packed", "ucs2", "latin1", "ascii",
    "binary" (shown as hex); ``udh`` the stripped header or None; ``note`` is
    "" when clean, else what went wrong; ``replaced`` counts characters that
    are not what the sender encoded (U+FFFD, unknown escapes).
    """

    def __init__(self, str text, str encoding, Udh udh=None, str note="", Py_ssize_t replaced=0):
        self.text = text
        self.encoding = encoding
        self.udh = udh
        self.note = note
        self.replaced = replaced

    def __repr__(self):
        return (
            f"Decoded(text={self.text!r}, encoding={self.encoding!r}, udh={self.udh!r}, "
            f"note={self.note!r}, replaced={self.replaced})"
        )


def decode(user_data, int data_coding, int esm_class=0, *, str default_alphabet="gsm7",
           bint gsm7_packed=False) -> Decoded:
    """Decode short_message / message_payload to text; never raises on bytes.

    With UDHI (esm_class & 0x40) the UDH is stripped and returned. data_coding
    0 uses ``default_alphabet`` ("gsm7", "ascii" or "latin1", a per-link
    setting) and GSM 7-bit is read packed when ``gsm7_packed``. ValueError
    only for bad arguments (data_coding outside 0..255, unknown alphabet).
    """
    cdef bytes data = _as_bytes(user_data)
    cdef int kind = _kind_of(data_coding, default_alphabet)
    cdef list notes = []
    udh = None
    offset = 0
    if esm_class & UDHI:
        udh, offset = _take_udh(data, notes)
    return _decode_payloads(kind, data_coding, gsm7_packed, [data], [offset], udh, notes)


cpdef str plain_text(bytes user_data, int data_coding, int esm_class=0,
                     str default_alphabet="gsm7", bint gsm7_packed=False):
    """The text alone, as decode() reads it, or None for data that is no text
    (binary, compressed, undecoded): what the screening engine matches, once per
    original, without the notes and the Decoded that the tracer wants."""
    cdef int kind = _kind_of(data_coding, default_alphabet)
    cdef UdhInfo info
    cdef Py_ssize_t offset = 0
    cdef Py_ssize_t n = PyBytes_GET_SIZE(user_data)
    cdef const unsigned char* p = _ptr(user_data)
    cdef int locking = 0, single = 0
    cdef _Counts counts
    cdef bytes septets
    memset(&counts, 0, sizeof(counts))
    if kind == K_BINARY or kind == K_UNDECODED or kind == K_COMPRESSED:
        return None
    if esm_class & UDHI:
        if udh_scan(p, n, &info):
            if info.locking_shift and _has_table(info.locking_shift, True):
                locking = info.locking_shift
            if info.single_shift and _has_table(info.single_shift, False):
                single = info.single_shift
        offset = min(info.length, n)
    if kind == K_GSM7:
        if gsm7_packed:
            septets = _unpack(p + offset, n - offset, _fill_bits(offset), -1)
            return _gsm_septets_to_str(_ptr(septets), PyBytes_GET_SIZE(septets), locking,
                                       single, &counts)
        return _gsm_septets_to_str(p + offset, n - offset, locking, single, &counts)
    if kind == K_UCS2:
        return _ucs2_to_str(p + offset, n - offset, &counts)
    if kind == K_LATIN1:
        return PyUnicode_DecodeLatin1(<const char*>p + offset, n - offset, NULL)
    return _ascii_to_str(user_data[offset:] if offset else user_data, &counts)


def reassemble(parts, int data_coding, int esm_class=UDHI, *, str default_alphabet="gsm7",
               bint gsm7_packed=False) -> Decoded:
    """Join the parts of a concatenated message and decode the whole once.

    ``parts`` are ``(part_number, user_data)`` in any order; a repeated number
    replaces the earlier part. By default each part starts with a UDH (what
    split() builds); pass an esm_class without UDHI for SAR-TLV parts. The
    result carries the UDH of the first part, and notes missing parts.
    """
    cdef int kind = _kind_of(data_coding, default_alphabet)
    cdef list notes = [], datas = [], offsets = [], part_notes
    cdef dict by_number = {}
    first_udh = None
    for number, user_data in parts:
        by_number[int(number)] = _as_bytes(user_data)
    numbers = sorted(by_number)
    for number in numbers:
        data = by_number[number]
        udh, offset = None, 0
        if esm_class & UDHI:
            part_notes = []
            udh, offset = _take_udh(data, part_notes)
            if part_notes:
                notes.append(f"malformed UDH in part {number}")
        if number == numbers[0]:
            first_udh = udh
        datas.append(data)
        offsets.append(offset)
    if not numbers:
        notes.append("no parts")
    else:
        total = numbers[-1]
        if first_udh is not None and first_udh.concat is not None:
            total = max(total, first_udh.concat[1])
        missing = [str(k) for k in range(1, total + 1) if k not in by_number]
        if missing:
            notes.append("missing parts " + ", ".join(missing))
    return _decode_payloads(kind, data_coding, gsm7_packed, datas, offsets, first_udh, notes)


# --------------------------------------------------------------------------
# Splitting for the simulators (smpp-reference §8.5, §8.6).

cdef inline bint _regional_indicator(Py_UCS4 c) noexcept:
    return 0x1F1E6 <= c <= 0x1F1FF


cdef bint _joined(str text, Py_ssize_t i):
    """True when a cut before text[i] would break a cluster we recognise:
    ZWJ sequences, variation selectors, skin tones, tags, keycaps, flag
    pairs and combining marks."""
    cdef Py_UCS4 prev = text[i - 1], cur = text[i]
    cdef Py_ssize_t run = 0, j = i - 1
    if cur == 0x200D or prev == 0x200D or cur == 0x20E3:
        return True
    if 0xFE00 <= cur <= 0xFE0F or 0x1F3FB <= cur <= 0x1F3FF or 0xE0020 <= cur <= 0xE007F:
        return True
    if _regional_indicator(prev) and _regional_indicator(cur):
        while j >= 0 and _regional_indicator(text[j]):
            run += 1
            j -= 1
        return run % 2 == 1
    return unicodedata.combining(text[i]) != 0


cdef bint _ambiguous_end(list chunks, Py_ssize_t end, Py_ssize_t septets, int fill):
    # A packed part that fills its last octet exactly and ends in '@' or CR
    # would lose that character to the padding rule (module docstring).
    last = chunks[end - 1]
    return (fill + 7 * septets) % 8 == 0 and (last == b"\x00" or last == b"\r")


cdef list _group(str text, list chunks, list costs, Py_ssize_t capacity, bint packed_gsm):
    """Cut chunks (one per character) into parts of at most capacity units."""
    cdef Py_ssize_t n = len(chunks), start = 0, end, used, cut
    cdef list groups = []
    while start < n:
        end = start
        used = 0
        while end < n and used + <Py_ssize_t>costs[end] <= capacity:
            used += costs[end]
            end += 1
        if end < n:
            cut = end
            while cut > start + 1 and _joined(text, cut):
                cut -= 1
            if cut > start + 1 or not _joined(text, cut):
                end = cut
            if packed_gsm and end - start > 1 and _ambiguous_end(
                chunks, end, sum(costs[start:end]), _fill_bits(_CONCAT_UDH_OCTETS)
            ):
                end -= 1
        groups.append((start, end))
        start = end
    return groups


def split(str text, *, int ref, bint packed=False, max_single=None) -> tuple[int, list[bytes]]:
    """Build user data for text: (data_coding, segments).

    GSM 7-bit (data_coding 0, default tables) when every character is in it,
    else UCS-2 (8). One segment without UDH when it fits (160 septets / 70
    UTF-16 units, or ``max_single`` if lower), else parts with the 8-bit
    concat UDH ``05 00 03 ref total part`` and 153 septets / 67 units each.
    A part never ends inside an ESC pair or a surrogate pair, and prefers
    not to cut an emoji/flag sequence. ValueError past 255 parts.
    """
    if not 0 <= ref <= 0xFF:
        raise ValueError("ref must be 0..255 (8-bit concatenation reference)")
    cdef dict locking = _ENCODE_LOCKING[0], shift = _ENCODE_SHIFT[0]
    cdef list chunks, costs
    cdef int data_coding
    cdef Py_ssize_t single, capacity
    if _gsm_cost(text, locking, shift) >= 0:
        data_coding, single, capacity = 0, GSM7_SINGLE, GSM7_PART
        chunks = [_to_septets(char, locking, shift) for char in text]
        costs = [len(chunk) for chunk in chunks]
    else:
        data_coding, single, capacity = 8, UCS2_SINGLE, UCS2_PART
        chunks = [char.encode("utf-16-be") for char in text]
        costs = [len(chunk) // 2 for chunk in chunks]
    if max_single is not None:
        if max_single < 1:
            raise ValueError("max_single must be >= 1")
        single = min(single, max_single)
    if sum(costs) <= single:
        return data_coding, [_segment(data_coding, packed, b"".join(chunks), b"")]
    groups = _group(text, chunks, costs, capacity, packed and data_coding == 0)
    if len(groups) > 255:
        raise ValueError(f"text needs {len(groups)} parts; the concat UDH allows 255")
    total = len(groups)
    return data_coding, [
        _segment(data_coding, packed, b"".join(chunks[start:end]),
                 bytes((0x05, 0x00, 0x03, ref, total, number)))
        for number, (start, end) in enumerate(groups, 1)
    ]


cdef bytes _segment(int data_coding, bint packed, bytes payload, bytes udh):
    if data_coding == 0 and packed:
        return udh + _pack(payload, _fill_bits(len(udh)))
    return udh + payload
