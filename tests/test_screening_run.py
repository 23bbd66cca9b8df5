"""The screening engine in `smps run`: 2 workers, an SMSC whose PDUs smpplib builds
and parses (tests/smpplib_smsc.py), one bind to it per worker. Each rule type
blocks what it should and nothing else; a flood from one sender spread over both
workers lets exactly the rule's limit through; bound NEs get no copy of what a
rule blocked and a copy of everything else; a rule made through the API reaches
both workers without a restart, and `smps screen test` sees the workers' counts."""

import asyncio
import contextlib
import sqlite3

import aiohttp

from smps._native.numbers import normalise_address
from smps._native.pdu import decode_sm
from smps.store import tokens
from smps.store.db import Store
from tests.helpers import until
from tests.nodes import RunNode
from tests.peers import Ne
from tests.smpplib_smsc import answers, reach_every_ne, smpplib_node

BLOCK, ALLOW = 0x66, 0
FLOOD_LIMIT = 50
RULES = [
    {"id": "deny-senders", "type": "list", "field": "source",
     "entries": ["8613800000666", "prefix:86170", "FAKEBANK"], "action": "block"},
    {"id": "vip", "type": "list", "field": "destination", "entries": ["prefix:8613999"],
     "action": "allow"},
    {"id": "spam-words", "type": "keyword", "patterns": ["free iphone", "you have won"]},
    {"id": "loan-regex", "type": "regex", "patterns": [r"loan\s+at\s+\d+%"]},
    {"id": "bad-urls", "type": "url", "entries": ["bad.example"]},
    {"id": "flood-sender", "type": "velocity", "key": "source", "limit": FLOOD_LIMIT,
     "window": "60s"},
    {"id": "special", "type": "special", "kinds": ["silent", "flash", "binary", "wap_push"]},
    {"id": "watch-lottery", "type": "keyword", "patterns": ["lottery"], "action": "monitor"},
]  # fmt: skip
# "[.]" in GSM 7-bit (data_coding 0): the brackets are in the extension table.
GSM7_BRACKETS = b"\x1b\x3c.\x1b\x3eexample/x"
WAP_PUSH_UDH = bytes([0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0])  # ports 2948 <- 9200

# (source, destination, text, extra deliver_sm fields, expected status, rule that fires)
CASES = [
    ("8613800000666", "8613911110001", b"hello", {}, BLOCK, "deny-senders"),
    ("8617012345678", "8613911110002", b"hello", {}, BLOCK, "deny-senders"),
    ("FakeBank", "8613911110003", b"hello", {"source_addr_ton": 5, "source_addr_npi": 0},
     BLOCK, "deny-senders"),
    ("8613811110004", "8613999000001", b"free iphone for you", {}, ALLOW, "vip"),
    ("8613811110005", "8613911110005", b"You have WON a prize", {}, BLOCK, "spam-words"),
    ("8613811110006", "8613911110006", b"Loan at  3% today", {}, BLOCK, "loan-regex"),
    ("8613811110007", "8613911110007", b"see hxxp://promo.bad" + GSM7_BRACKETS, {}, BLOCK,
     "bad-urls"),
    ("8613811110008", "8613911110008", b"hello", {"protocol_id": 0x40}, BLOCK, "special"),
    ("8613811110009", "8613911110009", b"flash", {"data_coding": 0x10}, BLOCK, "special"),
    ("8613811110010", "8613911110010", b"\x01\x02\x03", {"data_coding": 0x04}, BLOCK,
     "special"),
    ("8613811110011", "8613911110011", WAP_PUSH_UDH + b"\x01\x06", {"esm_class": 0x40,
     "data_coding": 0x04}, BLOCK, "special"),
    ("8613811110012", "8613911110012", b"the lottery is open", {}, ALLOW, "watch-lottery"),
    ("8613811110013", "8613911110013", b"see good.example, loan soon", {}, ALLOW, None),
    ("8613811110014", "8613911110014", b"plain words", {}, ALLOW, None),
]  # fmt: skip


@contextlib.asynccontextmanager
async def screening_node(tmp_path, accounts=None):
    over = {"screening": {"enabled": True, "rules": RULES}, "ne_accounts": accounts or []}
    async with smpplib_node(tmp_path, **over) as (smsc, node):
        yield smsc, node


