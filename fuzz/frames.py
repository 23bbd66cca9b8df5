"""A plain reference framer the targets compare the native Framer against (SMPP 3.4 §3.2)."""

import struct


def reference_frames(stream: bytes, max_length: int) -> tuple[list[bytes], bytes | None]:
    """(whole PDUs, the header (up to 16 octets) whose command_length is bad, or None),
    cut plainly. A bad length is refused from its 4 octets: nothing waits for the rest."""
    pdus, at = [], 0
    while len(stream) - at >= 4:
        length = struct.unpack_from(">I", stream, at)[0]
        if not 16 <= length <= max_length:
            return pdus, stream[at : at + 16]
        if len(stream) - at < length:
            break
        pdus.append(stream[at : at + length])
        at += length
    return pdus, None
