"""The `smps` command as an operator meets it: real processes, real HTTP."""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests import tracebacks

SMPS = [sys.executable, "-m", "smps"]
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args, **kwargs):
    result = subprocess.run([*SMPS, *args], capture_output=True, text=True, timeout=60, **kwargs)
    tracebacks.assert_none(result.stderr, f"smps {' '.join(args)}")
    return result


def write_config(path: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


def test_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("run", "config"):
        assert command in result.stdout
    version = run_cli("--version")
    assert version.returncode == 0 and re.fullmatch(r"smps \d+\.\d+\.\d+\s*", version.stdout)
    assert run_cli("config", "check", "--help").returncode == 0


def test_config_check_accepts_shipped_example():
    result = run_cli("config", "check", "-c", str(REPO / "config" / "smps.yaml"))
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        ({"smsc": [{"name": "a", "host": "h", "port": 70000, "system_id": "x"}]}, "smsc[0].port"),
        ({"policy": {"timeout": "2 parsecs"}}, "policy.timeout"),
        ({"smpp": {}}, "smpp"),
    ],
)
def test_config_check_refuses_bad_file(tmp_path, sections, expected):
    path = write_config(tmp_path / "bad.yaml", **sections)
    result = run_cli("config", "check", "-c", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and expected in lines[0]


def test_config_check_missing_file(tmp_path):
    result = run_cli("config", "check", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr and "not found" in result.stderr


def test_run_refuses_bad_config_without_starting(tmp_path):
    path = write_config(tmp_path / "bad.yaml", web={"listen": "nowhere"})
    result = run_cli("run", "-c", str(path))
    assert result.returncode == 2
    assert "web.listen" in result.stderr


def test_bench_needs_the_source_checkout(tmp_path):
    """`smps bench` lives in the checkout's bench/loadrun, not in the package: an smps
    installed without the checkout refuses it with the reason."""
    site = tmp_path / "site"
    shutil.copytree(
        REPO / "smps", site / "smps", ignore=shutil.ignore_patterns("*.c", "__pycache__")
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    for name in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"):
        env.pop(name, None)  # the copy is not the tree under measurement
    result = run_cli("bench", "--duration", "3", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "smps bench runs from a source checkout" in result.stderr
    assert str(site) in result.stderr  # the copy answered, not the checkout
    assert "bench" in run_cli("--help", cwd=tmp_path, env=env).stdout


def _http_get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class SmpsRun:
    """`smps run -c path`, its output (the node logs to stderr) in a file the test reads
    line by line and conftest checks for tracebacks."""

    def __init__(self, path: Path, cwd: Path):
        output = cwd / "smps-run.out"
        with open(output, "w") as sink:
            self.process = subprocess.Popen(
                [*SMPS, "run", "-c", str(path)],
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=cwd,  # relative paths (./var/smps.db) land in the test's own directory
            )
        tracebacks.outputs.append(output)
        self.output = open(output)  # noqa: SIM115 (closed by close())

    def wait_for_line(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """Read the output until a line matches."""
        deadline = time.monotonic() + timeout
        seen = []
        while time.monotonic() < deadline:
            line = self.output.readline()
            if not line:
                if self.process.poll() is not None:
                    break
                time.sleep(0.01)
                continue
            seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"no line matching {pattern!r}; got:\n{''.join(seen)}")

    def close(self) -> None:
        """Kill the node if it still runs."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.output.close()


@contextlib.contextmanager
def smps_run(path, cwd):
    """`smps run -c path`, killed on the way out if still running."""
    node = SmpsRun(path, cwd)
    try:
        yield node
    finally:
        node.close()


def test_run_serves_health_and_metrics_and_stops_on_sigterm(tmp_path):
    log_file = tmp_path / "log" / "smps.log"
    path = write_config(
        tmp_path / "smps.yaml",
        node={"name": "node-t", "state_dir": str(tmp_path / "var")},
        log={"file": str(log_file), "stats_interval": "200ms", "color": False},
        server={"listen": "127.0.0.1:0"},
        web={"listen": "127.0.0.1:0"},
        ne_accounts=[{"system_id": "antispam", "password": "s3cr3t"}],
    )
    with smps_run(path, tmp_path) as node:
        port = int(node.wait_for_line(r"HTTP listening on 127\.0\.0\.1:(\d+)").group(1))
        node.wait_for_line(r"ready")
        status, body = _http_get(f"http://127.0.0.1:{port}/health")
        assert status == 200
        health = json.loads(body)
        assert health["status"] == "ok" and health["node"] == "node-t"
        assert health["role"] == "active" and health["uptime_s"] >= 0
        assert re.fullmatch(r"\d+\.\d+\.\d+", health["version"])
        status, body = _http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200
        assert re.search(rb'^smps_build_info\{version="[0-9.]+"\} 1\.0$', body, re.MULTILINE)
        node.wait_for_line(r"INFO .* stats uptime=")
        node.process.send_signal(signal.SIGTERM)
        assert node.process.wait(timeout=10) == 0
    text = log_file.read_text()
    assert "stats uptime=" in text
    # A few readable start lines, no JSON dump of the configuration, no secret.
    assert f"starting: node node-t, configuration {path}" in text
    assert "NE accounts in the file (1): antispam" in text
    assert re.search(r"database sqlite \S+smps\.db \(record non_allow\)", text)
    assert "s3cr3t" not in text and '{"node"' not in text
    # Neither the libraries' INFO chatter nor a configuration sent to no worker.
    assert "alembic" not in text and "Context impl" not in text
    assert "applied to 0 workers" not in text


def test_sigint_also_stops_cleanly(tmp_path):
    path = write_config(
        tmp_path / "smps.yaml",
        log={"file": ""},
        server={"listen": "127.0.0.1:0"},
        web={"listen": "127.0.0.1:0"},
    )
    with smps_run(path, tmp_path) as node:
        node.wait_for_line(r"ready")
        node.process.send_signal(signal.SIGINT)
        assert node.process.wait(timeout=10) == 0


def test_run_reports_port_in_use(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = write_config(
            tmp_path / "smps.yaml",
            log={"file": ""},
            server={"listen": "127.0.0.1:0"},
            web={"listen": f"127.0.0.1:{port}"},
        )
        result = run_cli("run", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot start" in result.stderr


def test_demo_runs_and_every_original_is_answered_once(tmp_path):
    result = run_cli("demo", "--duration", "3s", "--rate", "150", "--web-port", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    state = re.search(r"state and database in (\S+) \(removed at the end\)", result.stdout)
    assert state, result.stdout
    # The demo kept its database in that directory: nothing in the working directory's ./var.
    assert not os.path.exists(state.group(1)) and not (tmp_path / "var").exists()
    match = re.search(r"SMSC saw (\d+) originals: (\d+) answered, 0 missing, 0 duplicates",
                      result.stdout)  # fmt: skip
    assert match, result.stdout
    assert int(match.group(1)) == int(match.group(2)) > 100
    assert "allow/all_allow" in result.stdout
    assert "block/rule" in result.stdout  # the demo's screening rules block a phishing URL


def test_config_is_found_by_option_then_environment_then_working_directory(tmp_path):
    """-c, then $SMPS_CONFIG, then ./config/smps.yaml: a command works from any directory."""
    local = tmp_path / "config" / "smps.yaml"
    local.parent.mkdir()
    write_config(local, node={"name": "local"})
    named = write_config(tmp_path / "named.yaml", node={"name": "named"})
    given = write_config(tmp_path / "given.yaml", node={"name": "given"})
    env = {key: value for key, value in os.environ.items() if key != "SMPS_CONFIG"}

    def checked(*args, **over) -> str:
        result = run_cli("config", "check", *args, cwd=tmp_path, env={**env, **over})
        assert result.returncode == 0, result.stderr
        return result.stdout.split(":")[0]

    assert checked() == "config/smps.yaml"
    assert checked(SMPS_CONFIG=str(named)) == str(named)
    assert checked("-c", str(given), SMPS_CONFIG=str(named)) == str(given)
    if not os.path.exists("/etc/smps/smps.yaml"):  # else that is found (next test)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        missing = run_cli("config", "check", cwd=elsewhere, env=env)
        assert (missing.returncode, missing.stderr) == (
            2,
            "smps: config/smps.yaml: file not found\n",
        )


def test_config_in_etc_is_the_last_resort(tmp_path, monkeypatch):
    """With no -c, no $SMPS_CONFIG and no ./config/smps.yaml: /etc/smps/smps.yaml (here a
    stand-in path, as the test may not write /etc)."""
    from smps.config import loading

    system = write_config(tmp_path / "etc-smps.yaml", node={"name": "system"})
    monkeypatch.setattr(loading, "SYSTEM_PATH", str(system))
    monkeypatch.delenv("SMPS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert loading.default_path() == str(system)
    (tmp_path / "config").mkdir()
    write_config(tmp_path / "config" / "smps.yaml", node={"name": "local"})
    assert loading.default_path() == "config/smps.yaml"
