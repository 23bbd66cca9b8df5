"""smps.log: levels, line format, rotation, colour, threads, and one writer for many processes.

Run as a script (``python test_log.py SOCKET NAME``) this file is also the worker
process of the multi-process test, so the workers' file:line point here.
"""

import asyncio
import collections
import inspect
import io
import logging
import os
import re
import select
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import smps
from smps import log as smps_log
from smps.errors import ConfigError
from smps.log import get_logger
from tests import loop_errors

LINE = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (?P<level>[A-Z]+) +"
    r"(?P<process>[\w-]+)\[(?P<pid>\d+)\] (?P<logger>\S+) (?P<file>[^\s:]+):(?P<line>\d+) "
    r"(?P<message>.*)"
)
WORKER_THREADS = 4
LINES_PER_WORKER = 2000


@pytest.fixture(autouse=True)
def _restore_root_logger():
    root = logging.getLogger()
    level = root.level
    yield
    for handler in smps_log._installed:
        root.removeHandler(handler)
        handler.close()
    smps_log._installed.clear()
    root.setLevel(level)


def _records(text: str) -> list[tuple[re.Match, list[str]]]:
    """Split log text into (first line match, continuation lines); every line must belong."""
    records: list[tuple[re.Match, list[str]]] = []
    assert text == "" or text.endswith("\n"), "the last line is cut"
    for line in text.splitlines():
        match = LINE.fullmatch(line)
        if match:
            records.append((match, []))
        else:
            assert records, f"a continuation line with no record before it: {line!r}"
            records[-1][1].append(line)
    return records


def _lineno_of(function, text: str) -> int:
    lines, first = inspect.getsourcelines(function)
    (offset,) = [i for i, line in enumerate(lines) if text in line]
    return first + offset


def _log_files(path: Path) -> list[Path]:
    """The current file and its rotated copies, oldest first."""
    rotated = sorted(path.parent.glob(path.name + ".*"), key=lambda p: int(p.suffix[1:]))
    return [*reversed(rotated), path]


def _log_every_level(log: logging.Logger) -> None:
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")


def test_levels_filter_console_and_file_alike(tmp_path):
    out = io.StringIO()
    file = tmp_path / "smps.log"
    smps_log.configure(level="warning", file=str(file), stream=out)
    _log_every_level(get_logger("smps.test"))
    for text in (out.getvalue(), file.read_text()):
        levels = [m["level"] for m, _ in _records(text)]
        assert levels == ["WARNING", "ERROR", "CRITICAL"]


@pytest.mark.parametrize(
    ("level", "shown"), [("INFO", ["WARNING"]), ("DEBUG", ["INFO", "WARNING"])]
)
def test_libraries_say_only_warnings_unless_the_level_is_debug(level, shown):
    out = io.StringIO()
    smps_log.configure(level=level, stream=out)
    for name in ("alembic.runtime.migration", "sqlalchemy.engine", "aiohttp.access"):
        library = get_logger(name)
        library.info("chatter")
        library.warning("worth reading")
    levels = [m["level"] for m, _ in _records(out.getvalue())]
    assert levels == [level for _ in range(3) for level in shown]


def test_fatal_is_accepted_and_prints_as_critical():
    out = io.StringIO()
    smps_log.configure(level="FATAL", stream=out)
    log = get_logger("smps.test")
    _log_every_level(log)
    log.fatal("f")
    assert [(m["level"], m["message"]) for m, _ in _records(out.getvalue())] == [
        ("CRITICAL", "c"),
        ("CRITICAL", "f"),
    ]
    assert "FATAL" in smps_log.LEVELS


def test_bad_settings_are_refused_with_the_key_path():
    with pytest.raises(ConfigError, match=r"log\.level: unknown level 'LOUD'"):
        smps_log.configure(level="LOUD", stream=io.StringIO())
    with pytest.raises(ConfigError, match=r"log\.color"):
        smps_log.configure(color="sometimes", stream=io.StringIO())


def test_line_has_time_level_process_pid_logger_and_callers_file_line():
    out = io.StringIO()
    smps_log.configure(level="DEBUG", stream=out, process_name="worker-7")
    log = get_logger("smps.test.format")
    expected_line = inspect.currentframe().f_lineno + 1
    log.info("hello %s", "there")

    [(match, extra)] = _records(out.getvalue())
    assert match["level"] == "INFO"
    assert match["process"] == "worker-7"
    assert int(match["pid"]) == os.getpid()
    assert match["logger"] == "smps.test.format"
    assert match["file"] == "test_log.py"
    assert int(match["line"]) == expected_line
    assert match["message"] == "hello there"
    assert extra == []


def test_traceback_follows_its_line():
    out = io.StringIO()
    smps_log.configure(stream=out)
    try:
        raise ValueError("boom")
    except ValueError:
        get_logger("smps.test").exception("it failed")
    [(match, extra)] = _records(out.getvalue())
    assert match["level"] == "ERROR"
    assert match["message"] == "it failed"
    assert extra[0] == "Traceback (most recent call last):"
    assert extra[-1] == "ValueError: boom"


