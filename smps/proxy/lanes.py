"""One NE account as the dispatcher sees it: its live binds, the copies that
wait for a window or a token, and its token bucket (`tps`)."""

from collections import deque
from typing import TYPE_CHECKING

from smps._native import pending as P
from smps._native.histogram import Histogram
from smps.config import NeAccount
from smps.smpp.session import Session

if TYPE_CHECKING:
    from smps.proxy.dispatcher import HeldCopy


class Lane:
    """One NE account as the dispatcher sees it: its live binds, the copies
    waiting for window or rate, and its token bucket."""

    __slots__ = (
        "account",
        "answers",
        "binds",
        "copies_sent",
        "decisive",
        "latency",
        "monitor_answers",
        "queue",
        "refilled_at",
        "system_id",
        "tokens",
        "tps",
        "waiting",
        "whole",
    )

    def __init__(self, account: NeAccount):
        self.system_id = account.system_id
        self.binds: list[Session] = []
        # Copies in arrival order; one sent or withdrawn stays until it reaches
        # the head (no search through the queue), `waiting` counts the others.
        self.queue: deque[HeldCopy] = deque()
        self.waiting = 0
        self.tokens = float(account.tps)
        self.refilled_at = 0.0
        self.answers = {P.ALLOW: 0, P.BLOCK: 0, P.NONE: 0}
        self.copies_sent = 0
        self.monitor_answers = 0  # answers while the account is in monitor mode
        self.latency = Histogram()  # copy sent → NE answer
        self.configure(account)

    def configure(self, account: NeAccount) -> None:
        self.account = account
        self.decisive = account.mode == "enforce"
        self.tps = account.tps
        self.whole = account.concat == "message"  # a long message as one copy, or its parts

    def pick_bind(self) -> Session | None:
        """The bind with the most free window, or None when all are full."""
        best, best_free = None, 0
        for session in self.binds:
            free = session.free_window  # a Session, or a mesh RemoteBind
            if free > best_free:
                best, best_free = session, free
        return best

    def take_token(self, now: float) -> bool:
        if not self.tps:
            return True
        tokens = min(float(self.tps), self.tokens + (now - self.refilled_at) * self.tps)
        self.refilled_at = now
        if tokens >= 1.0:
            self.tokens = tokens - 1.0
            return True
        self.tokens = tokens
        return False
