"""Latency histograms kept as plain bucket counts on the data plane.

An observation is one bisect and three additions: no metrics-library call per
message (design.md 4.1). Workers ship the counts in their stats snapshots and
the master exports them as Prometheus histograms.
"""

from bisect import bisect_left

BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Upper bounds in seconds; around the 2 s verdict deadline and well below it."""


class Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations <= le) pairs, Prometheus style, ending with +Inf."""
        result, running = [], 0
        for bound, count in zip((*map(str, BUCKETS), "+Inf"), self.counts, strict=True):
            running += count
            result.append((bound, running))
        return result
