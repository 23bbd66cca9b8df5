"""Verdicts on the wire (docs/architecture.md §2): the NE statuses that mean block (the
dispatcher classifies every NE answer with them, inline), and what status the
SMSC gets for a final outcome.

The combination rule itself (first block wins...) lives in the native pending
table (`smps._native.pending`), which calls it on every answer.
"""

from smps._native import pending as P
from smps._native.pdu import Status
from smps.config import PolicyConfig
from smps.smpp.session import NO_RESPONSE

OUTCOMES = {"allow": P.OUTCOME_ALLOW, "block": P.OUTCOME_BLOCK, "tempfail": P.OUTCOME_TEMPFAIL}
OUTCOME_NAMES = {code: name for name, code in OUTCOMES.items()}
STATE_NAMES = {P.WAITING: "waiting", P.ALLOW: "allow", P.BLOCK: "block", P.NONE: "none"}


class VerdictPolicy:
    """The policy section, compiled into lookups used on every answer."""

    __slots__ = ("block_codes", "on_no_ne", "on_timeout", "outcome_status", "policy")

    def __init__(self, policy: PolicyConfig):
        self.policy = policy
        self.block_codes = frozenset(policy.ne_block_codes)
        self.on_timeout = OUTCOMES[policy.on_timeout]
        self.on_no_ne = OUTCOMES[policy.on_no_ne]
        self.outcome_status = {
            P.OUTCOME_ALLOW: Status.ROK,
            P.OUTCOME_BLOCK: policy.block_status,
            P.OUTCOME_TEMPFAIL: policy.tempfail_status,
        }

    def status_for(self, outcome: int) -> int:
        """The command_status that tells the SMSC this outcome."""
        return self.outcome_status[outcome]


__all__ = ["NO_RESPONSE", "OUTCOMES", "OUTCOME_NAMES", "STATE_NAMES", "VerdictPolicy"]
