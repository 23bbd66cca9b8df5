"""The simulators: the traffic mix, the SMSC load driver, the NE, and their CLI,
against SMPS's real SMSC client and NE server on loopback sockets."""

import argparse
import asyncio
import contextlib
import io
import json
import logging
import re
import signal
import sys
import time
from collections import Counter

import pytest

from smps._native import text
from smps._native.pdu import CommandId, Status, decode_sm, encode
from smps.sim import cli, commands
from smps.sim import traffic as traffic_module
from smps.sim.ne import Latency, SimNe
from smps.sim.smsc import LatencyHistogram, SimSmsc
from smps.sim.traffic import CONCAT_STYLES, KINDS, LongMessages, Mix, NumberRange, Traffic
from smps.smpp.client import SmscClient
from smps.smpp.server import NeServer
from smps.smpp.session import NO_RESPONSE
from tests import tracebacks
from tests.helpers import free_port, until
from tests.nodes import smsc_section

EXTENSION_CHARS = set("€{}[]~^\\|")
SIM_MAIN = [sys.executable, "-c", "from smps.sim.cli import main; raise SystemExit(main())"]


def decoded(pdu):
    view = decode_sm(pdu)
    return view, text.decode(view.user_data, view.data_coding, view.esm_class)


# ---- traffic mix -------------------------------------------------------------


def test_pool_has_the_mix_ratios_exactly():
    traffic = Traffic(Mix(gsm7=60, ucs2=25, concat=10, receipt=5), pool_size=1000)
    assert traffic.pool_counts() == {"gsm7": 600, "ucs2": 250, "concat": 100, "receipt": 50}
    taken = Counter(next(traffic)[0] for _ in range(3000))  # three passes
    assert taken == {"gsm7": 1800, "ucs2": 750, "concat": 300, "receipt": 150}


def test_standard_mix_is_the_design_scenario():
    shares = Traffic(pool_size=1000).pool_counts()
    assert shares == {"gsm7": 700, "ucs2": 200, "concat": 100, "receipt": 0}


def test_every_pdu_decodes_with_its_text():
    traffic = Traffic(
        Mix(gsm7=40, ucs2=30, concat=20, receipt=10), pool_size=400, data_sm_ratio=0.2
    )
    seen_chars: set[str] = set()
    commands = Counter()
    for kind, pdus in traffic.pool:
        for pdu in pdus:
            view, message = decoded(pdu)
            commands[view.command_id] += 1
            assert message.replaced == 0 and message.note == "", (kind, message.text)
            assert len(view.source_addr) == 13 and len(view.destination_addr) == 13
        if kind == "gsm7":
            assert view.data_coding == 0 and message.encoding == "gsm7"
            seen_chars |= set(message.text)
        elif kind == "ucs2":
            assert view.data_coding == 8 and message.encoding == "ucs2"
            seen_chars |= set(message.text)
        elif kind == "receipt":
            assert view.is_receipt and view.esm_class == 0x04
            assert message.text.startswith(f"id:{view.receipted_message_id.decode()} ")
            assert " stat:" in message.text and view.message_state in (2, 3, 5)
    assert seen_chars >= EXTENSION_CHARS
    assert any(ord(char) > 0xFFFF for char in seen_chars)  # emoji: surrogate pairs in UCS-2
    assert commands[CommandId.DATA_SM] == round(0.2 * 280)  # of the 280 single-part messages


def test_concat_messages_are_three_ordered_parts_of_one_text():
    encodings = set()
    for _kind, pdus in Traffic(Mix(gsm7=0, ucs2=0, concat=1), pool_size=8).pool:
        assert len(pdus) == 3
        parts = []
        for number, pdu in enumerate(pdus, 1):
            view, message = decoded(pdu)
            assert view.command_id == CommandId.DELIVER_SM and view.esm_class == 0x40
            assert message.udh.concat[1:] == (3, number)
            parts.append((number, view.user_data))
        refs = {decoded(pdu)[1].udh.concat[0] for pdu in pdus}
        assert len(refs) == 1
        whole = text.reassemble(parts, view.data_coding)
        assert whole.replaced == 0
        assert re.sub(r"\d{6}", "#", whole.text) in (
            traffic_module._GSM7_LONG,
            traffic_module._UCS2_LONG,
        )
        encodings.add(whole.encoding)
    assert encodings == {"gsm7", "ucs2"}


