"""PDU codec: known vectors, field limits with their statuses, round trips, robustness.

The layouts below are written out from the SMPP 3.4 spec (reference sheet §2)
independently of the codec's own table, so a wrong row there fails here.
"""

import importlib.machinery
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

import smps._native.fanout
import smps._native.pdu
from smps._native.pdu import (
    CommandId,
    Pdu,
    Status,
    command_name,
    decode,
    decode_sm,
    encode,
    header,
    is_response,
    make_generic_nack,
    make_resp,
    with_user_data,
)
from smps.errors import PduError, ProtocolError

C = CommandId

# --------------------------------------------------------------------------
# Spec layouts: (name, kind, max octets incl. NUL). Kinds: i = Int1,
# c = Cstr, t = time (0 or 16 chars), sm = sm_length + short_message.


def address(prefix, name, size):
    """An address field as the spec lays it out: TON, NPI, then the C-string."""
    return [(f"{prefix}_ton", "i", 1), (f"{prefix}_npi", "i", 1), (name, "c", size)]


SM = [
    ("service_type", "c", 6),
    *address("source_addr", "source_addr", 21),
    *address("dest_addr", "destination_addr", 21),
    ("esm_class", "i", 1),
    ("protocol_id", "i", 1),
    ("priority_flag", "i", 1),
    ("schedule_delivery_time", "t", 17),
    ("validity_period", "t", 17),
    ("registered_delivery", "i", 1),
    ("replace_if_present_flag", "i", 1),
    ("data_coding", "i", 1),
    ("sm_default_msg_id", "i", 1),
    ("short_message", "sm", 254),
]
BIND = [
    ("system_id", "c", 16),
    ("password", "c", 9),
    ("system_type", "c", 13),
    ("interface_version", "i", 1),
    ("addr_ton", "i", 1),
    ("addr_npi", "i", 1),
    ("address_range", "c", 41),
]
DATA_SM = [
    ("service_type", "c", 6),
    *address("source_addr", "source_addr", 65),
    *address("dest_addr", "destination_addr", 65),
    ("esm_class", "i", 1),
    ("registered_delivery", "i", 1),
    ("data_coding", "i", 1),
]
MESSAGE_ID = [("message_id", "c", 65)]
LAYOUTS = {
    C.BIND_RECEIVER: BIND,
    C.BIND_TRANSMITTER: BIND,
    C.BIND_TRANSCEIVER: BIND,
    C.BIND_RECEIVER_RESP: [("system_id", "c", 16)],
    C.BIND_TRANSMITTER_RESP: [("system_id", "c", 16)],
    C.BIND_TRANSCEIVER_RESP: [("system_id", "c", 16)],
    C.OUTBIND: [("system_id", "c", 16), ("password", "c", 9)],
    C.SUBMIT_SM: SM,
    C.DELIVER_SM: SM,
    C.DATA_SM: DATA_SM,
    C.SUBMIT_SM_RESP: MESSAGE_ID,
    C.DELIVER_SM_RESP: MESSAGE_ID,
    C.DATA_SM_RESP: MESSAGE_ID,
    C.ALERT_NOTIFICATION: [
        *address("source_addr", "source_addr", 65),
        *address("esme_addr", "esme_addr", 65),
    ],
    C.QUERY_SM: [
        ("message_id", "c", 65),
        *address("source_addr", "source_addr", 21),
    ],
    C.QUERY_SM_RESP: [
        ("message_id", "c", 65),
        ("final_date", "t", 17),
        ("message_state", "i", 1),
        ("error_code", "i", 1),
    ],
    C.CANCEL_SM: [
        ("service_type", "c", 6),
        ("message_id", "c", 65),
        *address("source_addr", "source_addr", 21),
        *address("dest_addr", "destination_addr", 21),
    ],
    C.REPLACE_SM: [
        ("message_id", "c", 65),
        *address("source_addr", "source_addr", 21),
        ("schedule_delivery_time", "t", 17),
        ("validity_period", "t", 17),
        ("registered_delivery", "i", 1),
        ("sm_default_msg_id", "i", 1),
        ("short_message", "sm", 254),
    ],
}
HEADER_ONLY = [
    C.UNBIND,
    C.UNBIND_RESP,
    C.ENQUIRE_LINK,
    C.ENQUIRE_LINK_RESP,
    C.GENERIC_NACK,
    C.CANCEL_SM_RESP,
    C.REPLACE_SM_RESP,
]
RAW = [C.SUBMIT_MULTI, C.SUBMIT_MULTI_RESP, C.BROADCAST_SM, 0x00010201, 0x00000104]


