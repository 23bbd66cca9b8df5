"""Interop with an independent implementation: smpplib (python-smpplib).

smpplib builds a PDU and our codec reads every field; our codec builds a PDU
and smpplib's parser reads the same values back.
"""

import pytest
import smpplib.smpp

from smps._native.pdu import CommandId, decode, decode_sm, encode

C = CommandId


class _Client:
    """The little smpplib wants of a client when it parses or builds PDUs."""

    sequence = 0

    def next_sequence(self):
        return 1


def _smpplib_bytes(command: str, sequence: int, **params) -> bytes:
    pdu = smpplib.smpp.make_pdu(command, client=_Client(), **params)
    pdu.sequence = sequence
    return pdu.generate()


def _smpplib_parse(data: bytes):
    return smpplib.smpp.parse_pdu(data, client=_Client(), allow_unknown_opt_params=True)


SM_PARAMS = {
    "service_type": "CMT",
    "source_addr_ton": 1,
    "source_addr_npi": 1,
    "source_addr": "491701234567",
    "dest_addr_ton": 2,
    "dest_addr_npi": 8,
    "destination_addr": "1234",
    "esm_class": 0x40,
    "protocol_id": 0x41,
    "priority_flag": 1,
    "schedule_delivery_time": "250315143000004+",
    "validity_period": "000007000000000R",
    "registered_delivery": 1,
    "replace_if_present_flag": 1,
    "data_coding": 8,
    "sm_default_msg_id": 0,
    "short_message": b"\x05\x00\x03\x07\x02\x01\x00H\x00i",
}


def _as_bytes(value):
    return value.encode() if isinstance(value, str) else value


@pytest.mark.parametrize("command", ["submit_sm", "deliver_sm"])
def test_smpplib_short_message_decodes(command):
    wire = _smpplib_bytes(
        command,
        0x1234,
        **SM_PARAMS,
        sar_msg_ref_num=0x0102,
        sar_total_segments=2,
        sar_segment_seqnum=1,
        user_message_reference=77,
    )
    pdu = decode(wire)
    assert (pdu.command_id, pdu.sequence, pdu.command_status) == (C[command.upper()], 0x1234, 0)
    for name, value in SM_PARAMS.items():
        assert pdu.fields[name] == _as_bytes(value), name
    assert pdu.fields["sm_length"] == len(SM_PARAMS["short_message"])
    assert dict(pdu.tlvs) == {
        0x020C: b"\x01\x02",
        0x020E: b"\x02",
        0x020F: b"\x01",
        0x0204: b"\x00\x4d",
    }
    view = decode_sm(wire)
    assert view.source_addr == b"491701234567" and view.destination_addr == b"1234"
    assert view.udhi and view.sar == (0x0102, 2, 1)
    assert view.user_data == SM_PARAMS["short_message"]


def test_smpplib_delivery_receipt_decodes():
    wire = _smpplib_bytes(
        "deliver_sm",
        9,
        esm_class=0x04,
        source_addr="491701234567",
        destination_addr="1234",
        short_message=b"id:ABC stat:DELIVRD",
        receipted_message_id="ABC",
        message_state=2,
    )
    view = decode_sm(wire)
    assert view.is_receipt
    assert view.receipted_message_id == b"ABC"
    assert view.message_state == 2


def test_smpplib_data_sm_decodes():
    wire = _smpplib_bytes(
        "data_sm",
        11,
        service_type="WAP",
        source_addr_ton=1,
        source_addr="4911",
        destination_addr="4922",
        esm_class=0,
        registered_delivery=1,
        data_coding=4,
        message_payload=b"\x01\x02payload",
    )
    pdu = decode(wire)
    assert pdu.fields["service_type"] == b"WAP"
    assert pdu.fields["source_addr"] == b"4911" and pdu.fields["destination_addr"] == b"4922"
    assert pdu.fields["registered_delivery"] == 1 and pdu.fields["data_coding"] == 4
    assert pdu.tlv(0x0424) == b"\x01\x02payload"
    assert decode_sm(wire).user_data == b"\x01\x02payload"


@pytest.mark.parametrize("command", ["bind_transmitter", "bind_receiver", "bind_transceiver"])
def test_smpplib_bind_decodes(command):
    params = {
        "system_id": "smps",
        "password": "secret",
        "system_type": "VMS",
        "interface_version": 0x34,
        "addr_ton": 1,
        "addr_npi": 1,
        "address_range": "^49",
    }
    pdu = decode(_smpplib_bytes(command, 1, **params))
    assert pdu.command_id == C[command.upper()]
    assert pdu.fields == {k: _as_bytes(v) for k, v in params.items()}


