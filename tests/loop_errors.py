"""Unhandled exceptions in event-loop callbacks fail the test that raised them.

asyncio only logs an exception that escapes a callback, a protocol method or a task
nobody awaits, so a test can pass while the code under it died. Every loop the tests
run on is made by ``watched(...)``: its exception handler still logs each context, and
keeps it in ``report``; conftest fails the test at teardown with the message and
traceback of each.
"""

import asyncio
import traceback
from collections.abc import Callable

import uvloop


class Report:
    """What the watched loops did since the current test began."""

    def __init__(self):
        self.loops = 0  # loops made
        self.unhandled: list[dict] = []  # the contexts they reported

    def reset(self) -> None:
        self.loops = 0
        self.unhandled.clear()


report = Report()


def watched(new_loop: Callable[[], asyncio.AbstractEventLoop]):
    """A loop factory like ``new_loop`` whose loops report to ``report``."""

    def factory() -> asyncio.AbstractEventLoop:
        loop = new_loop()
        loop.set_exception_handler(_record)
        report.loops += 1
        return loop

    factory.__name__ = f"watched_{new_loop.__module__}"
    return factory


def _record(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    loop.default_exception_handler(context)
    report.unhandled.append(context)


def describe(context: dict) -> str:
    """The context as asyncio would log it: its message, the objects it names, the traceback."""
    lines = [context.get("message") or "Unhandled exception in event loop"]
    lines += [f"  {key}: {value!r}" for key, value in context.items() if key not in _SHOWN]
    error = context.get("exception")
    if error is not None:
        lines.append("".join(traceback.format_exception(error)).rstrip())
    return "\n".join(lines)


_SHOWN = {"message", "exception"}

new_asyncio_loop = watched(asyncio.new_event_loop)
new_uvloop = watched(uvloop.new_event_loop)