def _raw(command_id: int, body: bytes, sequence: int = 9, status: int = 0) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, status, sequence) + body


# --------------------------------------------------------------------------
# Hypothesis strategies: valid field values per layout, any TLVs.


def _field(kind: str, max_octets: int):
    if kind == "i":
        return st.integers(0, 255)
    if kind == "c":
        return st.binary(max_size=max_octets - 1).map(lambda b: b.replace(b"\0", b"7"))
    if kind == "t":
        return st.one_of(st.just(b""), st.from_regex(rb"\A[0-9]{12}[0-9]{3}[+R-]\Z"))
    return st.binary(max_size=254)


tlvs_strategy = st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=300)), max_size=6)


@st.composite
def valid_pdus(draw, command_ids=None):
    """(command_id, sequence, status, fields, tlvs) for any PDU type."""
    choices = command_ids or [*LAYOUTS, *HEADER_ONLY, *RAW]
    command_id = draw(st.sampled_from(choices))
    sequence = draw(st.integers(0, 0xFFFFFFFF))
    status = draw(st.sampled_from([0, 0, 0x66, 0x400])) if is_response(command_id) else 0
    if command_id in HEADER_ONLY:
        return command_id, sequence, status, {}, []
    if command_id in LAYOUTS:
        fields = {}
        for name, kind, max_octets in LAYOUTS[command_id]:
            value = draw(_field(kind, max_octets))
            fields[name] = value
            if kind == "sm":
                fields["sm_length"] = len(value)
        return command_id, sequence, status, fields, draw(tlvs_strategy)
    return command_id, sequence, status, {"body": draw(st.binary(max_size=200))}, []


# --------------------------------------------------------------------------
# The module is the compiled one, not a pure-Python stand-in.


@pytest.mark.parametrize("module", [smps._native.pdu, smps._native.fanout])
def test_native_modules_are_compiled(module):
    assert module.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


# --------------------------------------------------------------------------
# Tables.


def test_status_codes_match_the_spec():
    assert Status.ROK == 0
    assert Status.RINVCMDLEN == 0x02
    assert Status.RINVSRCADR == 0x0A
    assert Status.RINVSYSID == 0x0F
    assert Status.RMSGQFUL == 0x14
    assert Status.RTHROTTLED == 0x58
    assert Status.RINVDFTMSGID == 0x63
    assert Status.RX_T_APPN == 0x64
    assert Status.RX_P_APPN == 0x65
    assert Status.RX_R_APPN == 0x66
    assert Status.RINVOPTPARSTREAM == 0xC0
    assert Status.RINVPARLEN == 0xC2
    assert Status.RDELIVERYFAILURE == 0xFE
    assert Status.RINVDCS == 0x104
    assert len({int(s) for s in Status}) == len(Status)


def test_command_ids_and_names():
    assert C.GENERIC_NACK == 0x80000000
    assert C.OUTBIND == 0x0B and C.ENQUIRE_LINK == 0x15 and C.SUBMIT_MULTI == 0x21
    assert C.ALERT_NOTIFICATION == 0x102 and C.DATA_SM_RESP == 0x80000103
    for member in C:
        if member.name.endswith("_RESP"):
            assert C[member.name[: -len("_RESP")]] | 0x80000000 == member
    assert command_name(5) == "deliver_sm"
    assert command_name(0x80000000) == "generic_nack"
    assert command_name(0x80000103) == "data_sm_resp"
    assert command_name(0x00010201) == "unknown_0x00010201"
    assert is_response(0x80000000) and is_response(0x80000005)
    assert not is_response(0x00000005)


