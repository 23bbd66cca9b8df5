"""`smps bench`: the generated configuration, the /proc readings, and one real
short run of SMPS with the simulated SMSC and NEs as separate processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.loadrun.command import RateShare, scenario_of
from bench.loadrun.processes import ProcessTree, answers_at_least
from bench.loadrun.report import failures, format_added_cpu, format_report, format_sweep
from bench.loadrun.scenario import (
    CONCAT_LONG,
    CONCAT_MIX,
    INFLIGHT_TIMEOUT,
    Scenario,
    bench_config,
)
from smps.config import loads
from smps.sim.smsc import LatencyHistogram
from tests import tracebacks


def test_config_is_the_standard_scenario(tmp_path):
    scenario = Scenario(workers=2)
    config = loads(bench_config(scenario, tmp_path, smsc_port=4000, ne_port=4001))
    assert config.database.record == "non_allow"
    assert config.database.url == f"sqlite:///{tmp_path / 'smps.db'}"
    assert config.node.workers == 2
    # 2 SMSC binds in all, spread over the workers
    assert config.smsc[0].port == 4000 and config.smsc[0].binds == 1
    assert config.server.listen == ("127.0.0.1", 4001)
    assert [a.system_id for a in config.ne_accounts] == ["ne1", "ne2", "ne3"]
    assert all(a.max_binds == 2 for a in config.ne_accounts)
    rules = {rule.number for rule in config.trace.rules}
    assert len(rules) == 100
    assert rules == {n.decode() for n in scenario.traced_numbers()}


def test_concat_scenario_and_the_run_without_the_hold(tmp_path):
    scenario = scenario_of(_parse("--concat"), nes=3, workers=1, rate=None)
    assert scenario.concat and scenario.hold
    assert scenario.mix == CONCAT_MIX and scenario.long_messages == CONCAT_LONG
    config = loads(bench_config(scenario, tmp_path, smsc_port=4000, ne_port=4001))
    assert config.policy.concat_max_held > 0
    assert {a.concat for a in config.ne_accounts} == {"message"}
    # --no-hold: every part judged alone and copied as a part, as before the hold
    alone = scenario_of(_parse("--concat", "--no-hold"), nes=3, workers=1, rate=None)
    config = loads(bench_config(alone, tmp_path, smsc_port=4000, ne_port=4001))
    assert config.policy.concat_max_held == 0
    assert {a.concat for a in config.ne_accounts} == {"segments"}


def test_compare_to_names_what_the_scenario_changed():
    def report(cpu, per_message=None, **scenario):
        concat = {"cpu_us_per_message": per_message} if scenario.get("concat") else None
        return {"cpu_us_per_msg": cpu, "msgs_per_s": 1000.0, "scenario": scenario, "concat": concat}

    standard = report(14.0)  # an older report, without the concat keys
    assert format_added_cpu(standard, report(16.5, screening=True)).startswith(
        "screening added +2.50 µs CPU per original: 16.50 against 14.00"
    )
    alone = report(15.0, 24.0, concat=True, hold=False)
    held = report(16.0, 25.6, concat=True, hold=True)
    assert format_added_cpu(standard, alone).startswith(
        "the concat traffic and judging parts alone added +1.00 µs CPU per original part"
    )
    assert format_added_cpu(alone, held) == (
        "the hold added +1.00 µs CPU per original part: 16.00 against 15.00 µs/msg "
        "(1,000 and 1,000 msg/s); per whole message +1.60 µs: 25.60 against 24.00"
    )


def test_timeouts_are_the_answers_past_the_verdict_timeout():
    histogram = LatencyHistogram()
    for seconds in (0.001, 0.5, 1.9, 2.005, 2.01, 3.0):
        histogram.add(seconds)
    assert answers_at_least(histogram, 2.0) == 3


def test_process_tree_reads_cpu_and_memory_of_descendants():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sum(range(3_000_000)); sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        tree = ProcessTree(os.getpid())
        assert child.pid in tree.pids()
        assert tree.cpu_seconds() > 0
        assert tree.peak_rss_bytes() > ProcessTree(child.pid).peak_rss_bytes() > 0
    finally:
        child.communicate(b"")


def bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    """`smps bench ARGS --json FILE` in a process of its own, started outside the
    checkout (the command finds bench/loadrun beside the smps package): its result
    and report."""
    out = tmp_path / "out.json"
    result = subprocess.run(
        [sys.executable, "-m", "smps", "bench", *args, "--json", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    tracebacks.assert_none(result.stderr, f"smps {' '.join(args)}")
    return result, json.loads(out.read_text())


def test_inflight_scenario_has_room_for_every_original(tmp_path):
    args = _parse("--inflight", "100000", "--nes", "3", "--smsc-binds", "2")
    scenario = scenario_of(args, nes=3, workers=1, rate=None)
    assert scenario.ne_binds * scenario.ne_window >= 100_000
    assert scenario.window * scenario.smsc_binds >= 100_000
    assert scenario.timeout == INFLIGHT_TIMEOUT and scenario.rate > 0
    config = loads(bench_config(scenario, tmp_path, smsc_port=4000, ne_port=4001))
    assert config.flow.max_inflight >= 100_000
    assert config.policy.timeout == INFLIGHT_TIMEOUT
    assert all(a.max_binds == scenario.ne_binds for a in config.ne_accounts)
    # a timed run keeps the standard scenario
    timed = scenario_of(_parse(), nes=3, workers=1, rate=None)
    assert timed == Scenario()


def test_rate_takes_a_share_of_the_maximum_and_lists_of_points():
    args = _parse("--rate", "50%", "--nes", "1,3,6,10", "--workers", "1,2")
    assert args.rate == RateShare(0.5)
    assert args.nes == [1, 3, 6, 10] and args.workers == [1, 2]
    assert _parse("--rate", "max").rate is None
    assert _parse("--rate", "1500").rate == 1500
    for bad in (["--rate", "0%"], ["--rate", "150%"], ["--nes", "1,0"]):
        with pytest.raises(SystemExit):
            _parse(*bad)


def _parse(*args: str):
    import argparse

    from bench.loadrun.command import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["bench", *args])


@pytest.mark.timeout(60)
def test_short_run_answers_every_original_once(tmp_path):
    result, report = bench(
        tmp_path, "--duration", "2", "--warmup", "1", "--rate", "200", "--rss-every", "0.5"
    )
    assert report["missing"] == 0
    assert report["duplicates"] == 0
    assert report["throttled"] == 0
    assert report["timeouts"] == 0
    # 200/s for 2 s: the measured interval saw about 400 originals decided
    assert 300 <= report["measured"]["decided"] <= 500
    assert report["msgs_per_s"] > 0
    assert report["cpu_us_per_msg"] > 0
    # The master, and its workers. /proc counts CPU in 10 ms ticks: over 400 originals
    # the master's share (stats, decision rows) can round to no tick at all, while the
    # workers, which carry every message, always measure.
    split = report["cpu_us_per_msg_by_process"]
    assert split["master"] >= 0 and split["workers"] > 0
    assert abs(split["master"] + split["workers"] - report["cpu_us_per_msg"]) < 0.05
    assert f"master {split['master']:.1f} + workers {split['workers']:.1f}" in result.stdout
    assert report["rss_mb"] > 0
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["scenario"]["nes"] == 3 and report["scenario"]["rate"] == 200
    # every NE account got one copy of each whole message: the standard mix's
    # three-part messages (a tenth of the messages, a quarter of the PDUs sent) are
    # one copy for three PDUs, so about 5/6 of a copy per PDU sent
    sent = report["whole_run"]["sent"]
    assert 0.75 * 3 * sent <= report["generators"]["ne_copies"] <= 0.9 * 3 * sent
    # blocked originals (5 % per NE) came back with the block status
    assert report["measured"]["statuses"].get("0x66", 0) > 0
    assert "smps bench: OK" in result.stdout
    assert 0 < report["fingerprint_us"] < 50  # timed over the scenario's own texts
    assert f"fingerprint    {report['fingerprint_us']:.3f} µs per original" in result.stdout
    # SMPS's RSS sampled over the measured interval: start, a few in between, end
    memory = report["memory"]
    assert len(memory["samples"]) >= 4
    assert memory["rss_start_mb"] == memory["samples"][0][1] > 0
    assert memory["rss_end_mb"] == memory["samples"][-1][1] > 0
    assert report["rss_growth_mb"] == memory["rss_growth_mb"]
    middle = memory["samples"][(len(memory["samples"]) - 1) // 2][1]
    # from the samples' bytes; the MB shown are each rounded to 0.1
    assert abs(memory["rss_growth_second_half_mb"] - (memory["rss_end_mb"] - middle)) <= 0.11
    assert "RSS over run" in result.stdout
    # a --nes/--workers list ends with one line per point
    table = format_sweep([report, {**report, "scenario": {**report["scenario"], "nes": 6}}])
    assert table.splitlines()[2].split()[:2] == ["3", "1"]
    assert table.splitlines()[3].split()[:2] == ["6", "1"]


@pytest.mark.timeout(60)
def test_inflight_run_reads_smps_memory_with_every_original_held(tmp_path):
    result, report = bench(tmp_path, "--inflight", "2000", "--rate", "2000", "--nes", "2")
    held = report["inflight"]
    # none answered: the NEs stay silent and nothing times out within 600 s
    assert held["sent"] == held["originals"] == 2000 and held["answered"] == 0
    # one copy per NE of each whole message: the mix's three-part ones are one message
    assert held["ne_copies"] == held["ne_copies_expected"] == 2 * held["messages"]
    assert 2000 / 3 < held["messages"] < 2000
    # real readings of SMPS's processes, and the figure is their difference per original
    assert held["rss_before_bytes"] > 10 * 2**20
    assert held["rss_held_bytes"] > held["rss_before_bytes"]
    per = (held["rss_held_bytes"] - held["rss_before_bytes"]) / 2000
    assert held["bytes_per_original"] == round(per)
    assert report["scenario"]["timeout"] == INFLIGHT_TIMEOUT
    assert "smps bench --inflight: OK" in result.stdout


@pytest.mark.timeout(60)
def test_half_rate_runs_after_a_max_run(tmp_path):
    result, report = bench(
        tmp_path, "--rate", "50%", "--nes", "1", "--duration", "1", "--warmup", "0.5"
    )
    assert report["rate_share"] == 0.5
    top = report["max_run"]
    assert top["msgs_per_s"] > 0 and top["missing"] == top["duplicates"] == 0
    assert report["scenario"]["rate"] == round(top["msgs_per_s"] / 2, 1)
    assert report["missing"] == report["duplicates"] == 0
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert result.stdout.count("smps bench: OK") == 2  # the max run, then the half-rate run


@pytest.mark.timeout(60)
def test_concat_run_counts_parts_and_messages_and_checks_one_verdict(tmp_path):
    """The NEs block nothing here: SMPS before whole-message verdicts judges each
    part alone, so with blocks the parts of a message may be answered differently
    (that is the check's job); the run is about the counting."""
    result, report = bench(
        tmp_path,
        *("--concat", "--block-ratio", "0", "--duration", "2", "--warmup", "1"),
        *("--rate", "300", "--rss-every", "1"),
    )
    concat = report["concat"]
    parts, messages = concat["parts_decided"], concat["messages_decided"]
    assert parts == report["measured"]["decided"] and 400 <= parts <= 800
    # 30 % in three parts: 1.6 parts a message
    assert 1.4 <= parts / messages <= 1.8
    assert concat["messages_per_s"] > 0
    assert concat["cpu_us_per_message"] > report["cpu_us_per_msg"] > 0
    assert concat["long_messages"] > 50  # over the whole run, every part answered
    assert concat["mismatched"] == 0 and concat["checked"]
    assert report["missing"] == report["duplicates"] == 0
    assert "smps bench: OK" in result.stdout
    assert "whole messages)" in result.stdout and "per whole message" in result.stdout
    assert (
        f"{concat['long_messages']:,} three-part messages answered, 0 with parts answered "
        "differently" in result.stdout
    )
    # parts of one message answered differently fail the run, unless SMPS was told
    # to judge them alone (--no-hold)
    mixed = {
        **report,
        "concat": {**concat, "mismatched": 2, "mismatched_by_statuses": {"0x00/0x66": 2}},
    }
    assert failures(mixed) == ["parts of one message answered differently"]
    assert format_report(mixed).splitlines()[0] == (
        "smps bench: FAILED (parts of one message answered differently)"
    )
    assert "0x00/0x66: 2" in format_report(mixed)
    assert failures({**mixed, "concat": {**mixed["concat"], "checked": False}}) == []


def test_baseline_needs_a_timed_run_of_an_smps_it_starts(capsys):
    from bench.loadrun.command import cmd_bench

    for args in (["--inflight", "100"], ["--no-start", "-c", "smps.yaml"]):
        assert cmd_bench(_parse("--baseline", *args)) == 2
        assert "--baseline compares timed runs" in capsys.readouterr().err


@pytest.mark.timeout(90)
def test_baseline_runs_the_bare_relay_after_smps_and_reports_the_ratio(tmp_path):
    result, report = bench(
        tmp_path, "--baseline", "--duration", "1", "--warmup", "0.5", "--rss-every", "0.5"
    )
    relay = report["baseline"]
    assert report["proxy"] == "smps" and relay["proxy"] == "bare_relay"
    assert relay["smps_pid"] != report["smps_pid"]
    # the same scenario (the relay is one process: one "worker")
    for key in ("nes", "ne_binds", "smsc_binds", "window", "rate", "duration", "warmup", "mix"):
        assert relay["scenario"][key] == report["scenario"][key], key
    assert relay["missing"] == relay["duplicates"] == 0
    assert relay["measured"]["decided"] > 0 and relay["cpu_us_per_msg"] > 0
    assert relay["cpu_us_per_msg_by_process"] == {"relay": relay["cpu_us_per_msg"]}
    # every original copied to each of the 3 NE accounts, blocks answered as blocks
    assert relay["generators"]["ne_copies"] == 3 * relay["whole_run"]["sent"]
    assert relay["measured"]["statuses"].get("0x66", 0) > 0
    assert report["ratio"] == round(report["cpu_us_per_msg"] / relay["cpu_us_per_msg"], 2)
    assert result.stdout.index("smps bench: OK") < result.stdout.index("bare relay: OK")
    assert (
        f"ratio SMPS/bare relay: {report['ratio']:.2f} (CPU {report['cpu_us_per_msg']:.2f} "
        f"against {relay['cpu_us_per_msg']:.2f} µs/msg" in result.stdout
    )


def test_cpu_by_part_compares_the_last_whole_part_with_the_first():
    from bench.loadrun.report import _cpu_by_part

    def sample(at, answered, master, workers, rows):
        cpu = {"master": master, "workers": workers}
        return {"at": at, "answered": answered, "proxy_cpu": cpu, "rows": rows}

    samples = [
        sample(0.0, 0, 0.0, 0.0, 0),
        sample(60.0, 1_000_000, 4.0, 16.0, 200_000),  # 20 µs/msg, master 20 µs/row
        sample(120.0, 2_000_000, 8.5, 32.5, 400_000),  # 21 µs/msg
        sample(125.0, 2_100_000, 9.0, 34.0, 420_000),  # 5 s: shown, not compared
    ]
    parts = _cpu_by_part(samples, 60.0)
    assert [p["cpu_us_per_msg"] for p in parts["parts"]] == [20.0, 21.0, 20.0]
    assert parts["parts"][0]["master_us_per_row"] == 20.0
    assert (parts["first_cpu_us_per_msg"], parts["last_cpu_us_per_msg"]) == (20.0, 21.0)
    assert parts["creep"] == 0.05
    without_rows = [{**s, "rows": None} for s in samples]
    assert _cpu_by_part(without_rows, 60.0)["parts"][0]["rows"] is None
    assert _cpu_by_part(samples[:2], 60.0)["creep"] is None  # one part: nothing to compare
