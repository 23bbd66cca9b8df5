"""Protocol tracing: number normalisation, rule matching, the event ladder of
one original, content decoding and its redaction, trace files."""

import asyncio
import datetime as dt
import json
import random
import time

import msgspec
import pytest

from smps._native import pdu as P
from smps._native import text
from smps._native.numbers import normalise_address
from smps.config import TraceRule
from smps.proxy import trace_store
from smps.proxy import tracer as tracer_module
from smps.proxy.trace_concat import ConcatTracker
from smps.proxy.trace_match import normalise_rule_number
from smps.proxy.trace_render import render_pdu
from smps.proxy.trace_store import MemoryTraceSink, TraceFileSink, read_events
from smps.proxy.tracer import Tracer

T0 = 1_750_000_000_000_000  # epoch µs, 2025-06-15
SUBSCRIBER = "8613800138000"


class Clock:
    """Injectable µs clock: each reading advances 1 µs unless moved on purpose."""

    def __init__(self, now: int = T0):
        self.now = now

    def __call__(self) -> int:
        self.now += 1
        return self.now

    def advance_ms(self, ms: float) -> None:
        self.now += int(ms * 1000)


def deliver(
    source=b"8613800138000",
    destination=b"10086",
    short_message=b"hello",
    *,
    source_ton=1,
    source_npi=1,
    dest_ton=0,
    dest_npi=1,
    esm_class=0,
    data_coding=0,
    tlvs=(),
    sequence=7,
    command=P.CommandId.DELIVER_SM,
):
    fields = {
        "source_addr": source,
        "source_addr_ton": source_ton,
        "source_addr_npi": source_npi,
        "destination_addr": destination,
        "dest_addr_ton": dest_ton,
        "dest_addr_npi": dest_npi,
    }
    if command == P.CommandId.DELIVER_SM:
        fields.update(esm_class=esm_class, data_coding=data_coding, short_message=short_message)
    else:
        fields.update(esm_class=esm_class, data_coding=data_coding)
    return P.encode(command, sequence, fields, tlvs)


def rule(number, side="both", expires=None, decode_content=None):
    return TraceRule(number=number, side=side, expires=expires, decode_content=decode_content)


def make_tracer(rules=(), *, decode_content=True, country_code="86", sink=None, **kwargs):
    sink = sink if sink is not None else MemoryTraceSink()
    clock = kwargs.pop("clock", Clock())
    tracer = Tracer(sink, rules, decode_content=decode_content, country_code=country_code,
                    node="n1", clock=clock, **kwargs)  # fmt: skip
    return tracer, sink, clock


def trace_one(tracer, pdu, smsc="smsc1"):
    """What the proxy does for an original it answers at once: received, final, close."""
    view = P.decode_sm(pdu)
    trace = tracer.match(view, smsc)
    if trace is None:
        return None
    trace.received(pdu, view, smsc)
    trace.final(0, "allow", "all_allow", P.make_resp(pdu))
    trace.close()
    return trace


def as_json(events) -> str:
    return msgspec.json.encode(list(events)).decode()


