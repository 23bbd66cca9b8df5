"""The proxy core end to end: a simulated SMSC, SMPS's node, and NEs on real
loopback sockets. Every test checks that each original got exactly one answer."""

import asyncio
import contextlib
import tempfile
import time

import pytest
from prometheus_client import generate_latest

from smps._native import text
from smps._native.pdu import CommandId, Status, decode_sm, encode
from smps.app import Node
from smps.proxy.trace_store import MemoryTraceSink
from smps.sim.smsc import SimSmsc
from smps.web.pages import dashboard
from tests.helpers import until
from tests.nodes import smsc_section
from tests.peers import Ne, allow, hold

BLOCK = 0x66


class ManualClock:
    """The verdict engine's clock, advanced by the test (no 2 s sleeps)."""

    def __init__(self) -> None:
        import time

        self.offset = 0.0
        self._monotonic = time.monotonic

    def __call__(self) -> float:
        return self._monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def block(_view):
    return BLOCK


ACCOUNTS = [
    {"system_id": "antispam", "password": "pw1", "max_binds": 4},
    {"system_id": "fraud", "password": "pw2", "max_binds": 4},
    {"system_id": "audit", "password": "pw3", "max_binds": 4},
]


@contextlib.asynccontextmanager
async def proxy(
    make_config,
    *,
    accounts=ACCOUNTS,
    policy=None,
    flow=None,
    routes=(),
    database=None,
    clock=None,
    smsc_window=1000,
    trace=None,
    state_dir=None,
    trace_sink=None,
    screening=None,
):
    with tempfile.TemporaryDirectory(prefix="smps-test-") as scratch:
        async with _proxy(make_config, state_dir or scratch, accounts=accounts, policy=policy,
                          flow=flow, routes=routes, database=database, clock=clock,
                          smsc_window=smsc_window, trace=trace, trace_sink=trace_sink,
                          screening=screening) as running:  # fmt: skip
            yield running


@contextlib.asynccontextmanager
async def _proxy(make_config, state_dir, *, accounts, policy, flow, routes, database, clock,
                 smsc_window, trace, trace_sink, screening):  # fmt: skip
    sim = SimSmsc(window=smsc_window, response_timeout=30)
    smsc_port = await sim.start()
    cfg = make_config(
        log={"file": ""},
        smsc=[smsc_section(smsc_port, binds=1)],
        server={"listen": "127.0.0.1:0", "enquire_link": "30s"},
        web={"listen": "127.0.0.1:0"},
        ne_accounts=list(accounts),
        routes=list(routes),
        policy=policy or {},
        flow=flow or {},
        database={"record": "all", "url": f"sqlite:///{state_dir}/smps.db", **(database or {})},
        trace=trace or {},
        screening=screening or {},
        node={"state_dir": str(state_dir)},
    )
    node = Node(cfg, trace_sink=trace_sink)
    if clock is not None:
        node.dispatcher.clock = clock  # the pending table gets time only from this clock
    task = asyncio.create_task(node.run())
    nes: list[Ne] = []

    async def add_ne(system_id, password, verdict, binds=1):
        ne = Ne(node.smpp_port, system_id, password, verdict, binds=binds)
        ne.client.start()
        nes.append(ne)
        await until(lambda: node.ne_server.registry.count(system_id) == binds)
        return ne

    try:
        await sim.wait_bound()
        yield sim, node, add_ne
    finally:
        for ne in nes:
            await ne.client.stop()
        node.stop()
        await asyncio.wait_for(task, 10)
        await sim.stop()


def decisions(node):
    return list(node.recent)


async def test_all_allow(make_config):
    async with proxy(make_config) as (sim, node, add_ne):
        for name, pw in (("antispam", "pw1"), ("fraud", "pw2"), ("audit", "pw3")):
            await add_ne(name, pw, allow)
        numbers = [sim.send_deliver() for _ in range(20)]
        await until(lambda: len(sim.answers) == 20)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        await until(lambda: len(decisions(node)) == 20)
        record = decisions(node)[0]
        assert (record.verdict, record.reason) == ("allow", "all_allow")
        assert {r.account for r in record.results} == {"antispam", "fraud", "audit"}
        assert all(r.verdict == "allow" and not r.late for r in record.results)
        assert sim.missing == 0 and sim.duplicates == 0


