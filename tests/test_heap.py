"""heap.settle(): what a process made while starting is out of the collector's sight."""

import gc

from smps.runtime import heap


def test_settle_freezes_the_startup_heap_and_collects_young_objects_less_often():
    threshold = gc.get_threshold()
    try:
        made_while_starting = [[] for _ in range(100)]
        heap.settle()
        assert gc.get_freeze_count() >= len(made_while_starting)
        assert gc.get_threshold() == (heap.YOUNG_THRESHOLD, *threshold[1:])
        later = []
        later.append(later)  # a cycle made after starting is still collected
        del later
        assert gc.collect() >= 1
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