def hits(node: RunNode) -> dict[tuple[str, str], float]:
    found = {}
    for line in node.metrics_text().splitlines():
        if line.startswith("smps_screening_hits_total{"):
            labels, value = line.rsplit(" ", 1)
            pairs = dict(p.split("=") for p in labels[labels.index("{") + 1 : -1].split(","))
            found[pairs["rule"].strip('"'), pairs["action"].strip('"')] = float(value)
    return found


async def test_each_rule_type_with_no_ne_and_an_exact_flood_limit_over_two_workers(tmp_path):
    async with screening_node(tmp_path) as (smsc, node):
        sequences = [
            smsc.deliver(i % 2, source, destination, text, **extra)
            for i, (source, destination, text, extra, _status, _rule) in enumerate(CASES)
        ]
        statuses = await answers(smsc, sequences)
        for case, status in zip(CASES, statuses, strict=True):
            assert status == case[4], case

        # One sender floods, its messages alternating between the two workers' binds.
        flood = [smsc.deliver(i % 2, "8613700000001", "8613911119999", b"buy") for i in range(120)]
        statuses = await answers(smsc, flood)
        assert statuses.count(ALLOW) == FLOOD_LIMIT
        assert statuses.count(BLOCK) == 120 - FLOOD_LIMIT

        # Over both workers, the hits per rule (summed by the master's /metrics).
        await asyncio.sleep(1.5)  # the workers' stats reach the master every second
        counted = hits(node)
        assert counted[("flood-sender", "block")] == 120 - FLOOD_LIMIT
        assert counted[("deny-senders", "block")] == 3
        assert counted[("special", "block")] == 4
        assert counted[("watch-lottery", "monitor")] == 1
        assert counted[("vip", "allow")] == 1

        # Every decision a rule fired on is stored with the rule's id (record: non_allow).
        expected = sorted(
            (source, rule) for source, _d, _t, _e, _s, rule in CASES if rule is not None
        )
        await until(lambda: len(stored_rules(node)) >= len(expected) + 70, timeout=15)
        rows = stored_rules(node)
        assert sorted(r for r in rows if r[1] != "flood-sender") == expected
        assert sum(1 for r in rows if r[1] == "flood-sender") == 120 - FLOOD_LIMIT


def stored_rules(node: RunNode) -> list[tuple[str, str]]:
    """(source_addr, rule_id) of the stored decisions that name a rule."""
    with contextlib.closing(sqlite3.connect(node.dir / "var" / "smps.db")) as db:
        return db.execute(
            "SELECT source_addr, rule_id FROM decisions WHERE rule_id IS NOT NULL"
        ).fetchall()


async def test_nes_get_no_copy_of_what_a_rule_blocked(tmp_path):
    accounts = [{"system_id": f"ne{i}", "password": "pw", "max_binds": 2} for i in range(3)]
    async with screening_node(tmp_path, accounts) as (smsc, node):
        nes = [Ne(node.smpp_port, f"ne{i}", "pw") for i in range(3)]
        for ne in nes:
            ne.client.start()
        try:
            await until(lambda: all(node.ne_binds(f"ne{i}") for i in range(3)))
            await reach_every_ne(smsc, nes)
            sequences = [
                smsc.deliver(i % 2, source, destination, text, **extra)
                for i, (source, destination, text, extra, _status, _rule) in enumerate(CASES)
            ]
            statuses = await answers(smsc, sequences)
            assert statuses == [case[4] for case in CASES]
            allowed = {
                normalise_address(case[0].encode(), 1, 1, b"") for case in CASES if case[4] == ALLOW
            }
            for ne in nes:
                copies = {decode_sm(pdu).source_addr for pdu in ne.received}
                assert copies == allowed, ne.client.cfg.system_id
        finally:
            for ne in nes:
                await ne.client.stop()