# ---- normalisation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "ton", "npi", "cc", "expected"),
    [
        # TON 1 international: already international; sloppy '+' / '00' stripped
        (b"8613800138000", 1, 1, b"86", b"8613800138000"),
        (b"+8613800138000", 1, 1, b"86", b"8613800138000"),
        (b"008613800138000", 1, 1, b"86", b"8613800138000"),
        (b"4467811223344", 1, 1, b"86", b"4467811223344"),
        # TON 2 national: trunk 0 stripped, country code prepended
        (b"13800138000", 2, 1, b"86", b"8613800138000"),
        (b"013800138000", 2, 8, b"86", b"8613800138000"),
        (b"+8613800138000", 2, 1, b"86", b"8613800138000"),
        # TON 0 unknown: analyse the digits
        (b"+4467811223344", 0, 1, b"86", b"4467811223344"),
        (b"004467811223344", 0, 0, b"86", b"4467811223344"),
        (b"013800138000", 0, 1, b"86", b"8613800138000"),
        (b"8613800138000", 0, 1, b"86", b"8613800138000"),
        (b"13800138000", 0, 1, b"86", b"8613800138000"),
        (b"13800138000", 0, 0, b"86", b"8613800138000"),
        (b"7911123456", 0, 1, b"44", b"447911123456"),
        (b"10086", 0, 1, b"86", b"10086"),  # short code
        (b"123456", 0, 1, b"86", b"123456"),  # short code, upper bound
        (b"1234567890123456", 0, 1, b"86", b"1234567890123456"),  # too long to be national
        # no country code: only '+' / '00' go
        (b"13800138000", 0, 1, b"", b"13800138000"),
        (b"13800138000", 2, 1, b"", b"13800138000"),
        (b"+8613800138000", 0, 1, b"", b"8613800138000"),
        # literal: alphanumeric, non-digits, other TONs, non-phone NPIs, empty
        (b"MyBank", 5, 0, b"86", b"MyBank"),
        (b"13800138000", 5, 0, b"86", b"13800138000"),
        (b"+ABC", 0, 0, b"86", b"+ABC"),
        (b"1234", 3, 0, b"86", b"1234"),
        (b"1234", 6, 1, b"86", b"1234"),
        (b"13800138000", 4, 1, b"86", b"13800138000"),
        (b"10.0.0.1", 0, 0x0E, b"86", b"10.0.0.1"),
        (b"13800138000", 0, 9, b"86", b"13800138000"),
        (b"", 1, 1, b"86", b""),
    ],
)
def test_normalise_address_table(addr, ton, npi, cc, expected):
    assert normalise_address(addr, ton, npi, cc) == expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("8613800138000", (b"8613800138000", False)),
        ("+8613800138000", (b"8613800138000", False)),
        ("008613800138000", (b"8613800138000", False)),
        ("13800138000", (b"8613800138000", False)),
        ("013800138000", (b"8613800138000", False)),
        ("+4467811223344", (b"4467811223344", False)),
        ("10086", (b"10086", False)),
        ("8613*", (b"8613", True)),
        ("+8613*", (b"8613", True)),
        ("008613*", (b"8613", True)),
        ("0138*", (b"86138", True)),
    ],
)
def test_rule_numbers_are_normalised_like_addresses(number, expected):
    assert normalise_rule_number(number, b"86") == expected


# ---- matching ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addr", "ton", "npi"),
    [
        (b"8613800138000", 1, 1),
        (b"+8613800138000", 1, 1),
        (b"008613800138000", 0, 1),
        (b"13800138000", 2, 1),
        (b"013800138000", 0, 0),
        (b"13800138000", 0, 1),
    ],
)
@pytest.mark.parametrize("written", ["8613800138000", "+8613800138000", "13800138000"])
def test_one_subscriber_however_written(addr, ton, npi, written):
    tracer, _, _ = make_tracer([rule(written)])
    view = P.decode_sm(deliver(addr, source_ton=ton, source_npi=npi))
    trace = tracer.match(view, "smsc1")
    assert trace is not None
    assert trace.source == SUBSCRIBER
    assert trace.source_raw == addr.decode()


def test_other_numbers_do_not_match():
    tracer, _, _ = make_tracer([rule(SUBSCRIBER), rule("8613900*")])
    for addr in (b"8613800138001", b"861380013800", b"86138001380000", b"8613901"[:-1]):
        view = P.decode_sm(deliver(addr, b"8613700000000", dest_ton=1))
        assert tracer.match(view, "smsc1") is None, addr


GRID_RULES = ["8613800138000", "+8613800138000", "13800138000", "013800138000", "10086",
              "MyBank", "8613*", "+8613*", "0138*", "+44791112*", "8*", "86*", "0*", "00*",
              "1*", "4*"]  # fmt: skip


def grid_addresses():
    """Every way the grid's numbers may be written, plus random digit strings."""
    rng = random.Random(9)
    bases = [b"8613800138000", b"447911123456", b"10086", b"8613512345678", b"4401234567"]
    bases += [b"%d" % rng.randrange(10 ** rng.randrange(1, 17)) for _ in range(8)]
    out = {b"", b"+", b"0", b"00", b"8", b"86", b"MyBank", b"+ABC"}
    for digits in bases:
        for cut in (0, 1, 2, 3):
            for lead in (b"", b"+", b"0", b"00", b"+0", b"000"):
                out.add(lead + digits[cut:])
        out.update((digits[:-1], digits + b"0", digits[:6]))
    return sorted(out)


def reference_match(rules, addr, ton, npi, cc):
    """The rule numbers a normalised address matches, by definition."""
    number = normalise_address(addr, ton, npi, cc)
    hits = set()
    for r in rules:
        key, prefix = normalise_rule_number(r.number, cc)
        if number.startswith(key) if prefix else number == key:
            hits.add(r.number)
    return hits


