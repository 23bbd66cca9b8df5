"""Cross-worker fan-out: copies for NE accounts whose binds live in another worker.

Every pair of workers shares one Unix stream socket (made by the master before
the workers start, or passed with SCM_RIGHTS when one restarts). Each worker
announces which NE accounts it holds binds for, and with how much window.

A worker with no local bind of an account puts one `RemoteBind` per peer that
holds the account into the dispatcher's lane; a `RemoteBind` quacks like a
`Session` (send / free_window / name / is_open / transport), so the dispatcher
needs no notion of workers. The moment a local bind of the account comes up,
the remote ones leave the lane: local binds are always preferred.

Frames are binary: a 13-byte header (body length, kind, forward id, value) and
the body. A COPY carries the account name and the PDU; the peer sends it on a
local bind and returns ANSWER (status, response PDU) or NONE. Writes are
gathered and go out once per loop iteration. When a peer's socket closes (the
peer died), its remote binds leave the lanes first and then every copy
forwarded to it turns NONE at once.

The parts of a concatenated message meet in the worker that owns the message
(`smps._native.assembly.owner_of`): a PART carries one to it, and a VERDICT
brings back the status to answer the SMSC with. When the owner goes away, the
parts sent to it are judged alone where they came in.
"""

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

from smps._native.assembly import owner_of
from smps.smpp.session import NO_RESPONSE, REFUSED

log = logging.getLogger("smps.mesh")

HEADER = struct.Struct("!IBII")  # body length, kind, forward id, value
HOLDING = struct.Struct("!BI")  # per account in a HOLDS body: name length, window

COPY = 1  # value: length of the account name; body: name + PDU
ANSWER = 2  # value: the NE's command_status; body: its response PDU
NONE = 3  # no usable answer (no bind, bind dropped, refused)
HOLDS = 4  # body: the accounts the sender holds binds for, with their window
PART = 5  # a message part for its owner; value: length of the SMSC name; body: name + PDU
VERDICT = 6  # the status to answer a PART with; no body

MAX_FORWARD_ID = 0xFFFFFFFF


class RemoteBind:
    """An NE account's binds in one peer worker, seen as one bind."""

    __slots__ = ("account", "link", "name", "outstanding", "window")

    transport = None  # never paused by flow control: it is not an SMSC session

    def __init__(self, link: "PeerLink", account: str, window: int):
        self.link = link
        self.account = account
        self.window = window
        self.outstanding = 0
        self.name = f"worker{link.peer}:{account}"

    @property
    def free_window(self) -> int:
        return self.window - self.outstanding

    @property
    def is_open(self) -> bool:
        return self.link.is_open and self.link.remote.get(self.account) is self

    def send(self, pdu: bytes, callback: Callable[[Any, int, bytes | None], None],
             context: Any = None) -> int:  # fmt: skip
        """Forward one copy; returns its forward id, or REFUSED when the peer is gone."""
        if not self.is_open:
            return REFUSED
        return self.link.forward(self, pdu, callback, context)


class RemotePart:
    """The session of a part that another worker read: answering it sends the
    status back there, where the part's SMSC bind is."""

    __slots__ = ("ident", "link", "smsc")

    transport = None
    is_open = False  # nothing to pause here

    def __init__(self, link: "PeerLink", ident: int, smsc: str):
        self.link = link
        self.ident = ident
        self.smsc = smsc

    def respond(self, _pdu: bytes, status: int) -> None:
        self.link.write(HEADER.pack(0, VERDICT, self.ident, status & 0xFFFFFFFF))


