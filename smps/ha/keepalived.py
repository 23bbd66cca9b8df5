"""keepalived's word on this node's role: its state changes (MASTER, BACKUP, FAULT,
STOP), read from its ``vrrp_notify_fifo`` or given as ``smps ha notify``
arguments, as `Notice`s for the HA controller (`smps.ha.controller`)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("smps.ha")

VRRP_STATES = ("MASTER", "BACKUP", "FAULT", "STOP")


@dataclass(frozen=True)
class Notice:
    """One keepalived state change: ``kind`` is INSTANCE, GROUP or "" (a bare state)."""

    kind: str
    name: str
    state: str
    priority: int | None


def parse_notice(words: str | list[str]) -> Notice:
    """A keepalived state change from a FIFO line, notify-script arguments or a bare state.

    Accepted: ``INSTANCE "SMPS" MASTER 150`` (vrrp_notify_fifo), the same as
    separate arguments ``INSTANCE SMPS MASTER 150`` (notify script; the
    priority may be missing), and ``MASTER|BACKUP|FAULT|STOP``. Raises
    ValueError for anything else, including keepalived's priority-change
    events, which are not state changes.
    """
    if isinstance(words, str):
        words = _split_fifo_line(words)
    if len(words) == 1:
        kind, name, state, priority = "", "", words[0], None
    elif len(words) in (3, 4):
        kind, name, state = words[0].upper(), words[1], words[2]
        if kind not in ("INSTANCE", "GROUP"):
            raise ValueError(f"expected INSTANCE or GROUP, got {words[0]!r}")
        try:
            priority = int(words[3]) if len(words) == 4 else None
        except ValueError:
            raise ValueError(f"priority must be an integer, got {words[3]!r}") from None
    else:
        raise ValueError(f"expected STATE or TYPE NAME STATE [PRIORITY], got {' '.join(words)!r}")
    state = state.upper()
    if state not in VRRP_STATES:
        raise ValueError(f"expected one of {', '.join(VRRP_STATES)}, got {state!r}")
    return Notice(kind, name, state, priority)


def _split_fifo_line(line: str) -> list[str]:
    """Split on spaces; the name may be double-quoted (keepalived quotes it, spaces and all)."""
    line = line.strip()
    if '"' not in line:
        return line.split()
    head, _, rest = line.partition('"')
    name, closed, tail = rest.partition('"')
    if not closed:
        raise ValueError(f"unterminated quoted name in {line!r}")
    return [*head.split(), name, *tail.split()]


async def read_notify_fifo(path: str, on_notice: Callable[[Notice], None]) -> None:
    """Feed every line keepalived writes to the FIFO at ``path`` to ``on_notice``, forever.

    Creates the FIFO when missing (then keepalived does not remove it when it
    stops). keepalived closing its end (a restart) is an end of file: the FIFO
    is opened again and the reader waits for the next writer. While no writer
    is there the path is checked every second, so a FIFO deleted and made
    again by a restarted keepalived is followed too. Lines that are not state
    changes are logged and skipped. Cancel the task to stop.
    """
    loop = asyncio.get_running_loop()
    while True:
        try:
            fd = _open_fifo(path)
        except OSError as exc:
            log.warning("cannot open the keepalived notify FIFO %s: %s; retrying", path, exc)
            await asyncio.sleep(1.0)
            continue
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            functools.partial(asyncio.StreamReaderProtocol, reader),
            os.fdopen(fd, "rb", buffering=0),
        )
        try:
            while True:
                try:
                    async with asyncio.timeout(1.0):  # not wait_for: see controller._within
                        line = await reader.readline()
                except TimeoutError:
                    if _replaced(path, fd):
                        log.info("keepalived notify FIFO %s was replaced; reopening", path)
                        break
                    continue
                if not line:
                    break  # the writer closed its end: keepalived stopped or restarts
                _deliver(line, on_notice)
        finally:
            transport.close()


def _open_fifo(path: str) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkfifo(path, 0o600)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a FIFO")
    return fd


def _replaced(path: str, fd: int) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return True
    opened = os.fstat(fd)
    return (on_disk.st_dev, on_disk.st_ino) != (opened.st_dev, opened.st_ino)


def _deliver(line: bytes, on_notice: Callable[[Notice], None]) -> None:
    text_line = line.decode("utf-8", "replace").strip()
    if not text_line:
        return
    try:
        notice = parse_notice(text_line)
    except ValueError as exc:
        log.debug("keepalived FIFO line skipped: %s", exc)
        return
    on_notice(notice)
