"""Whole-message verdicts in `smps run` (issue 21): 2 workers, an SMSC whose PDUs
smpplib builds and parses (tests/smpplib_smsc.py), one bind to it per worker. The parts
of every 3-part message go over both binds, so they are read by both workers and meet
in the one that owns the message. A keyword split across parts blocks every part; a
clean message is allowed for every part; a `message` NE account gets one copy with the
whole text, a `segments` one the three parts; a message whose last part never comes is
answered at concat_hold; a retried part gets its message's verdict, and a velocity
limit counts a 3-part message once."""

import contextlib
import itertools
import time
from dataclasses import dataclass, field

import aiohttp

from smps.store import tokens
from smps.store.db import Store
from tests.helpers import until
from tests.nodes import RunNode
from tests.peers import Ne
from tests.smpplib_smsc import SmpplibSmsc, answers, parse, reach_every_ne, smpplib_node

BLOCK, ALLOW, TEMPFAIL = 0x66, 0, 0x64
VELOCITY_LIMIT = 2
RULES = [
    {"id": "spam-words", "type": "keyword", "patterns": ["free iphone"]},
    {"id": "flood-sender", "type": "velocity", "key": "source", "limit": VELOCITY_LIMIT,
     "window": "60s"},
]  # fmt: skip
ACCOUNTS = [
    {"system_id": "whole", "password": "pw", "concat": "message"},
    {"system_id": "parts", "password": "pw", "concat": "segments"},
]
# "free iphone" is in no part, only in the whole message.
SPAM = (b"FREE iP", b"hone, click ", b"here to claim")
CLEAN = (b"Meeting moved ", b"to Thursday at ", b"ten, see you")
DESTINATION = "8613911110000"
KINDS = ("udh8", "udh16", "sar")
_sources = itertools.count(1)


def new_source() -> str:
    """A sender of its own (the velocity rule counts by sender)."""
    return f"86138{next(_sources):08d}"


@dataclass
class Long:
    """A 3-part message the test sends part by part; ``sequences`` are the SMSC's
    sequence numbers of each part, by part number (a retry adds one)."""

    kind: str  # udh8 (UDH IEI 0x00), udh16 (IEI 0x08) or sar (the SAR TLVs)
    ref: int
    texts: tuple[bytes, ...]
    source: str = field(default_factory=new_source)
    sequences: dict[int, list[int]] = field(default_factory=dict)

    def send(self, smsc: SmpplibSmsc, number: int, bind: int | None = None) -> int:
        """Send part ``number`` (1-based), by default on the bind that makes the parts
        of one message alternate between the two workers' binds."""
        if bind is None:
            bind = (self.ref + number) % 2
        total = len(self.texts)
        text = self.texts[number - 1]
        if self.kind == "sar":
            extra = {"sar_msg_ref_num": self.ref, "sar_total_segments": total,
                     "sar_segment_seqnum": number}  # fmt: skip
        else:
            if self.kind == "udh8":
                udh = bytes((5, 0x00, 3, self.ref, total, number))
            else:
                udh = bytes((6, 0x08, 4, self.ref >> 8, self.ref & 0xFF, total, number))
            text = udh + text
            extra = {"esm_class": 0x40}
        sequence = smsc.deliver(bind, self.source, DESTINATION, text, **extra)
        self.sequences.setdefault(number, []).append(sequence)
        return sequence

    @property
    def all_sequences(self) -> list[int]:
        return [s for number in sorted(self.sequences) for s in self.sequences[number]]

    @property
    def whole_text(self) -> bytes:
        return b"".join(self.texts)


def longs(texts: tuple[bytes, ...], first_ref: int) -> list[Long]:
    """One message of each kind; 16-bit refs above 255."""
    return [
        Long(kind, first_ref + i + (0x1200 if kind == "udh16" else 0), texts)
        for i, kind in enumerate(KINDS)
    ]


