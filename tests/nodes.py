"""`smps run` as the tests run it: a node's sections, its subprocess and its control socket.

Every node has 2 workers, one bind to the simulated SMSC per worker, listeners on
127.0.0.1 port 0 and its state, log and SQLite database under ``directory/var``.
"""

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from smps import config as config_module
from smps.runtime.control_socket import request
from tests import tracebacks
from tests.helpers import until

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "pw1"


def smsc_section(port: int, **over) -> dict:
    """One `smsc` entry for the simulated SMSC on 127.0.0.1 (system_id smps, password
    secret, as SimSmsc expects); ``over`` adds or replaces keys."""
    return {
        "name": "smsc1",
        "host": "127.0.0.1",
        "port": port,
        "system_id": "smps",
        "password": "secret",
        **over,
    }


def sections(directory: Path, smsc_port: int, *, name="t", reconnect=("100ms", "500ms"), **over):
    """The sections of a test node's smps.yaml; ``over`` replaces whole top-level
    sections (None drops one)."""
    initial, most = reconnect
    base = {
        "node": {"name": name, "state_dir": str(directory / "var"), "workers": 2},
        "log": {"file": str(directory / "var" / "smps.log"), "level": "INFO"},
        "database": {"url": f"sqlite:///{directory / 'var' / 'smps.db'}"},
        "smsc": [smsc_section(smsc_port, binds=1, reconnect={"initial": initial, "max": most})],
        "server": {"listen": "127.0.0.1:0"},
        "web": {"listen": "127.0.0.1:0"},
    }
    merged = {**base, **over}
    return {key: value for key, value in merged.items() if value is not None}


class RunNode:
    """``python -m smps run -c FILE`` in a subprocess, asked through its control socket."""

    command = ("smps", "run")  # run as ``python -m ...``

    def __init__(self, directory: Path, node_sections: dict):
        directory.mkdir(parents=True, exist_ok=True)
        self.dir = directory
        self.path = directory / "smps.yaml"
        self.sections = node_sections
        self.write()
        self.config = config_module.load(self.path)
        self.process: subprocess.Popen | None = None
        self.report: dict = {}

    def write(self) -> None:
        self.path.write_text(yaml.safe_dump(self.sections))

    def launch(self) -> None:
        """Start the node; its log and its own output (a crash before the log is up) are
        checked for tracebacks when the test ends (tests/conftest.py)."""
        output = self.dir / "output.txt"
        with open(output, "a") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.command, "-c", str(self.path)],
                cwd=REPO,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        tracebacks.outputs.append(output)
        if self.config.log.file:
            tracebacks.outputs.append(self.log_path)

    async def start(self, timeout: float = 20.0) -> None:
        self.launch()
        await until(self.up, timeout=timeout)

    def up(self) -> bool:
        """Every worker up (the status report kept in ``report``); fails if the node exited."""
        assert self.process.poll() is None, "smps run exited"
        with contextlib.suppress(OSError, ValueError):
            self.report = self.status()
            return all(w["up"] for w in self.report["workers"])
        return False

    def status(self) -> dict:
        return request(self.config.node.state_dir, {"cmd": "status"})

    def ne_binds(self, account: str) -> int:
        return self.status()["ne_binds"].get(account, 0)

    @property
    def smpp_port(self) -> int:
        return self.report["smpp_port"]

    def health(self) -> tuple[int, dict]:
        url = f"http://127.0.0.1:{self.report['http_port']}/health"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    def metrics_text(self) -> str:
        url = f"http://127.0.0.1:{self.report['http_port']}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode()

    def smps(self, *args: str) -> subprocess.CompletedProcess:
        """The `smps` command against this node, as an operator or keepalived would run it."""
        result = subprocess.run(
            [sys.executable, "-m", "smps", *args, "-c", str(self.path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
        tracebacks.assert_none(result.stderr, f"smps {' '.join(args)}")
        return result

    async def notify(self, state: str) -> None:
        result = await asyncio.to_thread(self.smps, "ha", "notify", state)
        assert result.returncode == 0, result.stderr

    async def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, 15)

    @property
    def log_path(self) -> Path:
        return Path(self.config.log.file)

    def log_text(self) -> str:
        return self.log_path.read_text()


class HaNode(RunNode):
    """`smps run` in keepalived mode, starting STANDBY, with one NE account (antispam)."""

    def __init__(self, directory: Path, smsc_port: int, name: str = "t", **sections_over):
        """``sections_over`` replaces whole top-level sections (e.g. ``database``, ``ha``)."""
        super().__init__(
            directory,
            sections(
                directory,
                smsc_port,
                name=name,
                reconnect=("50ms", "200ms"),
                **{
                    "ne_accounts": [
                        {
                            "system_id": "antispam",
                            "password": PASSWORD,
                            "max_binds": 2,
                            "window": 1000,
                        }
                    ],
                    "policy": {"timeout": "5s"},
                    "ha": {"mode": "keepalived", "initial_role": "standby"},
                    **sections_over,
                },
            ),
        )

    async def start(self, timeout: float = 60.0) -> None:  # slow to start on a busy machine
        await super().start(timeout)
