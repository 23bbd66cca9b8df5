"""One node per state directory: `smps run` locks ``node.state_dir`` before it touches the
database, the log socket or a port, so a second start with the same configuration exits 2
naming the first one's pid and changes nothing."""

import contextlib
import os
import sqlite3
import subprocess
import sys

import pytest

from smps.errors import StateDirBusy
from smps.runtime import state_lock
from smps.sim.smsc import SimSmsc
from tests import tracebacks
from tests.nodes import REPO, RunNode, sections


def test_second_hold_names_the_holder_and_a_released_lock_is_free_again(tmp_path):
    held = state_lock.hold(tmp_path / "var")
    try:
        with pytest.raises(StateDirBusy, match=rf"^another smps \(pid {os.getpid()}\) runs with"):
            state_lock.hold(tmp_path / "var")
    finally:
        held.close()
    # The pid file stays behind, as after a kill -9: it does not block the next start.
    state_lock.hold(tmp_path / "var").close()


def _dump(database) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        return list(db.iterdump())


async def test_second_smps_run_with_the_same_config_exits_2_and_changes_nothing(tmp_path):
    sim = SimSmsc()
    node = RunNode(
        tmp_path,
        sections(
            tmp_path,
            await sim.start(),
            ne_accounts=[{"system_id": "antispam", "password": "pw1"}],
        ),
    )
    try:
        await node.start()
        database = tmp_path / "var" / "smps.db"
        before = _dump(database)
        second = subprocess.run(
            [sys.executable, "-m", "smps", "run", "-c", str(node.path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        tracebacks.assert_none(second.stderr, "the second smps run")
        assert second.returncode == 2, second.stderr
        state_dir = node.config.node.state_dir
        assert f"another smps (pid {node.process.pid}) runs with state_dir {state_dir}" in (
            second.stderr
        )
        assert _dump(database) == before
        assert node.up()  # its control socket, log socket and ports are still its own
    finally:
        await node.stop()
        await sim.stop()
