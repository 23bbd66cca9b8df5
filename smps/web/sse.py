"""Server-Sent Events: the one way the admin UI and /api/v1 stream to a browser.

A stream is a ``text/event-stream`` response that no cache keeps and no proxy
buffers (nginx honours ``X-Accel-Buffering``). It opens with a reconnect delay
and a ``connected`` comment, so a client knows the server listens before the
first event arrives. The caller hands over what to send as an async generator
of framed chunks (:func:`event`, or a ``: comment`` line as a heartbeat); the
stream ends when the generator does or the client leaves, and the generator is
closed either way, so its own clean-up runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

from aiohttp import web

HEADERS = {
    "Content-Type": "text/event-stream",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}
OPENING = b"retry: 5000\n: connected\n\n"


def event(data: bytes, name: str | None = None) -> bytes:
    """One event as framed on the wire; ``data`` is a single line (JSON is)."""
    head = b"event: " + name.encode("ascii") + b"\n" if name else b""
    return head + b"data: " + data + b"\n\n"


async def stream(request: web.Request, chunks: AsyncGenerator[bytes, None]) -> web.StreamResponse:
    """Send ``chunks`` to the client as they come, until they end or the client leaves."""
    response = web.StreamResponse(headers=HEADERS)
    await response.prepare(request)
    async with contextlib.aclosing(chunks):
        try:
            await response.write(OPENING)
            async for chunk in chunks:
                await response.write(chunk)
        except ConnectionError:
            pass  # the client went away
    return response


async def every(seconds: float, closing: asyncio.Event) -> AsyncGenerator[None, None]:
    """Now, then every ``seconds``, until ``closing`` is set (the server shuts down):
    the pace of a stream that polls."""
    while not closing.is_set():
        yield
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await closing.wait()
