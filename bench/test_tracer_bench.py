"""Trace rule matching: the cost every original pays, traced or not.

Run: .venv/bin/python -m pytest bench/test_tracer_bench.py --benchmark-enable -q
The per-call time should stay flat from 100 to 10,000 rules (a dict of exact
numbers plus a dict of prefixes per length); 0 rules is the untraced floor.
"""

import random

import pytest

from smps._native.pdu import CommandId, decode_sm, encode
from smps.config import TraceRule
from smps.proxy.trace_store import MemoryTraceSink
from smps.proxy.tracer import Tracer


def make_rules(count: int) -> list[TraceRule]:
    """90 % exact subscriber numbers, 10 % prefixes of 6 to 10 digits, mixed sides."""
    rng = random.Random(count)
    rules = []
    for n in range(count):
        side = ("both", "sender", "receiver")[n % 3]
        if n % 10 == 9:
            number = f"86139{rng.randrange(10**5):05d}"[: rng.randrange(6, 11)] + "*"
        else:
            number = f"86138{rng.randrange(10**8):08d}"
        rules.append(TraceRule(number=number, side=side))
    return rules


def view_of(source: bytes, destination: bytes):
    fields = {
        "source_addr": source,
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "destination_addr": destination,
        "dest_addr_ton": 0,
        "dest_addr_npi": 1,
        "short_message": b"hello",
    }
    return decode_sm(encode(CommandId.DELIVER_SM, 1, fields))


@pytest.mark.parametrize("count", [0, 100, 10_000])
def test_match_untraced_message(benchmark, count):
    tracer = Tracer(MemoryTraceSink(), make_rules(count), country_code="86")
    # The source is international, the destination national TON 0: both get normalised.
    view = view_of(b"8615012345678", b"15087654321")
    assert tracer.match(view, "smsc1") is None
    benchmark.extra_info["rules"] = count
    benchmark(tracer.match, view, "smsc1")


def test_match_traced_message_10k_rules(benchmark):
    """The traced path for comparison: lookup plus building the Trace."""
    rules = make_rules(10_000)
    tracer = Tracer(MemoryTraceSink(), rules, country_code="86")
    view = view_of(rules[0].number.encode(), b"15087654321")
    assert tracer.match(view, "smsc1") is not None
    benchmark(tracer.match, view, "smsc1")
