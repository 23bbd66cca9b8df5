"""Whole-message verdicts in one data plane (smps.proxy.assembly): a simulated SMSC
sends the parts of long messages (UDH 8-bit and 16-bit refs, SAR TLVs) in any
order, NEs on real loopback binds take them as one copy or as parts, and every
part gets its message's one answer. Workers meeting over the mesh:
tests/test_concat_run.py."""

import asyncio
import time

from smps._native.fingerprint import fingerprint
from smps._native.pdu import Status, decode_sm
from smps.proxy.trace_store import MemoryTraceSink
from tests.helpers import until
from tests.peers import allow, hold
from tests.test_proxy import ACCOUNTS, BLOCK, decisions, proxy

SPAM_RULE = {"id": "spam", "type": "keyword", "patterns": ["free iphone"]}
SPLIT_SPAM = [b"FREE iP", b"hone, click bad.example", b" today"]
CLEAN = [b"Dear customer, ", b"your parcel ", b"is on its way"]


def udh8(ref: int, total: int, part: int) -> bytes:
    return bytes((5, 0x00, 3, ref, total, part))


def udh16(ref: int, total: int, part: int) -> bytes:
    return bytes((6, 0x08, 4, ref >> 8, ref & 0xFF, total, part))


def send_parts(sim, chunks, ref, *, mechanism="udh8", order=None, source=b"8613800138000"):
    """Send the parts of one message in ``order`` (part numbers, default 1..n);
    returns {part number: the SMSC's message number}."""
    total = len(chunks)
    numbers = {}
    for part in order or range(1, total + 1):
        chunk = chunks[part - 1]
        if mechanism == "sar":
            sar = [(0x020C, ref.to_bytes(2, "big")), (0x020E, bytes((total,))),
                   (0x020F, bytes((part,)))]  # fmt: skip
            numbers[part] = sim.send_deliver(short_message=chunk, tlvs=sar, source_addr=source)
        else:
            header = (udh8 if mechanism == "udh8" else udh16)(ref, total, part)
            numbers[part] = sim.send_deliver(short_message=header + chunk, esm_class=0x40,
                                             source_addr=source)  # fmt: skip
    return numbers


def statuses(sim, numbers):
    return [sim.answers[n][0] for n in numbers.values()]


async def answered(sim, numbers, timeout=5.0):
    await until(lambda: all(n in sim.answers for n in numbers.values()), timeout=timeout)
    return statuses(sim, numbers)


async def test_one_copy_of_the_whole_message_and_one_answer_for_every_part(make_config):
    async with proxy(make_config, accounts=ACCOUNTS[:1]) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", allow)
        parts = {}
        for ref, mechanism, order in ((7, "udh8", (3, 2, 1)), (300, "udh16", (2, 3, 1)),
                                      (9, "sar", (1, 3, 2))):  # fmt: skip
            parts[mechanism] = send_parts(sim, CLEAN, ref, mechanism=mechanism, order=order)
        for numbers in parts.values():
            assert await answered(sim, numbers) == [Status.ROK] * 3
        assert len(ne.received) == 3  # one copy per message, not per part
        for pdu in ne.received:
            view = decode_sm(pdu)
            assert view.user_data == b"".join(CLEAN)
            assert not view.udhi and view.sar is None
        await until(lambda: len(decisions(node)) == 3)
        whole = fingerprint(b"".join(CLEAN).decode())
        for record in decisions(node):
            assert (record.concat_total, record.concat_part) == (3, None)
            assert len(record.parts) == 3 and 0 not in record.parts
            assert record.fingerprint == f"{whole:016x}"  # of the whole text, not a part's
        assert sim.duplicates == 0


async def test_a_keyword_split_across_parts_blocks_every_part(make_config):
    screening = {"enabled": True, "rules": [SPAM_RULE]}
    async with proxy(make_config, accounts=ACCOUNTS[:1], screening=screening) as (
        sim,
        node,
        add_ne,
    ):
        ne = await add_ne("antispam", "pw1", allow)
        spam = send_parts(sim, SPLIT_SPAM, 11, mechanism="udh16", order=(3, 1, 2))
        other = sim.send_deliver(short_message=b"hello")  # interleaved single message
        clean = send_parts(sim, CLEAN, 12, mechanism="sar")
        assert await answered(sim, spam) == [BLOCK] * 3
        assert await answered(sim, clean) == [Status.ROK] * 3
        await until(lambda: other in sim.answers)
        # The blocked message never reached the NE; the two others did, once each.
        texts = sorted(decode_sm(p).user_data for p in ne.received)
        assert texts == sorted([b"hello", b"".join(CLEAN)])
        blocked = [d for d in decisions(node) if d.verdict == "block"]
        assert [(d.reason, d.rule_id, d.concat_total) for d in blocked] == [("rule", "spam", 3)]
        # The parts alone would each have passed: judged part by part, nothing blocks.
        screen = node.dispatcher.screening.engine
        for chunk in SPLIT_SPAM:
            single = sim.send_deliver(short_message=chunk)
            await until(lambda single=single: single in sim.answers)
            assert sim.answers[single][0] == Status.ROK
        assert screen is node.dispatcher.screening.engine


