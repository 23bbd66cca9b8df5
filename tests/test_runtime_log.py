"""Log rotation with several worker processes logging at once through the
master's LogWriter: no line interleaved, lost or duplicated."""

import asyncio
import io
import logging
import re
import sys
from pathlib import Path

from smps import log as smps_log

REPO = Path(__file__).resolve().parent.parent
WORKERS = 3
LINES = 1500

WORKER = """
import logging, sys
from smps import log
log.forward_to(sys.argv[1], "worker-" + sys.argv[2])
logger = logging.getLogger("smps.test")
for i in range(int(sys.argv[3])):
    logger.info("w=%s i=%d %s", sys.argv[2], i, "x" * 80)
"""


async def test_rotation_under_concurrent_logging(tmp_path):
    log_file = tmp_path / "smps.log"
    socket_path = str(tmp_path / "log.sock")
    smps_log.configure(
        file=str(log_file), max_bytes=40_000, backups=200, color=False, stream=io.StringIO()
    )
    writer = smps_log.LogWriter()
    await writer.start(socket_path)
    try:
        processes = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", WORKER, socket_path, str(w), str(LINES), cwd=REPO
            )
            for w in range(WORKERS)
        ]
        assert [await p.wait() for p in processes] == [0] * WORKERS
    finally:
        await writer.close()
        smps_log.configure(stream=io.StringIO())  # drop the file handler
        logging.getLogger().handlers.clear()
    files = sorted(tmp_path.glob("smps.log*"))
    assert len(files) > 5, "the test must cross several rotations"
    pattern = re.compile(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO     worker-(\d)\[\d+\] smps\.test "
        r"<string>:\d+ w=(\d) i=(\d+) x{80}$"
    )
    seen = []
    for path in files:
        for line in path.read_text().splitlines():
            match = pattern.match(line)
            assert match, f"malformed or interleaved line in {path.name}: {line!r}"
            assert match[1] == match[2]
            seen.append((int(match[2]), int(match[3])))
    assert len(seen) == len(set(seen)), "duplicated lines"
    assert set(seen) == {(w, i) for w in range(WORKERS) for i in range(LINES)}, "lost lines"
