"""Type stub for the dispatcher's native path (smps/_native/dispatch.pyx)."""

from collections.abc import Callable
from typing import Any

from smps._native.histogram import Histogram
from smps._native.pdu import SmView
from smps._native.pending import PendingTable

class Original:
    session: Any
    pdu: bytes
    view: SmView
    concat: tuple[int, int, int] | None
    concat_key: tuple[bytes, bytes, int] | None
    targets: tuple[Lane, ...]
    arrived_wall: float
    trace: Any
    answered: set[str] | None
    held: list[Any] | None
    rule: str | None
    parts: list[int] | None
    fingerprint: int
    text: str | None
    def __init__(
        self,
        session: Any,
        pdu: bytes,
        view: SmView,
        concat: tuple[int, int, int] | None,
        concat_key: tuple[bytes, bytes, int] | None,
        targets: tuple[Lane, ...],
        arrived_wall: float,
        trace: Any,
        answered: set[str] | None,
    ) -> None: ...

class Copy:
    handle: int
    index: int
    lane: Lane
    session: Any
    retried: bool
    sent_at: float
    original: Original
    def __init__(
        self,
        handle: int,
        index: int,
        lane: Lane,
        session: Any,
        retried: bool,
        sent_at: float,
        original: Original,
    ) -> None: ...

class Lane:
    system_id: str
    binds: list[Any]
    queue: Any
    waiting: int
    tokens: float
    refilled_at: float
    copies_sent: int
    monitor_answers: int
    latency: Histogram
    account: Any
    decisive: bool
    whole: bool
    tps: int
    cause: int
    def __init__(self, account: Any) -> None: ...
    def configure(self, account: Any) -> None: ...
    @property
    def answers(self) -> dict[int, int]: ...
    def count_answer(self, state: int) -> None: ...
    def pick_bind(self) -> Any | None: ...
    def take_token(self, now: float) -> bool: ...

class DispatcherStats:
    received: int
    copies_sent: int
    late_answers: int
    queue_dropped: int
    withdrawn: int
    retried: int
    throttled: int
    internal_errors: int
    whole_messages: list[int]
    concat_overflow: int
    duplicate_parts: int
    late_parts: int
    parts_forwarded: int
    campaign_blocks: int
    def decided(self, verdict: str, reason: str) -> None: ...
    @property
    def decisions(self) -> dict[tuple[str, str], int]: ...

class DispatchCore:
    pending: PendingTable
    stats: DispatcherStats
    decision_latency: Histogram
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    sink: Any
    tracer: Any
    campaigns: Any
    policy: Any
    router: Any
    sticky: Any
    read_pause: Any
    inspect_receipts: bool
    sticky_enabled: bool
    def on_message(self, session: Any, pdu: bytes) -> None: ...

def udh_concat(view: SmView) -> tuple[int, int, int] | None: ...
def message_key(part: Original) -> tuple: ...
def decisive_mask(targets: tuple[Lane, ...]) -> int: ...
