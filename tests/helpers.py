"""Waiting helpers shared by the tests (no fixed sleeps: poll what the system under test does)."""

import asyncio
import inspect
import re
import socket
from pathlib import Path


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


process_outputs: list[Path] = []
"""Files where the current test's subprocesses write their logs or output: conftest fails
the test if one holds a Python traceback (a crash, or an exception only logged)."""


def tracebacks(text: str) -> list[str]:
    """Each traceback in ``text``, from the line before it (the log line that said
    what failed) to its exception line."""
    found = []
    for match in re.finditer(r"^.*Traceback \(most recent call last\):$", text, re.MULTILINE):
        before = text.rfind("\n", 0, max(match.start() - 1, 0)) + 1
        lines = text[before:].splitlines()
        first = 1 if before < match.start() else 0  # the Traceback line itself
        end = next(
            (i for i, line in enumerate(lines[first + 1 :], first + 1) if line[:1] not in " "),
            len(lines) - 1,
        )
        found.append("\n".join(lines[: end + 1]))
    return found


def assert_no_traceback(text: str, source: str) -> None:
    """``text``, the output of ``source``, shows no Python traceback."""
    found = tracebacks(text)
    assert not found, f"{source} printed a traceback:\n" + "\n\n".join(found)
