"""The master's NE port: new NE connections, placed on a worker.

The port is bound at start (`bind`), which reserves it; a bound socket that
does not listen gets no connections. With `server.placement: reuseport` that is
all the master does: the workers listen on the same SO_REUSEPORT port
(operators should set `net.ipv4.tcp_migrate_req=1`, or the connections queued
on a worker's listener are reset when that worker stops). With `balanced`, an
active node listens (`open`): each connection's bind is peeked at
(`placement.peek_bind`, within `server.first_pdu_timeout`, at most
`max_unbound` of them at once) and the connection is handed to the worker that
holds the fewest binds of that account (`Placement`). Standby closes the port
(`close`), so that NEs reconnect to the other node.
"""

import asyncio
import logging
import socket
from collections.abc import Callable, Coroutine

from smps.config import ServerConfig
from smps.errors import FramingError
from smps.runtime.control import send_fd
from smps.runtime.placement import Placement, answer_framing_error, peek_bind
from smps.runtime.stats import Counters
from smps.runtime.supervisor import WorkerSlot
from smps.smpp.bind_guard import RefusalLog, UnboundLimit

log = logging.getLogger("smps.master")


class NeIntake:
    """The NE listener and the placement of what it accepts.

    ``active()`` says whether this node takes NE binds now; ``on_placed()``
    runs after each handoff (the master tells the workers the new counts);
    ``spawn`` starts a task the master cancels when it shuts down.
    """

    def __init__(
        self,
        server: ServerConfig,
        slots: list[WorkerSlot],
        placement: Placement,
        *,
        active: Callable[[], bool],
        on_placed: Callable[[], None],
        spawn: Callable[[Coroutine], asyncio.Task],
    ):
        self.server = server
        self.slots = slots
        self.placement = placement
        self.port: int | None = None
        self._active = active
        self._on_placed = on_placed
        self._spawn = spawn
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        # The NE connections being peeked at, and what went wrong there.
        self.unbound = UnboundLimit(server.max_unbound_per_address, server.max_unbound)
        self.peek_errors = {"first_pdu_timeout": 0, "framing": 0}
        self._dropped = RefusalLog(log, "NE connections refused before their first PDU")

    def bind(self) -> int:
        """Bind the NE port without listening; returns the port (fixed once,
        when configured as 0)."""
        if self._listener is not None:
            return self.port
        host, configured = self.server.listen
        port = self.port or configured  # once bound, the same port again
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.server.placement == "reuseport":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        self._listener = sock
        self.port = sock.getsockname()[1]
        return self.port

    def open(self) -> None:
        """Active, balanced placement: accept NE connections and place them."""
        self.bind()
        if self.server.placement == "balanced" and self._accepting is None:
            self._listener.listen(1024)
            self._accepting = self._spawn(self._accept())

    async def close(self) -> None:
        """No NE connections any more: connecting gets a reset."""
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def counters(self) -> Counters:
        """The master's own counters: bad first PDUs and connections refused before
        their first PDU."""
        return Counters(
            pdu_errors=dict(self.peek_errors), ne_connections_refused=dict(self.unbound.refused)
        )

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while self._listener is not None:
            try:
                conn, peer = await loop.sock_accept(self._listener)
            except OSError:
                return
            self._spawn(self._place(conn, peer[0]))

    async def _place(self, conn: socket.socket, address: str) -> None:
        if not self._active():
            conn.close()  # a standby node accepts no NE bind
            return
        if self.server.tls is not None:
            account = None  # the bind is inside TLS: place round-robin
        else:
            account = await self._peek(conn, address)
            if account is False:
                conn.close()
                return
        candidates = [s.index for s in self.slots if s.ready and s.reachable]
        if not candidates:
            log.warning("no worker running to take an NE connection; closing it")
            conn.close()
            return
        index = self.placement.choose(candidates, account)
        handoff_id = self.placement.placed(index, account)
        message = {"t": "ne", "id": handoff_id, "elsewhere": self.placement.elsewhere(index)}
        try:
            send_fd(self.slots[index].handoff, message, conn.fileno())
        except OSError as exc:
            log.warning("cannot hand an NE connection to worker %d: %s", index, exc)
            self.placement.settled(index, handoff_id)
        finally:
            conn.close()
        self._on_placed()

    async def _peek(self, conn: socket.socket, address: str) -> str | bool | None:
        """The first PDU's bind system_id, as `peek_bind` says; False when the peer
        closed, or when the connection is refused: over an unbound cap (closed at
        once), no whole PDU in time, or a bad command_length (answered first)."""
        over = self.unbound.admit(address)
        if over is not None:
            self.unbound.note_refusal(self._dropped, address, over)
            return False
        try:
            return await peek_bind(conn, self.server.first_pdu_deadline, self.server.max_pdu_size)
        except TimeoutError:
            self.peek_errors["first_pdu_timeout"] += 1
            self._dropped.note(
                address,
                "(no first PDU)",
                f"{address}: no whole PDU within {self.server.first_pdu_deadline:g}s; closed",
            )
            return False
        except FramingError as exc:
            answer_framing_error(conn, exc)
            self.peek_errors["framing"] += 1
            self._dropped.note(
                address, "(bad command_length)", f"{address}: {exc}; answered generic_nack, closed"
            )
            return False
        finally:
            self.unbound.release(address)