def test_concat_reference_advances_on_every_pass():
    traffic = Traffic(Mix(gsm7=1, concat=1), pool_size=4)
    first_pass = [next(traffic) for _ in range(4)]
    second_pass = [next(traffic) for _ in range(4)]
    for (kind, before), (_, after) in zip(first_pass, second_pass, strict=True):
        if kind != "concat":
            assert before == after  # single-part messages are reused as they are
            continue
        for old, new in zip(before, after, strict=True):
            old_ref = decoded(old)[1].udh.concat[0]
            assert decoded(new)[1].udh.concat[0] == (old_ref + 1) & 0xFF
            assert len(old) == len(new)


def long_message_key(pdu) -> tuple[str, bytes, bytes, int, int, int, bytes]:
    """(style, source, destination, reference, total, part, user data without UDH) of a
    part, read the way SMPS reads it."""
    view = decode_sm(pdu)
    if view.udhi:
        udh = text.parse_udh(view.user_data)
        ref, total, part = udh.concat
        style = f"udh{udh.ref_bits}"
        payload = view.user_data[udh.length :]
    else:
        (ref, total, part), style, payload = view.sar, "sar", view.user_data
    return style, view.source_addr, view.destination_addr, ref, total, part, payload


# Octets of text a part carries at most, beside its UDH (or SAR TLVs), by data_coding.
PART_ROOM = {0: {"udh8": 153, "udh16": 152, "sar": 153}, 8: {"udh8": 134, "udh16": 132, "sar": 134}}


@pytest.mark.parametrize("ucs2", [False, True])
def test_long_messages_are_tied_by_udh8_udh16_and_sar_and_some_go_out_of_order(ucs2):
    long = LongMessages(styles=CONCAT_STYLES, reordered=0.5, ucs2=ucs2)
    traffic = Traffic(Mix(gsm7=0, ucs2=0, concat=1), long=long, pool_size=60)
    styles, orders, pairs, codings = Counter(), Counter(), set(), Counter()
    for _kind, pdus in traffic.pool:
        keys = [long_message_key(pdu) for pdu in pdus]
        style, source, destination, ref, _total, _part, _payload = keys[0]
        assert {key[:5] for key in keys} == {(style, source, destination, ref, 3)}
        styles[style] += 1
        orders[tuple(key[5] for key in keys)] += 1
        pairs.add((source, destination))
        data_coding = decode_sm(pdus[0]).data_coding
        codings[data_coding] += 1
        for pdu, key in zip(pdus, keys, strict=True):
            view = decode_sm(pdu)
            assert view.data_coding == data_coding
            assert view.esm_class == (0 if style == "sar" else 0x40)
            # 140 octets in all: 152 septets / 66 units beside the 16-bit reference's UDH
            assert len(key[6]) <= PART_ROOM[data_coding][style]
        whole = text.reassemble(
            [(key[5], decode_sm(pdu).user_data) for pdu, key in zip(pdus, keys, strict=True)],
            data_coding,
            0 if style == "sar" else 0x40,
        )
        assert whole.replaced == 0 and whole.note == ""
        long_text = traffic_module._UCS2_LONG if data_coding else traffic_module._GSM7_LONG
        assert re.sub(r"\d{6}", "#", whole.text) == long_text
    assert styles == {"udh8": 20, "udh16": 20, "sar": 20}
    assert codings == ({0: 45, 8: 15} if ucs2 else {0: 60})  # every fourth, or none
    assert 15 <= sum(n for order, n in orders.items() if order != (1, 2, 3)) <= 45
    assert len(orders) > 2  # not only reversed
    assert len(pairs) == 60  # a reference is never in flight twice for one pair