class PeerLink(asyncio.Protocol):
    """The socket to one peer worker: forwards copies both ways."""

    def __init__(self, mesh: "Mesh", peer: int):
        self.mesh = mesh
        self.peer = peer
        self.remote: dict[str, RemoteBind] = {}  # accounts the peer holds binds for
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._wbuf: list[bytes] = []
        self._flush_scheduled = False
        self._next_id = 0
        # forward id -> (remote bind, callback, context), for copies awaiting the peer
        self._pending: dict[int, tuple[RemoteBind, Callable, Any]] = {}
        self.forwarded_out = 0
        self.forwarded_in = 0

    @property
    def is_open(self) -> bool:
        return self._transport is not None

    # ---- asyncio.Protocol ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.write(self.mesh.holds_frame())

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        offset = 0
        size = HEADER.size
        while len(buffer) - offset >= size:
            length, kind, ident, value = HEADER.unpack_from(buffer, offset)
            end = offset + size + length
            if len(buffer) < end:
                break
            self._on_frame(kind, ident, value, bytes(buffer[offset + size : end]))
            offset = end
        if offset:
            del buffer[:offset]

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._wbuf = []
        held, self.remote = self.remote, {}
        for account in held:
            self.mesh.sync(account)  # remote binds leave the lanes before copies fail
        pending, self._pending = self._pending, {}
        for _bind, callback, context in pending.values():
            callback(context, NO_RESPONSE, None)
        self.mesh.dispatcher.owner_lost(self)
        self.mesh.link_lost(self)

    # ---- frames ----------------------------------------------------------------

    def _on_frame(self, kind: int, ident: int, value: int, body: bytes) -> None:
        if kind == COPY:
            self.forwarded_in += 1
            self.mesh.send_local(self, ident, body[:value].decode("latin-1"), body[value:])
        elif kind in (ANSWER, NONE):
            entry = self._pending.pop(ident, None)
            if entry is None:
                return
            bind, callback, context = entry
            bind.outstanding -= 1
            if kind == ANSWER:
                callback(context, value, body)
            else:
                callback(context, NO_RESPONSE, None)
        elif kind == HOLDS:
            self._on_holds(body)
        elif kind == PART:
            smsc = body[:value].decode("latin-1")
            self.mesh.dispatcher.take_remote_part(RemotePart(self, ident, smsc), body[value:])
        elif kind == VERDICT:
            self.mesh.dispatcher.part_answered(ident, value)

    def _on_holds(self, body: bytes) -> None:
        holds: dict[str, int] = {}
        offset = 0
        while offset < len(body):
            length, window = HOLDING.unpack_from(body, offset)
            offset += HOLDING.size
            holds[body[offset : offset + length].decode("latin-1")] = window
            offset += length
        changed = set(self.remote) ^ set(holds)
        for account in list(self.remote):
            if account not in holds:
                del self.remote[account]
        for account, window in holds.items():
            bind = self.remote.get(account)
            if bind is None:
                self.remote[account] = RemoteBind(self, account, window)
            else:
                bind.window = window
        for account in changed:
            self.mesh.sync(account)

    def forward(self, bind: RemoteBind, pdu: bytes, callback: Callable, context: Any) -> int:
        self._next_id = self._next_id + 1 if self._next_id < MAX_FORWARD_ID else 1
        ident = self._next_id
        self._pending[ident] = (bind, callback, context)
        bind.outstanding += 1
        self.forwarded_out += 1
        name = bind.account.encode("latin-1")
        self.write(HEADER.pack(len(name) + len(pdu), COPY, ident, len(name)) + name)
        self.write(pdu)
        return ident

    def forward_part(self, ident: int, smsc: str, pdu: bytes) -> None:
        """Send a message part to the peer that owns its message."""
        name = smsc.encode("latin-1")
        self.write(HEADER.pack(len(name) + len(pdu), PART, ident, len(name)) + name)
        self.write(pdu)

    def answer(self, ident: int, status: int, response: bytes | None) -> None:
        if response is None or status == NO_RESPONSE:
            self.write(HEADER.pack(0, NONE, ident, 0))
        else:
            self.write(HEADER.pack(len(response), ANSWER, ident, status & 0xFFFFFFFF) + response)

    def write(self, data: bytes) -> None:
        if self._transport is None:
            return
        self._wbuf.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._wbuf and self._transport is not None:
            self._transport.writelines(self._wbuf)
        self._wbuf = []

    def close(self) -> None:
        """Flush what is written and close; nothing is written after this (a
        flush already scheduled, or a late answer, would write to a closing
        transport). connection_lost still fails what awaits the peer."""
        if self._transport is not None:
            self._flush()
            transport, self._transport = self._transport, None
            transport.close()


