"""The dashboard's NE latency: the mean over about the last minute, from running sums of
every answer (smps.web.node.LatencyWindow)."""

from smps.web.node import LatencyWindow


def test_mean_over_the_window_from_running_sums():
    window = LatencyWindow(span=60.0)
    # The first reading: everything since the start.
    assert window.mean_ms({"antispam": (0.5, 100)}, now=0.0) == {"antispam": 5.0}
    # 100 more answers took 1.5 s in all; the window starts at the first reading.
    assert window.mean_ms({"antispam": (2.0, 200)}, now=30.0) == {"antispam": 15.0}
    # A minute on, the oldest reading in the window is the one at 30 s.
    assert window.mean_ms({"antispam": (2.2, 300)}, now=90.0) == {"antispam": 2.0}
    # No answers since the window's start: no figure rather than a stale one.
    assert window.mean_ms({"antispam": (2.2, 300)}, now=150.0) == {}


def test_readings_at_most_once_a_second_and_a_restarted_plane():
    window = LatencyWindow(span=60.0)
    window.mean_ms({"fraud": (1.0, 10)}, now=0.0)
    window.mean_ms({"fraud": (1.5, 20)}, now=0.5)  # not kept: within a second of the last
    assert window.mean_ms({"fraud": (3.0, 30)}, now=61.2) == {"fraud": 100.0}
    # Sums below the window's start: the data plane started again from zero.
    assert window.mean_ms({"fraud": (0.05, 5)}, now=62.5) == {"fraud": 10.0}
    assert window.mean_ms({"new": (0.004, 2)}, now=63.6) == {"new": 2.0}