def test_every_reference_size_advances_on_every_pass():
    long = LongMessages(styles=CONCAT_STYLES, reordered=1.0)
    traffic = Traffic(Mix(gsm7=0, ucs2=0, concat=1), long=long, pool_size=6)
    first_pass = [next(traffic)[1] for _ in range(6)]
    second_pass = [next(traffic)[1] for _ in range(6)]
    for before, after in zip(first_pass, second_pass, strict=True):
        for old, new in zip(before, after, strict=True):
            style, *same, ref, total, part, payload = long_message_key(old)
            bits = 16 if style in ("udh16", "sar") else 8
            assert long_message_key(new) == (
                style,
                *same,
                (ref + 1) % (1 << bits),
                total,
                part,
                payload,
            )
            assert len(old) == len(new)


def test_traced_numbers_appear_at_their_ratio():
    traced = [b"8613712345678", b"8613787654321"]
    traffic = Traffic(traced=traced, traced_ratio=0.1, pool_size=1000, data_sm_ratio=0)
    hits = 0
    for _kind, pdus in traffic.pool:
        view = decode_sm(pdus[0])
        hits += view.source_addr in traced or view.destination_addr in traced
    assert hits == 100


def test_numbers_come_from_the_ranges():
    traffic = Traffic(
        sources=NumberRange.parse("1000-1009"),
        destinations=NumberRange.parse("555"),
        pool_size=200,
    )
    for _kind, pdus in traffic.pool:
        view = decode_sm(pdus[0])
        assert 1000 <= int(view.source_addr) <= 1009 and view.destination_addr == b"555"


@pytest.mark.parametrize("spec", ["gsm7=70,bogus=3", "gsm7", "gsm7=x", "gsm7=0", "gsm7=-1,ucs2=2"])
def test_bad_mix_is_refused(spec):
    with pytest.raises(ValueError):
        Mix.parse(spec)


@pytest.mark.parametrize("spec", ["100-99", "12-1234", "abc", "1" * 21])
def test_bad_number_range_is_refused(spec):
    with pytest.raises(ValueError):
        NumberRange.parse(spec)


def test_latency_histogram_percentiles_within_two_percent():
    histogram = LatencyHistogram()
    for ms in range(1, 1001):
        histogram.add(ms / 1000)
    for fraction, expected in ((0.5, 0.5), (0.9, 0.9), (0.99, 0.99)):
        assert expected <= histogram.percentile(fraction) <= expected * 1.02
    assert histogram.summary_ms()["max"] == 1000.0


# ---- SimSmsc load driver against SMPS's SMSC client ------------------------------


def smsc_config(make_config, port, **overrides):
    quick = {"binds": 2, "reconnect": {"initial": "50ms", "max": "400ms"}}
    section = smsc_section(port, **{**quick, **overrides})
    return make_config(smsc=[section]).smsc[0]


@pytest.fixture
async def smsc():
    sim = SimSmsc(response_timeout=0.5)
    sim.port = await sim.start()
    yield sim
    await sim.stop()


async def drive(smsc, make_config, handler=None, **run_options):
    client = SmscClient(smsc_config(make_config, smsc.port), *([handler] if handler else []))
    client.start()
    try:
        await smsc.wait_bound(2)
        return await smsc.run(**run_options)
    finally:
        await client.stop()


@pytest.mark.both_loops
async def test_fixed_rate_run_gets_every_original_answered(smsc, make_config):
    summary = await drive(smsc, make_config, rate=5000, count=1500)
    assert summary["sent"] == 1500 and summary["answered"] == 1500
    assert summary["missing"] == 0 and summary["duplicates"] == 0
    assert summary["statuses"] == {"0x00": 1500}
    messages = summary["messages"]
    assert messages["gsm7"] + messages["ucs2"] + 3 * messages["concat"] == 1500
    for session in smsc._all_sessions:  # spread over both binds
        assert session.stats.pdus_out.get(CommandId.DELIVER_SM, 0) > 100
    assert summary["latency_ms"]["p50"] <= summary["latency_ms"]["max"]
    assert summary["cpu_us_per_msg"] > 0
    json.dumps(summary)