async def test_block_wins_before_others_answer(make_config):
    async with proxy(make_config) as (sim, node, add_ne):
        await add_ne("antispam", "pw1", block)
        slow = await add_ne("fraud", "pw2", hold)
        number = sim.send_deliver(short_message=b"WIN A PRIZE")
        await until(lambda: number in sim.answers)
        assert sim.answers[number][0] == BLOCK
        assert slow.held  # the other NE has not answered yet
        slow.release(Status.ROK)
        await until(lambda: decisions(node))
        (record,) = decisions(node)
        assert (record.verdict, record.reason, record.deciding_account) == (
            "block",
            "block",
            "antispam",
        )
        late = {r.account: r for r in record.results}
        assert late["fraud"].late and late["fraud"].verdict == "allow"
        assert not late["antispam"].late


async def test_timeout_allows_at_deadline(make_config):
    clock = ManualClock()
    async with proxy(make_config, clock=clock) as (sim, node, add_ne):
        silent = await add_ne("antispam", "pw1", hold)
        await add_ne("fraud", "pw2", allow)
        started = time.monotonic()
        number = sim.send_deliver()
        await until(lambda: len(silent.held) == 1)
        await asyncio.sleep(0.05)
        assert number not in sim.answers  # still waiting for antispam
        clock.advance(2.0)
        await until(lambda: number in sim.answers)
        elapsed = time.monotonic() - started  # real time: the test's pause, ticks, load
        assert sim.answers[number][0] == Status.ROK
        (record,) = decisions(node)
        assert (record.verdict, record.reason) == ("allow", "timeout")
        waited = (record.decided_us - record.arrived_us) / 1e6
        assert 2.0 <= waited <= 2.0 + elapsed  # at the deadline, not a tick later than seen
        silent.release()
        await until(lambda: node.dispatcher.stats.late_answers == 1)
        assert sim.duplicates == 0


@pytest.mark.parametrize(
    ("on_timeout", "status", "verdict"),
    [("block", BLOCK, "block"), ("tempfail", 0x64, "tempfail"), ("allow", 0, "allow")],
)
async def test_on_timeout_variants(make_config, on_timeout, status, verdict):
    async with proxy(make_config, policy={"timeout": "100ms", "on_timeout": on_timeout}) as (
        sim,
        node,
        add_ne,
    ):
        await add_ne("antispam", "pw1", hold)
        number = sim.send_deliver()
        await until(lambda: number in sim.answers)
        assert sim.answers[number][0] == status
        (record,) = decisions(node)
        assert (record.verdict, record.reason) == (verdict, "timeout")


@pytest.mark.parametrize(
    ("on_no_ne", "status"), [("allow", 0), ("block", BLOCK), ("tempfail", 0x64)]
)
async def test_on_no_ne_variants(make_config, on_no_ne, status):
    async with proxy(make_config, policy={"on_no_ne": on_no_ne}) as (sim, node, _add_ne):
        number = sim.send_deliver()
        await until(lambda: number in sim.answers)
        assert sim.answers[number][0] == status
        (record,) = decisions(node)
        assert record.reason == "no_ne" and record.results == []


async def test_monitor_account_never_decides(make_config):
    accounts = [dict(ACCOUNTS[0]), {**ACCOUNTS[1], "mode": "monitor"}]
    async with proxy(make_config, accounts=accounts) as (sim, node, add_ne):
        await add_ne("antispam", "pw1", allow)
        await add_ne("fraud", "pw2", block)
        number = sim.send_deliver()
        await until(lambda: number in sim.answers)
        assert sim.answers[number][0] == Status.ROK
        await until(lambda: decisions(node))
        (record,) = decisions(node)
        results = {r.account: r for r in record.results}
        assert results["fraud"].verdict == "block" and not results["fraud"].decisive
        assert record.verdict == "allow"