# --------------------------------------------------------------------------
# Known vectors (reference sheet §1.1, §2.5, §10).

ENQUIRE_LINK = bytes.fromhex("00000010 00000015 00000000 00000001")

# deliver_sm, seq 0x2A: MO "Hi" from 491701234567 (TON 1 / NPI 1) to 1234.
DELIVER_SM = bytes.fromhex(
    "0000003b 00000005 00000000 0000002a"  # header, command_length 59
    "00"  # service_type ""
    "01 01 343931373031323334353637 00"  # source_addr_ton/npi, source_addr
    "00 00 31323334 00"  # dest_addr_ton/npi, destination_addr
    "00 00 00"  # esm_class, protocol_id, priority_flag
    "00 00"  # schedule_delivery_time, validity_period
    "00 00 08 00"  # registered_delivery, replace_if_present, data_coding, default_msg_id
    "04 00480069"  # sm_length, short_message (UCS2 "Hi")
    "0204 0002 1234"  # TLV user_message_reference 0x1234
)


def test_enquire_link_vector():
    assert header(ENQUIRE_LINK) == (16, 0x15, 0, 1)
    assert decode(ENQUIRE_LINK) == Pdu(C.ENQUIRE_LINK, 1)
    assert encode(C.ENQUIRE_LINK, 1) == ENQUIRE_LINK
    assert make_resp(ENQUIRE_LINK) == bytes.fromhex("00000010 80000015 00000000 00000001")


def test_deliver_sm_vector():
    pdu = decode(DELIVER_SM)
    assert (pdu.command_id, pdu.sequence, pdu.name) == (C.DELIVER_SM, 42, "deliver_sm")
    assert pdu.fields["source_addr"] == b"491701234567"
    assert (pdu.fields["source_addr_ton"], pdu.fields["source_addr_npi"]) == (1, 1)
    assert pdu.fields["destination_addr"] == b"1234"
    assert pdu.fields["data_coding"] == 8
    assert pdu.fields["sm_length"] == 4
    assert pdu.fields["short_message"] == "Hi".encode("utf-16-be")
    assert pdu.fields["schedule_delivery_time"] == b""
    assert pdu.tlvs == [(0x0204, b"\x12\x34")]
    assert pdu.tlv(0x0204) == b"\x12\x34" and pdu.tlv(0x0424) is None
    assert encode(pdu.command_id, pdu.sequence, pdu.fields, pdu.tlvs) == DELIVER_SM
    assert pdu.encode() == DELIVER_SM

    view = decode_sm(DELIVER_SM)
    assert (view.command_id, view.sequence) == (C.DELIVER_SM, 42)
    assert view.source_addr == b"491701234567" and view.destination_addr == b"1234"
    assert (view.source_addr_ton, view.source_addr_npi) == (1, 1)
    assert (view.dest_addr_ton, view.dest_addr_npi) == (0, 0)
    assert view.service_type == b""
    assert view.user_data == b"\x00H\x00i"
    assert (view.esm_class, view.data_coding, view.registered_delivery) == (0, 8, 0)
    assert not view.udhi and not view.is_receipt and view.sar is None
    assert view.tlvs == pdu.tlvs
    assert view.pdu is DELIVER_SM


def test_delivery_receipt_view():
    text = b"id:ABC123 sub:001 dlvrd:001 submit date:2503151430 stat:DELIVRD err:000"
    pdu = encode(
        C.DELIVER_SM,
        3,
        {"esm_class": 0x04, "source_addr": b"491701234567", "short_message": text},
        [(0x001E, b"ABC123\0"), (0x0427, b"\x02"), (0x0423, b"\x03\x00\x00")],
    )
    view = decode_sm(pdu)
    assert view.is_receipt and view.message_type == 0x04
    assert view.receipted_message_id == b"ABC123"
    assert view.message_state == 2
    assert view.user_data == text


