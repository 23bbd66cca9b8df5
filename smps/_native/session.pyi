"""Type stub for the compiled SMPP session core (smps/_native/session.pyx)."""

import asyncio
from collections.abc import Callable
from typing import Any

NO_RESPONSE: int
REFUSED: int
QUEUED: int

class SessionStats:
    pdus_in: dict[int, int]
    pdus_out: dict[int, int]
    errors: dict[str, int]
    timeouts: int
    unexpected_responses: int
    window_peak: int
    rtt_total: float
    rtt_count: int
    def error(self, kind: str) -> None: ...
    def snapshot(self) -> dict[str, Any]: ...

class SessionCore:
    name: str
    state: Any
    peer: tuple[str, int] | None
    stats: SessionStats
    enquire_link: float
    inactivity_timeout: float
    response_timeout: float
    unbind_grace: float
    window: int
    queue_limit: int
    closed: asyncio.Future[None]
    _loop: asyncio.AbstractEventLoop
    _allowed: frozenset[int]
    def __init__(
        self, loop: asyncio.AbstractEventLoop, name: str, max_pdu_size: int, tick: float
    ) -> None: ...
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    @property
    def outstanding(self) -> int: ...
    @property
    def queued(self) -> int: ...
    @property
    def free_window(self) -> int: ...
    @property
    def transport(self) -> asyncio.Transport | None: ...
    @property
    def is_open(self) -> bool: ...
    def allocate_sequence(self) -> int: ...
    def send(
        self, pdu: bytes, callback: Callable[[Any, int, bytes | None], None], context: Any = None
    ) -> int: ...
    def _expect(
        self, command_id: int, callback: Callable[[Any, int, bytes | None], None], context: Any
    ) -> int: ...
    def respond(self, request: bytes, status: int = 0, message_id: bytes = b"") -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def abort_after_flush(self) -> None: ...
