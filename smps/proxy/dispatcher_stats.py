"""A dispatcher's running totals: what the data plane's snapshot reports each
second (originals, copies, answers, verdicts by reason). Plain attributes: the
message path adds to them inline."""

from smps._native import pending as P
from smps.proxy.verdicts import OUTCOME_NAMES

# (verdict, reason) names of the decision counters, by outcome and reason code.
DECISION_KEYS = {
    (outcome, reason): (OUTCOME_NAMES[outcome], P.reason_name(reason))
    for outcome in OUTCOME_NAMES
    for reason in range(P.REASON_BLOCK, P.REASON_STICKY + 1)
}


class DispatcherStats:
    """Totals since the dispatcher started."""

    __slots__ = (
        "campaign_blocks",
        "concat_overflow",
        "copies_sent",
        "decisions",
        "duplicate_parts",
        "internal_errors",
        "late_answers",
        "late_parts",
        "parts_forwarded",
        "queue_dropped",
        "received",
        "retried",
        "throttled",
        "whole_messages",
        "withdrawn",
    )

    def __init__(self) -> None:
        self.received = 0
        self.decisions: dict[tuple[str, str], int] = {}
        self.copies_sent = 0
        self.late_answers = 0
        self.queue_dropped = 0  # copies that found no bind, a full queue or no time
        self.withdrawn = 0  # queued copies not sent because the verdict was known
        self.retried = 0
        self.throttled = 0
        self.internal_errors = 0  # bugs caught where they would have stopped the data plane
        # Whole messages (smps.proxy.assembly): judged [incomplete, complete]; parts
        # judged alone because concat_max_held messages were held; retries of a part
        # already held; parts after their message's verdict; parts sent to their owner.
        self.whole_messages = [0, 0]
        self.concat_overflow = 0
        self.duplicate_parts = 0
        self.late_parts = 0
        self.parts_forwarded = 0
        self.campaign_blocks = 0  # messages a fingerprint rule blocked (smps.proxy.campaigns)

    def decided(self, verdict: str, reason: str) -> None:
        key = (verdict, reason)
        self.decisions[key] = self.decisions.get(key, 0) + 1