@pytest.mark.parametrize(
    ("esm_class", "is_receipt", "udhi"),
    [
        (0x00, False, False),
        (0x04, True, False),
        (0x44, True, True),
        (0x20, True, False),
        (0x08, False, False),
        (0x40, False, True),
        (0x84, True, False),
    ],
)
def test_esm_class_bits(esm_class, is_receipt, udhi):
    view = decode_sm(encode(C.DELIVER_SM, 1, {"esm_class": esm_class}))
    assert (view.is_receipt, view.udhi, view.message_type) == (
        is_receipt,
        udhi,
        esm_class & 0x3C,
    )


def test_user_data_from_message_payload():
    payload = b"\x05\x00\x03\x07\x02\x01" + b"x" * 300
    sm = decode_sm(encode(C.SUBMIT_SM, 1, {"esm_class": 0x40}, [(0x0424, payload)]))
    assert sm.user_data == payload and sm.udhi
    data = decode_sm(encode(C.DATA_SM, 2, {"source_addr": b"a" * 64}, [(0x0424, b"hey")]))
    assert data.user_data == b"hey" and data.source_addr == b"a" * 64
    # short_message wins when it is set.
    both = decode_sm(encode(C.DELIVER_SM, 3, {"short_message": b"sm"}, [(0x0424, b"payload")]))
    assert both.user_data == b"sm"
    assert decode_sm(encode(C.DATA_SM, 4)).user_data == b""


def test_sar_needs_all_three_tlvs():
    sar = [(0x020C, b"\x01\x02"), (0x020E, b"\x03"), (0x020F, b"\x02")]
    assert decode_sm(encode(C.DELIVER_SM, 1, None, sar)).sar == (0x0102, 3, 2)
    assert decode_sm(encode(C.DELIVER_SM, 1, None, sar[:2])).sar is None
    bad_size = [(0x020C, b"\x01"), *sar[1:]]
    assert decode_sm(encode(C.DELIVER_SM, 1, None, bad_size)).sar is None


def test_decode_sm_refuses_other_commands():
    with pytest.raises(PduError) as caught:
        decode_sm(ENQUIRE_LINK)
    assert caught.value.status == Status.RINVCMDID
    assert caught.value.sequence == 1


def test_bind_and_resp_with_sc_interface_version():
    fields = {
        "system_id": b"smps",
        "password": b"secret",
        "system_type": b"VMS",
        "interface_version": 0x34,
        "addr_ton": 1,
        "addr_npi": 1,
        "address_range": b"^1234",
    }
    bind = encode(C.BIND_TRANSCEIVER, 1, fields)
    assert decode(bind).fields == fields
    resp = encode(C.BIND_TRANSCEIVER_RESP, 1, {"system_id": b"SMSC"}, [(0x0210, b"\x34")])
    decoded = decode(resp)
    assert decoded.fields == {"system_id": b"SMSC"}
    assert decoded.tlv(0x0210) == b"\x34"


@pytest.mark.parametrize("command_id", [C.BIND_TRANSMITTER_RESP, C.SUBMIT_SM_RESP])
def test_error_responses_with_and_without_body(command_id):
    sixteen = _raw(command_id, b"", status=Status.RBINDFAIL)
    seventeen = _raw(command_id, b"\0", status=Status.RBINDFAIL)
    assert decode(sixteen).fields == {}
    assert decode(seventeen).fields in ({"system_id": b""}, {"message_id": b""})
    for pdu in (sixteen, seventeen):
        assert decode(pdu).encode() == pdu


def test_raw_commands_keep_their_body():
    body = b"\x00\x01\x01\x02" + b"whatever"
    for command_id in RAW:
        pdu = decode(_raw(command_id, body))
        assert pdu.fields == {"body": body} and pdu.tlvs == []
        assert pdu.encode() == _raw(command_id, body)


def test_unknown_tlvs_preserved_in_order():
    tlvs = [(0x1400, b"vendor"), (0x0000, b""), (0xFFFF, b"\xff" * 3), (0x1400, b"again")]
    pdu = encode(C.DELIVER_SM, 1, {"short_message": b"x"}, tlvs)
    assert decode(pdu).tlvs == tlvs
    assert decode_sm(pdu).tlvs == tlvs


