"""Per-minute verdict counts (the ``minute_counters`` table), from running totals.

The data plane already keeps running totals of its final verdicts and of each NE
account's answers (for /metrics; `smps.runtime.stats.verdict_totals` reads them).
The writer turns the growth of those totals between two readings, about a second
apart, into increments of the current minute: counting costs the data plane nothing
per message, and every verdict is counted whatever ``database.record`` keeps (with
``non_allow``, the allowed messages too).

Account "" counts final verdicts (allow, block, tempfail); an account name counts that
NE's answers (allow, block, none: no usable answer, counted when it is known).
"""

from collections.abc import Hashable

Totals = dict[tuple[str, str], int]
"""(account, verdict) -> running total since the data plane started."""


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