async def test_a_segments_account_gets_the_parts_and_one_blocked_part_blocks_all(make_config):
    accounts = [{**ACCOUNTS[0], "concat": "segments"}, ACCOUNTS[1]]
    async with proxy(make_config, accounts=accounts) as (sim, node, add_ne):

        def block_part_two(view):
            return BLOCK if view.user_data.endswith(CLEAN[1]) else Status.ROK

        parts_ne = await add_ne("antispam", "pw1", block_part_two)
        whole_ne = await add_ne("fraud", "pw2", allow)
        numbers = send_parts(sim, CLEAN, 21)
        assert await answered(sim, numbers) == [BLOCK] * 3
        assert len(whole_ne.received) == 1
        await until(lambda: len(parts_ne.received) == 3)
        assert sorted(decode_sm(p).user_data[6:] for p in parts_ne.received) == sorted(CLEAN)
        await until(lambda: len(decisions(node)) == 1)
        record = decisions(node)[0]
        assert (record.verdict, record.deciding_account) == ("block", "antispam")


async def test_an_incomplete_message_is_judged_on_its_parts_at_concat_hold(make_config):
    policy = {"concat_hold": "300ms"}
    async with proxy(make_config, accounts=ACCOUNTS[:1], policy=policy) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", allow)
        started = time.monotonic()
        numbers = send_parts(sim, CLEAN, 31, order=(1, 2))  # part 3 never comes
        await asyncio.sleep(0.15)
        assert not any(n in sim.answers for n in numbers.values())  # still held
        assert await answered(sim, numbers) == [Status.ROK] * 2
        assert time.monotonic() - started >= 0.3
        assert [decode_sm(p).user_data for p in ne.received] == [CLEAN[0] + CLEAN[1]]
        await until(lambda: len(decisions(node)) == 1)
        record = decisions(node)[0]
        assert record.parts[2] == 0 and record.concat_total == 3
        assert node.dispatcher.stats.whole_messages == [1, 0]  # [incomplete, complete]
        # The missing part, late: the message's verdict at once, no new copy.
        late = send_parts(sim, CLEAN, 31, order=(3,))
        assert await answered(sim, late) == [Status.ROK]
        assert len(ne.received) == 1
        await until(lambda: len(decisions(node)) == 2)
        assert decisions(node)[-1].reason == "late_part"


async def test_on_incomplete_allow_and_tempfail(make_config):
    for on_incomplete, expected, reason in (("allow", Status.ROK, "incomplete"),
                                            ("tempfail", 0x64, "incomplete")):  # fmt: skip
        policy = {"concat_hold": "200ms", "on_incomplete": on_incomplete}
        async with proxy(make_config, accounts=ACCOUNTS[:1], policy=policy) as (
            sim,
            node,
            add_ne,
        ):
            ne = await add_ne("antispam", "pw1", allow)
            numbers = send_parts(sim, CLEAN, 41, order=(2, 3))
            assert await answered(sim, numbers) == [expected] * 2
            assert ne.received == []  # not judged: no copy
            await until(lambda: len(decisions(node)) == 1)
            assert decisions(node)[0].reason == reason
            # After a tempfail the SMSC sends the message again: judged anew, whole.
            again = send_parts(sim, CLEAN, 41)
            assert await answered(sim, again) == [Status.ROK] * 3
            assert len(ne.received) == (1 if on_incomplete == "tempfail" else 0)