async def test_monitor_answers_are_counted_apart_and_never_late(make_config):
    """A monitor account's answers come after the verdict (it never decides): they count
    in smps_monitor_answers_total, not smps_late_answers_total, and its copies that got
    no answer are what the dashboard's Timeouts column shows."""
    clock = ManualClock()
    accounts = [ACCOUNTS[0], {**ACCOUNTS[1], "mode": "monitor"}, {**ACCOUNTS[2], "mode": "monitor"}]
    trace, sink = {"country_code": "86", "rules": [{"number": "8613800138000"}]}, MemoryTraceSink()
    async with proxy(make_config, accounts=accounts, clock=clock, trace=trace,
                     trace_sink=sink) as (sim, node, add_ne):  # fmt: skip
        await add_ne("antispam", "pw1", block)
        monitor = await add_ne("fraud", "pw2", hold)
        await add_ne("audit", "pw3", hold)  # never answers
        numbers = [sim.send_deliver(source_addr=b"8613800138000") for _ in range(3)]
        await until(lambda: len(sim.answers) == 3 and len(monitor.held) == 3)
        monitor.release(Status.ROK)  # after the verdicts
        await until(lambda: node.dispatcher.lanes["fraud"].monitor_answers == 3)
        clock.advance(2.0)  # audit's copies time out
        await until(lambda: len(decisions(node)) == 3)
        metrics = generate_latest(node.registry).decode()
        await until(lambda: node.writer.pending == 0)

        async def counted() -> bool:  # the per-minute counts follow the running totals
            return (await dashboard._timeout_rates(node.store)).get("audit") == "100.0%"

        await until(counted)
        timeouts = await dashboard._timeout_rates(node.store)
    assert {sim.answers[n][0] for n in numbers} == {BLOCK}
    assert node.dispatcher.stats.late_answers == 0
    assert "\nsmps_late_answers_total 0.0\n" in metrics
    assert 'smps_monitor_answers_total{account="fraud"} 3.0' in metrics
    assert 'smps_monitor_answers_total{account="audit"} 0.0' in metrics
    for record in decisions(node):
        results = {r.account: r for r in record.results}
        assert (results["fraud"].verdict, results["fraud"].late) == ("allow", False)
        assert results["audit"].verdict == "none"
    assert timeouts == {"antispam": "0.0%", "fraud": "0.0%", "audit": "100.0%"}
    answers = [e for e in sink if e.kind == "answered" and e.account == "fraud"]
    assert len(answers) == 3 and not any(e.late for e in answers)  # the ladder: no LATE badge


async def test_ne_disconnect_turns_copies_none_at_once(make_config):
    async with proxy(make_config, accounts=ACCOUNTS[:2]) as (sim, node, add_ne):
        flaky = await add_ne("antispam", "pw1", hold)
        await add_ne("fraud", "pw2", allow)
        number = sim.send_deliver()
        await until(lambda: flaky.held)
        await flaky.client.stop()  # the bind drops with the copy outstanding
        await until(lambda: number in sim.answers, timeout=1.5)  # well before the 2 s deadline
        assert sim.answers[number][0] == Status.ROK  # NONE counts as no answer → on_timeout allow
        (record,) = decisions(node)
        results = {r.account: r.verdict for r in record.results}
        assert results == {"antispam": "none", "fraud": "allow"}


async def test_copy_retried_on_another_bind_when_one_drops(make_config):
    async with proxy(make_config, accounts=ACCOUNTS[:1]) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", hold, binds=2)
        number = sim.send_deliver()
        await until(lambda: ne.held)
        session, _pdu = ne.held.pop()
        session.transport.abort()  # that bind dies; the other is still up
        await until(lambda: ne.held)  # the copy arrives again on the other bind
        ne.release(BLOCK)
        await until(lambda: number in sim.answers)
        assert sim.answers[number][0] == BLOCK
        assert node.dispatcher.stats.retried == 1