@pytest.mark.parametrize("cc", ["86", "44", "", "1", "8"])
def test_raw_address_shortcut_agrees_with_normalised_matching(cc):
    """The raw-form sets only skip numbers that cannot match: every address
    form, TON and NPI matches exactly what normalising it would match."""
    rule_sets = [[rule(number)] for number in GRID_RULES] + [[rule(n) for n in GRID_RULES]]
    other = b"99999"  # matches none of the rules under any cc
    for rules in rule_sets:
        tracer, _, _ = make_tracer(rules, country_code=cc)
        for addr in grid_addresses():
            for ton in (0, 1, 2, 5):
                for npi in (0, 1, 9):
                    expected = reference_match(rules, addr, ton, npi, cc.encode())
                    as_sender = P.decode_sm(deliver(addr, other, source_ton=ton, source_npi=npi))
                    as_receiver = P.decode_sm(deliver(other, addr, dest_ton=ton, dest_npi=npi))
                    for view in (as_sender, as_receiver):
                        trace = tracer.match(view, "s")
                        got = set(trace.rules) if trace is not None else set()
                        assert got == expected, (cc, [r.number for r in rules], addr, ton, npi)


def test_numbers_that_cannot_match_are_not_normalised(monkeypatch):
    """The untraced case costs set lookups on the raw addresses, nothing more."""
    tracer, _, _ = make_tracer([rule(SUBSCRIBER), rule("+44791112*"), rule("139*")])

    def refuse(*args):
        raise AssertionError(f"normalised {args}")

    monkeypatch.setattr(tracer_module, "normalise_address", refuse)
    for source, destination in [(b"8613800138001", b"10086"), (b"+4915012345678", b"4480111")]:
        for ton in (0, 1, 2):
            view = P.decode_sm(deliver(source, destination, source_ton=ton, dest_ton=ton))
            assert tracer.match(view, "s") is None


def test_prefix_rules_of_several_lengths():
    tracer, _, _ = make_tracer([rule("8613*"), rule("+44791112*"), rule("0139*")])
    cases = {
        b"8613512345678": True,
        b"8614512345678": False,
        b"447911123456": True,
        b"447911133456": False,
        b"8613912345678": True,  # "0139*" is national with trunk: 86139
    }
    for addr, traced in cases.items():
        view = P.decode_sm(deliver(addr, b"10086"))
        assert (tracer.match(view, "s") is not None) is traced, addr


def test_exact_and_prefix_rules_both_reported():
    tracer, _, _ = make_tracer([rule("8613*"), rule(SUBSCRIBER)])
    trace = tracer.match(P.decode_sm(deliver()), "s")
    assert trace.rules == ["8613*", SUBSCRIBER]


@pytest.mark.parametrize(
    ("side", "as_sender", "as_receiver"),
    [("sender", True, False), ("receiver", False, True), ("both", True, True)],
)
def test_sides(side, as_sender, as_receiver):
    tracer, _, _ = make_tracer([rule(SUBSCRIBER, side=side)])
    outgoing = P.decode_sm(deliver(b"8613800138000", b"8613911112222", dest_ton=1))
    incoming = P.decode_sm(deliver(b"8613911112222", b"8613800138000", dest_ton=1))
    assert (tracer.match(outgoing, "s") is not None) is as_sender
    assert (tracer.match(incoming, "s") is not None) is as_receiver


def test_alphanumeric_sender_matches_literally():
    tracer, _, _ = make_tracer([rule("MyBank", side="sender")])
    assert tracer.match(P.decode_sm(deliver(b"MyBank", source_ton=5, source_npi=0)), "s")
    assert tracer.match(P.decode_sm(deliver(b"mybank", source_ton=5, source_npi=0)), "s") is None
    # A numeric-looking alphanumeric sender is not normalised either.
    tracer.set_rules([rule("8613800138000")], True, "86")
    assert (
        tracer.match(P.decode_sm(deliver(b"13800138000", source_ton=5, source_npi=0)), "s") is None
    )


def test_expired_rules_stop_matching_and_are_pruned():
    clock = Clock()
    now = dt.datetime.fromtimestamp(T0 / 1e6, dt.UTC)
    tracer, _, _ = make_tracer(
        [rule(SUBSCRIBER, expires=now + dt.timedelta(minutes=5)),
         rule("8613*", expires=now - dt.timedelta(seconds=1))],
        clock=clock,
    )  # fmt: skip
    view = P.decode_sm(deliver())
    assert tracer.match(view, "s").rules == [SUBSCRIBER]
    assert tracer.prune_expired() == 1
    assert [r.number for r in tracer.rules] == [SUBSCRIBER]
    clock.advance_ms(5 * 60 * 1000)
    assert tracer.match(view, "s") is None
    assert tracer.prune_expired() == 1
    assert tracer.rules == ()


