"""Framer: any split of the byte stream yields the same PDUs; bad lengths fail hard."""

import itertools
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smps._native.pdu import CommandId, Framer, Status, encode, make_generic_nack
from smps.errors import FramingError


def _pdu(command_id: int, sequence: int, body: bytes) -> bytes:
    return struct.pack(">IIII", 16 + len(body), command_id, 0, sequence) + body


pdus = st.builds(
    _pdu,
    st.sampled_from([CommandId.DELIVER_SM, CommandId.ENQUIRE_LINK, 0x00010201]),
    st.integers(1, 0x7FFFFFFF),
    st.binary(max_size=300),
)


def _drain(framer: Framer, chunks) -> list[bytes]:
    out = []
    for chunk in chunks:
        framer.feed(chunk)
        out.extend(framer)
    return out


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@given(stream=st.lists(pdus, max_size=20), cuts=st.lists(st.integers(0, 10**6), max_size=40))
def test_every_split_yields_the_same_pdus(stream, cuts):
    data = b"".join(stream)
    whole = _drain(Framer(), [data])
    byte_by_byte = _drain(Framer(), [data[i : i + 1] for i in range(len(data))])
    random_chunks = _drain(Framer(), _split(data, cuts))
    assert whole == byte_by_byte == random_chunks == stream
    assert all(type(p) is bytes for p in whole)


@given(stream=st.lists(pdus, min_size=1, max_size=5), keep=st.integers(1, 15))
def test_trailing_partial_pdu_stays_buffered(stream, keep):
    tail = stream[-1][:keep]
    framer = Framer()
    got = _drain(framer, [b"".join(stream) + tail])
    assert got == stream
    assert framer.buffered == len(tail)
    framer.feed(stream[-1][keep:])
    assert framer.next_pdu() == stream[-1]
    assert framer.buffered == 0


def test_accepts_bytearray_and_memoryview():
    pdu = encode(CommandId.ENQUIRE_LINK, 5)
    framer = Framer()
    framer.feed(bytearray(pdu[:7]))
    assert framer.next_pdu() is None
    framer.feed(memoryview(pdu)[7:])
    assert framer.next_pdu() == pdu
    assert framer.next_pdu() is None


def test_buffer_holds_only_the_partial_pdu_after_draining():
    pdu = encode(CommandId.DELIVER_SM, 1, {"short_message": b"x" * 200})
    framer = Framer()
    framer.feed(pdu[:50])
    for _ in range(1000):
        framer.feed(pdu[50:] + pdu + pdu[:50])
        assert list(framer) == [pdu, pdu]
        assert framer.buffered == 50


@pytest.mark.parametrize("length", [0, 1, 15, 65537, 0xFFFFFFFF])
def test_bad_command_length_is_a_framing_error_with_the_sequence(length):
    data = struct.pack(">IIII", length, CommandId.SUBMIT_SM, 0, 4242) + b"rest"
    # The whole header at once: the error names the PDU; byte by byte it comes
    # with the 4th octet, before the sequence could be read (0).
    for chunks, named in (([data], True), ([data[i : i + 1] for i in range(len(data))], False)):
        framer = Framer()
        with pytest.raises(FramingError) as caught:
            _drain(framer, chunks)
        err = caught.value
        assert err.status == Status.RINVCMDLEN
        assert err.sequence == (4242 if named else 0)
        assert err.command_id == (CommandId.SUBMIT_SM if named else 0)
        # The stream cannot be resynchronised: the framer stays failed.
        assert framer.failed
        framer.feed(make_generic_nack(1, 0))
        assert framer.buffered == 0
        with pytest.raises(FramingError):
            framer.next_pdu()


@pytest.mark.parametrize("length", [8, 2**31, 0xFFFFFFFF])
def test_bad_command_length_fails_as_soon_as_its_four_octets_are_in(length):
    """A peer that sends a bad length and waits is answered at once, not after
    the 12 header octets it may never send."""
    framer = Framer()
    framer.feed(struct.pack(">I", length)[:3])
    assert framer.next_pdu() is None
    framer.feed(struct.pack(">I", length)[3:])
    with pytest.raises(FramingError) as caught:
        framer.next_pdu()
    assert (caught.value.status, caught.value.sequence) == (Status.RINVCMDLEN, 0)


def test_good_pdus_before_a_bad_length_are_still_delivered():
    good = encode(CommandId.ENQUIRE_LINK, 1)
    framer = Framer()
    framer.feed(good + struct.pack(">IIII", 8, 0x15, 0, 2))
    assert framer.next_pdu() == good
    with pytest.raises(FramingError):
        framer.next_pdu()


def test_max_length_is_configurable_and_inclusive():
    framer = Framer(max_length=100)
    ok = _pdu(CommandId.DELIVER_SM, 1, b"\0" * 84)
    too_long = _pdu(CommandId.DELIVER_SM, 2, b"\0" * 85)
    framer.feed(ok + too_long)
    assert framer.next_pdu() == ok
    with pytest.raises(FramingError) as caught:
        framer.next_pdu()
    assert caught.value.sequence == 2


def test_a_good_length_waits_for_the_whole_pdu():
    framer = Framer()
    framer.feed(struct.pack(">II", 16, 0x15))
    assert framer.next_pdu() is None
    framer.feed(struct.pack(">II", 0, 7))
    assert framer.next_pdu() == struct.pack(">IIII", 16, 0x15, 0, 7)


def test_max_length_below_a_header_is_refused():
    with pytest.raises(ValueError):
        Framer(max_length=15)
