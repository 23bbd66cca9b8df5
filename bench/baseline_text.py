"""Pure-Python message-text decoding doing the same work as smps._native.text.

It exists only to measure what compiling buys (bench/test_text_bench.py),
written simply, the way a careful Python developer would: a list lookup per
septet, a bit loop for packed septets, bytes.decode("utf-16-be") for UCS-2.
It reads the same 23.038 tables as the native module, so both give the same
text for the same input.
"""

from smps._native.text import DEFAULT_LOCKING, DEFAULT_SINGLE_SHIFT

_LOCKING = list(DEFAULT_LOCKING)
_SHIFT = [DEFAULT_SINGLE_SHIFT.get(code) for code in range(128)]
_ESC = 0x1B


def gsm7_decode(data: bytes) -> tuple[str, int]:
    """Unpacked GSM 7-bit: one septet per octet -> (text, replaced)."""
    out = []
    replaced = 0
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        i += 1
        if code >= 0x80:
            out.append("\ufffd")
            replaced += 1
        elif code != _ESC:
            out.append(_LOCKING[code])
        elif i == n:
            out.append(" ")
            replaced += 1
        else:
            code = data[i]
            i += 1
            if code >= 0x80:
                out.append("\ufffd")
                replaced += 1
            elif code == _ESC:
                out.append(" ")
                replaced += 1
            else:
                char = _SHIFT[code]
                if char is None:
                    char = _LOCKING[code]
                    replaced += 1
                out.append(char)
    return "".join(out), replaced


def unpack(data: bytes, fill: int = 0) -> bytes:
    """Packed septets (LSB first, after fill bits) -> one septet per octet,
    dropping a final CR/'@' that sits in the padding position."""
    bits = 8 * len(data) - fill
    count = bits // 7 if bits > 0 else 0
    value = int.from_bytes(data, "little") >> fill
    septets = bytes((value >> (7 * i)) & 0x7F for i in range(count))
    padding = count and bits % 7 == 0 and septets[-1] in (0x00, 0x0D)
    if padding and not (count > 1 and septets[-2] == _ESC):
        septets = septets[:-1]
    return septets


def gsm7_decode_packed(data: bytes, fill: int = 0) -> tuple[str, int]:
    return gsm7_decode(unpack(data, fill))


def ucs2_decode(data: bytes) -> tuple[str, int]:
    text = data.decode("utf-16-be", "replace")
    return text, text.count("\ufffd")


def parse_udh(data: bytes) -> dict | None:
    """UDH -> dict of the fields the proxy needs, or None when malformed."""
    if not data or data[0] + 1 > len(data):
        return None
    end = data[0] + 1
    udh = {
        "length": end,
        "concat": None,
        "ref_bits": 0,
        "ports": None,
        "single_shift": 0,
        "locking_shift": 0,
        "ies": [],
    }
    i = 1
    while i < end:
        if i + 2 > end or i + 2 + data[i + 1] > end:
            return None
        iei, length = data[i], data[i + 1]
        value = data[i + 2 : i + 2 + length]
        udh["ies"].append((iei, value))
        if iei == 0x00 and length == 3 and 1 <= value[2] <= value[1]:
            udh["concat"], udh["ref_bits"] = (value[0], value[1], value[2]), 8
        elif iei == 0x08 and length == 4 and 1 <= value[3] <= value[2]:
            ref = int.from_bytes(value[:2], "big")
            udh["concat"], udh["ref_bits"] = (ref, value[2], value[3]), 16
        elif iei == 0x04 and length == 2:
            udh["ports"] = (value[0], value[1])
        elif iei == 0x05 and length == 4:
            udh["ports"] = (int.from_bytes(value[:2], "big"), int.from_bytes(value[2:], "big"))
        elif iei == 0x24 and length == 1:
            udh["single_shift"] = value[0]
        elif iei == 0x25 and length == 1:
            udh["locking_shift"] = value[0]
        i += 2 + length
    return udh
