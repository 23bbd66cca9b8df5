"""One run: starts SMPS (or attaches to one already running, or starts the bare
relay in its place) and the generator processes, follows the load to its end, and
stops every process it started."""

import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TextIO

import smps
from bench.loadrun.processes import STARTUP_TIMEOUT, ProcessTree, ne_process, smsc_process
from bench.loadrun.report import build_inflight_report, build_report
from bench.loadrun.scenario import (
    INFLIGHT_RATE,
    SMSC_PASSWORD,
    SMSC_SYSTEM_ID,
    Scenario,
    bench_config,
)
from smps.config import Config
from smps.errors import SmpsError

SETTLE = 1.0  # seconds SMPS is left alone before each in-flight RSS reading
COPIES_STALL = 10.0  # seconds without a new copy at the NEs before measuring anyway


class Progress:
    """A bar redrawn in place on a terminal; a line every few seconds otherwise."""

    def __init__(self, out: TextIO, total: float, noun: str = "answered"):
        self.out = out
        self.total = total
        self.noun = noun
        self.tty = out.isatty()
        self._last_line = 0.0
        self._last = (0.0, 0)

    def show(self, phase: str, elapsed: float, answered: int) -> None:
        at, count = self._last
        rate = (answered - count) / (elapsed - at) if elapsed > at else 0.0
        self._last = (elapsed, answered)
        done = min(elapsed / self.total, 1.0) if self.total else 1.0
        bar = "#" * int(done * 30)
        text = (
            f"[{bar:<30}] {phase:<9} {min(elapsed, self.total):5.1f}/{self.total:.0f} s  "
            f"{rate:9,.0f} msg/s  {self.noun} {answered:,}"
        )
        if self.tty:
            print(f"\r{text}", end="", file=self.out, flush=True)
        elif time.monotonic() - self._last_line >= 5.0:
            self._last_line = time.monotonic()
            print(text, file=self.out, flush=True)

    def end(self) -> None:
        if self.tty:
            print(file=self.out, flush=True)


