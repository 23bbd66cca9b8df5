"""The node's hold on ``node.state_dir``: an exclusive flock on ``smps.pid`` there.

`smps run` takes it before it touches the database, the log socket or any port, so a
second start with the same configuration stops at once, naming the first one's pid,
and changes nothing. The kernel lets go of the lock when the process ends, however it
ends: a pid file left behind by a killed node does not block the next start.
"""

import fcntl
import os
from pathlib import Path
from typing import IO

from smps.errors import StateDirBusy

PID_FILE = "smps.pid"


def hold(state_dir: str | os.PathLike) -> IO[str]:
    """Lock `state_dir` for this process and write its pid; keep the returned file open
    for as long as the node runs. Raises StateDirBusy if another process holds it."""
    directory = Path(state_dir)
    directory.mkdir(parents=True, exist_ok=True)
    handle = open(directory / PID_FILE, "a+")  # noqa: SIM115 - held open by the caller
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise StateDirBusy(f"another smps (pid {pid}) runs with state_dir {state_dir}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