def test_set_rules_applies_live():
    tracer, sink, _ = make_tracer()
    pdu = deliver()
    assert trace_one(tracer, pdu) is None
    tracer.set_rules([rule("13800138000")], False, "86")
    assert trace_one(tracer, pdu) is not None
    tracer.set_rules([rule("13800138000")], False, "")  # without cc, national stays national
    assert trace_one(tracer, pdu) is None
    tracer.set_rules([], False, "86")
    assert trace_one(tracer, pdu) is None
    assert [e.kind for e in sink] == ["received", "final"]


def test_untraced_messages_produce_nothing(tmp_path):
    files = TraceFileSink(tmp_path)
    tracer, _, _ = make_tracer([rule("8613900000000")], sink=files)
    for n in range(100):
        assert trace_one(tracer, deliver(sequence=n + 1)) is None
    assert files.flush() == 0
    assert not (tmp_path / "traces").exists()


# ---- the event ladder -----------------------------------------------------------------


def test_complete_ordered_event_list():
    """received, 3 copies, A blocks → final, B answers late, C never answers."""
    tracer, sink, clock = make_tracer([rule(SUBSCRIBER, side="receiver")], decode_content=False)
    original = deliver(b"8613911112222", b"8613800138000", b"buy now", dest_ton=1, sequence=41)
    view = P.decode_sm(original)
    trace = tracer.match(view, "smsc1")
    trace.received(original, view, "smsc1")
    copies = {}
    for worker, (account, seq) in enumerate((("antispam", 100), ("fraud", 200), ("audit", 300))):
        copies[account] = P.encode(P.CommandId.DELIVER_SM, seq, P.decode(original).fields)
        trace.copy_sent(account, f"{account}#1", worker, seq, copies[account])
    clock.advance_ms(12)
    block = P.make_resp(copies["antispam"], 0x66)
    trace.answered("antispam", 0x66, "block", 12.0, False, block)
    final = P.make_resp(original, 0x66)
    trace.final(0x66, "block", "block", final)
    clock.advance_ms(30)
    trace.answered("fraud", 0, "allow", 42.0, True, P.make_resp(copies["fraud"]))
    clock.advance_ms(2000)
    trace.answered("audit", 0, "waiting", 2042.0, False, None, reason="timeout")
    assert list(sink) == []  # nothing leaves before close
    trace.close()
    events = list(sink)

    assert [(e.kind, e.direction, e.account) for e in events] == [
        ("received", "smsc->smps", None),
        ("copy_sent", "smps->ne", "antispam"),
        ("copy_sent", "smps->ne", "fraud"),
        ("copy_sent", "smps->ne", "audit"),
        ("answered", "ne->smps", "antispam"),
        ("final", "smps->smsc", None),
        ("answered", "ne->smps", "fraud"),
        ("timeout", "ne->smps", "audit"),
    ]
    assert len({e.message_id for e in events}) == 1
    stamps = [e.ts_us for e in events]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert events[6].ts_us - events[4].ts_us >= 30_000
    received, *sent = events[:4]
    assert (received.command, received.sequence, received.status) == ("deliver_sm", 41, 0)
    assert received.destination_addr == SUBSCRIBER
    assert received.source_addr == "8613911112222"
    assert received.rules == [SUBSCRIBER]
    assert [(e.sequence, e.bind, e.worker) for e in sent] == [
        (100, "antispam#1", 0), (200, "fraud#1", 1), (300, "audit#1", 2)
    ]  # fmt: skip
    answer, fin, late, timeout = events[4:]
    assert (answer.command, answer.status, answer.sequence, answer.verdict, answer.late) == (
        "deliver_sm_resp", 0x66, 100, "block", False
    )  # fmt: skip
    assert answer.pdu_hex == block.hex()
    assert (fin.command, fin.status, fin.sequence, fin.verdict, fin.reason) == (
        "deliver_sm_resp", 0x66, 41, "block", "block"
    )  # fmt: skip
    assert (late.verdict, late.late, late.latency_ms, late.sequence) == ("allow", True, 42.0, 200)
    assert (timeout.pdu_hex, timeout.command, timeout.reason, timeout.latency_ms) == (
        None, "", "timeout", 2042.0
    )  # fmt: skip
    assert all(e.fields["source_addr"] == "8613911112222" for e in events[:4])


