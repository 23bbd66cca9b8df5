"""Type stub for the campaign tables (smps/_native/campaigns.pyx)."""

from collections.abc import Iterable
from typing import Any

import msgspec

OUTCOME_ALLOW: int
OUTCOME_BLOCK: int
OUTCOME_TEMPFAIL: int
OTHER_CAUSE: int
VERSION: int
WINDOW_MAX: int

class CampaignTable:
    buffer: Any
    def __init__(self, buffer: Any, capacity: int = 1024) -> None: ...
    @staticmethod
    def size_for(capacity: int = 1024) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def observed(self) -> int: ...
    @property
    def evictions(self) -> int: ...
    def observe(
        self,
        fingerprint: int,
        sender: bytes,
        recipient: bytes,
        now_s: int,
        outcome: int,
        cause: int,
        example: str | None = None,
        content_allowed: bool = False,
    ) -> None: ...

class Campaign(msgspec.Struct, frozen=True):
    fingerprint: str
    messages: int
    senders: int
    recipients: int
    blocked: int
    outcomes: list[tuple[int, int, int]]
    example: str | None
    content_allowed: bool
    first_seen: int
    last_seen: int
    rate: list[int]
    error: int

class CampaignView:
    torn: int
    def __init__(self, buffers: Iterable[Any]) -> None: ...
    def campaigns(self, window_s: int, now_s: int, limit: int) -> list[Campaign]: ...
    def active(self, window_s: int, now_s: int, min_messages: int) -> int: ...

def read_campaigns(
    buffers: Iterable[Any], window_s: int, now_s: int, limit: int
) -> list[Campaign]: ...
