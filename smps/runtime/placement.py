"""Balanced NE placement: which worker gets a new NE connection.

The master accepts on `server.listen`, peeks at the bind PDU (MSG_PEEK: the
bytes stay in the socket for the worker's session to read), and hands the
connection to the worker holding the fewest binds of that account, so an
account's binds spread over workers (SO_REUSEPORT's address hash does not:
design.md 4.1). Binds being placed count as held until the worker reports
them bound or gone.

`max_binds` holds across workers through `elsewhere()`: each worker learns how
many binds of each account the others hold or are being handed. A placement
settles the moment the worker has authenticated the bind (accepted or
refused), so concurrent binds may be refused conservatively, and retry, but
never exceed the limit.
"""

import asyncio
import socket
import struct

BIND_COMMANDS = frozenset({0x00000001, 0x00000002, 0x00000009})
PEEK_LIMIT = 4096  # a bind PDU is at most ~100 bytes; more is not a bind worth reading
PARTIAL_RETRY = 0.01  # seconds between peeks while a bind arrives in pieces
_HEADER = struct.Struct("!II")


def bind_system_id(data: bytes) -> str | None:
    """The system_id of a complete bind PDU at the start of `data`; None when it
    is not a bind (the worker's session answers whatever it is)."""
    if len(data) < 17:
        return None
    length, command_id = _HEADER.unpack_from(data)
    if command_id not in BIND_COMMANDS or length > len(data):
        return None
    end = data.find(b"\0", 16, length)
    if end < 0:
        return None
    return data[16:end].decode("latin-1")


def bind_complete(data: bytes) -> bool:
    if len(data) >= PEEK_LIMIT:
        return True
    if len(data) < 8:
        return False
    return _HEADER.unpack_from(data)[0] <= len(data)


async def peek_bind(conn: socket.socket, timeout: float) -> str | bool | None:
    """Wait for the first PDU without consuming it; returns its bind system_id,
    None for something else, or False when the peer closed or stayed silent."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            while True:
                readable = loop.create_future()
                loop.add_reader(conn.fileno(), readable.set_result, None)
                try:
                    await readable
                finally:
                    loop.remove_reader(conn.fileno())
                try:
                    data = conn.recv(PEEK_LIMIT, socket.MSG_PEEK)
                except BlockingIOError:
                    continue
                if not data:
                    return False
                if bind_complete(data):
                    return bind_system_id(data)
                # Level-triggered readiness would spin on bytes we only peek at.
                await asyncio.sleep(PARTIAL_RETRY)
    except (TimeoutError, OSError):
        return False


class Placement:
    """Bind counts per worker and account, held and being placed."""

    def __init__(self, workers: int):
        self.bound: list[dict[str, int]] = [{} for _ in range(workers)]
        self.placing: list[dict[str, int]] = [{} for _ in range(workers)]
        self._handoffs: list[dict[int, str]] = [{} for _ in range(workers)]
        self._next_id = 0
        self._round_robin = 0

    def held(self, worker: int, account: str) -> int:
        return self.bound[worker].get(account, 0) + self.placing[worker].get(account, 0)

    def choose(self, candidates: list[int], account: str | None) -> int:
        """The worker that most needs a bind of `account`; round-robin when the
        account is unknown (TLS, or not a bind)."""
        if account is None:
            self._round_robin += 1
            return candidates[self._round_robin % len(candidates)]
        return min(
            candidates,
            key=lambda w: (
                self.held(w, account),
                sum(self.bound[w].values()) + sum(self.placing[w].values()),
                w,
            ),
        )

    def placed(self, worker: int, account: str | None) -> int:
        """Record a handoff; returns its id, which the worker reports back."""
        self._next_id += 1
        key = account or ""
        self._handoffs[worker][self._next_id] = key
        self.placing[worker][key] = self.placing[worker].get(key, 0) + 1
        return self._next_id

    def settled(self, worker: int, handoff_id: int) -> None:
        """The worker's session bound (now in `bound`) or closed."""
        key = self._handoffs[worker].pop(handoff_id, None)
        if key is None:
            return
        left = self.placing[worker][key] - 1
        if left:
            self.placing[worker][key] = left
        else:
            del self.placing[worker][key]

    def forget(self, worker: int) -> None:
        """The worker died: its binds and handoffs are gone."""
        self.bound[worker] = {}
        self.placing[worker] = {}
        self._handoffs[worker] = {}

    def elsewhere(self, worker: int) -> dict[str, int]:
        """Binds held or being placed in the other workers, by account."""
        counts: dict[str, int] = {}
        for other in range(len(self.bound)):
            if other == worker:
                continue
            for table in (self.bound[other], self.placing[other]):
                for account, count in table.items():
                    if account:
                        counts[account] = counts.get(account, 0) + count
        return counts
