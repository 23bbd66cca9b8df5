"""Trace rule matching: the cost every original pays, traced or not.

Run: .venv/bin/python -m pytest bench/test_tracer_bench.py --benchmark-enable -q
The per-call time should stay flat from 100 to 10,000 rules (a dict of exact
numbers plus a dict of prefixes per length); 0 rules is the untraced floor.
"""

import random

import pytest

from smps._native.pdu import CommandId, decode, decode_sm, encode, make_resp
from smps.config import TraceRule
from smps.proxy.trace_store import MemoryTraceSink, TraceFileSink
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


@pytest.mark.parametrize("content", [False, True])
def test_traced_original_events(benchmark, content):
    """A whole traced original at 3 NEs, as the dispatcher drives it: match,
    received, 3 copies, 3 answers, final, close (into a memory sink)."""
    rules = make_rules(100)
    tracer = Tracer(MemoryTraceSink(), rules, decode_content=content, country_code="86")
    original = encode(
        CommandId.DELIVER_SM,
        41,
        {
            "source_addr": b"8615012345678",
            "source_addr_ton": 1,
            "source_addr_npi": 1,
            "destination_addr": rules[0].number.encode(),
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "short_message": b"hello from the benchmark",
        },
    )
    view = decode_sm(original)
    answers = [make_resp(encode(CommandId.DELIVER_SM, 100 + n, decode(original).fields))
               for n in range(3)]  # fmt: skip
    final = make_resp(original)

    def one_original():
        trace = tracer.match(view, "smsc1")
        trace.received(original, view, "smsc1")
        for n in range(3):  # the dispatcher passes the original's bytes with each copy
            trace.copy_sent(f"ne{n}", f"ne{n}#1", 0, 100 + n, original)
        for n, answer in enumerate(answers):
            trace.answered(f"ne{n}", 0, "allow", 1.5, False, answer)
        trace.final(0, "allow", "all_allow", final)
        trace.close()

    one_original()
    assert len(tracer.sink) == 8
    benchmark(one_original)


def test_trace_file_flush(benchmark, tmp_path):
    """Writing a batch of 1,000 events (125 traced originals) to the day file."""
    tracer = Tracer(MemoryTraceSink(), make_rules(100), country_code="86")
    view = view_of(b"8615012345678", tracer.rules[0].number.encode())
    pdu = encode(CommandId.DELIVER_SM, 1, {"source_addr": b"1", "short_message": b"hi"})
    trace = tracer.match(view, "smsc1")
    for _ in range(1000):
        trace.final(0, "allow", "all_allow", make_resp(pdu))
    events = list(trace._events)
    files = TraceFileSink(tmp_path)

    def flush():
        files._buffer = list(events)
        return files.flush()

    assert flush() == 1000
    benchmark(flush)