async def test_whole_messages_spread_parts_over_binds_and_check_one_verdict(make_config):
    """Parts of one long message go over both binds; a message whose parts are
    answered differently (here every SAR message's second part is blocked) is
    counted as mismatched, the others not."""
    sim = SimSmsc(response_timeout=0.5, whole_messages=True)
    sim.port = await sim.start()
    binds_of: dict[tuple, set] = {}

    def block_second_sar_part(session, pdu):
        view = decode_sm(pdu)
        if not (view.udhi or view.sar):  # a single-part message
            session.respond(pdu, Status.ROK)
            return
        style, source, destination, ref, _total, part, _payload = long_message_key(pdu)
        binds_of.setdefault((style, source, destination, ref), set()).add(session)
        blocked = style == "sar" and part == 2
        session.respond(pdu, Status.RX_R_APPN if blocked else Status.ROK)

    long = LongMessages(styles=CONCAT_STYLES, reordered=0.2, ucs2=False)
    traffic = Traffic(Mix(gsm7=1, ucs2=0, concat=1), long=long, pool_size=300)
    try:
        summary = await drive(
            sim, make_config, block_second_sar_part, rate=3000, count=1200, mix=traffic
        )
    finally:
        await sim.stop()
    messages = summary["messages"]
    assert summary["answered"] == 1200 and summary["missing"] == summary["duplicates"] == 0
    assert messages["gsm7"] + 3 * messages["concat"] == 1200
    assert summary["long_answered"] == messages["concat"]
    assert summary["messages_answered"] == messages["gsm7"] + messages["concat"]
    sar_messages = sum(1 for style, *_rest in binds_of if style == "sar")
    assert summary["mismatched"] == {"0x00/0x66": sar_messages} and sar_messages > 50
    assert sum(len(binds) == 2 for binds in binds_of.values()) > len(binds_of) / 2


async def test_open_loop_run_stops_at_the_count(smsc, make_config):
    summary = await drive(smsc, make_config, rate=None, count=20_000)
    assert summary["sent"] == summary["answered"] == 20_000
    assert summary["missing"] == summary["duplicates"] == 0


@pytest.mark.both_loops
async def test_answering_twice_is_counted_as_duplicates(smsc, make_config):
    def answer_twice(session, pdu):
        session.respond(pdu, Status.ROK)
        session.respond(pdu, Status.ROK)

    summary = await drive(smsc, make_config, answer_twice, rate=2000, count=300)
    assert summary["answered"] == 300 and summary["missing"] == 0
    assert summary["duplicates"] == 300


async def test_unanswered_originals_are_counted_as_missing(smsc, make_config):
    seen = []

    def ignore_every_tenth(session, pdu):
        seen.append(pdu)
        if len(seen) % 10:
            session.respond(pdu, Status.RX_R_APPN)

    summary = await drive(smsc, make_config, ignore_every_tenth, rate=2000, count=500)
    assert summary["missing"] == 50 and summary["answered"] == 450
    assert summary["statuses"] == {"0x66": 450} and summary["duplicates"] == 0


async def test_stop_run_ends_an_endless_run(smsc, make_config):
    client = SmscClient(smsc_config(make_config, smsc.port))
    client.start()
    try:
        await smsc.wait_bound(2)
        run = asyncio.create_task(smsc.run(rate=1000))
        await until(lambda: smsc.answered >= 100)
        assert smsc.running and smsc.summary()["sent"] >= 100  # live view while running
        smsc.stop_run()
        summary = await run
    finally:
        await client.stop()
    assert not smsc.running
    assert summary["answered"] == summary["sent"] and summary["missing"] == 0


# ---- SimNe against SMPS's NE server ----------------------------------------------


@pytest.fixture
async def ne_server(make_config):
    cfg = make_config(
        server={"listen": "127.0.0.1:0"},
        ne_accounts=[{"system_id": "antispam", "password": "pw1", "max_binds": 4, "window": 500}],
    )
    server = NeServer(cfg.server, cfg.ne_accounts, copy_timeout=0.5)
    server.port = await server.start()
    yield server
    await server.stop()


COPY = encode(
    CommandId.DELIVER_SM,
    0,
    {
        "source_addr": b"8613800000001",
        "destination_addr": b"8613900000001",
        "short_message": b"hello",
    },
)