# --------------------------------------------------------------------------
# Field limits and the status each breach answers with (reference §2, §4.3, §5.1).


def _sm_body(**raw_fields: bytes) -> bytes:
    """A submit_sm/deliver_sm body from raw per-field octets (defaults: NULL/0)."""
    # Every Cstr/time NULL, every Int1 0; "short_message" is sm_length + text.
    defaults = {name: b"\0" for name, _, _ in SM}
    defaults.update(raw_fields)
    return b"".join(defaults[name] for name, _, _ in SM) + raw_fields.get("tlvs", b"")


LIMIT_VECTORS = [
    # (id, command_id, body, status)
    ("source_addr 20 chars is the max", C.DELIVER_SM, _sm_body(source_addr=b"1" * 20 + b"\0"), 0),
    ("source_addr 21 chars", C.DELIVER_SM, _sm_body(source_addr=b"1" * 21 + b"\0"), "RINVSRCADR"),
    ("source_addr no NUL", C.SUBMIT_SM, b"\0\1\1" + b"1" * 10, "RINVSRCADR"),
    (
        "destination_addr 21",
        C.DELIVER_SM,
        _sm_body(destination_addr=b"2" * 21 + b"\0"),
        "RINVDSTADR",
    ),
    ("service_type 6", C.SUBMIT_SM, _sm_body(service_type=b"CMTCMT\0"), "RINVSERTYP"),
    ("schedule 5 chars", C.SUBMIT_SM, _sm_body(schedule_delivery_time=b"25031\0"), "RINVSCHED"),
    (
        "schedule 17 chars",
        C.SUBMIT_SM,
        _sm_body(schedule_delivery_time=b"2" * 17 + b"\0"),
        "RINVSCHED",
    ),
    ("validity 15 chars", C.SUBMIT_SM, _sm_body(validity_period=b"0" * 15 + b"\0"), "RINVEXPIRY"),
    ("validity 16 chars ok", C.SUBMIT_SM, _sm_body(validity_period=b"000007000000000R\0"), 0),
    ("sm_length past end", C.DELIVER_SM, _sm_body(short_message=b"\x05abc"), "RINVMSGLEN"),
    ("sm_length 255", C.DELIVER_SM, _sm_body(short_message=b"\xff" + b"a" * 255), "RINVMSGLEN"),
    ("sm_length missing", C.DELIVER_SM, _sm_body()[:-1], "RINVMSGLEN"),
    ("Int1 missing", C.DELIVER_SM, _sm_body()[:-3], "RINVPARLEN"),
    ("TLV 1 stray octet", C.DELIVER_SM, _sm_body(tlvs=b"\x02"), "RINVOPTPARSTREAM"),
    ("TLV 3 stray octets", C.DELIVER_SM, _sm_body(tlvs=b"\x02\x04\x00"), "RINVOPTPARSTREAM"),
    (
        "TLV length past end",
        C.DELIVER_SM,
        _sm_body(tlvs=b"\x02\x04\x00\x03\x01\x02"),
        "RINVOPTPARSTREAM",
    ),
    (
        "TLV then stray",
        C.DELIVER_SM,
        _sm_body(tlvs=b"\x02\x04\x00\x01\x01\x00"),
        "RINVOPTPARSTREAM",
    ),
    ("system_id 16", C.BIND_TRANSMITTER, b"s" * 16 + b"\0" + b"\0\0\x34\0\0\0", "RINVSYSID"),
    ("password 9", C.BIND_RECEIVER, b"sys\0" + b"p" * 9 + b"\0\0\x34\0\0\0", "RINVPASWD"),
    (
        "system_type 13",
        C.BIND_TRANSCEIVER,
        b"sys\0pw\0" + b"t" * 13 + b"\0\x34\0\0\0",
        "RINVSYSTYP",
    ),
    ("bind complete", C.BIND_TRANSCEIVER, b"sys\0pw\0t\0\x34\0\0\0", 0),
    ("data_sm addr 64 ok", C.DATA_SM, b"\0\0\0" + b"1" * 64 + b"\0\0\0\0\0\0\0", 0),
    ("data_sm addr 65", C.DATA_SM, b"\0\0\0" + b"1" * 65 + b"\0\0\0\0\0\0\0", "RINVSRCADR"),
    ("enquire_link with body", C.ENQUIRE_LINK, b"\0", "RINVCMDLEN"),
    ("unbind_resp with body", C.UNBIND_RESP, b"\0\0\0\0", "RINVCMDLEN"),
    ("generic_nack with body", C.GENERIC_NACK, b"x", "RINVCMDLEN"),
    ("message_id 65", C.SUBMIT_SM_RESP, b"m" * 65 + b"\0", "RINVMSGID"),
]