def test_copies_of_the_same_bytes_keep_their_own_sequence_and_status():
    """The dispatcher hands copy_sent the original's bytes: rendered once, each
    event still carries its own sequence; a different PDU is rendered afresh."""
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)], decode_content=False)
    original = deliver(sequence=41)
    view = P.decode_sm(original)
    trace = tracer.match(view, "s")
    trace.received(original, view, "s")
    for sequence in (100, 200, 300):
        trace.copy_sent("ne", "ne#1", 0, sequence, original)
    trace.answered("ne", 0x45, "block", 1.0, False, P.make_resp(original))
    trace.final(0x66, "block", "block", P.make_resp(original, 0x66))
    trace.close()
    received, *copies, answer, final = list(sink)
    assert (received.sequence, received.status) == (41, 0)
    assert [c.sequence for c in copies] == [100, 200, 300]
    alone = render_pdu(original, False)
    for event in (received, *copies):
        assert (event.fields, event.pdu_hex) == (alone["fields"], alone["pdu_hex"])
    assert (answer.command, answer.status, answer.sequence) == ("deliver_sm_resp", 0x45, 41)
    assert (final.command, final.status, final.sequence) == ("deliver_sm_resp", 0x66, 41)
    assert final.pdu_hex == P.make_resp(original, 0x66).hex()


def test_events_after_close_go_straight_to_the_sink():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    trace = trace_one(tracer, deliver())
    trace.answered("slow", 0, "allow", 2500.0, True, P.make_resp(deliver()))
    assert [e.kind for e in sink] == ["received", "final", "answered"]


def test_dropped_original_and_copy():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    pdu = deliver()
    view = P.decode_sm(pdu)
    trace = tracer.match(view, "s")
    trace.received(pdu, view, "s")
    trace.dropped("queue_full", account="antispam")
    trace.dropped("overload")
    trace.final(P.Status.RTHROTTLED, "tempfail", "overload", P.make_resp(pdu, 0x58))
    trace.close()
    kinds = [(e.kind, e.account, e.reason, e.status) for e in sink]
    assert kinds == [
        ("received", None, None, 0),
        ("dropped", "antispam", "queue_full", None),
        ("dropped", None, "overload", None),
        ("final", None, "overload", 0x58),
    ]


# ---- content --------------------------------------------------------------------------


def received_event(tracer, sink, pdu, smsc="smsc1"):
    before = len(sink)
    assert trace_one(tracer, pdu, smsc) is not None
    return next(e for e in list(sink)[before:] if e.kind == "received")


def test_gsm7_with_extension_characters():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    message = "Price {5€} [ok] ^_^ \\ | ~"
    coding, (segment,) = text.split(message, ref=1)
    event = received_event(tracer, sink, deliver(short_message=segment, data_coding=coding))
    assert event.content is True
    assert (event.text, event.encoding) == (message, "gsm7")
    assert event.fields["short_message"] == segment.hex()
    assert event.pdu_hex.endswith(segment.hex())


def test_turkish_shift_tables():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    message = "Günaydın İstanbul, çay 5€ ğış"
    udh = bytes.fromhex("06 24 01 01 25 01 01")
    body = udh + text.gsm7_encode(message, locking_shift=1, single_shift=1)
    event = received_event(tracer, sink, deliver(short_message=body, esm_class=0x40))
    assert event.text == message
    assert (event.udh.single_shift, event.udh.locking_shift, event.udh.concat) == (1, 1, None)
    assert event.udh.ies == ["24:01", "25:01"]
    assert event.concat is None


def ucs2_parts_with_split_emoji(message: str, ref: int) -> list[bytes]:
    """Two UCS-2 parts cut at 134 octets, straddling a surrogate pair on purpose."""
    raw = message.encode("utf-16-be")
    cut = 134
    assert 0xD800 <= int.from_bytes(raw[cut - 2 : cut]) <= 0xDBFF  # high surrogate ends part 1
    chunks = [raw[:cut], raw[cut:]]
    return [bytes((5, 0, 3, ref, 2, n)) + chunk for n, chunk in enumerate(chunks, 1)]