async def test_the_deadline_runs_from_the_first_part(make_config):
    policy = {"timeout": "1s", "concat_hold": "1s"}
    async with proxy(make_config, accounts=ACCOUNTS[:1], policy=policy) as (sim, _node, add_ne):
        ne = await add_ne("antispam", "pw1", hold)  # never answers
        started = time.monotonic()
        first = send_parts(sim, CLEAN, 51, order=(1, 2))
        await asyncio.sleep(0.6)
        # Single messages in flight before the message is whole: their deadlines
        # (1.6 s) come before the message's in the order of arrival, not in time.
        singles = [sim.send_deliver(short_message=b"x") for _ in range(3)]
        await asyncio.sleep(0.2)
        last = send_parts(sim, CLEAN, 51, order=(3,))
        numbers = {**first, **last}
        assert await answered(sim, numbers) == [Status.ROK] * 3  # on_timeout: allow
        # 1 s from the first part, not from the last (1.8 s) nor after the singles (1.6 s).
        assert time.monotonic() - started < 1.4
        assert len(ne.received) == 4
        await until(lambda: all(n in sim.answers for n in singles))
        ne.release()


async def test_duplicate_parts_ride_along_and_count_once_for_velocity(make_config):
    flood = {"id": "flood", "type": "velocity", "key": "source", "limit": 2, "window": "60s"}
    screening = {"enabled": True, "rules": [flood]}
    async with proxy(make_config, accounts=ACCOUNTS[:1], screening=screening) as (
        sim,
        node,
        add_ne,
    ):
        ne = await add_ne("antispam", "pw1", allow)
        # Part 2 twice (an SMSC's retry) while the message is held.
        numbers = send_parts(sim, CLEAN, 61, order=(1, 2))
        retry = send_parts(sim, CLEAN, 61, order=(2,))
        rest = send_parts(sim, CLEAN, 61, order=(3,))
        assert await answered(sim, {**numbers, **rest}) == [Status.ROK] * 3
        assert await answered(sim, retry) == [Status.ROK]
        assert node.dispatcher.stats.duplicate_parts == 1
        assert len(ne.received) == 1
        # The 3-part message (and its retried part) counted once: one more passes...
        second = sim.send_deliver(short_message=b"one more")
        await until(lambda: second in sim.answers)
        assert sim.answers[second][0] == Status.ROK
        # ...and the limit of 2 is reached now.
        third = send_parts(sim, CLEAN, 62)
        assert await answered(sim, third) == [BLOCK] * 3


async def test_past_concat_max_held_parts_are_judged_alone(make_config):
    policy = {"concat_max_held": 1, "concat_hold": "300ms"}
    async with proxy(make_config, accounts=ACCOUNTS[:1], policy=policy) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", allow)
        held = send_parts(sim, CLEAN, 71, order=(1,))
        alone = send_parts(sim, CLEAN, 72, order=(1, 2, 3))  # a second message: no room
        assert await answered(sim, alone) == [Status.ROK] * 3
        assert node.dispatcher.stats.concat_overflow == 3
        assert len(ne.received) == 3 and all(decode_sm(p).udhi for p in ne.received)
        assert await answered(sim, held) == [Status.ROK]  # judged at concat_hold
        await until(lambda: len(ne.received) == 4)
        families = {m.name: m for m in node.plane.metric_families()}
        assert families["smps_concat_overflow"].samples[0].value == 3


async def test_malformed_concatenation_is_judged_as_a_single_message(make_config):
    async with proxy(make_config, accounts=ACCOUNTS[:1]) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", allow)
        for header in (udh8(5, 3, 0), udh8(5, 3, 4), udh8(5, 1, 1), bytes((3, 0, 3, 5))):
            number = sim.send_deliver(short_message=header + b"odd", esm_class=0x40)
            await until(lambda number=number: number in sim.answers, timeout=0.5)
            assert sim.answers[number][0] == Status.ROK
        assert len(ne.received) == 4
        assert not node.dispatcher.assembly.messages


async def test_the_trace_shows_the_parts_the_hold_and_every_answer(make_config, tmp_path):
    events = MemoryTraceSink()
    trace = {"decode_content": True, "rules": [{"number": "8613800138000"}]}
    async with proxy(make_config, accounts=ACCOUNTS[:1], trace=trace, trace_sink=events,
                     state_dir=tmp_path) as (sim, _node, add_ne):  # fmt: skip
        await add_ne("antispam", "pw1", allow)
        numbers = send_parts(sim, CLEAN, 81, order=(2, 1, 3))
        await answered(sim, numbers)
        await until(lambda: any(e.kind == "part_answered" for e in events) and len(events) >= 8)
    kinds = [e.kind for e in events]
    assert kinds[:4] == ["received", "part_received", "part_received", "held"]
    assert kinds.count("copy_sent") == 1 and kinds.count("part_answered") == 3
    assert len({e.message_id for e in events}) == 1  # one ladder for the message
    held = events_of(events, "held")[0]
    assert held.reason.startswith("3 of 3 parts held")


def events_of(events, kind):
    return [e for e in events if e.kind == kind]
