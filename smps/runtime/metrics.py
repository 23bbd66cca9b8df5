"""The node's metrics, from the data planes' counters and gauges.

Data planes count in plain attributes and dicts (docs/architecture.md §6: no
prometheus-client call per message); `smps.runtime.plane.DataPlane.snapshot` reads
them into typed structs (`smps.runtime.stats`). Workers send theirs to the master
about once a second. `families` turns counters and gauges into metric families,
for the master's sum over its workers and for the single-process node's one data
plane alike: each `Counters` field is the family ``smps_`` + its name, with the
labels `FAMILIES` names for its keys.
"""

from collections.abc import Iterable, Iterator
from itertools import accumulate
from typing import Any, get_args, get_type_hints

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from smps._native.histogram import BUCKETS
from smps.runtime.stats import Counters, Gauges, Latency, add

# Counters field -> (label names of its keys, help). Every counter shows from the start,
# unless it is None (not counted here): one with labels and no sample yet as a single 0
# without labels, so dashboards and alerts see 0, not "no data", until its first real
# samples replace it.
FAMILIES: dict[str, tuple[tuple[str, ...], str]] = {
    "originals_received": ((), "Originals (deliver_sm/data_sm) received from the SMSCs."),
    "verdicts": (("verdict", "reason"), "Final verdicts sent to the SMSCs, by verdict and reason."),
    "decision_seconds": (
        (),
        "Time from an original's arrival to the verdict sent to the SMSC.",
    ),
    "screening_hits": (
        ("rule", "action"),
        "Screening rules that fired, by rule id and action (monitor hits too).",
    ),
    "screened": ((), "Originals the screening rules judged."),
    "screening_seconds": ((), "Time spent judging originals against the screening rules."),
    "copies_sent": (
        ("account",),
        "Copies sent to NE accounts (forwarded ones count where they were sent).",
    ),
    "ne_answers": (
        ("account", "verdict"),
        "NE answers by account and verdict (none: no usable answer).",
    ),
    "ne_answer_seconds": (("account",), "Time from a copy to the NE's answer, by account."),
    "late_answers": (
        (),
        "Answers of enforcing NE accounts that came after the final verdict "
        "(monitor accounts' answers count in smps_monitor_answers_total).",
    ),
    "monitor_answers": (
        ("account",),
        "Answers of NE accounts in monitor mode, which never decide (so never late).",
    ),
    "throttled": ((), "Originals answered ESME_RTHROTTLED because too many were in flight."),
    "copies_dropped": ((), "Copies that found no bind or window before the deadline."),
    "copies_retried": ((), "Copies sent again on another bind after theirs dropped."),
    "copies_withdrawn": (
        (),
        "Queued copies not sent because their original's verdict was already known.",
    ),
    "internal_errors": (
        (),
        "Bugs caught in the data plane where they would have stopped it "
        "(the log has the first of each kind in full).",
    ),
    "pdu_errors": (
        ("kind",),
        "PDU and protocol errors on SMPP sessions and in the master's peek "
        "at new NE connections, by kind.",
    ),
    "smsc_reconnects": (("smsc",), "Connections to an SMSC lost and re-established."),
    "auth_failures": ((), "NE binds refused."),
    "ne_connections_refused": (
        ("reason",),
        "NE connections closed at once because too many had not bound yet, by the "
        "server cap reached (max_unbound_per_address, max_unbound).",
    ),
    "forwarded_copies": (
        ("direction",),
        "Copies forwarded between workers (out: to a peer, in: from one).",
    ),
    "whole_messages": (
        ("parts",),
        "Concatenated messages judged as one, with all their parts (complete) or with "
        "those present at policy.concat_hold (incomplete).",
    ),
    "concat_overflow": (
        (),
        "Parts judged alone because policy.concat_max_held messages were held already.",
    ),
    "concat_duplicate_parts": ((), "Parts that came again while their message was held."),
    "concat_late_parts": (
        (),
        "Parts that came after their message was decided; they got its verdict at once.",
    ),
    "concat_parts_forwarded": ((), "Parts sent to the worker that holds their message."),
    "campaign_blocks": ((), "Messages a fingerprint rule (a campaign blocked) blocked."),
    "records_forward_dropped": (
        ("kind",),
        "Decision and trace records a worker dropped because the master did not keep up, by kind.",
    ),
}
_LE = (*map(str, BUCKETS), "+Inf")  # the bucket labels of a Latency
# Labelled families of histograms: with no observation yet there is nothing to show.
_HISTOGRAMS = {name for name, hint in get_type_hints(Counters).items() if Latency in get_args(hint)}


def collect(slots: list[Any], role: str, own: Counters) -> Iterator[Metric]:
    """Metric families summed over every worker position and the master's `own`
    counters (its peek at new NE connections)."""
    counters = add(own, *(slot.counters() for slot in slots))
    gauges = add(Gauges(), *(slot.report.gauges for slot in slots))
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


def families(counters: Counters, gauges: Gauges) -> Iterator[Metric]:
    """Data-plane counters and gauges (one data plane's, or the sum over the
    workers) as metric families."""
    for field, (labels, help_text) in FAMILIES.items():
        name = f"smps_{field}"
        value = getattr(counters, field)
        if isinstance(value, int | float):
            yield CounterMetricFamily(name, help_text, value=value)
        elif isinstance(value, Latency):
            family = HistogramMetricFamily(name, help_text)
            _add_latency(family, [], value)
            yield family
        elif value:
            yield _labelled(name, help_text, labels, value)
        elif field not in _HISTOGRAMS:  # no sample yet: 0, without labels
            yield CounterMetricFamily(name, help_text, value=0)
    yield GaugeMetricFamily(
        "smps_in_flight", "Originals waiting for their verdict.", gauges.in_flight
    )
    yield GaugeMetricFamily(
        "smps_concat_held",
        "Concatenated messages whose parts are held, waiting for their other parts.",
        gauges.concat_held,
    )
    yield _binds_up(gauges, accounts=counters.copies_sent)


def _binds_up(gauges: Gauges, accounts: Iterable[str]) -> Metric:
    """Bound sessions: an SMSC's labelled ``smsc``, an NE account's ``account``, as in
    every other family. Every NE account the data plane serves (``accounts``) shows,
    at 0 while none of its NEs is bound, so that an alert can see it."""
    binds = Metric(
        "smps_binds_up",
        "Bound SMPP sessions: side=smsc by SMSC (smsc), side=ne by NE account (account).",
        "gauge",
    )
    for smsc, count in sorted(gauges.smsc_binds.items()):
        binds.add_sample("smps_binds_up", {"side": "smsc", "smsc": smsc}, count)
    ne = {**dict.fromkeys(accounts, 0), **gauges.ne_binds}
    for account, count in sorted(ne.items()):
        binds.add_sample("smps_binds_up", {"side": "ne", "account": account}, count)
    return binds


def _labelled(name: str, help_text: str, labels: tuple[str, ...], samples: dict) -> Metric:
    """A family of counters (or histograms) keyed by their label values."""
    histogram = isinstance(next(iter(samples.values())), Latency)
    kind = HistogramMetricFamily if histogram else CounterMetricFamily
    family = kind(name, help_text, labels=labels)
    for key, value in sorted(samples.items()):
        values = list(key) if isinstance(key, tuple) else [key]
        if histogram:
            _add_latency(family, values, value)
        else:
            family.add_metric(values, value)
    return family


def _add_latency(family: HistogramMetricFamily, values: list[str], latency: Latency) -> None:
    buckets = list(zip(_LE, accumulate(latency.buckets), strict=True))
    family.add_metric(values, buckets, latency.seconds)
