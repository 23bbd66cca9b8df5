"""Balanced NE placement: which worker gets a new NE connection.

The master accepts on `server.listen`, peeks at the bind PDU (MSG_PEEK: the
bytes stay in the socket for the worker's session to read), and hands the
connection to the worker holding the fewest binds of that account, so an
account's binds spread over workers (SO_REUSEPORT's address hash does not:
docs/architecture.md §6). Binds being placed count as held until the worker reports
them bound or gone.

Peeking is cheap whatever the peer does: the socket's SO_RCVLOWAT is set to
the octets still missing, so the kernel reports it readable only once they
have all arrived (or the peer closed): a few wakeups per connection, however
the bytes trickle in. The first whole PDU must come within
`server.first_pdu_timeout`; a bad command_length is answered by the master
itself, as soon as its 4 octets are in (`answer_framing_error`).

`max_binds` holds across workers through `elsewhere()`: each worker learns how
many binds of each account the others hold or are being handed. A placement
settles the moment the worker has authenticated the bind (accepted or
refused), so concurrent binds may be refused conservatively, and retry, but
never exceed the limit.
"""

import asyncio
import contextlib
import socket
import struct

from smps._native.pdu import Framer, make_generic_nack
from smps.errors import FramingError

BIND_COMMANDS = frozenset({0x00000001, 0x00000002, 0x00000009})
PEEK_LIMIT = 4096  # a bind PDU is at most ~100 bytes; more is not a bind worth reading
_HEADER = struct.Struct("!II")
_LENGTH = struct.Struct("!I")


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


async def peek_bind(conn: socket.socket, timeout: float, max_pdu_size: int) -> str | bool | None:
    """Wait for the first PDU without consuming it; returns its bind system_id,
    None for something else, or False when the peer closed first.

    Raises TimeoutError when no whole PDU came within `timeout`, and
    FramingError for a command_length outside 16..max_pdu_size (as soon as
    its 4 octets are in)."""
    loop = asyncio.get_running_loop()
    missing = _LENGTH.size  # the command_length first, then the rest of the PDU
    try:
        async with asyncio.timeout(timeout):
            while True:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, missing)
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
                if len(data) < missing:
                    return False  # readable short of the low mark: the peer closed
                framer = Framer(max_pdu_size)
                framer.feed(data)
                if framer.next_pdu() is not None or len(data) >= PEEK_LIMIT:
                    return bind_system_id(data)
                missing = min(_LENGTH.unpack_from(data)[0], PEEK_LIMIT)
    except TimeoutError:
        raise  # the caller reports it (TimeoutError is an OSError too)
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):  # the worker's session reads the socket as usual
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)


def answer_framing_error(conn: socket.socket, error: FramingError) -> None:
    """generic_nack with the error's status (ESME_RINVCMDLEN) on a connection the
    master will close: what a worker's session would have answered."""
    with contextlib.suppress(OSError):  # the peer is gone
        # Consume what was only peeked, so closing sends FIN rather than RST
        # (an RST could discard the answer before the peer reads it).
        with contextlib.suppress(BlockingIOError):
            for _ in range(16):
                if not conn.recv(65536):
                    break
        conn.send(make_generic_nack(error.sequence, error.status))


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