@dataclass
class Target:
    """The SMPS under test, as the generators need to see it."""

    smsc_port: int
    ne_host: str
    ne_port: int
    accounts: list[tuple[str, str]]
    smsc_binds: int  # binds the SMSC waits for
    pid: int | None = None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _split_cpus(workers: int, pin: bool) -> tuple[list[int] | None, list[int] | None]:
    """(SMPS's CPUs, the generators' CPUs), or Nones when there are too few to split."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) <= workers:
        return None, None
    return cpus[:workers], cpus[workers:]


class Run:
    """One bench run: owns every process it starts and stops them all at the end.
    With `relay`, the proxy under test is the bare relay (bench/bare_relay.py, one
    process) instead of SMPS: the yardstick of `smps bench --baseline`."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        pin: bool = True,
        keep: bool = False,
        profile: str | None = None,
        relay: bool = False,
        out: TextIO = sys.stderr,
    ):
        if relay:  # one process with every SMSC bind, judging the parts of a message alone
            scenario = replace(scenario, workers=1, hold=scenario.hold and not scenario.concat)
        self.scenario = scenario
        self.relay = relay
        self.proxy_name = "the bare relay" if relay else "SMPS"
        self.proxy_cpus, self.generator_cpus = _split_cpus(scenario.workers, pin)
        self.pin = pin
        self.keep = keep
        self.profile = profile
        self.out = out
        self.workdir: Path | None = None
        self.proxy: subprocess.Popen[bytes] | None = None  # SMPS or the bare relay
        self.profiler: subprocess.Popen[bytes] | None = None
        self.children: list[multiprocessing.process.BaseProcess] = []
        self.ne_conn: Connection | None = None  # set while the NEs run
        self.context = multiprocessing.get_context("spawn")

    # ---- starting ------------------------------------------------------------------

    def _spawn(self, target, *args) -> Connection:
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=target, args=(theirs, *args), daemon=True)
        process.start()
        theirs.close()
        self.children.append(process)
        return ours

    def _expect(self, conn: Connection, what: str, timeout: float = STARTUP_TIMEOUT) -> tuple:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if wait([conn], timeout=0.2):
                try:
                    message = conn.recv()
                except EOFError:
                    raise SmpsError(f"a generator process died while {what}") from None
                if message[0] == "error":
                    raise SmpsError(message[1])
                return message
            if self.proxy is not None and self.proxy.poll() is not None:
                raise SmpsError(
                    f"{self.proxy_name} exited with status {self.proxy.returncode} while "
                    f"{what}:\n" + self._proxy_output_tail()
                )
        raise SmpsError(f"timed out after {timeout:g} s while {what}")

    def _start_smps(self, config_text: str) -> int:
        assert self.workdir is not None
        config_path = self.workdir / "smps.yaml"
        config_path.write_text(config_text)
        return self._start_proxy(["smps", "run", "-c", str(config_path)])

    def _start_relay(self, target: "Target") -> int:
        """The bare relay where SMPS would run: it binds to the SMSC as SMPS does
        and listens for the NEs on SMPS's port."""
        return self._start_proxy(
            [
                *("bench.bare_relay", "--smsc-port", str(target.smsc_port)),
                *("--binds", str(target.smsc_binds), "--system-id", SMSC_SYSTEM_ID),
                *("--password", SMSC_PASSWORD, "--listen", f"{target.ne_host}:{target.ne_port}"),
            ]
        )

    def _start_proxy(self, module_args: list[str]) -> int:
        """`python -m MODULE ARGS` from this source tree, on the proxy's CPUs."""
        assert self.workdir is not None
        env = dict(os.environ)
        tree = str(Path(smps.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p)
        cpus = self.proxy_cpus
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", *module_args],
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "proxy.out", "wb"),  # noqa: SIM115 (the child owns it)
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        return self.proxy.pid

    def _proxy_output_tail(self, lines: int = 20) -> str:
        if self.workdir is None:
            return ""
        text = ""
        for name in ("proxy.out", "smps.log"):
            path = self.workdir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # ---- running -------------------------------------------------------------------

    def execute(self, existing: tuple[Config, int | None] | None = None) -> dict[str, Any]:
        """Start (or attach to) SMPS, drive the load, and return the report."""
        scenario = self.scenario
        try:
            if existing is None:
                self.workdir = Path(tempfile.mkdtemp(prefix="smps-bench-"))
                target = Target(
                    smsc_port=0,
                    ne_host="127.0.0.1",
                    ne_port=_free_port(),
                    accounts=scenario.accounts(),
                    smsc_binds=scenario.binds_per_worker * scenario.workers,
                )
            else:
                target = _target_of(*existing, nes=scenario.nes)
            self._note("starting the simulated SMSC")
            smsc = self._spawn(
                smsc_process, scenario, target.smsc_binds, target.smsc_port, self.generator_cpus
            )
            _, target.smsc_port = self._expect(smsc, "starting the simulated SMSC")
            if existing is None:
                if self.relay:
                    target.pid = self._start_relay(target)
                else:
                    config = bench_config(scenario, self.workdir, target.smsc_port, target.ne_port)
                    target.pid = self._start_smps(config)
                self._note(f"started {self.proxy_name} (pid {target.pid}) in {self.workdir}")
            # SMPS binds to the SMSC once its NE server listens: then the NEs can bind.
            self._expect(smsc, "waiting for SMPS to bind to the simulated SMSC")
            ne_conn = self._spawn(
                ne_process,
                scenario,
                target.ne_host,
                target.ne_port,
                target.accounts,
                self.generator_cpus,
            )
            self.ne_conn = ne_conn
            ne_pid = self.children[-1].pid
            self._expect(ne_conn, "waiting for the NE binds")
            self._note("all bound; sending")
            if scenario.inflight:
                return self._hold(smsc, ne_conn, ne_pid, target)
            state_dir = (
                str(self.workdir / "var")
                if existing is None and not self.relay
                else existing[0].node.state_dir
                if existing is not None
                else None
            )
            smsc.send(("go", target.pid, ne_pid, state_dir))
            measured = self._follow(smsc, target.pid)
            rss = ProcessTree(target.pid).peak_rss_bytes() if target.pid else None
            ne_conn.send(("stop",))
            self.ne_conn = None
            _, nes = self._expect(ne_conn, "collecting the NE counts", timeout=30.0)
            return build_report(
                scenario,
                measured,
                nes,
                rss,
                self._pinning(),
                target,
                proxy="bare_relay" if self.relay else "smps",
            )
        finally:
            self._stop()

    def _follow(self, smsc: Connection, pid: int | None) -> dict[str, Any]:
        """Show progress until the SMSC process sends its result."""
        progress = Progress(self.out, self.scenario.warmup + self.scenario.duration)
        try:
            while True:
                message = self._expect(
                    smsc, "running the load", timeout=self.scenario.timeout + 30.0
                )
                if message[0] == "result":
                    return message[1]
                _, phase, elapsed, answered = message
                if phase == "measuring" and self.profile and self.profiler is None and pid:
                    self.profiler = _start_profiler(self.profile, pid, self.scenario.duration)
                progress.show(phase, elapsed, answered)
        finally:
            progress.end()

    def _hold(self, smsc: Connection, ne_conn: Connection, ne_pid: int, target: Target) -> dict:
        """The in-flight run: SMPS's RSS before any load and once `inflight`
        originals wait, unanswered, for their verdict."""
        scenario = self.scenario
        if not target.pid:
            raise SmpsError("the in-flight run reads SMPS's memory: give --pid with --no-start")
        tree = ProcessTree(target.pid)
        time.sleep(SETTLE)
        before = tree.rss_bytes()
        smsc.send(("go", target.pid, ne_pid, None))
        progress = Progress(self.out, scenario.inflight / (scenario.rate or INFLIGHT_RATE), "sent")
        try:
            while True:
                message = self._expect(smsc, "sending the originals", timeout=60.0)
                if message[0] == "sent":
                    break
                progress.show(*message[1:])
        finally:
            progress.end()
        copies = self._wait_copies(ne_conn, scenario.nes * message[2])  # per whole message
        time.sleep(SETTLE)
        held = tree.rss_bytes()
        peak = tree.peak_rss_bytes()
        smsc.send(("measure",))
        _, counts = self._expect(smsc, "collecting the SMSC counts", timeout=30.0)
        ne_conn.send(("stop",))
        self.ne_conn = None
        _, nes = self._expect(ne_conn, "collecting the NE counts", timeout=30.0)
        return build_inflight_report(
            scenario, counts, copies, before, held, peak, nes, self._pinning(), target
        )

    def _wait_copies(self, ne_conn: Connection, expected: int) -> int:
        """Copies the NEs received, once that is `expected` or stops growing."""
        copies, grew_at = -1, time.monotonic()
        while time.monotonic() - grew_at < COPIES_STALL:
            ne_conn.send(("count",))
            _, count = self._expect(ne_conn, "counting the copies the NEs received")
            if count >= expected:
                return count
            if count > copies:
                copies, grew_at = count, time.monotonic()
            time.sleep(0.2)
        self._note(f"the NEs received {copies:,} copies, not {expected:,}; measuring anyway")
        return copies

    def _pinning(self) -> dict[str, Any]:
        pinning: dict[str, Any] = {
            "smps_cpus": self.proxy_cpus,
            "generator_cpus": self.generator_cpus,
        }
        cpus = len(os.sched_getaffinity(0))
        if self.proxy_cpus is None and self.pin and cpus <= self.scenario.workers:
            pinning["shared"] = (
                f"{self.scenario.workers} worker(s) on {cpus} CPU(s): the generators share "
                "SMPS's cores, so msg/s understates SMPS; CPU µs/msg still holds"
            )
        return pinning

    def _note(self, text: str) -> None:
        print(f"bench: {text}", file=self.out, flush=True)

    # ---- stopping ------------------------------------------------------------------

    def _stop(self) -> None:
        if self.profiler is not None:
            try:
                self.profiler.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
        if self.ne_conn is not None:  # the NEs unbind first, so they do not chase a stopped SMPS
            with contextlib.suppress(OSError):
                self.ne_conn.send(("stop",))
        if self.proxy is not None and self.proxy.poll() is None:
            self.proxy.send_signal(signal.SIGTERM)  # graceful: drains, unbinds
            try:
                self.proxy.wait(timeout=min(self.scenario.timeout, 20.0) + 10.0)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait()
        for process in self.children:
            process.join(timeout=10.0)
            if process.is_alive():
                process.kill()
                process.join()
        if self.workdir is not None:
            if self.keep:
                self._note(f"kept {self.workdir}")
            else:
                for path in sorted(self.workdir.rglob("*"), reverse=True):
                    path.rmdir() if path.is_dir() else path.unlink()
                self.workdir.rmdir()


