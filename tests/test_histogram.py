"""The data plane's latency histogram (smps/_native/histogram.pyx): Prometheus buckets,
where a value equal to a bound counts in that bound's bucket."""

import random
from bisect import bisect_left

from smps._native.histogram import BUCKETS, Histogram


def test_each_value_lands_in_the_first_bucket_whose_bound_is_not_below_it():
    histogram = Histogram()
    values = [0.0, *BUCKETS, *(b * 1.0001 for b in BUCKETS), 7.5]
    values += [random.Random(3).uniform(0, 6) for _ in range(500)]
    expected = [0] * (len(BUCKETS) + 1)
    for value in values:
        histogram.observe(value)
        expected[bisect_left(BUCKETS, value)] += 1
    assert histogram.counts == expected
    assert histogram.count == len(values)
    assert abs(histogram.total - sum(values)) < 1e-9
