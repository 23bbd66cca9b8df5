"""Waiting helpers shared by the tests (no fixed sleeps: poll what the system under test does)."""

import asyncio
import inspect
import socket


async def until(predicate, timeout=10.0, interval=0.01):
    """Wait until ``predicate()`` (a plain or a coroutine function) is true."""
    async with asyncio.timeout(timeout):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (for servers that cannot take port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