async def test_window_full_copies_wait_in_account_queue(make_config):
    accounts = [{**ACCOUNTS[0], "window": 1}]
    async with proxy(make_config, accounts=accounts) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", hold)
        numbers = [sim.send_deliver() for _ in range(5)]
        await until(lambda: len(ne.held) == 1)
        lane = node.dispatcher.lanes["antispam"]
        assert len(lane.queue) == 4  # the window of one holds the rest back
        while len(sim.answers) < 5:
            await until(lambda: ne.held or len(sim.answers) == 5)
            ne.release(Status.ROK)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert node.dispatcher.stats.queue_dropped == 0


async def test_throttle_under_overload(make_config):
    async with proxy(make_config, flow={"max_inflight": 3}) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", hold)
        numbers = [sim.send_deliver() for _ in range(10)]
        await until(lambda: sum(1 for n in numbers if n in sim.answers) == 7)
        throttled = [n for n in numbers if sim.answers.get(n, (None,))[0] == Status.RTHROTTLED]
        assert len(throttled) == 7
        assert node.dispatcher.in_flight == 3
        await until(lambda: len(ne.held) == 3)
        ne.release(Status.ROK)
        await until(lambda: len(sim.answers) == 10)
        assert node.dispatcher.stats.throttled == 7
        assert sim.duplicates == 0


async def test_sticky_block_of_parts_judged_alone(make_config):
    # concat_max_held 0: no whole-message verdicts, each part is judged as it comes.
    policy = {"concat_max_held": 0}
    async with proxy(make_config, accounts=ACCOUNTS[:1], policy=policy) as (sim, node, add_ne):
        asked = []

        def block_first_part(view):
            asked.append(view)
            return BLOCK if len(asked) == 1 else None  # the NE is slow on the others

        ne = await add_ne("antispam", "pw1", block_first_part)
        _coding, parts = text.split("spam " * 80, ref=42)
        assert len(parts) == 3
        numbers = [sim.send_deliver(short_message=p, esm_class=0x40) for p in parts]
        # Parts 2 and 3 were already in flight: the block on part 1 decides them too.
        await until(lambda: all(n in sim.answers for n in numbers))
        assert [sim.answers[n][0] for n in numbers] == [BLOCK] * 3
        assert len(asked) == 3 and len(ne.held) == 2
        # A part that arrives later (an SMSC resend) is blocked without asking.
        again = sim.send_deliver(short_message=parts[2], esm_class=0x40)
        await until(lambda: again in sim.answers)
        assert sim.answers[again][0] == BLOCK
        assert len(asked) == 3
        ne.release(Status.ROK)
        await until(lambda: len(decisions(node)) == 4)
        reasons = sorted(r.reason for r in decisions(node))
        assert reasons == ["block", "sticky", "sticky", "sticky"]
        assert sim.duplicates == 0


async def test_receipts_pass_without_copies(make_config):
    async with proxy(make_config) as (sim, _node, add_ne):
        ne = await add_ne("antispam", "pw1", block)
        number = sim.send_deliver(esm_class=0x04, short_message=b"id:1 stat:DELIVRD")
        await until(lambda: number in sim.answers)
        assert sim.answers[number][0] == Status.ROK
        assert ne.received == []


async def test_routes_narrow_targets(make_config):
    routes = [
        {"name": "intl", "accounts": ["fraud"], "source_prefix": ["44"]},
        {"name": "cn", "accounts": ["antispam"], "source_prefix": ["86"]},
    ]
    async with proxy(make_config, accounts=ACCOUNTS[:2], routes=routes) as (sim, _node, add_ne):
        spam = await add_ne("antispam", "pw1", allow)
        fraud = await add_ne("fraud", "pw2", allow)
        sim.send_deliver(source_addr=b"8613800138000")
        sim.send_deliver(source_addr=b"447700900123")
        await until(lambda: len(sim.answers) == 2)
        assert [decode_sm(p).source_addr for p in spam.received] == [b"8613800138000"]
        assert [decode_sm(p).source_addr for p in fraud.received] == [b"447700900123"]


async def test_malformed_original_gets_error_status(make_config):
    async with proxy(make_config) as (sim, node, add_ne):
        await add_ne("antispam", "pw1", allow)
        pdu = bytearray(encode(CommandId.DELIVER_SM, 0, {"short_message": b"hello"}))
        pdu[-6] = 200  # sm_length claims more octets than the PDU holds
        answers = []
        sim.bound_sessions[0].send(bytes(pdu), lambda ctx, status, resp: answers.append(status))
        await until(lambda: answers)
        assert answers == [Status.RINVMSGLEN]
        assert node.dispatcher.stats.received == 0  # refused before it became an original