async def answered(server, n) -> dict:
    """Send n copies over the account's binds and wait for every outcome:
    results[status] lists the round-trip times."""
    results: dict = {}

    def settled(sent_at, status, pdu):
        results.setdefault(status, []).append(time.monotonic() - sent_at)

    for i in range(n):
        binds = server.registry.by_account.get("antispam")
        if not binds or not binds[i % len(binds)].send(COPY, settled, time.monotonic()):
            results.setdefault("unsent", []).append(0)
        if i % 50 == 49:
            await asyncio.sleep(0.005)
    await until(lambda: sum(map(len, results.values())) == n)
    return results


@contextlib.asynccontextmanager
async def antispam_ne(ne_server, **options):
    """A SimNe bound as antispam to the NE server, stopped on the way out."""
    ne = SimNe("127.0.0.1", ne_server.port, system_id="antispam", password="pw1", **options)
    ne.start()
    try:
        yield ne
    finally:
        await ne.stop()


async def test_ne_simulator_logs_its_binds_as_itself(ne_server, caplog):
    """Its binds are an NE's: logged under smps.sim.ne, not as SMPS's SMSC connections."""
    caplog.set_level(logging.INFO)
    async with antispam_ne(ne_server) as ne:
        await ne.wait_bound()
    bound = [r for r in caplog.records if "sim-ne-antispam#0: bound to" in r.getMessage()]
    assert [r.name for r in bound] == ["smps.sim.ne"]


@pytest.mark.both_loops
async def test_ne_answers_with_block_ratio_silence_and_latency(ne_server):
    async with antispam_ne(
        ne_server,
        binds=2,
        block_ratio=0.2,
        silent_ratio=0.1,
        latency=Latency(0.02, "fixed"),
        seed=7,
    ) as ne:
        await ne.wait_bound()
        assert ne_server.registry.count("antispam") == 2
        results = await answered(ne_server, 1000)
    assert ne.received == 1000
    assert len(results[Status.ROK]) == ne.allowed
    assert len(results[Status.RX_R_APPN]) == ne.blocked
    assert len(results[NO_RESPONSE]) == ne.silent
    assert 140 <= ne.blocked <= 260 and 50 <= ne.silent <= 150  # 20 % and 10 % of 1000
    assert min(results[Status.ROK] + results[Status.RX_R_APPN]) >= 0.019  # think time kept
    summary = ne.summary()
    assert summary["answered"] == {"allow": ne.allowed, "block": ne.blocked}
    json.dumps(summary)


async def test_ne_exponential_latency_answers_out_of_order_and_custom_status(ne_server):
    async with antispam_ne(
        ne_server,
        block_ratio=1.0,
        block_status=0x65,
        latency=Latency(0.01, "exp"),
        seed=3,
    ) as ne:
        await ne.wait_bound()
        results = await answered(ne_server, 300)
    assert list(results) == [0x65] and ne.blocked == 300
    rtts = results[0x65]
    assert rtts != sorted(rtts)  # random think times: later copies overtake earlier ones


async def test_ne_drops_binds_and_binds_again(ne_server):
    async with antispam_ne(
        ne_server,
        binds=2,
        disconnect_ratio=0.02,
        reconnect_initial=0.02,
        reconnect_max=0.05,
        seed=11,
    ) as ne:
        await ne.wait_bound()
        results = await answered(ne_server, 600)
        await ne.wait_bound()
    assert ne.disconnects >= 3 and ne.client.reconnects >= 3
    # Every answer the NE wrote reached SMPS: a drop closes after what is written.
    assert len(results.get(Status.ROK, ())) == ne.allowed
    assert ne.allowed + ne.dropped == ne.received


async def test_ne_disconnects_periodically(ne_server):
    async with antispam_ne(
        ne_server,
        disconnect_every=0.05,
        reconnect_initial=0.01,
        reconnect_max=0.02,
    ) as ne:
        await until(lambda: ne.disconnects >= 2)
        await ne.wait_bound()
    assert ne.client.reconnects >= 2


def test_ne_refuses_impossible_ratios():
    with pytest.raises(ValueError):
        SimNe("127.0.0.1", 1, system_id="a", password="b", block_ratio=0.7, silent_ratio=0.5)
    with pytest.raises(ValueError):
        Latency(0.01, "normal")