_PROFILE_FORMATS = {".json": "speedscope", ".txt": "raw"}  # else an SVG flame graph


def _start_profiler(path: str, pid: int, duration: float) -> subprocess.Popen[bytes] | None:
    """py-spy over the measured interval (its samples cost SMPS a little CPU)."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if not py_spy.exists():
        print("bench: py-spy not found next to python; no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            str(py_spy),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, int(duration))),
            "--rate",
            "200",
            "--nonblocking",
            "--subprocesses",  # the master and its workers
            "--format",
            _PROFILE_FORMATS.get(Path(path).suffix, "flamegraph"),
            "-o",
            path,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _target_of(config: Config, pid: int | None, *, nes: int) -> Target:
    """--no-start: the SMSC simulator listens where the config's first SMSC
    points, and the NEs bind as its first `nes` accounts."""
    if not config.smsc:
        raise SmpsError("--no-start needs a configuration with an smsc entry (the simulator)")
    if len(config.ne_accounts) < nes:
        raise SmpsError(f"--nes {nes}: the configuration has {len(config.ne_accounts)} accounts")
    smsc = config.smsc[0]
    if smsc.host not in ("127.0.0.1", "localhost"):
        raise SmpsError(
            f"smsc {smsc.name} must point at 127.0.0.1 (the simulator), not {smsc.host}"
        )
    if (smsc.system_id, smsc.password) != (SMSC_SYSTEM_ID, SMSC_PASSWORD):
        raise SmpsError(f"smsc {smsc.name} must bind as {SMSC_SYSTEM_ID}/{SMSC_PASSWORD}")
    host, port = config.server.listen
    return Target(
        smsc_port=smsc.port,
        ne_host="127.0.0.1" if host in ("0.0.0.0", "::", "") else host,
        ne_port=port,
        accounts=[(a.system_id, a.password) for a in config.ne_accounts[:nes]],
        smsc_binds=smsc.binds * config.node.worker_count,
        pid=pid,
    )
