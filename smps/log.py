"""Logging for SMPS: one line format, colours on a terminal, one writer per node.

Every line reads::

    2024-05-01 12:00:00.123 INFO     worker-1[1240] smps.node app.py:76 HTTP listening ...

(time with milliseconds, level, process name[pid], logger, the caller's file:line,
message; a traceback follows on the next lines).

Each process formats its own records, so ``file:line`` is always the caller's, but
only the master writes: workers send finished lines over a Unix socket to the
master's ``LogWriter``, which passes them unchanged to the same console and rotating
file handlers as the master's own records. Rotation thus happens in exactly one
process (docs/architecture.md §4).

``FATAL`` is accepted as a level name and prints as ``CRITICAL``, the name the
standard ``logging`` module gives level 50. Renaming the level globally would
change the lines of every library too, so we do not.

Nothing logs per message: an emitted record costs about 40 µs (docs/architecture.md §6), so
this module favours clarity over speed.
"""

import asyncio
import contextlib
import logging
import logging.handlers
import os
import socket
import stat
import struct
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal

from smps.errors import ConfigError

if TYPE_CHECKING:
    from smps.config import LogConfig

_LEVEL_NUMBERS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
    "FATAL": logging.CRITICAL,
}
LEVELS: tuple[str, ...] = tuple(_LEVEL_NUMBERS)
"""Level names accepted by configure() and forward_to(), in any letter case."""

_COLORS = {  # checked from the top: a custom level takes the colour of the one below it
    logging.CRITICAL: "\x1b[1;37;41m",  # bold white on red
    logging.ERROR: "\x1b[31m",  # red
    logging.WARNING: "\x1b[33m",  # yellow
    logging.INFO: "\x1b[32m",  # green
    logging.DEBUG: "\x1b[36m",  # cyan
}
_RESET = "\x1b[0m"

get_logger = logging.getLogger

log = logging.getLogger(__name__)

# Worker -> master framing. A SOCK_STREAM Unix socket carries one frame per record:
# a 5-byte header (line length, level number) and the UTF-8 line. SOCK_SEQPACKET
# would keep record boundaries by itself, but asyncio's Unix server speaks only
# SOCK_STREAM, and a seqpacket message must fit the socket's send buffer, which a
# long traceback may not. With a length prefix neither limit exists, and since the
# handler lock makes each record a single sendall(), two records never interleave.
_HEADER = struct.Struct("!IB")
MAX_LINE_BYTES = 65536
_TRUNCATED = b" [truncated]"

# The handlers configure() or forward_to() put on the root logger, replaced on the next call.
_installed: list[logging.Handler] = []


class LineFormatter(logging.Formatter):
    """Formats a record as one SMPS line; colour, when on, wraps the whole record.

    A record forwarded from a worker already carries its finished line
    (``record.smps_line``) and is passed through unchanged.
    """

    def __init__(self, process_name: str, color: bool = False):
        name = process_name.replace("%", "%%")
        super().__init__(
            f"%(asctime)s.%(msecs)03d %(levelname)-8s {name}[%(process)d] "
            "%(name)s %(filename)s:%(lineno)d %(message)s",
            datefmt="%Y-%m-%d %H:%M:%S",
        )
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        line = getattr(record, "smps_line", None)
        if line is None:
            line = super().format(record)
        if not self.color:
            return line
        color = next(
            (c for lvl, c in _COLORS.items() if record.levelno >= lvl), _COLORS[logging.DEBUG]
        )
        return f"{color}{line}{_RESET}"