# ---- command line ------------------------------------------------------------


def parse(argv):
    parser = argparse.ArgumentParser(prog="smps")
    cli.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_options_are_parsed_with_units():
    args = parse(
        [
            "sim",
            "ne",
            "--connect",
            "127.0.0.1:2775",
            "--system-id",
            "antispam",
            "--password",
            "pw1",
            "--binds",
            "2",
            "--block-ratio",
            "5%",
            "--latency",
            "5ms",
            "--latency-dist",
            "exp",
            "--silent-ratio",
            "0.01",
            "--disconnect-every",
            "30s",
        ]
    )
    assert args.connect == ("127.0.0.1", 2775) and args.binds == 2
    assert args.block_ratio == 0.05 and args.latency == 0.005 and args.latency_dist == "exp"
    assert args.disconnect_every == 30.0 and args.block_status == 0x66
    args = parse(["sim", "smsc", "--rate", "max", "--mix", "gsm7=1,concat=1", "--count", "9"])
    assert args.rate is None and args.mix == Mix(gsm7=1, ucs2=0, concat=1) and args.count == 9


@pytest.mark.parametrize(
    "argv",
    [
        ["sim", "smsc", "--mix", "emoji=5"],
        ["sim", "smsc", "--rate", "0"],
        ["sim", "smsc", "--listen", "nowhere"],
        ["sim", "smsc", "--count", "0"],
        ["sim", "ne", "--system-id", "a", "--password", "b", "--block-ratio", "1.5"],
        ["sim", "ne", "--system-id", "a", "--password", "b", "--latency", "fast"],
    ],
)
def test_cli_refuses_bad_options(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


async def test_cli_smsc_in_process_reports_and_writes_json(make_config, tmp_path):
    args = parse(
        [
            "sim",
            "smsc",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--rate",
            "3000",
            "--count",
            "600",
            "--binds",
            "2",
            "--progress",
            "0",
            "--json",
            str(tmp_path / "smsc.json"),
        ]
    )
    out = io.StringIO()
    main = asyncio.create_task(commands.smsc_main(args, commands.Stopper(), out))
    client = SmscClient(smsc_config(make_config, args.listen[1]))
    client.start()
    try:
        assert await main == 0
    finally:
        await client.stop()
    report = json.loads((tmp_path / "smsc.json").read_text())
    assert report["sent"] == report["answered"] == 600
    assert report["missing"] == 0 and report["duplicates"] == 0
    assert report["scenario"]["mix"] == {"gsm7": 70, "ucs2": 20, "concat": 10, "receipt": 0}
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max"}
    table = out.getvalue()
    assert table.startswith("sim smsc: OK") and "0x00 ROK" in table and "µs/msg" in table


async def test_cli_ne_in_process_until_stopped(ne_server, tmp_path):
    args = parse(
        [
            "sim",
            "ne",
            "--connect",
            f"127.0.0.1:{ne_server.port}",
            "--system-id",
            "antispam",
            "--password",
            "pw1",
            "--binds",
            "2",
            "--block-ratio",
            "1",
            "--progress",
            "0",
            "--json",
            str(tmp_path / "ne.json"),
        ]
    )
    stopper = commands.Stopper()
    out = io.StringIO()
    main = asyncio.create_task(commands.ne_main(args, stopper, out))
    await until(lambda: ne_server.registry.count("antispam") == 2)
    await answered(ne_server, 100)
    stopper()  # Ctrl-C
    assert await main == 0
    report = json.loads((tmp_path / "ne.json").read_text())
    assert report["received"] == 100 and report["answered"] == {"allow": 0, "block": 100}
    assert "answered block       100" in out.getvalue()


async def start_sim_smsc_process(*options):
    process = await asyncio.create_subprocess_exec(
        *SIM_MAIN,
        "sim",
        "smsc",
        "--listen",
        "127.0.0.1:0",
        "--progress",
        "0",
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    line = (await asyncio.wait_for(process.stderr.readline(), 20)).decode()
    port = int(re.search(r"listening on 127\.0\.0\.1:(\d+);", line).group(1))
    return process, port


async def finish(process):
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    tracebacks.assert_none(stderr.decode(), "smps sim")
    return process.returncode, stdout.decode(), stderr.decode()


@pytest.mark.parametrize("twice", [False, True], ids=["exactly_once", "duplicates"])
async def test_cli_smsc_subprocess_exit_status(make_config, twice):
    process, port = await start_sim_smsc_process(
        "--rate", "2000", "--count", "400", "--response-timeout", "1s"
    )

    def answer(session, pdu):
        for _ in range(2 if twice else 1):
            session.respond(pdu, Status.ROK)

    client = SmscClient(smsc_config(make_config, port, binds=1), answer)
    client.start()
    try:
        code, stdout, stderr = await finish(process)
    finally:
        await client.stop()
    assert code == (1 if twice else 0), stderr
    assert re.search(r"sent\s+400 originals", stdout)
    assert re.search(rf"duplicates\s+{400 if twice else 0}\n", stdout)


async def test_cli_ne_subprocess_stops_cleanly_on_sigterm(ne_server):
    process = await asyncio.create_subprocess_exec(
        *SIM_MAIN,
        "sim",
        "ne",
        "--connect",
        f"127.0.0.1:{ne_server.port}",
        "--system-id",
        "antispam",
        "--password",
        "pw1",
        "--latency",
        "2ms",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    await until(lambda: ne_server.registry.count("antispam") == 1, timeout=20)
    await answered(ne_server, 50)
    process.send_signal(signal.SIGTERM)
    code, stdout, stderr = await finish(process)
    assert code == 0, stderr
    assert re.search(r"copies received\s+50", stdout) and re.search(r"answered allow\s+50", stdout)
    await until(lambda: ne_server.registry.count("antispam") == 0)  # unbound on the way out


async def test_cli_smsc_refuses_traced_ratio_without_numbers():
    args = parse(["sim", "smsc", "--traced-ratio", "0.01"])
    assert await commands.smsc_main(args, commands.Stopper(), io.StringIO()) == 2


async def test_cli_smsc_gives_up_when_smps_never_binds():
    process, _port = await start_sim_smsc_process("--bind-timeout", "200ms")
    code, stdout, stderr = await finish(process)
    assert code == 1 and "did not bind" in stderr and "sim smsc: FAILED" in stdout


def test_every_option_has_help():
    parser = argparse.ArgumentParser(prog="smps")
    commands = parser.add_subparsers(dest="command")
    cli.register(commands)
    sim = commands.choices["sim"]
    for sub in sim._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            assert action.help, (sub.prog, action.dest)


def test_kinds_are_the_mix_fields():
    assert tuple(Mix().weights()) == KINDS


async def test_answers_that_cross_an_unbind_still_count():
    """The ESME (smpplib, an independent SMPP implementation) unbinds while a
    delivery to it is outstanding and answers the delivery after unbind_resp:
    the SMSC side waits for that answer before closing, so it is not missing."""
    import threading

    import smpplib.client
    import smpplib.smpp

    sim = SimSmsc(window=10, response_timeout=10)
    port = await sim.start()

    def esme(ready, go):
        client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        client.connect()
        try:
            client.bind_transceiver(system_id="smps", password="secret")
            ready.set()
            go.wait(5)
            delivery = client.read_pdu()
            assert delivery.command == "deliver_sm"
            assert client.unbind().command == "unbind_resp"
            response = smpplib.smpp.make_pdu("deliver_sm_resp", client=client)
            response.sequence = delivery.sequence
            # smpplib allows no PDU once unbound; a late answer is what is tested.
            client._socket.sendall(response.generate())
        finally:
            client.disconnect()

    ready, go = threading.Event(), threading.Event()
    try:
        running = asyncio.create_task(asyncio.to_thread(esme, ready, go))
        await until(ready.is_set)
        await sim.wait_bound()
        number = sim.send_deliver()
        go.set()
        await running
        await until(lambda: number in sim.answers or sim.missing)
        assert sim.answers[number][0] == Status.ROK
        assert sim.missing == 0
    finally:
        await sim.stop()