@contextlib.asynccontextmanager
async def concat_node(tmp_path, accounts=(), **policy):
    """A node with the rules and ``accounts`` (an `Ne` bound to each, reached from
    both workers), every decision recorded."""
    over = {
        "screening": {"enabled": True, "rules": RULES},
        "ne_accounts": list(accounts),
        "database": {"url": f"sqlite:///{tmp_path / 'var' / 'smps.db'}", "record": "all"},
        "policy": policy or None,
    }
    nes: dict[str, Ne] = {}
    async with smpplib_node(tmp_path, **over) as (smsc, node):
        for account in accounts:
            name = account["system_id"]
            nes[name] = Ne(node.smpp_port, name, account["password"])
            nes[name].client.start()
        await until(lambda: all(node.ne_binds(name) for name in nes))
        if nes:
            await reach_every_ne(smsc, list(nes.values()))
        try:
            yield smsc, node, nes
        finally:
            for ne in nes.values():
                await ne.client.stop()


class Decisions:
    """The node's stored decisions, read through the REST API as a client would."""

    def __init__(self, node: RunNode, token: str):
        self.url = f"http://127.0.0.1:{node.report['http_port']}/api/v1/decisions"
        self.headers = {"Authorization": f"Bearer {token}"}

    @classmethod
    async def of(cls, node: RunNode) -> "Decisions":
        store = await Store.open(f"sqlite:///{node.dir / 'var' / 'smps.db'}", migrate=False)
        try:
            return cls(node, await tokens.create_token(store, "reader", "viewer"))
        finally:
            await store.close()

    async def of_source(self, source: str, count: int) -> list[dict]:
        """The decisions on ``source``'s messages, oldest first, once ``count`` are stored
        (the master writes them in batches)."""
        found: list[dict] = []

        async def stored() -> bool:
            nonlocal found
            params = {"src": source, "limit": "100"}
            async with (
                aiohttp.ClientSession() as api,
                api.get(self.url, params=params, headers=self.headers) as page,
            ):
                assert page.status == 200, await page.text()
                found = (await page.json())["items"][::-1]
            return len(found) >= count

        await until(stored, timeout=15, interval=0.1)
        return found


def copies(ne: Ne, source: str) -> list:
    """The copies ``ne`` got of ``source``'s messages, as smpplib reads them."""
    return [pdu for pdu in map(parse, ne.received) if pdu.source_addr == source.encode()]


def assert_one_copy_of_the_whole(ne: Ne, message: Long, present=(1, 2, 3)) -> None:
    """One deliver_sm: the parts' text in message_payload in part order, no UDH
    (the concatenation element was the only one), no SAR TLVs."""
    [copy] = copies(ne, message.source)
    assert copy.message_payload == b"".join(message.texts[n - 1] for n in present), message
    assert not copy.short_message, message
    assert not copy.esm_class & 0x40, message
    assert copy.sar_msg_ref_num is None and copy.sar_segment_seqnum is None, message


def assert_each_part_copied(ne: Ne, message: Long, present=(1, 2, 3)) -> None:
    """The parts as the SMSC sent them, one copy each."""
    got = copies(ne, message.source)
    assert len(got) == len(present), message
    if message.kind == "sar":
        assert sorted((c.sar_segment_seqnum, c.short_message) for c in got) == [
            (n, message.texts[n - 1]) for n in present
        ], message
    else:
        assert all(c.esm_class & 0x40 for c in got), message
        assert sorted(c.short_message[c.short_message[0] + 1 :] for c in got) == sorted(
            message.texts[n - 1] for n in present
        ), message


def assert_one_row(rows: list[dict], message: Long, verdict: str, reason: str) -> None:
    """One decision for the whole message, on its first part's sequence number."""
    assert len(rows) == 1, (message, rows)
    [row] = rows
    assert (row["verdict"], row["reason"]) == (verdict, reason), (message, row)
    assert (row["concat_ref"], row["concat_total"], row["concat_part"]) == (message.ref, 3, None)
    assert row["sequence"] == message.sequences[1][0], (message, row)