async def test_a_rule_made_through_the_api_reaches_both_workers_without_a_restart(tmp_path):
    async with screening_node(tmp_path) as (smsc, node):
        workers = [w["pid"] for w in node.status()["workers"]]
        store = await Store.open(f"sqlite:///{node.dir / 'var' / 'smps.db'}", migrate=False)
        try:
            token = await tokens.create_token(store, "fraud-team", "admin")
        finally:
            await store.close()
        text = b"cheap pills here"
        sent = [smsc.deliver(b, f"861382200000{b}", "8613911110100", text) for b in (0, 1)]
        assert await answers(smsc, sent) == [ALLOW, ALLOW]

        rule = {"id": "pills", "type": "keyword", "patterns": ["cheap pills"]}
        url = f"http://127.0.0.1:{node.report['http_port']}/api/v1/screening/rules"
        auth = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as api, api.post(url, json=rule, headers=auth) as made:
            assert made.status == 201, await made.text()

        async def both_workers_block() -> bool:
            sent = [smsc.deliver(b, f"861382200001{b}", "8613911110101", text) for b in (0, 1)]
            return await answers(smsc, sent) == [BLOCK, BLOCK]

        await until(both_workers_block, timeout=15, interval=0.05)  # every message answered
        assert [w["pid"] for w in node.status()["workers"]] == workers  # no restart

        printed = await screen_test(node, token, "8613811110001", "--text", "Cheap PILLS")
        assert printed == [
            "fired   pills (keyword, block)",
            "verdict block by pills: the SMSC gets 0x00000066 at once, no NE gets a copy",
        ]
        # The master's trial reads the counts both workers took: a sender's allowance
        # used up over the two binds shows, and trying it took nothing.
        flood = [smsc.deliver(i % 2, "8613700000002", "8613911110103", b"hi")
                 for i in range(FLOOD_LIMIT)]  # fmt: skip
        assert set(await answers(smsc, flood)) == {ALLOW}
        for _ in range(3):
            printed = await screen_test(node, token, "8613700000002")
            assert printed[0] == "fired   flood-sender (velocity, block)"
        assert await screen_test(node, token, "8613700000003") == [
            "no rule fired",
            "verdict none: no rule decided, the NEs' verdict decides",
        ]
        sent = [smsc.deliver(0, "8613700000003", "8613911110104", b"hi")]
        assert await answers(smsc, sent) == [ALLOW]


async def screen_test(node: RunNode, token: str, source: str, *more: str) -> list[str]:
    """`smps screen test -c FILE` (the node's HTTP port from its control socket): its lines."""
    args = ("screen", "test", "--from", source, "--to", "8613911110200", "--token", token, *more)
    result = await asyncio.to_thread(node.smps, *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


async def test_a_list_file_is_read_again_on_a_reload_through_the_api(tmp_path):
    """The list file changes; POST /api/v1/reload (what SIGHUP does) makes both workers
    block the sender it added; a bad line is refused with its place, and the rules stay."""
    deny = tmp_path / "deny.txt"
    deny.write_text("# senders\n8613800000001\n")
    rules = [{"id": "deny-file", "type": "list", "field": "source", "file": str(deny)}]
    async with smpplib_node(tmp_path, screening={"enabled": True, "rules": rules}) as (
        smsc,
        node,
    ):
        store = await Store.open(f"sqlite:///{node.dir / 'var' / 'smps.db'}", migrate=False)
        try:
            token = await tokens.create_token(store, "ops", "admin")
            viewer = await tokens.create_token(store, "wall", "viewer")
        finally:
            await store.close()
        url = f"http://127.0.0.1:{node.report['http_port']}/api/v1/reload"
        sent = [smsc.deliver(b, "8613800000002", "8613911110300") for b in (0, 1)]
        assert await answers(smsc, sent) == [ALLOW, ALLOW]

        deny.write_text("# senders\n8613800000001\n8613800000002\n")
        async with aiohttp.ClientSession() as api:
            async with api.post(url, headers={"Authorization": f"Bearer {viewer}"}) as refused:
                assert refused.status == 403
            async with api.post(url, headers={"Authorization": f"Bearer {token}"}) as done:
                assert (done.status, await done.json()) == (200, {"result": "applied"})
            sent = [smsc.deliver(b, "8613800000002", "8613911110301") for b in (0, 1)]
            assert await answers(smsc, sent) == [BLOCK, BLOCK]

            deny.write_text("8613800000001\nprefix:oops\n")
            async with api.post(url, headers={"Authorization": f"Bearer {token}"}) as bad:
                assert bad.status == 409
                assert "deny.txt line 2: 'prefix:oops'" in (await bad.json())["error"]
        sent = [smsc.deliver(b, "8613800000002", "8613911110302") for b in (0, 1)]
        assert await answers(smsc, sent) == [BLOCK, BLOCK]  # the rules as they were
