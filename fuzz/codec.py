"""atheris target: the PDU codec (smps/_native/pdu.pyx) and the fan-out copier.

Run: ``python -m fuzz.codec [libFuzzer options] [corpus dir]`` (after ``make fuzz-build``).
The first input byte picks a mode; the rest is the input of that mode:

0. a byte stream cut into chunks fed to a Framer: the PDUs come out exactly
   as a plain reference framer cuts them, and a bad command_length is a
   FramingError with status ESME_RINVCMDLEN and that header's sequence, raised
   again on every later call; every PDU then goes through mode 1;
1. one PDU (command_length patched to the size, or left as it is):
   decode/decode_sm raise nothing but PduError with a non-zero status and
   agree with each other; what decodes re-encodes to the same bytes (TLVs
   included); make_resp answers every request that has a response;
2. fields and TLVs built from the input for a known command id: what
   encode() accepts, decode() returns unchanged.
"""

import struct

from fuzz import engine
from fuzz.frames import reference_frames

with engine.instrumented():
    import atheris

    from smps._native.fanout import copies, with_sequence
    from smps._native.pdu import (
        CommandId,
        Framer,
        Status,
        decode,
        decode_sm,
        encode,
        is_response,
        make_generic_nack,
        make_resp,
    )
    from smps.errors import FramingError, PduError

C = CommandId
SHORT_MESSAGES = {C.SUBMIT_SM, C.DELIVER_SM, C.DATA_SM}
NO_RESPONSE_PDU = {C.OUTBIND, C.ALERT_NOTIFICATION}
ERROR_ONLY_RESPONSE = {C.QUERY_SM, C.SUBMIT_MULTI, C.BROADCAST_SM, C.QUERY_BROADCAST_SM}
KNOWN_IDS = sorted(int(c) for c in C)
MAX_LENGTHS = (16, 17, 64, 300, 4096, 65536)
TAG_MESSAGE_PAYLOAD = 0x0424


def check_framer(fdp) -> None:
    max_length = fdp.PickValueInList(list(MAX_LENGTHS))
    sizes = [fdp.ConsumeIntInRange(0, 80) for _ in range(fdp.ConsumeIntInRange(1, 6))]
    stream = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    expected, bad_header = reference_frames(stream, max_length)
    framer = Framer(max_length)
    got: list[bytes] = []
    error = None
    at = 0
    step = 0
    while at < len(stream) and error is None:
        size = sizes[step % len(sizes)]
        step += 1
        if size == 0:  # an empty read, then one octet
            framer.feed(b"")
            size = 1
        framer.feed(stream[at : at + size])
        at += size
        try:
            got.extend(framer)
        except FramingError as exc:
            error = exc
    assert got == expected[: len(got)], "the framer cut the stream differently"
    if bad_header is None:
        assert error is None and got == expected
        assert framer.buffered == len(stream) - sum(map(len, got))
    else:
        assert error is not None, "a bad command_length was not refused"
        assert got == expected
        # The error names the header's sequence and command_id as far as they had
        # arrived when the 4 length octets were refused, else 0.
        arrived = min(at, len(stream)) - sum(map(len, got))
        header = bad_header.ljust(16, b"\0")
        command_id, _status, sequence = struct.unpack(">III", header[4:16])
        assert (error.status, error.sequence, error.command_id) == (
            Status.RINVCMDLEN,
            sequence if arrived >= 16 else 0,
            command_id if arrived >= 8 else 0,
        )
        sequence = error.sequence
        assert framer.failed and framer.buffered == 0
        framer.feed(b"\0\0\0\x10" * 8)
        try:
            framer.next_pdu()
        except FramingError as again:
            assert again.sequence == sequence
        else:
            raise AssertionError("a failed framer returned a PDU")
    for pdu in got:
        check_pdu(pdu)