async def test_a_keyword_split_across_parts_blocks_every_part_in_any_order_over_two_binds(
    tmp_path,
):
    async with concat_node(tmp_path, ACCOUNTS) as (smsc, node, nes):
        in_order = longs(SPAM, 1) + longs(CLEAN, 4)
        for message in in_order:
            for number in (1, 2, 3):
                message.send(smsc, number)
        backwards = longs(SPAM, 7) + longs(CLEAN, 10)
        for message in backwards:
            for number in (3, 2, 1):
                message.send(smsc, number)
        # Six messages at once, each in its own order, a single message between any two parts.
        mixed = longs(SPAM, 13) + longs(CLEAN, 16)
        orders = [(2, 1, 3), (3, 1, 2), (1, 3, 2)]
        singles = []
        for step in range(3):
            for i, message in enumerate(mixed):
                message.send(smsc, orders[i % 3][step])
                source = new_source()
                singles.append((source, smsc.deliver(i % 2, source, DESTINATION, b"hello")))

        messages = in_order + backwards + mixed
        spam = [m for m in messages if m.texts is SPAM]
        clean = [m for m in messages if m.texts is CLEAN]
        for message in messages:
            status = BLOCK if message.texts is SPAM else ALLOW
            assert await answers(smsc, message.all_sequences) == [status] * 3, message
        assert set(await answers(smsc, [s for _, s in singles])) == {ALLOW}

        # What the NEs got: nothing of the spam, the clean messages whole or in parts.
        whole, parts = nes["whole"], nes["parts"]
        await until(lambda: len(whole.received) >= len(clean) + len(singles))
        await until(lambda: len(parts.received) >= 3 * len(clean) + len(singles))
        for message in clean:
            assert_one_copy_of_the_whole(whole, message)
            assert_each_part_copied(parts, message)
        for message in spam:
            assert copies(whole, message.source) == copies(parts, message.source) == []
        for source, _ in singles:
            assert len(copies(whole, source)) == len(copies(parts, source)) == 1
        assert len(whole.received) == len(clean) + len(singles)
        assert len(parts.received) == 3 * len(clean) + len(singles)

        decisions = await Decisions.of(node)
        for message in spam:
            rows = await decisions.of_source(message.source, 1)
            assert_one_row(rows, message, "block", "rule")
            assert rows[0]["rule_id"] == "spam-words"
        for message in clean:
            assert_one_row(await decisions.of_source(message.source, 1), message, "allow",
                           "all_allow")  # fmt: skip


async def test_the_decision_of_a_whole_message_names_its_parts(tmp_path):
    """The parts' sequence numbers in part order, 0 for one that never came."""
    async with concat_node(tmp_path, concat_hold="300ms") as (smsc, node, _nes):
        complete, incomplete = Long("udh8", 7, CLEAN), Long("sar", 8, CLEAN)
        for number in (3, 1, 2):
            complete.send(smsc, number)
        incomplete.send(smsc, 2)
        incomplete.send(smsc, 1)
        await answers(smsc, complete.all_sequences + incomplete.all_sequences)
        decisions = await Decisions.of(node)
        [row] = await decisions.of_source(complete.source, 1)
        assert row["parts"] == [complete.sequences[n][0] for n in (1, 2, 3)]
        [row] = await decisions.of_source(incomplete.source, 1)
        assert row["parts"] == [incomplete.sequences[1][0], incomplete.sequences[2][0], 0]