async def test_data_sm_original(make_config):
    async with proxy(make_config) as (sim, _node, add_ne):
        ne = await add_ne("antispam", "pw1", block)
        number = sim.send_deliver(command_id=CommandId.DATA_SM, short_message=b"payload")
        await until(lambda: number in sim.answers)
        assert sim.answers[number][0] == BLOCK
        assert decode_sm(ne.received[0]).command_id == CommandId.DATA_SM


async def test_traced_message_event_ladder(make_config, tmp_path):
    from smps.proxy.trace_store import MemoryTraceSink

    events = MemoryTraceSink()
    clock = ManualClock()
    trace = {
        "decode_content": True,
        "country_code": "86",
        "rules": [{"number": "+8613800138000", "side": "sender"}],
    }
    async with proxy(
        make_config, trace=trace, trace_sink=events, clock=clock, state_dir=tmp_path
    ) as (sim, node, add_ne):
        slow = await add_ne("antispam", "pw1", hold)
        fraud = await add_ne("fraud", "pw2", hold)
        silent = await add_ne("audit", "pw3", hold)
        sim.send_deliver(source_addr=b"+8613800138000")  # sloppy international form
        untraced = sim.send_deliver(source_addr=b"8613900139000")
        await until(lambda: all(len(ne.held) == 2 for ne in (slow, fraud, silent)))
        for ne in (slow, fraud):  # the traced original first
            ne.held.sort(key=lambda held: decode_sm(held[1]).source_addr)
        session, pdu = fraud.held.pop(0)
        session.respond(pdu, BLOCK)  # decides the traced original
        await until(lambda: len(sim.answers) >= 1)
        session, pdu = slow.held.pop(0)
        session.respond(pdu, Status.ROK)  # after the verdict: a late answer
        await until(lambda: node.dispatcher.stats.late_answers == 1)
        clock.advance(2.0)  # audit never answers: its copy times out
        await until(lambda: untraced in sim.answers and len(events) > 0)
    kinds = [(e.kind, e.account) for e in events]
    assert kinds[0] == ("received", None)
    assert sorted(kinds[1:4]) == [
        ("copy_sent", "antispam"),
        ("copy_sent", "audit"),
        ("copy_sent", "fraud"),
    ]
    order = kinds.index
    assert order(("answered", "fraud")) < order(("final", None)) < order(("answered", "antispam"))
    late = next(e for e in events if e.kind == "answered" and e.account == "antispam")
    assert late.late and late.verdict == "allow"
    assert kinds[-1] == ("timeout", "audit")
    final = next(e for e in events if e.kind == "final")
    assert (final.status, final.verdict, final.reason) == (BLOCK, "block", "block")
    received = events.of_message(final.message_id)[0]
    assert received.text == "hello" and received.encoding == "gsm7"
    assert len({e.message_id for e in events}) == 1  # the untraced message left nothing


async def test_pause_under_overload_holds_reads_instead_of_throttling(make_config):
    async with proxy(make_config, flow={"max_inflight": 10, "on_overload": "pause"}) as (
        sim,
        node,
        add_ne,
    ):
        ne = await add_ne("antispam", "pw1", hold)
        numbers = [sim.send_deliver() for _ in range(30)]
        await until(lambda: len(ne.held) == 9)  # paused at 90 % of max_inflight
        await asyncio.sleep(0.1)
        assert node.dispatcher.in_flight == 9 and not sim.answers
        while len(sim.answers) < 30:
            await until(lambda: ne.held or len(sim.answers) == 30)
            ne.release(Status.ROK)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert node.dispatcher.stats.throttled == 0