class Mesh:
    """One worker's links to its peers, plugged between the NE bind registry
    and the dispatcher."""

    def __init__(self, index: int, dispatcher, registry, workers: int = 1):
        self.index = index
        self.workers = workers
        self.dispatcher = dispatcher
        self.registry = registry
        self.links: dict[int, PeerLink] = {}
        self._attached: dict[str, list[RemoteBind]] = {}
        self._announce_scheduled = False
        self.forwarded_out = 0  # totals of links already gone
        self.forwarded_in = 0

    async def connect(self, peer: int, sock) -> None:
        """Serve the socket shared with `peer` (replacing an older one)."""
        old = self.links.get(peer)
        if old is not None:
            old.close()
        link = PeerLink(self, peer)
        self.links[peer] = link
        await asyncio.get_running_loop().connect_accepted_socket(lambda: link, sock)

    def link_lost(self, link: PeerLink) -> None:
        self.forwarded_out += link.forwarded_out
        self.forwarded_in += link.forwarded_in
        if self.links.get(link.peer) is link:
            del self.links[link.peer]

    def close(self) -> None:
        for link in list(self.links.values()):
            link.close()

    # ---- local binds -------------------------------------------------------------

    def on_bind_change(self, system_id: str, session, up: bool) -> None:
        """BindRegistry listener, after the dispatcher's (the data plane registers
        that one first): tell the peers."""
        self.sync(system_id)
        if not self._announce_scheduled:
            self._announce_scheduled = True
            asyncio.get_running_loop().call_soon(self._announce)

    def _announce(self) -> None:
        self._announce_scheduled = False
        frame = self.holds_frame()
        for link in self.links.values():
            link.write(frame)

    def holds_frame(self) -> bytes:
        body = bytearray()
        for account, sessions in self.registry.by_account.items():
            if sessions:
                name = account.encode("latin-1")
                body += HOLDING.pack(len(name), sum(s.window for s in sessions)) + name
        return HEADER.pack(len(body), HOLDS, 0, 0) + bytes(body)

    def sync(self, account: str) -> None:
        """Put the peers' binds of `account` into its lane exactly when there is no local one."""
        wanted: list[RemoteBind] = []
        if not self.registry.count(account):
            wanted = [
                link.remote[account] for link in self.links.values() if account in link.remote
            ]
        attached = self._attached.get(account, [])
        for bind in attached:
            if bind not in wanted:
                self.dispatcher.on_bind_change(account, bind, False)
        for bind in wanted:
            if bind not in attached:
                self.dispatcher.on_bind_change(account, bind, True)
        if wanted:
            self._attached[account] = wanted
        else:
            self._attached.pop(account, None)

    def send_local(self, link: PeerLink, ident: int, account: str, pdu: bytes) -> None:
        """A peer's copy: send it on this worker's bind of the account with the most window."""
        best = None
        for session in self.registry.by_account.get(account, ()):
            if best is None or session.free_window > best.free_window:
                best = session
        if best is None or best.send(pdu, _answered, (link, ident)) == REFUSED:
            link.answer(ident, NO_RESPONSE, None)

    def owner_link(self, key: tuple) -> PeerLink | None:
        """The link to the worker that owns the message ``key``; None when that is
        this worker, or when the owner is away (restarting): the parts then meet
        here, or are judged alone if their message's other parts went there."""
        owner = owner_of(key, self.workers)
        if owner == self.index:
            return None
        link = self.links.get(owner)
        return link if link is not None and link.is_open else None

    def counts(self) -> tuple[int, int]:
        """Copies forwarded to peers and received from peers, since start."""
        out = self.forwarded_out + sum(link.forwarded_out for link in self.links.values())
        into = self.forwarded_in + sum(link.forwarded_in for link in self.links.values())
        return out, into


def _answered(context: tuple[PeerLink, int], status: int, response: bytes | None) -> None:
    link, ident = context
    link.answer(ident, status, response)