def test_ucs2_emoji_split_across_two_segments_reassembled():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    message = "短" * 66 + "😀 后面还有"
    first, second = ucs2_parts_with_split_emoji(message, ref=0x42)
    pdus = [deliver(short_message=part, esm_class=0x40, data_coding=8, sequence=n)
            for n, part in enumerate((second, first, second), 1)]  # fmt: skip
    # part 2 first, then part 1 completes the set, then an SMSC retry of part 2
    events = [received_event(tracer, sink, pdu) for pdu in pdus]
    part2, part1, retry = events
    assert part2.concat.part == 2 and part1.concat.part == 1
    assert part1.concat.id == part2.concat.id == part2.message_id
    assert (part1.concat.mechanism, part1.concat.ref, part1.concat.total) == ("udh8", 0x42, 2)
    assert part2.reassembled is None
    assert part1.reassembled.text == message
    assert part1.reassembled.parts == [part1.message_id, part2.message_id]
    assert part1.text.startswith("短" * 66)
    assert part1.udh.concat == [0x42, 2, 1]
    # The set was complete; the retry starts a new one and does not re-reassemble.
    assert retry.reassembled is None and retry.concat.id == retry.message_id


def test_gsm7_concatenated_with_extension_characters_reassembled():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    message = ("{€} " * 50) + "end"
    _coding, parts = text.split(message, ref=9)
    assert len(parts) == 3
    events = [received_event(tracer, sink, deliver(short_message=p, esm_class=0x40, sequence=n))
              for n, p in enumerate(parts, 1)]  # fmt: skip
    assert [e.reassembled is None for e in events] == [True, True, False]
    assert events[2].reassembled.text == message
    assert events[2].reassembled.encoding == "gsm7"


def test_sar_segments_linked_and_reassembled():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    chunks = [b"first half, ", b"second half"]
    events = []
    for n, chunk in enumerate(chunks, 1):
        tlvs = [(0x020C, (513).to_bytes(2)), (0x020E, bytes([2])), (0x020F, bytes([n]))]
        events.append(received_event(tracer, sink, deliver(short_message=chunk, tlvs=tlvs)))
    assert [e.concat.mechanism for e in events] == ["sar", "sar"]
    assert events[1].reassembled.text == "first half, second half"


def test_parts_from_different_senders_are_not_mixed():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER, side="receiver")])
    _coding, parts = text.split("x" * 200, ref=5)
    a = received_event(tracer, sink, deliver(b"8613911111111", SUBSCRIBER.encode(), parts[0],
                                             dest_ton=1, esm_class=0x40))  # fmt: skip
    b = received_event(tracer, sink, deliver(b"8613922222222", SUBSCRIBER.encode(), parts[1],
                                             dest_ton=1, esm_class=0x40))  # fmt: skip
    assert a.concat.id != b.concat.id and b.reassembled is None


def test_concat_tracker_is_bounded_by_ttl_and_size():
    tracker = ConcatTracker(ttl_us=60_000_000, limit=3)
    for n in range(5):
        tracker.add(("s", "d", n, 2, "udh8"), 1, f"m{n}", b"x", 0, T0)
    assert len(tracker) == 3
    group, done = tracker.add(("s", "d", 0, 2, "udh8"), 2, "late", b"y", 0, T0 + 1)
    assert done is None and group == "late"  # its first part was evicted
    group, done = tracker.add(("s", "d", 4, 2, "udh8"), 2, "m4b", b"y", 0, T0 + 61_000_000)
    assert done is None and len(tracker) == 1  # expired by TTL


def test_latin1_content():
    tracer, sink, _ = make_tracer([rule(SUBSCRIBER)])
    event = received_event(tracer, sink, deliver(short_message="Ça coûte 5 £".encode("latin-1"),
                                                 data_coding=3))  # fmt: skip
    assert (event.text, event.encoding) == ("Ça coûte 5 £", "latin1")


def test_smsc_default_alphabet_comes_from_its_config(make_config):
    config = make_config(
        smsc=[{"name": "legacy", "host": "127.0.0.1", "port": 2776, "system_id": "smps",
               "default_alphabet": "latin1"}],
        trace={"decode_content": True, "country_code": "86", "rules": [{"number": SUBSCRIBER}]},
    )  # fmt: skip
    sink = MemoryTraceSink()
    tracer = Tracer.from_config(config, sink, worker=3, clock=Clock())
    event = received_event(tracer, sink, deliver(short_message="café".encode("latin-1")), "legacy")
    assert event.text == "café"
    assert event.message_id.startswith(f"{config.node.name}-3-")


# ---- content stays out when decoding is off --------------------------------------------


SECRET_GSM = "Secret code 4711 {ok}"
SECRET_UCS2 = "密码是四七一一 😀"