def test_configure_twice_replaces_handlers(tmp_path):
    first, second = io.StringIO(), io.StringIO()
    smps_log.configure(stream=first, file=str(tmp_path / "a.log"))
    smps_log.configure(stream=second, file=str(tmp_path / "a.log"))
    get_logger("smps.test").info("once")
    assert first.getvalue() == ""
    assert [m["message"] for m, _ in _records(second.getvalue())] == ["once"]
    assert [m["message"] for m, _ in _records((tmp_path / "a.log").read_text())] == ["once"]


def test_rotation_keeps_backups_files_and_never_splits_a_line(tmp_path):
    file = tmp_path / "made" / "here" / "smps.log"  # the directory is created
    smps_log.configure(file=str(file), max_bytes=2000, backups=3, stream=io.StringIO())
    log = get_logger("smps.test.rotation")
    for n in range(300):
        log.info("line %04d", n)

    files = _log_files(file)
    assert [p.name for p in files] == ["smps.log.3", "smps.log.2", "smps.log.1", "smps.log"]
    numbers = []
    for path in files:
        text = path.read_text()
        assert len(text.encode()) <= 2000
        numbers += [int(m["message"].split()[1]) for m, _ in _records(text)]
    # What is kept is the newest lines, in order, with none missing in between.
    assert numbers == list(range(300 - len(numbers), 300))
    assert len(numbers) > 40


def _read_tty(fd: int, lines: int) -> str:
    data = b""
    while data.count(b"\n") < lines:
        ready, _, _ = select.select([fd], [], [], 5)
        assert ready, f"the terminal gave only {data!r}"
        data += os.read(fd, 65536)
    return data.decode()


