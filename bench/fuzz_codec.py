"""Long-running fuzz target for the native codec (hypothesis).

Run for minutes with ``make fuzz`` (profile "fuzz": 200 000 examples per
property); under the default profile it is a quick smoke run. Properties:
garbage and mutated PDUs never raise anything but smps.errors errors, and
whatever decodes re-encodes to the same bytes.
"""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smps._native.fanout import copies, with_sequence
from smps._native.pdu import Framer, decode, decode_sm, encode, is_response
from smps.errors import FramingError, ProtocolError
from tests.test_pdu import valid_pdus

pytestmark = pytest.mark.timeout(0)  # a fuzz run is meant to take minutes


def _check(data: bytes) -> None:
    """decode/decode_sm either succeed or raise a ProtocolError; decodes round-trip."""
    try:
        pdu = decode(data)
    except ProtocolError as err:
        assert err.status != 0
    else:
        bodyless_ok_resp = (
            is_response(pdu.command_id) and pdu.command_status == 0 and len(data) == 16
        )
        if not bodyless_ok_resp:  # the one form encode() canonicalises (adds a NULL id)
            assert pdu.encode() == data
        copy = with_sequence(data, 1)
        assert b"".join(h + bytes(b) for h, b in copies(data, [1])) == copy
    try:
        decode_sm(data)
    except ProtocolError as err:
        assert err.status != 0


@st.composite
def mutated_pdus(draw):
    command_id, sequence, status, fields, tlvs = draw(valid_pdus())
    data = bytearray(encode(command_id, sequence, fields, tlvs, status))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        at = draw(st.integers(16, max(16, len(data))))
        if op == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif at < len(data):
            del data[at : at + draw(st.integers(1, 4))]
    data[0:4] = struct.pack(">I", len(data))  # keep the framing valid, break the body
    return bytes(data)


@given(st.binary(max_size=2000))
def test_fuzz_random_bytes(data):
    _check(data)


@given(st.integers(0, 0xFFFFFFFF), st.binary(max_size=600))
def test_fuzz_random_body_behind_any_command_id(command_id, body):
    _check(struct.pack(">IIII", 16 + len(body), command_id, 0, 7) + body)


@given(mutated_pdus())
def test_fuzz_mutated_pdus(data):
    _check(data)


@given(st.lists(st.binary(max_size=100), max_size=30))
def test_fuzz_framer_on_garbage(chunks):
    framer = Framer(max_length=4096)
    try:
        for chunk in chunks:
            framer.feed(chunk)
            for item in framer:
                assert len(item) == struct.unpack(">I", item[:4])[0]
                _check(item)
    except FramingError as err:
        assert framer.failed and err.status == 2
    assert framer.buffered <= sum(map(len, chunks))
