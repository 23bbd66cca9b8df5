"""heap.settle(): what a process made while starting is out of the collector's sight."""

import gc
import weakref

from smps.runtime import heap


class Cycle:
    """An object that refers to itself, so only the cyclic collector can free it."""

    def __init__(self):
        self.me = self


def test_settle_freezes_the_startup_heap_and_collects_young_objects_less_often():
    threshold = gc.get_threshold()
    try:
        made_while_starting = [[] for _ in range(100)]
        heap.settle()
        assert gc.get_freeze_count() >= len(made_while_starting)
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *threshold[1:])
        # A cycle made after starting is still collected, by the collector's own
        # schedule: no gc.collect() here, only enough new objects to reach the threshold.
        later = weakref.ref(Cycle())
        assert later() is not None
        allocations = [[] for _ in range(2 * heap.YOUNG_THRESHOLD)]
        assert later() is None, f"not collected after {len(allocations)} allocations"
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
