"""A PDU as a trace event shows it: command, status, sequence, fields, TLVs and
hex, with what must not be seen hidden.

Content (decoded text, encoding, UDH) appears in events only when
``trace.decode_content`` is on and no matching rule turns it off; when it is
off, short_message and message_payload are replaced by ``<N octets hidden>``
in the fields and the hex. Passwords never appear.
"""

from typing import Any

from smps._native.pdu import command_name, decode
from smps.errors import PduError
from smps.proxy.records import TlvInfo, UdhInfo

TAG_MESSAGE_PAYLOAD = 0x0424
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))  # what str.isprintable() accepts of ASCII

TLV_NAMES = {
    0x0005: "dest_addr_subunit", 0x000D: "source_addr_subunit", 0x0019: "payload_type",
    0x001D: "additional_status_info_text", 0x001E: "receipted_message_id",
    0x0201: "privacy_indicator", 0x0204: "user_message_reference", 0x020A: "source_port",
    0x020B: "destination_port", 0x020C: "sar_msg_ref_num", 0x020D: "language_indicator",
    0x020E: "sar_total_segments", 0x020F: "sar_segment_seqnum", 0x0381: "callback_num",
    0x0423: "network_error_code", 0x0424: "message_payload", 0x0427: "message_state",
    0x0501: "ussd_service_op",
}  # fmt: skip


def render_pdu(pdu: bytes, content: bool) -> dict[str, Any]:
    """command, status, sequence, fields, tlvs and pdu_hex of one PDU, with
    short_message / message_payload hidden unless `content`, passwords always."""
    try:
        decoded = decode(pdu)
    except PduError as exc:
        return {
            "command": command_name(int.from_bytes(pdu[4:8])) if len(pdu) >= 8 else "",
            "status": int.from_bytes(pdu[8:12]) if len(pdu) >= 12 else None,
            "sequence": int.from_bytes(pdu[12:16]) if len(pdu) >= 16 else None,
            "pdu_hex": pdu.hex() if content else _hidden_hex(pdu, [(16, len(pdu))]),
            "note": f"undecodable: {exc}",
        }
    fields: dict[str, int | str] = {}
    for name, value in decoded.fields.items():
        if isinstance(value, int):
            fields[name] = value
        elif name == "password":
            fields[name] = "<hidden>"
        elif name == "short_message" and not content:
            fields[name] = _hidden(len(value))
        elif name == "short_message":
            fields[name] = value.hex()
        else:
            fields[name] = _show_bytes(value)
    tlvs = [
        TlvInfo(
            tag,
            TLV_NAMES.get(tag, f"0x{tag:04X}"),
            _hidden(len(value)) if tag == TAG_MESSAGE_PAYLOAD and not content else value.hex(),
        )
        for tag, value in decoded.tlvs
    ]
    secret = not content or "password" in decoded.fields
    return {
        "command": decoded.name,
        "status": decoded.command_status,
        "sequence": decoded.sequence,
        "fields": fields or None,
        "tlvs": tlvs or None,
        "pdu_hex": _hidden_hex(pdu, _secret_spans(pdu, decoded, content)) if secret
        else pdu.hex(),
    }  # fmt: skip


def _secret_spans(pdu: bytes, decoded: Any, content: bool) -> list[tuple[int, int]]:
    """Octet ranges of the PDU that must not be shown."""
    if "password" in decoded.fields:
        return [(16, len(pdu))]  # binds never carry anything worth the risk
    if content:
        return []
    tlv_start = len(pdu) - sum(4 + len(value) for _, value in decoded.tlvs)
    spans = []
    short_message = decoded.fields.get("short_message")
    if short_message:
        spans.append((tlv_start - len(short_message), tlv_start))
    at = tlv_start
    for tag, value in decoded.tlvs:
        if tag == TAG_MESSAGE_PAYLOAD and value:
            spans.append((at + 4, at + 4 + len(value)))
        at += 4 + len(value)
    for start, end in spans:
        if not (16 <= start <= end <= len(pdu)):
            return [(16, len(pdu))]  # layout not understood: hide the whole body
    return spans


def _hidden_hex(pdu: bytes, spans: list[tuple[int, int]]) -> str:
    out, at = [], 0
    for start, end in spans:
        out.append(pdu[at:start].hex())
        out.append(_hidden(end - start))
        at = end
    out.append(pdu[at:].hex())
    return "".join(out)


def _hidden(octets: int) -> str:
    return f"<{octets} octets hidden>"


def _show_bytes(value: bytes) -> str:
    """Printable ASCII as text, anything else as 0x-hex."""
    if not value.translate(None, _PRINTABLE_ASCII):
        return value.decode("ascii")
    return "0x" + value.hex()


def udh_info(udh: Any) -> UdhInfo | None:
    if udh is None:
        return None
    return UdhInfo(
        length=udh.length,
        ies=[f"{iei:02X}:{data.hex()}" for iei, data in udh.ies],
        concat=list(udh.concat) if udh.concat is not None else None,
        ports=list(udh.ports) if udh.ports is not None else None,
        single_shift=udh.single_shift,
        locking_shift=udh.locking_shift,
    )