def secret_pdus():
    _, (gsm,) = text.split(SECRET_GSM, ref=1)
    coding, ucs2_parts = text.split(SECRET_UCS2 * 8, ref=2)
    assert coding == 8 and len(ucs2_parts) == 2
    yield deliver(short_message=gsm), [gsm]
    for n, part in enumerate(ucs2_parts, 1):
        yield deliver(short_message=part, data_coding=8, esm_class=0x40, sequence=n), [part]
    payload = SECRET_GSM.encode("ascii")
    yield (
        deliver(command=P.CommandId.DATA_SM, data_coding=1, tlvs=[(0x0424, payload)]),
        [payload],
    )


@pytest.mark.parametrize(
    ("global_decode", "rule_decode"), [(False, None), (False, True), (True, False)]
)
def test_content_never_appears_when_decoding_is_off(tmp_path, global_decode, rule_decode):
    files = TraceFileSink(tmp_path)
    memory = MemoryTraceSink()

    class Both:
        def put(self, event):
            files.put(event)
            memory.put(event)

    tracer, _, _ = make_tracer([rule(SUBSCRIBER, decode_content=rule_decode)],
                               decode_content=global_decode, sink=Both())  # fmt: skip
    secrets = []
    for pdu, user_data in secret_pdus():
        view = P.decode_sm(pdu)
        trace = tracer.match(view, "smsc1")
        trace.received(pdu, view, "smsc1")
        trace.copy_sent("antispam", "antispam#1", 0, 900, pdu)
        trace.final(0, "allow", "all_allow", P.make_resp(pdu))
        trace.close()
        for data in user_data:
            body = data[6:] if view.udhi else data
            secrets += [data.hex(), body.hex(), body[:8].hex(), data.hex().upper()]
    secrets += [SECRET_GSM, "Secret", "4711", "密码", "😀", SECRET_GSM.encode().hex()]
    files.flush()
    written = "".join(p.read_text("utf-8") for p in files.files())
    dumped = as_json(memory)
    assert written and dumped
    for secret in secrets:
        assert secret not in written, secret
        assert secret not in dumped, secret
        assert secret.lower() not in dumped.lower(), secret
    events = list(memory)
    assert all(e.text is None and e.udh is None and e.content is False for e in events)
    assert "octets hidden>" in events[0].pdu_hex
    assert events[0].fields["short_message"].endswith("octets hidden>")
    data_sm = next(e for e in events if e.command == "data_sm")
    assert [t.value for t in data_sm.tlvs if t.name == "message_payload"] == [
        f"<{len(SECRET_GSM)} octets hidden>"
    ]
    # Linking still works without content; reassembly names the parts, no text.
    linked = [e for e in events if e.reassembled is not None]
    assert len(linked) == 1 and linked[0].reassembled.text is None
    assert len(linked[0].reassembled.parts) == 2


def test_hidden_hex_keeps_everything_else():
    pdu = deliver(short_message=b"topsecret", tlvs=[(0x0204, b"\x00\x07")])
    rendered = render_pdu(pdu, content=False)
    head, tail = rendered["pdu_hex"].split("<9 octets hidden>")
    assert head + b"topsecret".hex() + tail == pdu.hex()
    assert tail == "020400020007"
    assert render_pdu(pdu, content=True)["pdu_hex"] == pdu.hex()


def test_passwords_never_rendered():
    bind = P.encode(P.CommandId.BIND_TRANSCEIVER, 1, {"system_id": b"smps", "password": b"s3cr3t"})
    for content in (True, False):
        rendered = render_pdu(bind, content)
        dumped = json.dumps(rendered, default=str)
        assert "s3cr3t" not in dumped and b"s3cr3t".hex() not in dumped
        assert rendered["fields"]["password"] == "<hidden>"
        assert rendered["fields"]["system_id"] == "smps"


def test_undecodable_pdu_is_rendered_without_its_body():
    resp = P.make_resp(deliver())
    broken = (len(resp) + 2).to_bytes(4) + resp[4:] + b"\xff\xff"  # a truncated TLV
    rendered = render_pdu(broken, content=False)
    assert rendered["note"].startswith("undecodable")
    assert rendered["pdu_hex"] == broken[:16].hex() + f"<{len(broken) - 16} octets hidden>"
    assert rendered["command"] == "deliver_sm_resp"


# ---- trace files --------------------------------------------------------------------------