def configure(
    level: str = "INFO",
    file: str | None = None,
    max_bytes: int = 10_485_760,
    backups: int = 5,
    color: bool | Literal["auto"] = "auto",
    process_name: str = "master",
    stream: IO[str] | None = None,
) -> None:
    """Log to the console (``stream``, default stderr) and, with ``file``, to a rotating file.

    The file rotates before a record would take it to ``max_bytes`` and keeps
    ``backups`` old files (``file.1`` is the newest); its directory is created.
    ``color="auto"`` colours the console only when it is a terminal and NO_COLOR
    is unset; the file is never coloured. Calling again replaces the handlers.
    Raises ConfigError for an unknown level, colour or backup count.
    """
    levelno = _level(level)
    stream = sys.stderr if stream is None else stream
    console = logging.StreamHandler(stream)
    console.setFormatter(LineFormatter(process_name, color=_use_color(color, stream)))
    handlers: list[logging.Handler] = [console]
    if file:
        if backups < 1:
            raise ConfigError(f"must be at least 1, got {backups}", path="log.backups")
        Path(file).parent.mkdir(parents=True, exist_ok=True)
        rotating = logging.handlers.RotatingFileHandler(
            file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        rotating.setFormatter(LineFormatter(process_name))
        handlers.append(rotating)
    _install(levelno, handlers)


def configure_from(section: "LogConfig") -> None:
    """`configure` the master's log as the configuration's `log` section says."""
    configure(
        level=section.level,
        file=section.file or None,
        max_bytes=section.max_bytes,
        backups=section.backups,
        color=section.color,
    )


def forward_to(path: str, process_name: str, level: str = "INFO") -> None:
    """In a worker: send every record, formatted here, to the master's LogWriter at ``path``.

    Replaces the root logger's handlers like configure(). The worker never opens
    the log file; if the master cannot be reached, lines go to stderr.
    """
    handler = ForwardingHandler(path)
    handler.setFormatter(LineFormatter(process_name))
    _install(_level(level), [handler])


class ForwardingHandler(logging.Handler):
    """Worker side: send each finished line to the master as one frame.

    Blocking and safe from any thread: ``logging.Handler.handle`` holds the
    handler lock around ``emit``, so a record is one ``sendall`` that no other
    thread can cut into. When the master cannot be reached the line goes to
    stderr instead and a new connection is tried at most once per
    ``RETRY_INTERVAL``; nothing is raised into the caller.
    """

    RETRY_INTERVAL = 1.0
    SEND_TIMEOUT = 5.0  # a master stuck longer than this gets the line on stderr instead

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._sock: socket.socket | None = None
        self._pid = 0
        self._next_attempt = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if not self._send(_frame(line, record.levelno)):
            _to_stderr(line)

    def close(self) -> None:
        with self.lock:
            self._drop()
        super().close()

    def _send(self, frame: bytes) -> bool:
        sock = self._connection()
        if sock is None:
            return False
        try:
            sock.sendall(frame)
        except OSError:
            self._drop()
            return False
        except BaseException:
            self._drop()  # interrupted half way: the stream may end inside a frame
            raise
        return True

    def _connection(self) -> socket.socket | None:
        if self._sock is not None and self._pid != os.getpid():
            self._drop()  # inherited through fork: that connection is the parent's
        if self._sock is None:
            now = time.monotonic()
            if now < self._next_attempt:
                return None
            self._next_attempt = now + self.RETRY_INTERVAL
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.SEND_TIMEOUT)
            try:
                sock.connect(self.path)
            except OSError:
                sock.close()
                return None
            self._sock, self._pid = sock, os.getpid()
        return self._sock

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class LogWriter:
    """Master side: the one writer of the node's log.

    Serves a Unix socket in the master's event loop and hands every line a worker
    sends, unchanged, to the handlers of ``logger`` (default: the root logger that
    configure() set up), the same handlers the master's own records use.

    Lines are written synchronously (a file write, ~40 µs); the writer yields to
    the loop every ``YIELD_EVERY`` lines so a burst never holds the loop for long.
    Frames not yet read wait in the socket buffers and, once those fill, make
    the workers' sends wait: back-pressure instead of unbounded memory.
    """

    YIELD_EVERY = 64

    def __init__(self, logger: logging.Logger | None = None):
        self._logger = logger or logging.getLogger()
        self._server: asyncio.AbstractServer | None = None
        self._path = ""
        self._connections: set[asyncio.Task] = set()

    async def start(self, path: str) -> None:
        """Listen on ``path``, replacing a socket file left by a master that died."""
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                os.unlink(path)
        self._server = await asyncio.start_unix_server(self._serve, path)
        self._path = path

    async def close(self, grace: float = 1.0) -> None:
        """Stop accepting; write what connected workers still send for up to ``grace`` s."""
        if self._server is None:
            return
        self._server.close()
        if self._connections:
            await asyncio.wait(set(self._connections), timeout=grace)
        pending = set(self._connections)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._copy_lines(reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            log.warning(
                "a worker's log connection broke inside a line (%s); that line is lost", exc
            )
        finally:
            self._connections.discard(task)
            writer.close()

    async def _copy_lines(self, reader: asyncio.StreamReader) -> None:
        written = 0
        while True:
            header = await reader.read(_HEADER.size)
            if not header:
                return  # the worker closed the connection between records
            header += await reader.readexactly(_HEADER.size - len(header))
            length, levelno = _HEADER.unpack(header)
            if length > MAX_LINE_BYTES:
                log.warning("a worker sent a %d-byte log line; closing its connection", length)
                return
            line = (await reader.readexactly(length)).decode("utf-8", "replace")
            record = logging.makeLogRecord(
                {
                    "name": "smps.worker",
                    "levelno": levelno,
                    "levelname": logging.getLevelName(levelno),
                    "msg": line,
                    "smps_line": line,
                }
            )
            self._logger.handle(record)
            written += 1
            if written % self.YIELD_EVERY == 0:
                await asyncio.sleep(0)


def _level(level: str) -> int:
    try:
        return _LEVEL_NUMBERS[str(level).upper()]
    except KeyError:
        raise ConfigError(
            f"unknown level {level!r}, expected one of {', '.join(LEVELS)}", path="log.level"
        ) from None


def _use_color(color: bool | str, stream: IO[str]) -> bool:
    if isinstance(color, bool):
        return color
    if color != "auto":
        raise ConfigError(f"expected auto, true or false, got {color!r}", path="log.color")
    try:
        return stream.isatty() and "NO_COLOR" not in os.environ
    except (AttributeError, ValueError):  # no isatty(), or a closed stream
        return False


# Libraries whose INFO lines say nothing to an operator (alembic's plugin set-up and
# "Context impl SQLiteImpl" on every start, aiohttp's access log...): WARNING and up only,
# unless the log level is DEBUG.
LIBRARIES = ("alembic", "sqlalchemy", "aiosqlite", "asyncmy", "aiohttp")


def _install(level: int, handlers: list[logging.Handler]) -> None:
    root = logging.getLogger()
    for old in _installed:
        root.removeHandler(old)
        old.close()
    _installed[:] = handlers
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else logging.WARNING
        )


def _frame(line: str, levelno: int) -> bytes:
    data = line.encode("utf-8", "backslashreplace")
    if len(data) > MAX_LINE_BYTES:
        data = data[: MAX_LINE_BYTES - len(_TRUNCATED)] + _TRUNCATED
    return _HEADER.pack(len(data), min(max(levelno, 0), 255)) + data


def _to_stderr(line: str) -> None:
    with contextlib.suppress(Exception):  # stderr may be closed or None in a daemon
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