@pytest.mark.parametrize(
    ("command_id", "body", "status"),
    [v[1:] for v in LIMIT_VECTORS],
    ids=[v[0] for v in LIMIT_VECTORS],
)
def test_field_limit_vectors(command_id, body, status):
    pdu = _raw(command_id, body, sequence=31337)
    decoders = (
        [decode, decode_sm] if command_id in (C.DELIVER_SM, C.SUBMIT_SM, C.DATA_SM) else [decode]
    )
    for decoder in decoders:
        if status == 0:
            decoder(pdu)
            continue
        with pytest.raises(PduError) as caught:
            decoder(pdu)
        err = caught.value
        assert err.status == Status[status], str(err)
        assert (err.sequence, err.command_id) == (31337, command_id)


def test_length_mismatch_and_short_input():
    with pytest.raises(PduError) as caught:
        decode(ENQUIRE_LINK + b"\0")
    assert caught.value.status == Status.RINVCMDLEN and caught.value.sequence == 1
    with pytest.raises(PduError) as caught:
        decode_sm(ENQUIRE_LINK[:15])
    assert caught.value.status == Status.RINVCMDLEN and caught.value.sequence == 0
    with pytest.raises(PduError):
        header(b"\0" * 15)


# --------------------------------------------------------------------------
# Round trips.


@given(valid_pdus())
def test_encode_decode_round_trip(case):
    command_id, sequence, status, fields, tlvs = case
    wire = encode(command_id, sequence, fields, tlvs, status)
    assert header(wire) == (len(wire), command_id, status, sequence)
    pdu = decode(wire)
    assert (pdu.command_id, pdu.sequence, pdu.command_status) == (command_id, sequence, status)
    assert pdu.fields == fields
    assert pdu.tlvs == tlvs
    assert pdu.encode() == wire


@given(valid_pdus([C.DELIVER_SM, C.SUBMIT_SM, C.DATA_SM]))
def test_sm_view_agrees_with_decode(case):
    command_id, sequence, _, fields, tlvs = case
    wire = encode(command_id, sequence, fields, tlvs)
    view, pdu = decode_sm(wire), decode(wire)
    for name in (
        "service_type",
        "source_addr_ton",
        "source_addr_npi",
        "source_addr",
        "dest_addr_ton",
        "dest_addr_npi",
        "destination_addr",
        "esm_class",
        "registered_delivery",
        "data_coding",
    ):
        assert getattr(view, name) == pdu.fields[name], name
    expected = pdu.fields.get("short_message", b"")
    if not expected:
        expected = pdu.tlv(0x0424) or b""
    assert view.user_data == expected
    assert view.tlvs == pdu.tlvs


def test_missing_fields_default_to_null():
    pdu = decode(encode(C.SUBMIT_SM, 1))
    assert pdu.fields["source_addr"] == b"" and pdu.fields["esm_class"] == 0
    assert pdu.fields["short_message"] == b"" and pdu.fields["sm_length"] == 0