def check_pdu(data: bytes) -> None:
    seq = struct.unpack_from(">I", data, 12)[0] if len(data) >= 16 else 0
    command_id = struct.unpack_from(">I", data, 4)[0] if len(data) >= 16 else None
    try:
        pdu = decode(data)
    except PduError as exc:
        assert exc.status != 0 and exc.sequence == seq
        pdu, decode_status = None, exc.status
    else:
        decode_status = 0
        bodyless_ok_resp = (
            is_response(pdu.command_id) and pdu.command_status == 0 and not pdu.fields
        )
        if not bodyless_ok_resp:  # the one form encode() canonicalises (adds a NULL id)
            assert pdu.encode() == data, "decode/encode round trip changed the PDU"
        assert with_sequence(data, 7) == data[:12] + b"\0\0\0\x07" + data[16:]
        assert [h + bytes(b) for h, b in copies(data, [1, 9])] == [
            with_sequence(data, 1),
            with_sequence(data, 9),
        ]
    try:
        view = decode_sm(data)
    except PduError as exc:
        assert exc.status != 0 and exc.sequence == seq
        if command_id in SHORT_MESSAGES:
            assert exc.status == decode_status, "decode_sm and decode disagree on a status"
    else:
        assert pdu is not None, "decode_sm accepted what decode refused"
        check_view(view, pdu)
    if command_id is not None:
        check_responses(data, command_id, seq)


def check_view(view, pdu) -> None:
    fields = pdu.fields
    assert view.command_id == pdu.command_id and view.sequence == pdu.sequence
    assert view.source_addr == fields["source_addr"]
    assert view.destination_addr == fields["destination_addr"]
    assert view.service_type == fields["service_type"]
    assert (view.esm_class, view.data_coding) == (fields["esm_class"], fields["data_coding"])
    assert view.registered_delivery == fields["registered_delivery"]
    assert view.tlvs == pdu.tlvs
    short_message = fields.get("short_message", b"")
    payload = pdu.tlv(TAG_MESSAGE_PAYLOAD)
    expected = short_message if short_message or payload is None else payload
    assert view.user_data == expected
    view.sar, view.receipted_message_id, view.message_state, view.is_receipt  # noqa: B018
    repr(view)


def check_responses(data: bytes, command_id: int, seq: int) -> None:
    status = data[11]  # the low octet of command_status: often 0
    try:
        resp = make_resp(data, status, data[16:40].replace(b"\0", b"")[:15])
    except ValueError:
        has_no_response = (
            is_response(command_id) or command_id not in KNOWN_IDS or command_id in NO_RESPONSE_PDU
        )
        assert has_no_response or (command_id in ERROR_ONLY_RESPONSE and status == 0)
    else:
        assert struct.unpack(">III", resp[4:16]) == (command_id | 0x80000000, status, seq)
        decoded = decode(resp)
        assert decoded.command_status == status
    nack = decode(make_generic_nack(seq, status))
    assert (nack.command_id, nack.command_status, nack.sequence) == (C.GENERIC_NACK, status, seq)


_LAYOUTS: dict[int, dict] = {}


def layout(command_id: int) -> dict:
    """Field names and default values of a command, as the codec knows them."""
    if command_id not in _LAYOUTS:
        _LAYOUTS[command_id] = decode(encode(command_id, 1)).fields
    return _LAYOUTS[command_id]


def check_encode(fdp) -> None:
    command_id = fdp.PickValueInList(KNOWN_IDS)
    status = fdp.ConsumeIntInRange(0, 3) if is_response(command_id) else 0
    fields = {}
    for name, default in layout(command_id).items():
        if name == "sm_length":
            continue
        if isinstance(default, int):
            fields[name] = fdp.ConsumeIntInRange(0, 255)
        else:
            fields[name] = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 70))
    tlvs = []
    if command_id != C.GENERIC_NACK and layout(command_id) and "body" not in fields:
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            tlvs.append(
                (fdp.ConsumeIntInRange(0, 0xFFFF), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20)))
            )
    seq = fdp.ConsumeIntInRange(0, 0xFFFFFFFF)
    try:
        data = encode(command_id, seq, fields, tlvs, status)
    except ValueError:
        return
    pdu = decode(data)
    expected = dict(fields)
    if "short_message" in expected:
        expected["sm_length"] = len(expected["short_message"])
    if pdu.fields or expected:
        assert pdu.fields == expected and pdu.tlvs == tlvs
    check_pdu(data)


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 2)
    if mode == 0:
        check_framer(fdp)
    elif mode == 1:
        patch_length = fdp.ConsumeBool()
        pdu = bytearray(fdp.ConsumeBytes(atheris.ALL_REMAINING))
        if patch_length and len(pdu) >= 4:
            pdu[0:4] = struct.pack(">I", len(pdu))
        check_pdu(bytes(pdu))
    else:
        check_encode(fdp)


if __name__ == "__main__":
    engine.run(test_one_input)