async def test_account_tps_limit_queues_copies(make_config):
    accounts = [{**ACCOUNTS[0], "tps": 5}]
    async with proxy(make_config, accounts=accounts) as (sim, node, add_ne):
        ne = await add_ne("antispam", "pw1", allow)
        numbers = [sim.send_deliver() for _ in range(8)]
        await until(lambda: node.dispatcher.stats.received == 8)
        lane = node.dispatcher.lanes["antispam"]
        assert len(ne.received) <= 5 and len(lane.queue) >= 3  # a bucket of 5, then 5/s
        await until(lambda: len(sim.answers) == 8)
        assert {sim.answers[n][0] for n in numbers} == {Status.ROK}
        assert len(ne.received) == 8


async def test_decisions_reach_the_database_and_the_api(make_config):
    import aiohttp

    from smps.store import tokens

    database = {"record": "non_allow", "flush_interval": "50ms"}
    async with proxy(make_config, accounts=ACCOUNTS[:1], database=database) as (sim, node, add_ne):
        await add_ne("antispam", "pw1", lambda view: BLOCK if view.user_data == b"spam" else 0)
        for body in (b"hello", b"spam", b"hello", b"spam"):
            sim.send_deliver(short_message=body)
        await until(lambda: len(sim.answers) == 4)
        token = await tokens.create_token(node.store, "test", "viewer")
        url = f"http://127.0.0.1:{node.http_port}/api/v1/decisions?verdict=block"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:

            async def blocked():
                async with http.get(url) as response:
                    assert response.status == 200
                    return (await response.json())["items"]

            items = []
            async with asyncio.timeout(10):
                while len(items) < 2:
                    items = await blocked()
                    await asyncio.sleep(0.05)
        assert {item["reason"] for item in items} == {"block"}
        assert node.writer.written == 2  # record: non_allow kept only the two blocks (the
        # only NE allowed the others itself)


async def test_non_allow_records_fail_open_allows_but_not_plain_allows(make_config):
    """record: non_allow keeps an allow by timeout (the NE was silent); the NEs' own
    allow and a receipt (passed uninspected) are not stored."""
    from smps.store import decision_queries

    def silent_on_slow(view):
        return None if view.user_data == b"slow" else Status.ROK

    database = {"record": "non_allow", "flush_interval": "50ms"}
    policy = {"timeout": "100ms", "on_timeout": "allow"}
    async with proxy(make_config, accounts=ACCOUNTS[:1], database=database, policy=policy) as (
        sim,
        node,
        add_ne,
    ):
        ne = await add_ne("antispam", "pw1", silent_on_slow)
        sim.send_deliver(short_message=b"hello")
        sim.send_deliver(esm_class=0x04, short_message=b"id:1 stat:DELIVRD")
        await until(lambda: len(sim.answers) == 2)
        slow = sim.send_deliver(short_message=b"slow")
        await until(lambda: slow in sim.answers)
        assert sim.answers[slow][0] == Status.ROK and len(ne.held) == 1

        async def stored():
            return await decision_queries.query_decisions(
                node.store, decision_queries.DecisionQuery(), limit=10
            )

        await until(stored)  # rows are written in the order decided: the others came first
        rows = await stored()
        assert [(r.verdict, r.reason) for r in rows] == [("allow", "timeout")]
        assert node.writer.written == 1
        ne.release()


async def test_account_made_through_the_api_binds_and_is_disabled_live(make_config):
    import aiohttp

    from smps.store import tokens

    async with proxy(make_config, accounts=ACCOUNTS[:1]) as (sim, node, add_ne):
        token = await tokens.create_token(node.store, "ops", "admin")
        base = f"http://127.0.0.1:{node.http_port}/api/v1/accounts"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as http:
            account = {"system_id": "newne", "password": "pw9", "allowed_ips": ["127.0.0.1/32"]}
            async with http.post(base, json=account) as response:
                assert response.status == 201, await response.text()
            ne = await add_ne("newne", "pw9", block)  # the stored hash is verified
            number = sim.send_deliver()
            await until(lambda: number in sim.answers)
            assert sim.answers[number][0] == BLOCK
            assert ne.received
            async with http.patch(f"{base}/newne", json={"enabled": False}) as response:
                assert response.status == 200, await response.text()
            await until(lambda: node.ne_server.registry.count("newne") == 0)
