"""Codec micro benchmarks: each native operation next to the pure-Python baseline.

Run: .venv/bin/python -m pytest bench/test_codec_bench.py --benchmark-enable -q
Each group pairs ``native`` with ``baseline`` (bench/baseline_codec.py) doing
the same work on the same input, so the gain of compiling is measured.
"""

import pytest

from bench import baseline_codec as baseline
from smps._native import fanout, pdu
from smps._native.pdu import CommandId

# A typical MO deliver_sm: 160 GSM characters, a reference and a vendor TLV.
DELIVER_SM = pdu.encode(
    CommandId.DELIVER_SM,
    1234,
    {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": b"491701234567",
        "destination_addr": b"12345",
        "registered_delivery": 1,
        "short_message": b"The quick brown fox jumps over the lazy dog. " * 3 + b"x" * 25,
    },
    [(0x0204, b"\x00\x07"), (0x1401, b"carrier-tag")],
)
CHUNK = b"".join(fanout.with_sequence(DELIVER_SM, seq) for seq in range(1, 101))
SEQUENCES = [1001, 2002, 3003]


def frame_and_read_headers(framer_type, header):
    framer = framer_type()
    framer.feed(CHUNK)
    count = 0
    while (item := framer.next_pdu()) is not None:
        header(item)
        count += 1
    return count


IMPLEMENTATIONS = {
    "native": {
        "framing": lambda: frame_and_read_headers(pdu.Framer, pdu.header),
        "decode": lambda: pdu.decode(DELIVER_SM),
        "decode_sm": lambda: pdu.decode_sm(DELIVER_SM),
        "make_resp": lambda: pdu.make_resp(DELIVER_SM, 0x66),
        "fanout": lambda: fanout.copies(DELIVER_SM, SEQUENCES),
    },
    "baseline": {
        "framing": lambda: frame_and_read_headers(baseline.Framer, baseline.header),
        "decode": lambda: baseline.decode_deliver_sm(DELIVER_SM),
        "decode_sm": lambda: baseline.decode_sm(DELIVER_SM),
        "make_resp": lambda: baseline.make_resp(DELIVER_SM, 0x66),
        "fanout": lambda: baseline.copies(DELIVER_SM, SEQUENCES),
    },
}


def test_both_implementations_do_the_same_work():
    native, python = IMPLEMENTATIONS["native"], IMPLEMENTATIONS["baseline"]
    assert native["framing"]() == python["framing"]() == 100
    decoded = native["decode"]()
    assert decoded.fields == python["decode"]()["fields"]
    assert decoded.tlvs == python["decode"]()["tlvs"]
    view, values = native["decode_sm"](), python["decode_sm"]()
    assert (view.source_addr, view.destination_addr, view.user_data) == (
        values[5],
        values[8],
        values[12],
    )
    assert native["make_resp"]() == python["make_resp"]()
    assert [(h, bytes(b)) for h, b in native["fanout"]()] == [
        (h, bytes(b)) for h, b in python["fanout"]()
    ]


@pytest.mark.parametrize("impl", ["native", "baseline"])
@pytest.mark.parametrize("work", ["framing", "decode", "decode_sm", "make_resp", "fanout"])
def test_codec(benchmark, work, impl):
    benchmark.group = work
    benchmark(IMPLEMENTATIONS[impl][work])
