"""`smps bench`: the generated configuration, the /proc readings, and one real
short run of SMPS with the simulated SMSC and NEs as separate processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from smps.benchrun import ProcessTree, Scenario, answers_at_least, bench_config
from smps.config import loads
from smps.sim.smsc import LatencyHistogram

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.timeout(60)
def test_short_run_answers_every_original_once(tmp_path):
    out = tmp_path / "out.json"
    code = (
        "import sys; from smps.benchrun import main; "
        "sys.exit(main(['bench', '--duration', '2', '--warmup', '1', '--rate', '200', "
        f"'--json', {str(out)!r}]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr + result.stdout
    report = json.loads(out.read_text())
    assert report["missing"] == 0
    assert report["duplicates"] == 0
    assert report["throttled"] == 0
    assert report["timeouts"] == 0
    # 200/s for 2 s: the measured interval saw about 400 originals decided
    assert 300 <= report["measured"]["decided"] <= 500
    assert report["msgs_per_s"] > 0
    assert report["cpu_us_per_msg"] > 0
    assert report["rss_mb"] > 0
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["scenario"]["nes"] == 3 and report["scenario"]["rate"] == 200
    # every NE account got a copy of each original, except segments of a
    # concatenated message already blocked (sticky): a few percent at most
    sent = report["whole_run"]["sent"]
    assert 0.9 * 3 * sent <= report["generators"]["ne_copies"] <= 3 * sent
    # blocked originals (5 % per NE) came back with the block status
    assert report["measured"]["statuses"].get("0x66", 0) > 0
    assert "smps bench: OK" in result.stdout