@pytest.mark.parametrize(
    ("command_id", "fields", "tlvs"),
    [
        (C.SUBMIT_SM, {"source_addr": b"1" * 21}, []),
        (C.SUBMIT_SM, {"source_addr": b"12\x0034"}, []),
        (C.SUBMIT_SM, {"short_message": b"x" * 255}, []),
        (C.SUBMIT_SM, {"short_message": b"abc", "sm_length": 2}, []),
        (C.SUBMIT_SM, {"esm_class": 256}, []),
        (C.SUBMIT_SM, {"validity_period": b"1234"}, []),
        (C.SUBMIT_SM, {"no_such_field": 1}, []),
        (C.BIND_TRANSMITTER, {"password": b"123456789"}, []),
        (C.ENQUIRE_LINK, {"body": b"x"}, []),
        (C.ENQUIRE_LINK, None, [(1, b"")]),
        (C.DELIVER_SM, None, [(0x10000, b"")]),
        (C.DELIVER_SM, None, [(1, b"x" * 65536)]),
        (C.SUBMIT_MULTI, {"source_addr": b""}, []),
    ],
)
def test_encode_refuses_what_the_spec_forbids(command_id, fields, tlvs):
    with pytest.raises(ValueError):
        encode(command_id, 1, fields, tlvs)


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_encode_refuses_out_of_range_header_values(bad):
    with pytest.raises(ValueError):
        encode(bad, 1)
    with pytest.raises(ValueError):
        encode(C.ENQUIRE_LINK, bad)
    with pytest.raises(ValueError):
        encode(C.ENQUIRE_LINK, 1, status=bad)


# --------------------------------------------------------------------------
# Responses.

RESP_CASES = [
    # request id, message_id argument, expected response body
    (C.DELIVER_SM, b"", b"\0"),
    (C.SUBMIT_SM, b"msg-0001", b"msg-0001\0"),
    (C.DATA_SM, b"x" * 64, b"x" * 64 + b"\0"),
    (C.BIND_RECEIVER, b"SMPS", b"SMPS\0"),
    (C.BIND_TRANSMITTER, b"", b"\0"),
    (C.BIND_TRANSCEIVER, b"s" * 15, b"s" * 15 + b"\0"),
    (C.UNBIND, b"", b""),
    (C.ENQUIRE_LINK, b"", b""),
    (C.CANCEL_SM, b"", b""),
    (C.REPLACE_SM, b"", b""),
]


@pytest.mark.parametrize(("command_id", "message_id", "body"), RESP_CASES)
@pytest.mark.parametrize("status", [0, Status.RX_R_APPN, Status.RTHROTTLED])
def test_make_resp_for_each_request(command_id, message_id, body, status):
    request = _raw(command_id, b"anything", sequence=0x7FFFFFFF)
    resp = make_resp(request, status, message_id)
    assert resp == _raw(command_id | 0x80000000, body, sequence=0x7FFFFFFF, status=status)
    decoded = decode(resp)
    assert decoded.command_status == status and decoded.sequence == 0x7FFFFFFF


def test_make_resp_defaults_answer_a_deliver_sm_with_rok():
    resp = make_resp(DELIVER_SM)
    assert resp == bytes.fromhex("00000011 80000005 00000000 0000002a 00")


@pytest.mark.parametrize("command_id", [C.QUERY_SM, C.SUBMIT_MULTI, C.BROADCAST_SM])
def test_make_resp_error_only_commands(command_id):
    request = _raw(command_id, b"body", sequence=5)
    assert make_resp(request, Status.RSYSERR) == _raw(
        command_id | 0x80000000, b"", sequence=5, status=Status.RSYSERR
    )
    with pytest.raises(ValueError):
        make_resp(request, 0)


@pytest.mark.parametrize(
    "command_id",
    [
        C.OUTBIND,
        C.ALERT_NOTIFICATION,
        C.GENERIC_NACK,
        C.DELIVER_SM_RESP,
        C.ENQUIRE_LINK_RESP,
        0x00010201,
    ],
)
def test_make_resp_refuses_commands_without_response(command_id):
    with pytest.raises(ValueError):
        make_resp(_raw(command_id, b""))


