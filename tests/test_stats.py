"""A data plane's stats report (smps.runtime.stats): typed over the control channel,
summed over processes, read as per-minute verdict totals and exported to Prometheus
(smps.runtime.metrics) with cumulative buckets."""

import socket

from smps._native.histogram import BUCKETS, Histogram
from smps.proxy.records import MemorySink
from smps.proxy.trace_store import MemoryTraceSink
from smps.runtime.control import ControlChannel
from smps.runtime.metrics import families
from smps.runtime.plane import DataPlane
from smps.runtime.stats import (
    Counters,
    Gauges,
    Latency,
    PlaneReport,
    add,
    read_stats,
    stats_message,
    verdict_totals,
)


def plane_with_traffic(make_config) -> DataPlane:
    config = make_config(ne_accounts=[{"system_id": "antispam", "password": "pw"}])
    plane = DataPlane(config, config.ne_accounts, decisions=MemorySink(), traces=MemoryTraceSink())
    dispatcher = plane.dispatcher
    for verdict, reason in (("allow", "all_allow"), ("allow", "receipt"), ("block", "block")):
        dispatcher.stats.decided(verdict, reason)
    dispatcher.stats.received = 3
    lane = dispatcher.lanes["antispam"]
    for state in (1, 1, 2):  # ALLOW, ALLOW, BLOCK
        lane.count_answer(state)
        lane.latency.observe(0.003)
    return plane


async def test_a_report_crosses_the_control_channel_unchanged(make_config):
    report = plane_with_traffic(make_config).snapshot()
    worker_end, master_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker = await ControlChannel.open(worker_end)
    master = await ControlChannel.open(master_end)
    try:
        worker.send(stats_message(report))
        received = read_stats(await master.receive())
    finally:
        await worker.close()
        await master.close()
    assert received == report
    assert received.counters.verdicts == {("allow", "all_allow"): 1, ("allow", "receipt"): 1,
                                          ("block", "block"): 1}  # fmt: skip
    assert received.counters.ne_answer_seconds["antispam"].count == 3


async def test_verdict_totals_of_a_data_plane(make_config):
    counters = plane_with_traffic(make_config).snapshot().counters
    assert verdict_totals(counters) == {
        ("", "allow"): 2,
        ("", "block"): 1,
        ("antispam", "allow"): 2,
        ("antispam", "block"): 1,
    }


def test_counters_add_up_field_by_field():
    first, second = [0] * (len(BUCKETS) + 1), [0] * (len(BUCKETS) + 1)
    first[0] = second[1] = 1
    one = Counters(
        originals_received=2,
        verdicts={("allow", "all_allow"): 2},
        ne_answer_seconds={"a": Latency(first, 0.001, 1)},
    )
    other = Counters(
        originals_received=1,
        verdicts={("block", "block"): 1},
        ne_answer_seconds={"a": Latency(second, 0.002, 1), "b": Latency()},
    )
    both = add(one, other)
    assert both.originals_received == 3
    assert both.verdicts == {("allow", "all_allow"): 2, ("block", "block"): 1}
    assert both.ne_answer_seconds["a"] == Latency([1, 1] + [0] * (len(BUCKETS) - 1), 0.003, 2)
    assert both.ne_answer_seconds["b"] == Latency()
    assert one.originals_received == 2  # the parts are left as they were
    assert add(PlaneReport(), PlaneReport()) == PlaneReport()


def test_latency_is_exported_with_cumulative_buckets_ending_with_inf():
    histogram = Histogram()
    for seconds in (0.0005, 0.001, 0.003, 3.0, 9.0):
        histogram.observe(seconds)
    counters = Counters(decision_seconds=Latency.of(histogram))
    (family,) = [f for f in families(counters, Gauges()) if f.name == "smps_decision_seconds"]
    buckets = {s.labels["le"]: s.value for s in family.samples if s.name.endswith("_bucket")}
    assert list(buckets) == [*map(str, BUCKETS), "+Inf"]
    assert buckets["0.001"] == 2 and buckets["0.005"] == 3
    assert buckets["2.0"] == 3 and buckets["5.0"] == 4 and buckets["+Inf"] == 5
    (count,) = [s.value for s in family.samples if s.name == "smps_decision_seconds_count"]
    assert count == 5