async def test_a_missing_last_part_is_judged_at_the_hold_and_late_parts_get_the_verdict(tmp_path):
    """policy.concat_hold 1 s (the default), on_incomplete judge_parts (the default)."""
    async with concat_node(tmp_path, ACCOUNTS) as (smsc, node, nes):
        straggler = Long("udh8", 200, CLEAN)
        started = time.monotonic()
        straggler.send(smsc, 1)
        straggler.send(smsc, 2)
        assert await answers(smsc, straggler.all_sequences) == [ALLOW, ALLOW]
        took = time.monotonic() - started
        assert 0.8 < took < 1.0 + 1.5, took  # the hold, then one NE round trip
        await until(lambda: copies(nes["parts"], straggler.source)[1:])
        assert_one_copy_of_the_whole(nes["whole"], straggler, present=(1, 2))
        assert_each_part_copied(nes["parts"], straggler, present=(1, 2))

        # The last part, late, and a retry of the first: the message's verdict at once.
        late = [straggler.send(smsc, 3), straggler.send(smsc, 1, bind=0)]
        assert await answers(smsc, late) == [ALLOW, ALLOW]
        decisions = await Decisions.of(node)
        rows = await decisions.of_source(straggler.source, 3)  # late ones from both workers
        assert sorted((r["reason"], r["concat_total"], r["sequence"]) for r in rows) == [
            ("all_allow", 3, straggler.sequences[1][0]),
            ("late_part", 3, late[0]),
            ("late_part", 3, late[1]),
        ]
        # The NEs were not asked again.
        assert len(copies(nes["whole"], straggler.source)) == 1
        assert len(copies(nes["parts"], straggler.source)) == 2

        # A keyword in the parts present blocks them.
        spam = Long("sar", 201, SPAM)
        spam.send(smsc, 2)
        spam.send(smsc, 1)
        assert await answers(smsc, spam.all_sequences) == [BLOCK, BLOCK]
        assert await answers(smsc, [spam.send(smsc, 3)]) == [BLOCK]


async def test_a_retried_part_gets_its_messages_verdict_and_velocity_counts_a_message_once(
    tmp_path,
):
    async with concat_node(tmp_path, ACCOUNTS) as (smsc, node, nes):
        sender = new_source()
        messages = [Long(kind, 30 + i, CLEAN, sender) for i, kind in enumerate(KINDS)]
        first, second, third = messages
        # The SMSC retries part 2 of the first message, on the other bind, before part 3.
        first.send(smsc, 1)
        first.send(smsc, 2)
        first.send(smsc, 2, bind=(first.ref + 3) % 2)
        first.send(smsc, 3)
        assert await answers(smsc, first.all_sequences) == [ALLOW] * 4
        for message, status in ((second, ALLOW), (third, BLOCK)):  # the limit is 2
            for number in (1, 2, 3):
                message.send(smsc, number)
            assert await answers(smsc, message.all_sequences) == [status] * 3, message
        # A retry after the verdict: the first message's verdict, not the sender's limit.
        assert await answers(smsc, [first.send(smsc, 3)]) == [ALLOW]

        await until(lambda: len(copies(nes["whole"], sender)) >= 2)
        assert [c.message_payload for c in copies(nes["whole"], sender)] == [
            first.whole_text,
            second.whole_text,
        ]
        decisions = await Decisions.of(node)
        rows = await decisions.of_source(sender, 4)  # from both workers: in no set order
        assert sorted((r["concat_ref"], r["verdict"], r["reason"], r["rule_id"]) for r in rows) == [
            (first.ref, "allow", "all_allow", None),
            (first.ref, "allow", "late_part", None),
            (second.ref, "allow", "all_allow", None),
            (third.ref, "block", "rule", "flood-sender"),
        ]


async def test_a_message_tempfailed_at_the_hold_is_judged_again_when_the_smsc_resends_it(
    tmp_path,
):
    """on_incomplete tempfail: the SMSC sends the parts again, and the whole message
    that then comes is judged (no NE bound: allowed, policy.on_no_ne)."""
    async with concat_node(tmp_path, concat_hold="300ms", on_incomplete="tempfail") as (
        smsc,
        _node,
        _nes,
    ):
        message = Long("udh16", 0x4321, CLEAN)
        message.send(smsc, 1)
        message.send(smsc, 2)
        assert await answers(smsc, message.all_sequences) == [TEMPFAIL, TEMPFAIL]
        again = [message.send(smsc, number) for number in (1, 2, 3)]
        assert await answers(smsc, again) == [ALLOW] * 3