@pytest.mark.parametrize(
    ("command_id", "message_id"),
    [(C.SUBMIT_SM, b"x" * 65), (C.DELIVER_SM, b"a\0b"), (C.BIND_TRANSMITTER, b"s" * 16)],
)
def test_make_resp_refuses_bad_ids(command_id, message_id):
    with pytest.raises(ValueError):
        make_resp(_raw(command_id, b""), 0, message_id)


def test_make_resp_refuses_short_input():
    with pytest.raises(ValueError):
        make_resp(b"\0" * 15)


def test_generic_nack():
    nack = make_generic_nack(0, Status.RINVCMDLEN)
    assert nack == bytes.fromhex("00000010 80000000 00000002 00000000")
    assert decode(make_generic_nack(77, Status.RINVCMDID)) == Pdu(
        C.GENERIC_NACK, 77, command_status=Status.RINVCMDID
    )


# --------------------------------------------------------------------------
# Robustness: garbage never raises anything but the codec's own errors.


def _only_protocol_errors(data: bytes) -> None:
    for decoder in (decode, decode_sm):
        try:
            decoder(data)
        except ProtocolError as err:
            assert isinstance(err.status, int) and err.status != 0


@given(st.binary(max_size=400))
def test_random_bytes(data):
    _only_protocol_errors(data)


@given(
    st.sampled_from(
        [
            C.DELIVER_SM,
            C.SUBMIT_SM,
            C.DATA_SM,
            C.BIND_TRANSCEIVER,
            C.BIND_TRANSCEIVER_RESP,
            C.ALERT_NOTIFICATION,
            C.QUERY_SM_RESP,
            C.REPLACE_SM,
            C.ENQUIRE_LINK,
        ]
    ),
    st.binary(max_size=400),
)
def test_random_bodies_behind_a_valid_header(command_id, body):
    _only_protocol_errors(_raw(command_id, body))


@given(valid_pdus())
def test_every_truncation_of_a_valid_pdu(case):
    command_id, sequence, status, fields, tlvs = case
    wire = encode(command_id, sequence, fields, tlvs, status)
    for cut in range(len(wire)):
        prefix = wire[:cut]
        _only_protocol_errors(prefix)  # command_length no longer matches
        if cut >= 16:  # the same prefix with command_length patched to fit
            _only_protocol_errors(struct.pack(">I", cut) + prefix[4:])


@pytest.mark.parametrize(
    ("command_id", "fields", "tlvs"),
    [
        (CommandId.DELIVER_SM,
         {"service_type": b"CMT", "esm_class": 0x40, "data_coding": 8,
          "short_message": b"\x05\x00\x03\x01\x02\x01hello"},
         [(0x1401, b"x"), (0x020C, b"\x00\x01")]),
        (CommandId.DELIVER_SM, {"esm_class": 0x03}, [(0x0424, b"payload"), (0x0204, b"\x00\x01")]),
        (CommandId.DATA_SM, {"esm_class": 0x40},
         [(0x0424, b"\x05\x00\x03\x01\x02\x01ab"), (0x020F, b"\x01")]),
    ],
)  # fmt: skip
def test_with_user_data_makes_the_whole_message_pdu(command_id, fields, tlvs):
    """The first part's PDU with the whole message in message_payload: every other
    field and TLV as it was, short_message empty, the SAR TLVs gone."""
    part = encode(command_id, 5, {"source_addr": b"123", "destination_addr": b"456", **fields},
                  tlvs)  # fmt: skip
    whole = with_user_data(decode_sm(part), b"WHOLE TEXT", 0x00)
    before, after = decode(part), decode(whole)
    expected = {**before.fields, "esm_class": 0x00}
    if "short_message" in expected:
        expected.update(short_message=b"", sm_length=0)
    assert after.fields == expected
    kept = [t for t in before.tlvs if t[0] not in (0x0424, 0x020C, 0x020E, 0x020F)]
    assert after.tlvs == [*kept, (0x0424, b"WHOLE TEXT")]
    assert (after.command_id, after.sequence) == (command_id, 5)
    assert decode_sm(whole).user_data == b"WHOLE TEXT"
