"""Concatenated messages with a blocked segment, remembered so that their other
segments are blocked without asking the NEs again (`policy.concat_sticky_block`)."""

from collections import OrderedDict

STICKY_LIMIT = 100_000  # concatenated messages remembered as blocked


class StickyBlocks:
    """Concatenated messages with a blocked segment, remembered for `window`
    seconds so their other segments are blocked without asking the NEs again."""

    def __init__(self, window: float, limit: int = STICKY_LIMIT):
        self.window = window
        self.limit = limit
        self._until: OrderedDict[tuple[bytes, bytes, int], float] = OrderedDict()

    def add(self, key: tuple[bytes, bytes, int], now: float) -> None:
        self._until[key] = now + self.window
        self._until.move_to_end(key)
        while self._until and (
            len(self._until) > self.limit or next(iter(self._until.values())) <= now
        ):
            self._until.popitem(last=False)

    def blocked(self, key: tuple[bytes, bytes, int], now: float) -> bool:
        until = self._until.get(key)
        return until is not None and until > now

    def __len__(self) -> int:
        return len(self._until)
