"""Per-minute verdict counts (the ``minute_counters`` table), from running totals.

The data plane already keeps running totals of its final verdicts and of each NE
account's answers (for /metrics). The writer turns the growth of those totals between
two readings, about a second apart, into increments of the current minute: counting
costs the data plane nothing per message, and every verdict is counted whatever
``database.record`` keeps (with ``non_allow``, the allowed messages too).

Account "" counts final verdicts (allow, block, tempfail); an account name counts that
NE's answers (allow, block, none: no usable answer, counted when it is known).
"""

from collections.abc import Hashable
from typing import Any

from smps.proxy.verdicts import STATE_NAMES

Totals = dict[tuple[str, str], int]
"""(account, verdict) -> running total since the data plane started."""


def verdict_totals(dispatcher: Any) -> Totals:
    """A dispatcher's running totals of final verdicts and NE answers."""
    totals: Totals = {}
    for (verdict, _reason), count in dispatcher.stats.decisions.items():
        totals["", verdict] = totals.get(("", verdict), 0) + count
    for name, lane in dispatcher.lanes.items():
        for state, count in lane.answers.items():
            if count:
                totals[name, STATE_NAMES[state]] = count
    return totals


class TotalsDelta:
    """The growth of each source's totals since its previous reading.

    A source is one data plane (a worker process); its totals only grow, so a total
    smaller than last time means it started again from zero (an account removed and
    added again): all of it is new.
    """

    def __init__(self) -> None:
        self._last: dict[Hashable, Totals] = {}

    def step(self, source: Hashable, totals: Totals) -> Totals:
        last = self._last.get(source, {})
        grown: Totals = {}
        for key, total in totals.items():
            growth = total - last.get(key, 0)
            if growth < 0:
                growth = total
            if growth:
                grown[key] = growth
        self._last[source] = totals
        return grown

    def forget(self, source: Hashable) -> None:
        """The source is gone (its process ended); a new one starts from zero."""
        self._last.pop(source, None)