@pytest.mark.parametrize(
    ("command", "params", "fields", "tlvs"),
    [
        ("bind_transceiver_resp", {"system_id": "SMSC", "sc_interface_version": 0x34},
         {"system_id": b"SMSC"}, [(0x0210, b"\x34")]),
        ("submit_sm_resp", {"message_id": "abc-123"}, {"message_id": b"abc-123"}, []),
        ("deliver_sm_resp", {}, {"message_id": b""}, []),
        ("data_sm_resp", {"message_id": "m1"}, {"message_id": b"m1"}, []),
        ("enquire_link", {}, {}, []),
        ("enquire_link_resp", {}, {}, []),
        ("unbind", {}, {}, []),
        ("unbind_resp", {}, {}, []),
        ("generic_nack", {}, {}, []),
        ("alert_notification",
         {"source_addr_ton": 1, "source_addr": "4911", "esme_addr_npi": 1, "esme_addr": "99"},
         {"source_addr_ton": 1, "source_addr_npi": 0, "source_addr": b"4911",
          "esme_addr_ton": 0, "esme_addr_npi": 1, "esme_addr": b"99"}, []),
        ("query_sm_resp", {"message_id": "q1", "message_state": 2},
         {"message_id": b"q1", "final_date": b"", "message_state": 2, "error_code": 0}, []),
    ],
)  # fmt: skip
def test_smpplib_other_pdus_decode(command, params, fields, tlvs):
    pdu = decode(_smpplib_bytes(command, 21, **params))
    assert pdu.name == command and pdu.sequence == 21
    assert pdu.fields == fields
    assert pdu.tlvs == tlvs


# --------------------------------------------------------------------------
# Our encoder, smpplib's parser.


@pytest.mark.parametrize("command_id", [C.SUBMIT_SM, C.DELIVER_SM])
def test_our_short_message_parses_in_smpplib(command_id):
    fields = {name: _as_bytes(value) for name, value in SM_PARAMS.items()}
    wire = encode(
        command_id,
        0x7FFFFFFF,
        fields,
        [(0x020C, b"\x01\x02"), (0x020E, b"\x02"), (0x020F, b"\x01"), (0x1400, b"vendor")],
    )
    parsed = _smpplib_parse(wire)
    assert parsed.command == command_id.name.lower()
    assert parsed.sequence == 0x7FFFFFFF and parsed.status == 0
    for name, value in fields.items():
        assert getattr(parsed, name) == value, name
    assert parsed.sm_length == len(fields["short_message"])
    assert (parsed.sar_msg_ref_num, parsed.sar_total_segments, parsed.sar_segment_seqnum) == (
        0x0102,
        2,
        1,
    )


def test_our_data_sm_and_resps_parse_in_smpplib():
    wire = encode(
        C.DATA_SM,
        4,
        {"source_addr": b"4911", "destination_addr": b"4922", "data_coding": 8},
        [(0x0424, b"\x00H\x00i"), (0x0427, b"\x02")],
    )
    parsed = _smpplib_parse(wire)
    assert (parsed.source_addr, parsed.destination_addr, parsed.data_coding) == (
        b"4911",
        b"4922",
        8,
    )
    assert parsed.message_payload == b"\x00H\x00i" and parsed.message_state == 2

    resp = _smpplib_parse(encode(C.SUBMIT_SM_RESP, 4, {"message_id": b"abc"}, status=0x58))
    assert (resp.command, resp.status, resp.message_id) == ("submit_sm_resp", 0x58, b"abc")

    bind = _smpplib_parse(
        encode(C.BIND_TRANSMITTER_RESP, 6, {"system_id": b"SMPS"}, [(0x0210, b"\x34")])
    )
    assert (bind.system_id, bind.sc_interface_version) == (b"SMPS", 0x34)


def test_our_bind_parses_in_smpplib():
    fields = {
        "system_id": b"ne-1",
        "password": b"pw",
        "system_type": b"",
        "interface_version": 0x34,
        "addr_ton": 0,
        "addr_npi": 0,
        "address_range": b"",
    }
    parsed = _smpplib_parse(encode(C.BIND_TRANSCEIVER, 8, fields))
    assert parsed.command == "bind_transceiver" and parsed.sequence == 8
    assert (parsed.system_id, parsed.password, parsed.interface_version) == (b"ne-1", b"pw", 0x34)
