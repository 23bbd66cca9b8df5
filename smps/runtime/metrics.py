"""The node's metrics, gathered from the data planes' snapshots.

Data planes count in plain dicts (docs/architecture.md §6: no prometheus-client call per
message); `smps.runtime.plane.DataPlane.snapshot` reads them. A snapshot maps a
sample key, the metric name and its label pairs joined by tabs, to a value.
Workers send theirs to the master about once a second; the master keeps, per
worker position, what earlier processes in that position had counted, so a
counter never goes back when a worker restarts. `families` turns counters and
gauges into metric families, for the master's sum over its workers and for the
single-process node's one data plane alike.
"""

from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

HELP = {
    "smps_originals_received": "Originals (deliver_sm/data_sm) received from the SMSCs.",
    "smps_verdicts": "Final verdicts sent to the SMSCs, by verdict and reason.",
    "smps_copies_sent": "Copies sent to NE accounts (forwarded ones count where they were sent).",
    "smps_ne_answers": "NE answers by account and verdict (none: no usable answer).",
    "smps_ne_answer_seconds": "Time from a copy to the NE's answer, by account.",
    "smps_decision_seconds": "Time from an original's arrival to the verdict sent to the SMSC.",
    "smps_late_answers": "NE answers that came after the final verdict.",
    "smps_throttled": "Originals answered ESME_RTHROTTLED because too many were in flight.",
    "smps_copies_dropped": "Copies that found no bind or window before the deadline.",
    "smps_copies_retried": "Copies sent again on another bind after theirs dropped.",
    "smps_copies_withdrawn": "Queued copies not sent because their original's verdict was "
    "already known.",
    "smps_internal_errors": "Bugs caught in the data plane where they would have stopped it "
    "(the log has the first of each kind in full).",
    "smps_pdu_errors": "PDU and protocol errors on SMPP sessions and in the master's peek "
    "at new NE connections, by kind.",
    "smps_smsc_reconnects": "Connections to an SMSC lost and re-established.",
    "smps_auth_failures": "NE binds refused.",
    "smps_ne_connections_refused": "NE connections closed at once because too many had not "
    "bound yet, by the server cap reached (max_unbound_per_address, max_unbound).",
    "smps_forwarded_copies": "Copies forwarded between workers (out: to a peer, in: from one).",
    "smps_in_flight": "Originals waiting for their verdict.",
    "smps_binds_up": "Bound SMPP sessions, by side (smsc, ne) and SMSC or account.",
    "smps_records_forward_dropped": "Decision and trace records a worker dropped because "
    "the master did not keep up, by kind.",
}


class WorkerTotals:
    """One worker position's counters: those of earlier processes plus the current one's."""

    def __init__(self) -> None:
        self.retired: dict[str, float] = {}
        self.current: dict[str, float] = {}
        self.gauges: dict[str, float] = {}

    def update(self, counters: dict[str, float], gauges: dict[str, float]) -> None:
        self.current = counters
        self.gauges = gauges

    def retire(self) -> None:
        """The process ended: its last totals become part of the base."""
        for name, value in self.current.items():
            self.retired[name] = self.retired.get(name, 0) + value
        self.current = {}
        self.gauges = {}

    def counters(self) -> dict[str, float]:
        totals = dict(self.retired)
        for name, value in self.current.items():
            totals[name] = totals.get(name, 0) + value
        return totals


def key(name: str, **labels: str) -> str:
    """A metric sample's key in a snapshot: name and label pairs, tab-separated."""
    return "\t".join([name, *(part for pair in labels.items() for part in pair)])


def split_sample_key(sample_key: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    parts = sample_key.split("\t")
    return parts[0], tuple(parts[1::2]), tuple(parts[2::2])


def sum_tables(tables: Iterable[dict[str, float]]) -> dict[str, float]:
    result: dict[str, float] = {}
    for table in tables:
        for name, value in table.items():
            result[name] = result.get(name, 0) + value
    return result


def collect(slots: list[Any], role: str, own: dict[str, float] | None = None) -> Iterator[Metric]:
    """Metric families summed over every worker position and the master's `own`
    counters (its peek at new NE connections)."""
    counters = sum_tables([*(slot.totals.counters() for slot in slots), own or {}])
    gauges = sum_tables(slot.totals.gauges for slot in slots)
    yield from families(counters, gauges)
    restarts = CounterMetricFamily(
        "smps_worker_restarts", "Worker processes restarted after dying.", labels=["worker"]
    )
    workers_up = GaugeMetricFamily("smps_workers_up", "Worker processes running.")
    for slot in slots:
        restarts.add_metric([str(slot.index)], slot.restarts)
    workers_up.add_metric([], sum(1 for slot in slots if slot.ready))
    yield restarts
    yield workers_up
    ha = GaugeMetricFamily("smps_ha_role", "1 for this node's current HA role.", labels=["role"])
    for name in ("active", "standby", "fault"):
        ha.add_metric([name], 1.0 if name == role else 0.0)
    yield ha


def families(counters: dict[str, float], gauges: dict[str, float]) -> Iterator[Metric]:
    """Data-plane counters and gauges by sample key (one data plane's snapshot, or
    the sum over the workers) as metric families."""
    found: dict[str, Metric] = {}
    # (histogram name, label names, label values) -> {"buckets": {le: n}, "sum": s}
    histograms: dict[tuple[str, tuple[str, ...], tuple[str, ...]], dict[str, Any]] = {}
    for sample_key, value in sorted(counters.items()):
        name, labels, values = split_sample_key(sample_key)
        if name.endswith(("_bucket", "_sum", "_count")):
            base, _, part = name.rpartition("_")
            if part == "bucket":  # le is the last label
                entry = histograms.setdefault((base, labels[:-1], values[:-1]), {"buckets": {}})
                entry["buckets"][values[-1]] = value
            else:
                histograms.setdefault((base, labels, values), {"buckets": {}})[part] = value
            continue
        base = name.removesuffix("_total")
        family = found.get(base)
        if family is None:
            family = found[base] = CounterMetricFamily(base, HELP.get(base, base), labels=labels)
        family.add_metric(values, value)
    for sample_key, value in sorted(gauges.items()):
        name, labels, values = split_sample_key(sample_key)
        family = found.get(name)
        if family is None:
            family = found[name] = GaugeMetricFamily(name, HELP.get(name, name), labels=labels)
        family.add_metric(values, value)
    if "smps_in_flight" not in found:
        found["smps_in_flight"] = GaugeMetricFamily(
            "smps_in_flight", HELP["smps_in_flight"], value=0
        )
    yield from found.values()
    yield from _histogram_families(histograms)


def _histogram_families(histograms: dict) -> Iterator[Metric]:
    families: dict[str, HistogramMetricFamily] = {}
    for (name, labels, values), entry in sorted(histograms.items()):
        family = families.get(name)
        if family is None:
            family = families[name] = HistogramMetricFamily(
                name, HELP.get(name, name), labels=list(labels)
            )
        buckets = sorted(entry["buckets"].items(), key=lambda item: float(item[0]))
        family.add_metric(list(values), buckets, entry.get("sum", 0.0))
    yield from families.values()