def test_colour_on_a_terminal_one_per_level(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            smps_log.configure(level="DEBUG", stream=tty, color="auto")
            _log_every_level(get_logger("smps.test"))
            text = _read_tty(master, 5)
    finally:
        os.close(slave)
        os.close(master)
    coloured = re.findall(r"(\x1b\[[\d;]+m)(.*?)\x1b\[0m", text)
    assert [LINE.fullmatch(line)["level"] for _, line in coloured] == [
        "DEBUG",
        "INFO",
        "WARNING",
        "ERROR",
        "CRITICAL",
    ]
    assert len({colour for colour, _ in coloured}) == 5


def test_no_colour_when_switched_off_on_a_terminal():
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            smps_log.configure(stream=tty, color=False)
            get_logger("smps.test").warning("plain")
            text = _read_tty(master, 1)
    finally:
        os.close(slave)
        os.close(master)
    assert "plain" in text
    assert "\x1b" not in text


def test_colour_only_on_the_console_and_auto_off_when_not_a_terminal(tmp_path):
    not_a_tty = io.StringIO()
    smps_log.configure(stream=not_a_tty, color="auto")
    get_logger("smps.test").warning("w")
    assert "w" in not_a_tty.getvalue()
    assert "\x1b" not in not_a_tty.getvalue()

    forced, file = io.StringIO(), tmp_path / "smps.log"
    smps_log.configure(stream=forced, color=True, file=str(file))
    get_logger("smps.test").warning("w")
    assert forced.getvalue().startswith("\x1b[")
    assert "\x1b" not in file.read_text()


def test_many_threads_into_a_rotating_file(tmp_path):
    file = tmp_path / "smps.log"
    smps_log.configure(file=str(file), max_bytes=50_000, backups=50, stream=io.StringIO())
    log = get_logger("smps.test.threads")
    start = threading.Barrier(8)

    def work(thread: int) -> None:
        start.wait()
        for n in range(500):
            log.info("thread %d line %03d", thread, n)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    files = _log_files(file)
    assert len(files) > 3, "the test must cross several rotations"
    messages = collections.Counter(
        m["message"] for path in files for m, _ in _records(path.read_text())
    )
    expected = {f"thread {t} line {n:03d}" for t in range(8) for n in range(500)}
    assert set(messages) == expected
    assert set(messages.values()) == {1}


# ---- one writer for many processes -------------------------------------------------


def _worker_main(sock_path: str, name: str) -> None:
    """A worker process: log from several threads to the master, then one traceback."""
    smps_log.forward_to(sock_path, name, "DEBUG")
    log = get_logger("smps.test.worker")

    def work(thread: int) -> None:
        for n in range(LINES_PER_WORKER // WORKER_THREADS):
            log.info("%s thread %d line %04d", name, thread, n)  # the worker's line

    threads = [threading.Thread(target=work, args=(t,)) for t in range(WORKER_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        raise ValueError(f"boom in {name}")
    except ValueError:
        log.exception("%s failed", name)  # the worker's traceback


async def _run_workers(sock_path: str, names: list[str]) -> dict[str, tuple[int, int, bytes]]:
    """Start a LogWriter and one child per name; return name -> (pid, exit status, stderr)."""
    writer = smps_log.LogWriter()
    await writer.start(sock_path)
    env = {**os.environ, "PYTHONPATH": str(Path(smps.__file__).parent.parent)}
    children = []
    try:
        for name in names:
            children.append(
                await asyncio.create_subprocess_exec(
                    sys.executable, __file__, sock_path, name, env=env, stderr=subprocess.PIPE
                )
            )
        outputs = await asyncio.wait_for(
            asyncio.gather(*(child.communicate() for child in children)), 120
        )
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
        await writer.close(grace=30)  # lines still in the socket buffers are written
    return {
        name: (child.pid, child.returncode, stderr)
        for name, child, (_, stderr) in zip(names, children, outputs, strict=True)
    }


@pytest.mark.parametrize(
    "new_loop", [loop_errors.new_asyncio_loop, loop_errors.new_uvloop], ids=["asyncio", "uvloop"]
)
def test_workers_send_lines_to_one_writer_that_rotates(tmp_path, new_loop):
    file = tmp_path / "smps.log"
    sock_path = str(tmp_path / "log.sock")
    stale = socket.socket(socket.AF_UNIX)  # a socket file left by a master that died
    stale.bind(sock_path)
    stale.close()
    smps_log.configure(
        level="INFO", file=str(file), max_bytes=20_000, backups=500, stream=io.StringIO()
    )  # INFO keeps asyncio's own debug lines out; the workers' level is their own
    names = ["worker-0", "worker-1", "worker-2"]
    loop = new_loop()
    try:
        children = loop.run_until_complete(_run_workers(sock_path, names))
    finally:
        loop.close()

    for name, (_, status, stderr) in children.items():
        assert status == 0, f"{name}: {stderr.decode()}"
        assert stderr == b"", f"{name} fell back to stderr: {stderr[:300]!r}"
    assert not os.path.exists(sock_path)

    files = _log_files(file)
    assert len(files) > 10, "the test must cross many rotations"
    records = []
    for path in files:
        text = path.read_text()
        assert LINE.match(text), f"{path.name} starts inside a record"
        records += _records(text)

    info_line = _lineno_of(_worker_main, "# the worker's line")
    error_line = _lineno_of(_worker_main, "# the worker's traceback")
    seen = collections.Counter()
    last_n: dict[tuple[str, str], int] = {}
    for match, extra in records:
        name = match["message"].split()[0]
        pid, _, _ = children[name]
        assert (match["process"], int(match["pid"])) == (name, pid)
        assert match["file"] == "test_log.py"
        if match["level"] == "ERROR":
            assert int(match["line"]) == error_line
            assert match["message"] == f"{name} failed"
            assert extra[0] == "Traceback (most recent call last):"
            assert extra[-1] == f"ValueError: boom in {name}"
        else:
            assert int(match["line"]) == info_line
            assert extra == []
            _, _, thread, _, n = match["message"].split()
            assert last_n.get((name, thread), -1) < int(n), "a thread's lines out of order"
            last_n[name, thread] = int(n)
        seen[match["message"]] += 1

    expected = {
        f"{name} thread {t} line {n:04d}"
        for name in names
        for t in range(WORKER_THREADS)
        for n in range(LINES_PER_WORKER // WORKER_THREADS)
    } | {f"{name} failed" for name in names}
    assert set(seen) == expected
    assert set(seen.values()) == {1}


def test_worker_falls_back_to_stderr_and_reconnects(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(smps_log.ForwardingHandler, "RETRY_INTERVAL", 0.0)
    sock_path = str(tmp_path / "log.sock")
    master = socket.socket(socket.AF_UNIX)
    master.bind(sock_path)
    master.listen()
    smps_log.forward_to(sock_path, "worker-3", "INFO")
    log = get_logger("smps.test")

    def receive(conn: socket.socket) -> tuple[int, str]:
        length, levelno = struct.unpack("!IB", conn.recv(5, socket.MSG_WAITALL))
        return levelno, conn.recv(length, socket.MSG_WAITALL).decode()

    log.warning("one")
    conn, _ = master.accept()
    levelno, line = receive(conn)
    assert levelno == logging.WARNING
    assert LINE.fullmatch(line)["message"] == "one"
    assert LINE.fullmatch(line)["process"] == "worker-3"

    conn.close()
    master.close()  # the master is gone: lines go to stderr, nothing is raised
    log.warning("two")
    log.warning("three")
    err = [LINE.fullmatch(line)["message"] for line in capsys.readouterr().err.splitlines()]
    assert err == ["two", "three"]

    os.unlink(sock_path)
    master = socket.socket(socket.AF_UNIX)  # a restarted master
    master.bind(sock_path)
    master.listen()
    log.warning("x" * 100_000)
    conn, _ = master.accept()
    _, line = receive(conn)
    assert len(line.encode()) == smps_log.MAX_LINE_BYTES
    assert line.endswith("xxx [truncated]")
    conn.close()
    master.close()
    assert capsys.readouterr().err == ""


if __name__ == "__main__":
    _worker_main(sys.argv[1], sys.argv[2])
