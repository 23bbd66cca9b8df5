"""The master ↔ worker channels.

Two Unix socket pairs per worker, both made by the master before it starts
the worker:

- the *control* channel (SOCK_STREAM): length-prefixed msgpack messages, each
  a dict with a type under ``"t"``. It carries config changes, role changes,
  kicks, bind lockouts (``lockouts``), the stop/exit handshake one way, and bind
  counts, placement results, failed and successful binds for the lockouts
  (``auth``) and stats snapshots the other way. Nothing here is per message, so msgpack
  of small dicts is plenty fast.
- the *handoff* channel (SOCK_SEQPACKET): one small msgpack message per
  datagram with one file descriptor attached (SCM_RIGHTS): an NE connection
  the master accepted, or a mesh socket to a restarted peer. Keeping file
  descriptors on their own datagram socket keeps the stream framing simple.
"""

import asyncio
import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any

import msgspec

from smps.config import Config, NeAccount
from smps.store.bind_accounts import StoredAccount

_LENGTH = struct.Struct("!I")
MAX_MESSAGE = 64 * 1024 * 1024  # a config with every trace rule fits many times over

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder().decode

Message = dict[str, Any]

Account = NeAccount | StoredAccount
"""An NE account as the file gives it, or as the API stored it (password as a hash)."""

_decode_config = msgspec.msgpack.Decoder(Config).decode
_decode_file_account = msgspec.msgpack.Decoder(NeAccount).decode
_decode_stored_account = msgspec.msgpack.Decoder(StoredAccount).decode


def config_message(config: Config, accounts: list[Account], role: str) -> Message:
    """The live configuration for a worker: the config with the database's routes,
    policy and trace rules, and every NE account, each tagged with its kind."""
    return {
        "t": "config",
        "config": _encode(config),
        "accounts": [
            ("stored" if isinstance(a, StoredAccount) else "file", _encode(a)) for a in accounts
        ],
        "role": role,
    }


def read_config(message: Message) -> tuple[Config, list[Account]]:
    """A worker's side of `config_message`."""
    accounts: list[Account] = [
        _decode_stored_account(data) if kind == "stored" else _decode_file_account(data)
        for kind, data in message["accounts"]
    ]
    return _decode_config(message["config"]), accounts


class ControlChannel:
    """One end of a control socket pair, in a running loop."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, sock: socket.socket) -> "ControlChannel":
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        return cls(reader, writer)

    @property
    def is_open(self) -> bool:
        return not self._writer.is_closing()

    @property
    def backlog(self) -> int:
        """Bytes queued for the peer and not yet sent (the peer is slow or not reading)."""
        return self._writer.transport.get_write_buffer_size()

    def send(self, message: Message) -> None:
        """Queue one message; a closed channel drops it (the peer is gone)."""
        if self._writer.is_closing():
            return
        data = _encode(message)
        self._writer.write(_LENGTH.pack(len(data)) + data)

    async def receive(self) -> Message | None:
        """The next message, or None once the peer has closed the channel."""
        try:
            header = await self._reader.readexactly(_LENGTH.size)
            (length,) = _LENGTH.unpack(header)
            if length > MAX_MESSAGE:
                raise ConnectionError(f"control message of {length} bytes")
            return _decode(await self._reader.readexactly(length))
        except (asyncio.IncompleteReadError, ConnectionError):
            return None

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError):
            await self._writer.wait_closed()


def handoff_pair() -> tuple[socket.socket, socket.socket]:
    """(master end, worker end) of a handoff channel."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send_fd(sock: socket.socket, message: Message, fd: int) -> None:
    """Pass one file descriptor with a small message (master side, blocking:
    the datagrams are tiny and the worker reads them as they come)."""
    socket.send_fds(sock, [_encode(message)], [fd])


def watch_handoffs(sock: socket.socket, handler: Callable[[Message, socket.socket], None]) -> None:
    """Worker side: call `handler(message, received_socket)` for each datagram."""
    sock.setblocking(False)

    def readable() -> None:
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(sock, 65536, 4)
            except BlockingIOError:
                return
            except OSError:
                asyncio.get_running_loop().remove_reader(sock.fileno())
                return
            if not data and not fds:
                asyncio.get_running_loop().remove_reader(sock.fileno())
                return
            received = [socket.socket(fileno=fd) for fd in fds]
            if len(received) != 1:
                for extra in received:
                    extra.close()
                continue
            handler(_decode(data), received[0])

    asyncio.get_running_loop().add_reader(sock.fileno(), readable)
