"""The node's control socket, ``{node.state_dir}/smps.sock``: how `smps status`,
`smps ha notify|check` and the tests ask a running master something.

One connection, one request: a JSON object on one line (``{"cmd": "status"}``),
answered by one JSON line, ``{"error": ...}`` when it is refused. The master
serves it (`serve`); `request` is the one client.

This module imports only the standard library: keepalived runs `smps ha check`
every few seconds on a budget of about a second, and importing the master
alone would take longer than that.
"""

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

CONTROL_SOCKET = "smps.sock"
REQUEST_TIMEOUT = 5.0  # seconds a client has to send its request line

Answer = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def socket_path(state_dir: str | os.PathLike) -> Path:
    return Path(state_dir) / CONTROL_SOCKET


async def serve(state_dir: str | os.PathLike, answer: Answer) -> asyncio.AbstractServer:
    """Listen on the control socket in `state_dir`; `answer` makes each request's answer."""

    async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                line = await reader.readline()
            reply = await answer(json.loads(line or b"{}"))
        except (TimeoutError, ValueError, ConnectionError) as exc:
            reply = {"error": str(exc) or type(exc).__name__}
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
            writer.close()

    return await asyncio.start_unix_server(one_request, str(socket_path(state_dir)))


def close(server: asyncio.AbstractServer, state_dir: str | os.PathLike) -> None:
    """Stop serving and remove the socket file."""
    server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path(state_dir))


def request(
    state_dir: str | os.PathLike, message: dict[str, Any], timeout: float = 5.0
) -> dict[str, Any]:
    """Send one request and return the answer, all within ``timeout`` seconds.

    Raises OSError when no node answers (TimeoutError included), ValueError
    when the answer is not JSON."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path(state_dir)))
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timed out")
            sock.settimeout(left)
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def ask(state_dir: str | os.PathLike, message: dict[str, Any], timeout: float) -> dict | None:
    """`request` for a command: the answer, or None after saying why on stderr."""
    try:
        return request(state_dir, message, timeout)
    except OSError as exc:
        print(
            f"smps: no running node at {socket_path(state_dir)}: {exc.strerror or exc}",
            file=sys.stderr,
        )
    except ValueError as exc:
        print(f"smps: unreadable answer from the node: {exc}", file=sys.stderr)
    return None
