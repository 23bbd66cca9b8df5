"""Fan-out copies: a new header per NE, one shared view of the body."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smps._native.fanout import append_with_sequence, copies, with_sequence
from smps._native.pdu import CommandId, decode, encode, header

DELIVER = encode(
    CommandId.DELIVER_SM,
    77,
    {"source_addr": b"491701234567", "destination_addr": b"1234", "short_message": b"hello"},
    [(0x1401, b"vendor")],
)


def test_copies_share_one_body_view_and_renumber():
    out = copies(DELIVER, [10, 11, 12])
    assert [header(h + bytes(b))[3] for h, b in out] == [10, 11, 12]
    bodies = {id(body) for _, body in out}
    assert len(bodies) == 1  # one memoryview object for every NE
    body = out[0][1]
    assert body.obj is DELIVER  # a view of the received PDU, not a copy
    assert body.readonly
    assert bytes(body) == DELIVER[16:]
    for hdr, _ in out:
        assert type(hdr) is bytes and len(hdr) == 16
        assert hdr[:12] == DELIVER[:12]


def test_copy_decodes_to_the_original_with_a_new_sequence():
    copy = with_sequence(DELIVER, 5)
    original, renumbered = decode(DELIVER), decode(copy)
    assert renumbered.sequence == 5
    renumbered.sequence = original.sequence
    assert renumbered == original
    assert header(DELIVER)[3] == 77  # the original is untouched


@given(
    body=st.binary(max_size=500),
    sequences=st.lists(st.integers(0, 0xFFFFFFFF), max_size=8),
)
def test_header_plus_body_equals_with_sequence(body, sequences):
    pdu = (16 + len(body)).to_bytes(4, "big") + bytes.fromhex("000000050000000000000001") + body
    out = copies(pdu, sequences)
    assert len(out) == len(sequences)
    for (hdr, view), seq in zip(out, sequences, strict=True):
        assert hdr + bytes(view) == with_sequence(pdu, seq)


def test_header_only_pdu_has_an_empty_body_view():
    pdu = encode(CommandId.ENQUIRE_LINK, 3)
    ((hdr, body),) = copies(pdu, [9])
    assert len(body) == 0
    assert hdr == with_sequence(pdu, 9)


def test_append_with_sequence_fills_one_write_buffer():
    out = bytearray(b"queued")
    enquire = encode(CommandId.ENQUIRE_LINK, 3)
    assert append_with_sequence(out, DELIVER, 0xFFFFFFFF) == CommandId.DELIVER_SM
    assert append_with_sequence(out, enquire, 8) == CommandId.ENQUIRE_LINK
    assert bytes(out) == b"queued" + with_sequence(DELIVER, 0xFFFFFFFF) + with_sequence(enquire, 8)
    assert header(DELIVER)[3] == 77  # the original is untouched


@pytest.mark.parametrize("bad", [b"", b"\0" * 15, DELIVER[:-1], DELIVER + b"\0"])
def test_not_a_whole_pdu_is_refused(bad):
    with pytest.raises(ValueError):
        copies(bad, [1])
    with pytest.raises(ValueError):
        with_sequence(bad, 1)
    out = bytearray(b"queued")
    with pytest.raises(ValueError):
        append_with_sequence(out, bad, 1)
    assert out == b"queued"  # nothing half-appended