def test_daily_files_batched_and_read_back(tmp_path, monkeypatch):
    files = TraceFileSink(tmp_path)
    clock = Clock()
    tracer, _, _ = make_tracer([rule(SUBSCRIBER)], sink=files, clock=clock)
    for n in range(20):
        trace_one(tracer, deliver(sequence=n + 1))
    clock.advance_ms(24 * 3600 * 1000)
    trace_one(tracer, deliver(sequence=99))
    opened = []
    real_open = trace_store.os.open
    monkeypatch.setattr(trace_store.os, "open", lambda *a: opened.append(a[0]) or real_open(*a))
    assert files.flush() == 42
    assert len(opened) == 2  # one append per day file, not one per event
    names = [p.name for p in files.files()]
    assert names == ["2025-06-15.jsonl", "2025-06-16.jsonl"]
    events = list(read_events(files.files()))
    assert len(events) == 42 and events[-1].sequence == 99
    assert events[0].text == "hello"
    files.flush()  # nothing new: no empty writes
    assert len(opened) == 2
    trace_one(tracer, deliver(sequence=100))
    files.flush()
    assert len(list(read_events(files.files()))) == 44  # appended, not overwritten


def test_events_around_midnight_go_to_their_own_day(tmp_path):
    """The day is worked out once per run of same-day events: out-of-order
    stamps on both sides of a UTC midnight still land in their own file."""
    midnight = 1_750_032_000_000_000  # 2025-06-16T00:00:00Z in epoch µs
    tracer, _, _ = make_tracer([rule(SUBSCRIBER)], clock=lambda: midnight)
    stamps = [midnight - 1, midnight, midnight - 1, midnight + 5, midnight - 86_400_000_000,
              midnight - 86_400_000_001, midnight]  # fmt: skip
    trace = tracer.match(P.decode_sm(deliver()), "s")
    files = TraceFileSink(tmp_path)
    for n, ts in enumerate(stamps):
        tracer.clock = lambda ts=ts: ts
        trace.dropped(f"event {n}")
    trace.close()
    events = list(trace.tracer.sink)
    for event in events:
        files.put(event)
    assert files.flush() == len(stamps)
    by_file = {p.name: [e.ts_us for e in read_events([p])] for p in files.files()}
    assert by_file == {
        "2025-06-14.jsonl": [midnight - 86_400_000_001],
        "2025-06-15.jsonl": [midnight - 1, midnight - 1, midnight - 86_400_000_000],
        "2025-06-16.jsonl": [midnight, midnight + 5, midnight],
    }
    assert all(trace_store.day_of(ts) == name[:10] for name, v in by_file.items() for ts in v)


def test_retention_deletes_old_day_files(tmp_path):
    files = TraceFileSink(tmp_path, retention_days=7)
    files.directory.mkdir(parents=True)
    for name in ("2025-06-01.jsonl", "2025-06-08.jsonl", "2025-06-09.jsonl", "2025-06-15.jsonl",
                 "notes.txt", "2025-13-01.jsonl"):  # fmt: skip
        (files.directory / name).write_text("{}\n")
    deleted = files.prune(dt.date(2025, 6, 15))
    assert sorted(p.name for p in deleted) == ["2025-06-01.jsonl", "2025-06-08.jsonl"]
    left = sorted(p.name for p in files.directory.iterdir())
    assert left == ["2025-06-09.jsonl", "2025-06-15.jsonl", "2025-13-01.jsonl", "notes.txt"]
    assert TraceFileSink(tmp_path, retention_days=0).prune(dt.date(2030, 1, 1)) == []


def test_buffer_is_bounded_and_drops_are_counted(tmp_path):
    files = TraceFileSink(tmp_path, buffer_limit=5)
    tracer, _, _ = make_tracer([rule(SUBSCRIBER)], sink=files)
    for n in range(4):
        trace_one(tracer, deliver(sequence=n + 1))  # 8 events
    assert files.dropped == 3
    assert files.flush() == 5


async def test_run_flushes_periodically_and_on_cancel(tmp_path):
    files = TraceFileSink(tmp_path)  # run() also prunes: keep the events' dates real
    tracer, _, _ = make_tracer([rule(SUBSCRIBER)], sink=files, clock=Clock(time.time_ns() // 1000))
    task = asyncio.create_task(files.run(interval=0.01))
    trace_one(tracer, deliver())
    for _ in range(200):
        await asyncio.sleep(0.01)
        if files.written:
            break
    assert files.written == 2
    trace_one(tracer, deliver(sequence=2))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert files.written == 4
    assert len(list(read_events(files.files()))) == 4
