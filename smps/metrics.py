"""Prometheus export for the master.

Data-plane code never calls prometheus-client per message (a cached inc()
costs 1-3 µs, the whole budget of a message; docs/architecture.md §6). Components keep
plain counters; collectors registered here read them when /metrics is scraped.
"""

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge, PlatformCollector, ProcessCollector
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from smps import __version__


class CallbackCollector(Collector):
    """Builds metric families at scrape time from a component's own counters."""

    def __init__(self, collect: Callable[[], Iterable[Metric]]):
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()


def make_registry() -> CollectorRegistry:
    """A fresh registry with build info and this process's CPU/memory metrics."""
    registry = CollectorRegistry(auto_describe=True)
    build = Gauge("smps_build_info", "SMPS version running here.", ["version"], registry=registry)
    build.labels(__version__).set(1)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry
