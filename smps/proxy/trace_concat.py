"""Concatenated messages in traces: which parts belong together, and the whole
text once the last part is seen.

Each traced part's event carries a `ConcatInfo` whose ``id`` is the same for
every part of one message (the message_id of the first part seen). The parts
wait in a `ConcatTracker`, keyed by (source, destination, ref, total,
mechanism), for `CONCAT_TTL` at most and `CONCAT_LIMIT` sets at most; the part
that completes a set gets the `Reassembled` message on its event, its text only
when every part allowed content.
"""

from collections import OrderedDict
from typing import Any

from smps._native import text
from smps.proxy.records import Reassembled

CONCAT_TTL = 300.0  # seconds a partial concatenated set waits for its other parts
CONCAT_LIMIT = 10_000  # partial sets remembered at most


class ConcatSet:
    """The parts of one concatenated message seen so far."""

    __slots__ = ("content", "created_us", "data_coding", "id", "parts", "total")

    def __init__(self, group_id: str, total: int, data_coding: int, now_us: int):
        self.id = group_id
        self.total = total
        self.data_coding = data_coding
        self.created_us = now_us
        self.content = True  # every part so far allowed content and had the same coding
        self.parts: dict[int, tuple[str, bytes | None]] = {}

    def reassemble(self, mechanism: str, esm_class: int, alphabet: str, packed: bool):
        numbers = sorted(self.parts)
        ids = [self.parts[n][0] for n in numbers]
        if not self.content:
            return Reassembled(parts=ids)
        udhi = 0x40 if mechanism != "sar" else 0
        decoded = text.reassemble(
            [(n, self.parts[n][1]) for n in numbers],
            self.data_coding,
            (esm_class & ~0x40) | udhi,
            default_alphabet=alphabet,
            gsm7_packed=packed,
        )
        return Reassembled(ids, decoded.text, decoded.encoding, decoded.note or None)


class ConcatTracker:
    """Partial concatenated sets by (source, destination, ref, total, mechanism),
    kept `ttl_us` at most and `limit` at most; a part seen twice replaces itself."""

    def __init__(self, ttl_us: int, limit: int):
        self.ttl_us = ttl_us
        self.limit = limit
        self._sets: OrderedDict[tuple, ConcatSet] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sets)

    def add(
        self, key: tuple, part: int, message_id: str, data: bytes | None, data_coding: int,
        now_us: int,
    ) -> tuple[str, ConcatSet | None]:  # fmt: skip
        """(group id, the set when this part completed it)."""
        self._expire(now_us)
        total = key[3]
        found = self._sets.get(key)
        if found is None:
            found = ConcatSet(message_id, total, data_coding, now_us)
            self._sets[key] = found
            if len(self._sets) > self.limit:
                self._sets.popitem(last=False)
        if data is None or data_coding != found.data_coding:
            found.content = False
        found.parts[part] = (message_id, data if found.content else None)
        if len(found.parts) == total:
            del self._sets[key]
            return found.id, found
        return found.id, None

    def _expire(self, now_us: int) -> None:
        sets = self._sets
        cutoff = now_us - self.ttl_us
        while sets:
            oldest = next(iter(sets.values()))
            if oldest.created_us > cutoff:
                return
            sets.popitem(last=False)


def concat_of(view: Any) -> tuple[str, int, int, int] | None:
    """(mechanism, ref, total, part) of a valid segment, or None."""
    if view.udhi:
        udh = text.parse_udh(view.user_data)
        if udh is not None and udh.concat is not None:
            ref, total, part = udh.concat
            if 1 <= part <= total:
                return ("udh16" if udh.ref_bits == 16 else "udh8", ref, total, part)
            return None
    sar = view.sar
    if sar is not None and 1 <= sar[2] <= sar[1]:
        return ("sar", *sar)
    return None
