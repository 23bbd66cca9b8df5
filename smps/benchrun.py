"""`smps bench`: one load run of SMPS, reported as throughput, added latency and
proxy CPU time per message (design.md section 8).

Three kinds of process take part, so that the proxy's CPU time can be read on
its own and the load generators never share its event loop:

- SMPS itself: `smps run -c <generated config>` (sqlite in a temp dir,
  `record: non_allow`, 100 trace rules), or with --no-start one that already
  runs with the user's configuration;
- the simulated SMSC (`SimSmsc` on uvloop, in a spawned process): it listens,
  SMPS binds to it, and it sends the pre-encoded standard mix at a fixed rate
  or as fast as its window allows; it also takes the measurements, so that the
  interval's start and end are the same instants for every figure;
- the simulated NEs (`SimNe` accounts on uvloop, in one spawned process).

On a machine with more CPUs than workers, SMPS is pinned to the first
`workers` CPUs and the generators to the others, so that they do not steal
the proxy's core; their CPU time is reported too, to show they were not the
bottleneck.

The run: start everything, wait for every bind, send for `warmup` seconds
(JIT-free Python still warms caches, pools and the SQLite file), then measure
for `duration` seconds, then let the last answers in and stop. Figures cover
the measured interval only:

- messages/s decided: originals (PDUs) answered per second;
- added latency: the SMSC's send-to-response time minus the NE think time
  (`--ne-latency`, fixed); with the standard NE latency of 0 it is exactly
  what the SMSC observes;
- proxy CPU µs/message: user+system time of SMPS's processes (the one given
  and its descendants, from /proc) ÷ messages decided;
- throttled: answers with ESME_RTHROTTLED; timeouts: answers that came at or
  after the verdict timeout (so the deadline, not the NEs, answered them);
- missing and duplicate responses over the whole run, which must be 0.
"""

import argparse
import contextlib
import json
import math
import multiprocessing
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, TextIO

import yaml

import smps
from smps._native.pdu import Status
from smps.config import Config, load, loads
from smps.errors import SmpsError
from smps.sim import cli as sim_cli

SMSC_SYSTEM_ID = "smps"
SMSC_PASSWORD = "secret"
TRACED_NUMBER_BASE = 8613700000000  # outside the traffic's source and destination ranges
STARTUP_TIMEOUT = 60.0  # SMPS start, migrations and every bind
PROGRESS_EVERY = 0.5  # seconds between progress reports from the SMSC process
TAIL = 0.5  # load goes on this long after the measured interval, so it ends under load
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- the scenario ----------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What one run does; the defaults are the standard scenario of design.md §8."""

    nes: int = 3
    ne_binds: int = 2  # per NE account
    smsc_binds: int = 2  # in all, spread over the workers
    workers: int = 1
    ne_latency: float = 0.0  # NE think time, seconds (fixed)
    block_ratio: float = 0.05
    window: int = 64  # originals outstanding per SMSC bind
    ne_window: int = 64  # copies outstanding per NE bind (ne_accounts[].window)
    rate: float | None = None  # originals/s; None = as fast as the window allows
    duration: float = 30.0
    warmup: float = 5.0
    trace_rules: int = 100
    traced_ratio: float = 0.01
    record: str = "non_allow"
    timeout: float = 2.0  # policy.timeout
    mix: dict[str, float] = field(
        default_factory=lambda: {"gsm7": 70.0, "ucs2": 20.0, "concat": 10.0, "receipt": 0.0}
    )

    @property
    def binds_per_worker(self) -> int:
        return -(-self.smsc_binds // self.workers)

    def traced_numbers(self) -> list[bytes]:
        return [b"%d" % (TRACED_NUMBER_BASE + i) for i in range(self.trace_rules)]

    def accounts(self) -> list[tuple[str, str]]:
        """(system_id, password) of each NE account."""
        return [(f"ne{i + 1}", f"pw{i + 1}") for i in range(self.nes)]


def bench_config(scenario: Scenario, workdir: Path, smsc_port: int, ne_port: int) -> str:
    """The YAML configuration SMPS runs with: everything on loopback, state in `workdir`."""
    raw = {
        "node": {"name": "bench", "state_dir": str(workdir / "var"), "workers": scenario.workers},
        "log": {"level": "INFO", "file": str(workdir / "smps.log"), "color": False},
        "database": {"url": f"sqlite:///{workdir / 'smps.db'}", "record": scenario.record},
        "smsc": [
            {
                "name": "sim",
                "host": "127.0.0.1",
                "port": smsc_port,
                "system_id": SMSC_SYSTEM_ID,
                "password": SMSC_PASSWORD,
                "binds": scenario.binds_per_worker,
                "reconnect": {"initial": "200ms", "max": "1s"},
            }
        ],
        "server": {"listen": f"127.0.0.1:{ne_port}"},
        "ne_accounts": [
            {
                "system_id": system_id,
                "password": password,
                "max_binds": scenario.ne_binds,
                "window": scenario.ne_window,
            }
            for system_id, password in scenario.accounts()
        ],
        "policy": {"timeout": scenario.timeout},
        "trace": {"rules": [{"number": n.decode()} for n in scenario.traced_numbers()]},
        "web": {"listen": "127.0.0.1:0"},
    }
    text = yaml.safe_dump(raw, sort_keys=False)
    loads(text, file="bench config")  # refuse here, not in a child's log
    return text


# ---- SMPS's processes, seen from /proc -----------------------------------------------


class ProcessTree:
    """A process and its descendants (the master and its workers): CPU and memory."""

    def __init__(self, root: int):
        self.root = root

    def pids(self) -> list[int]:
        pids, index = [self.root], 0
        while index < len(pids):
            pid = pids[index]
            index += 1
            try:
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as file:
                        pids.extend(int(child) for child in file.read().split())
            except (FileNotFoundError, ProcessLookupError):
                continue
        return pids

    def cpu_seconds(self) -> float:
        """User + system time of every live process of the tree (all threads)."""
        ticks = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as file:
                    fields = file.read().rpartition(")")[2].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / CLK_TCK

    def peak_rss_bytes(self) -> int:
        """Sum of each live process's peak resident set (VmHWM)."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as file:
                    for line in file:
                        if line.startswith("VmHWM:"):
                            total += int(line.split()[1]) * 1024
                            break
            except (FileNotFoundError, ProcessLookupError):
                continue
        return total


def _cpu_or_none(tree: ProcessTree | None) -> float | None:
    return tree.cpu_seconds() if tree is not None else None


# ---- the generator processes (spawned; they talk to the driver over a pipe) ----------


async def _receive(conn: Connection) -> Any:
    """conn.recv() without blocking the loop."""
    import asyncio

    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(conn.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv()


def _prepare(cpus: list[int] | None, name: str) -> None:
    """A generator process: on its CPUs, logging only errors (reconnects are expected)."""
    from smps import log as smps_log

    if cpus:
        os.sched_setaffinity(0, cpus)
    smps_log.configure(level="ERROR", process_name=name)


def smsc_process(
    conn: Connection, scenario: Scenario, bind_count: int, port: int, cpus: list[int] | None
) -> None:
    """Entry point of the SMSC process (multiprocessing spawn target)."""
    import uvloop

    _prepare(cpus, "bench-smsc")
    uvloop.run(_smsc_main(conn, scenario, bind_count, port))


async def _smsc_main(conn: Connection, scenario: Scenario, bind_count: int, port: int) -> None:
    import asyncio

    from smps.sim.smsc import LatencyHistogram, SimSmsc
    from smps.sim.traffic import Mix, Traffic

    sim = SimSmsc(
        system_id=SMSC_SYSTEM_ID,
        password=SMSC_PASSWORD,
        window=scenario.window,
        response_timeout=scenario.timeout + 10.0,
    )
    conn.send(("listening", await sim.start("127.0.0.1", port)))
    try:
        await sim.wait_bound(bind_count, STARTUP_TIMEOUT)
        conn.send(("bound",))
        _go, smps_pid, ne_pid = await _receive(conn)
        proxy = ProcessTree(smps_pid) if smps_pid else None
        nes = ProcessTree(ne_pid)
        traffic = Traffic(
            Mix(**scenario.mix),
            traced=scenario.traced_numbers(),
            traced_ratio=scenario.traced_ratio,
        )

        def sample() -> dict[str, Any]:
            return {
                "at": time.perf_counter(),
                "sent": sim.sent,
                "answered": sim.answered,
                "statuses": dict(sim.statuses),
                "smsc_cpu": time.process_time(),
                "ne_cpu": nes.cpu_seconds(),
                "proxy_cpu": _cpu_or_none(proxy),
            }

        started = time.perf_counter()
        run = asyncio.create_task(
            sim.run(scenario.rate, scenario.warmup + scenario.duration + TAIL, mix=traffic)
        )
        measured_from = started + scenario.warmup
        measured_to = measured_from + scenario.duration
        first = last = None
        while not run.done():
            now = time.perf_counter()
            if first is None and now >= measured_from:
                first = sample()
                sim.latency = LatencyHistogram()
            elif first is not None and last is None and now >= measured_to:
                last = sample()
                histogram, sim.latency = sim.latency, LatencyHistogram()
            phase = "warmup" if first is None else "measuring" if last is None else "draining"
            conn.send(("progress", phase, now - started, sim.answered))
            upcoming = measured_from if first is None else measured_to if last is None else now
            await asyncio.wait([run], timeout=max(0.0, min(PROGRESS_EVERY, upcoming - now)) or 0.01)
        whole = run.result()
        if last is None:  # the run ended early (everything unbound)
            raise SmpsError(f"load run ended before the measured interval was over: {whole}")
        conn.send(("result", _measured(first, last, histogram, whole, scenario)))
    except Exception as exc:  # the driver reports it; a traceback here is lost
        conn.send(("error", f"simulated SMSC: {type(exc).__name__}: {exc}"))
    finally:
        await sim.stop()


def _measured(
    first: dict[str, Any],
    last: dict[str, Any],
    histogram: Any,
    whole: dict[str, Any],
    scenario: Scenario,
) -> dict[str, Any]:
    """Differences between the two samples, plus the whole run's counts."""
    statuses = {
        status: n - first["statuses"].get(status, 0)
        for status, n in last["statuses"].items()
        if n - first["statuses"].get(status, 0)
    }
    proxy_cpu = None
    if last["proxy_cpu"] is not None:
        proxy_cpu = last["proxy_cpu"] - first["proxy_cpu"]
    return {
        "interval_s": last["at"] - first["at"],
        "sent": last["sent"] - first["sent"],
        "answered": last["answered"] - first["answered"],
        "statuses": statuses,
        "latency_ms": histogram.summary_ms(),
        "timeouts": answers_at_least(histogram, scenario.timeout),
        "proxy_cpu_s": proxy_cpu,
        "smsc_cpu_s": last["smsc_cpu"] - first["smsc_cpu"],
        "ne_cpu_s": last["ne_cpu"] - first["ne_cpu"],
        "whole_run": whole,
    }


def answers_at_least(histogram: Any, seconds: float) -> int:
    """Samples of a LatencyHistogram at or above `seconds` (its buckets are
    about 2 % wide, so answers from 98 % of `seconds` on may be counted)."""
    first = int(math.log1p(seconds * 1e6) * histogram.SCALE)
    return sum(histogram.buckets[first:])


def ne_process(
    conn: Connection,
    scenario: Scenario,
    host: str,
    port: int,
    accounts: list[tuple[str, str]],
    cpus: list[int] | None,
) -> None:
    """Entry point of the NE process (multiprocessing spawn target)."""
    import uvloop

    _prepare(cpus, "bench-ne")
    uvloop.run(_ne_main(conn, scenario, host, port, accounts))


async def _ne_main(
    conn: Connection, scenario: Scenario, host: str, port: int, accounts: list[tuple[str, str]]
) -> None:
    import asyncio

    from smps.sim.ne import Latency, SimNe

    nes = [
        SimNe(
            host,
            port,
            system_id=system_id,
            password=password,
            binds=scenario.ne_binds,
            block_ratio=scenario.block_ratio,
            latency=Latency(scenario.ne_latency),
            reconnect_initial=0.1,
            reconnect_max=0.5,
            seed=index + 1,
        )
        for index, (system_id, password) in enumerate(accounts)
    ]
    for ne in nes:
        ne.start()
    try:
        await asyncio.gather(*(ne.wait_bound(timeout=STARTUP_TIMEOUT) for ne in nes))
        conn.send(("bound",))
        await _receive(conn)  # "stop"
        conn.send(("result", [ne.summary() for ne in nes]))
    except Exception as exc:
        conn.send(("error", f"simulated NEs: {type(exc).__name__}: {exc}"))
    finally:
        await asyncio.gather(*(ne.stop() for ne in nes))


# ---- the driver ----------------------------------------------------------------------


class Progress:
    """A bar redrawn in place on a terminal; a line every few seconds otherwise."""

    def __init__(self, out: TextIO, scenario: Scenario):
        self.out = out
        self.total = scenario.warmup + scenario.duration
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
            f"{rate:9,.0f} msg/s  answered {answered:,}"
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
    """One bench run: owns every process it starts and stops them all at the end."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        pin: bool = True,
        keep: bool = False,
        profile: str | None = None,
        out: TextIO = sys.stderr,
    ):
        self.scenario = scenario
        self.proxy_cpus, self.generator_cpus = _split_cpus(scenario.workers, pin)
        self.keep = keep
        self.profile = profile
        self.out = out
        self.workdir: Path | None = None
        self.smps: subprocess.Popen[bytes] | None = None
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
            if self.smps is not None and self.smps.poll() is not None:
                raise SmpsError(
                    f"SMPS exited with status {self.smps.returncode} while {what}:\n"
                    + self._smps_output_tail()
                )
        raise SmpsError(f"timed out after {timeout:g} s while {what}")

    def _start_smps(self, config_text: str) -> int:
        assert self.workdir is not None
        config_path = self.workdir / "smps.yaml"
        config_path.write_text(config_text)
        env = dict(os.environ)
        tree = str(Path(smps.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (tree, env.get("PYTHONPATH")) if p)
        cpus = self.proxy_cpus
        self.smps = subprocess.Popen(
            [sys.executable, "-m", "smps", "run", "-c", str(config_path)],
            stdin=subprocess.DEVNULL,
            stdout=open(self.workdir / "smps.out", "wb"),  # noqa: SIM115 (the child owns it)
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None,
        )
        return self.smps.pid

    def _smps_output_tail(self, lines: int = 20) -> str:
        if self.workdir is None:
            return ""
        text = ""
        for name in ("smps.out", "smps.log"):
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
                config = bench_config(scenario, self.workdir, target.smsc_port, target.ne_port)
                target.pid = self._start_smps(config)
                self._note(f"started SMPS (pid {target.pid}) in {self.workdir}")
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
            smsc.send(("go", target.pid, ne_pid))
            measured = self._follow(smsc, target.pid)
            rss = ProcessTree(target.pid).peak_rss_bytes() if target.pid else None
            ne_conn.send(("stop",))
            self.ne_conn = None
            _, nes = self._expect(ne_conn, "collecting the NE counts", timeout=30.0)
            return build_report(scenario, measured, nes, rss, self._pinning(), target)
        finally:
            self._stop()

    def _follow(self, smsc: Connection, pid: int | None) -> dict[str, Any]:
        """Show progress until the SMSC process sends its result."""
        progress = Progress(self.out, self.scenario)
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

    def _pinning(self) -> dict[str, Any]:
        return {"smps_cpus": self.proxy_cpus, "generator_cpus": self.generator_cpus}

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
        if self.smps is not None and self.smps.poll() is None:
            self.smps.send_signal(signal.SIGTERM)  # graceful: drains, unbinds
            try:
                self.smps.wait(timeout=self.scenario.timeout + 10.0)
            except subprocess.TimeoutExpired:
                self.smps.kill()
                self.smps.wait()
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
            "--format",
            "speedscope" if path.endswith(".json") else "flamegraph",
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


# ---- the report ----------------------------------------------------------------------


def build_report(
    scenario: Scenario,
    measured: dict[str, Any],
    nes: list[dict[str, Any]],
    rss: int | None,
    pinning: dict[str, Any],
    target: Target,
) -> dict[str, Any]:
    interval = measured["interval_s"]
    decided = measured["answered"]
    whole = measured["whole_run"]
    proxy_cpu = measured["proxy_cpu_s"]
    generator_cpu = measured["smsc_cpu_s"] + measured["ne_cpu_s"]
    latency = {
        key: None if value is None else round(max(0.0, value - scenario.ne_latency * 1000), 3)
        for key, value in measured["latency_ms"].items()
    }
    statuses = measured["statuses"]
    return {
        "msgs_per_s": round(decided / interval, 1) if interval > 0 else 0.0,
        "cpu_us_per_msg": round(1e6 * proxy_cpu / decided, 2) if proxy_cpu and decided else None,
        "latency_ms": latency,
        "missing": whole["missing"],
        "duplicates": whole["duplicates"],
        "throttled": statuses.get(Status.RTHROTTLED, 0),
        "timeouts": measured["timeouts"],
        "rss_mb": round(rss / 2**20, 1) if rss is not None else None,
        "scenario": {**asdict(scenario), "rate": scenario.rate or "max"},
        "measured": {
            "interval_s": round(interval, 3),
            "decided": decided,
            "sent": measured["sent"],
            "statuses": {f"0x{k:02X}": v for k, v in sorted(statuses.items())},
            "proxy_cpu_s": None if proxy_cpu is None else round(proxy_cpu, 3),
            "proxy_cpu_share": None if proxy_cpu is None else round(proxy_cpu / interval, 3),
            "smsc_latency_ms": measured["latency_ms"],
            "latency_basis": "SMSC send-to-response time minus the fixed NE think time",
        },
        "generators": {
            "smsc_cpu_us_per_msg": _per_message(measured["smsc_cpu_s"], decided),
            "ne_cpu_us_per_msg": _per_message(measured["ne_cpu_s"], decided),
            "cpu_share": round(generator_cpu / interval, 3) if interval > 0 else None,
            "cpus": len(pinning["generator_cpus"] or ()) or None,
            "ne_copies": sum(ne["received"] for ne in nes),
        },
        "whole_run": {k: whole[k] for k in ("sent", "answered", "missing", "duplicates")},
        "pinning": pinning,
        "machine": _machine(),
        "smps_pid": target.pid,
    }


def _per_message(seconds: float, messages: int) -> float | None:
    return round(1e6 * seconds / messages, 2) if messages else None


def _machine() -> dict[str, Any]:
    model = ""
    try:
        with open("/proc/cpuinfo") as file:
            model = next(
                (line.split(":", 1)[1].strip() for line in file if line.startswith("model name")),
                "",
            )
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
    }


def format_report(report: dict[str, Any]) -> str:
    s = report["scenario"]
    m = report["measured"]
    g = report["generators"]
    lat = report["latency_ms"]
    ok = report["missing"] == 0 and report["duplicates"] == 0

    def number(value: Any, unit: str = "", fmt: str = ",.1f") -> str:
        return "n/a" if value is None else f"{value:{fmt}}{unit}"

    rows = [
        (
            "scenario",
            f"{s['nes']} NEs x {s['ne_binds']} binds, SMSC {s['smsc_binds']} binds, "
            f"{s['workers']} worker(s), rate {s['rate']}, block {s['block_ratio']:.0%}, "
            f"NE latency {s['ne_latency'] * 1000:g} ms, window {s['window']}/"
            f"{s['ne_window']}",
        ),
        (
            "measured",
            f"{m['interval_s']:.1f} s after {s['warmup']:g} s warm-up; "
            f"{m['decided']:,} originals decided",
        ),
        ("throughput", f"{number(report['msgs_per_s'])} msg/s"),
        (
            "proxy CPU",
            f"{number(report['cpu_us_per_msg'], ' µs/msg', '.2f')}  "
            f"({number(m['proxy_cpu_share'], '', '.0%')} of a core)",
        ),
        (
            "added latency",
            "n/a"
            if lat["p50"] is None
            else f"p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
            f"max {lat['max']:.3f} ms",
        ),
        ("peak RSS", number(report["rss_mb"], " MB")),
        ("throttled", report["throttled"]),
        ("timeouts", report["timeouts"]),
        ("missing", report["missing"]),
        ("duplicates", report["duplicates"]),
        (
            "generators",
            f"SMSC {number(g['smsc_cpu_us_per_msg'], '', '.2f')} + NEs "
            f"{number(g['ne_cpu_us_per_msg'], '', '.2f')} µs/msg, "
            f"{number(g['cpu_share'], '', '.0%')} of a core"
            + (f" (on {g['cpus']} CPU)" if g["cpus"] else " (not pinned)"),
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"smps bench: {'OK' if ok else 'FAILED (missing or duplicate responses)'}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    if g["cpus"] and g["cpu_share"] is not None and g["cpu_share"] > 0.9 * g["cpus"]:
        lines.append("  warning: the generators used their CPUs fully; they may be the bottleneck")
    return "\n".join(lines)


# ---- the command ---------------------------------------------------------------------


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `bench` to the top-level subcommands."""
    p = commands.add_parser(
        "bench",
        help="load run: throughput, added latency and proxy CPU per message",
        description="Start SMPS (or use a running one with --no-start), a simulated SMSC and "
        "simulated NEs as separate processes, drive the standard scenario (design.md §8) for a "
        "warm-up and a measured interval, and report messages/s, added latency, proxy CPU "
        "µs/message, peak RSS, throttled, timeouts, missing and duplicates. Exit 0 when no "
        "response was missing or duplicated.",
    )
    defaults = Scenario()
    p.add_argument(
        "--nes",
        type=sim_cli.positive_int,
        default=defaults.nes,
        help=f"NE accounts (default: {defaults.nes})",
    )
    p.add_argument(
        "--binds",
        type=sim_cli.positive_int,
        default=defaults.ne_binds,
        help=f"binds per NE account (default: {defaults.ne_binds})",
    )
    p.add_argument(
        "--smsc-binds",
        type=sim_cli.positive_int,
        default=defaults.smsc_binds,
        help=f"SMSC binds in all, spread over the workers (default: {defaults.smsc_binds})",
    )
    p.add_argument(
        "--workers",
        type=sim_cli.positive_int,
        default=defaults.workers,
        help="node.workers of the started SMPS (default: 1)",
    )
    p.add_argument(
        "--ne-latency",
        type=sim_cli.duration,
        default=defaults.ne_latency,
        metavar="DURATION",
        help="NE think time per copy, fixed (default: 0)",
    )
    p.add_argument(
        "--block-ratio",
        type=sim_cli.ratio,
        default=defaults.block_ratio,
        metavar="RATIO",
        help="share of copies each NE blocks (default: 0.05)",
    )
    p.add_argument(
        "--window",
        type=sim_cli.positive_int,
        default=defaults.window,
        help=f"originals outstanding per SMSC bind (default: {defaults.window})",
    )
    p.add_argument(
        "--ne-window",
        type=sim_cli.positive_int,
        default=defaults.ne_window,
        help=f"copies outstanding per NE bind (default: {defaults.ne_window})",
    )
    p.add_argument(
        "--rate",
        type=sim_cli.rate,
        default=None,
        help="originals per second, or 'max' for as fast as the window allows (default: max)",
    )
    p.add_argument(
        "--duration",
        type=sim_cli.positive_duration,
        default=defaults.duration,
        metavar="DURATION",
        help="measured interval (default: 30s)",
    )
    p.add_argument(
        "--warmup",
        type=sim_cli.duration,
        default=defaults.warmup,
        metavar="DURATION",
        help="load before measuring (default: 5s)",
    )
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON to FILE")
    p.add_argument(
        "--no-start",
        action="store_true",
        help="use an SMPS already running with -c FILE: its first smsc entry must "
        "point at 127.0.0.1:PORT bound as smps/secret (the simulator listens "
        "there) and the NEs bind as its first --nes accounts",
    )
    p.add_argument(
        "-c", "--config", metavar="FILE", help="with --no-start: the running SMPS's configuration"
    )
    p.add_argument(
        "--pid", type=int, help="with --no-start: SMPS's (master) pid, for CPU and memory figures"
    )
    p.add_argument(
        "--no-pin", action="store_true", help="do not pin SMPS and the generators to separate CPUs"
    )
    p.add_argument(
        "--profile",
        metavar="FILE",
        help="record SMPS with py-spy over the measured interval (FILE.svg "
        "flame graph, FILE.json speedscope)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the run's directory (config, log, database)"
    )
    p.set_defaults(handler=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    scenario = Scenario(
        nes=args.nes,
        ne_binds=args.binds,
        smsc_binds=args.smsc_binds,
        workers=args.workers,
        ne_latency=args.ne_latency,
        block_ratio=args.block_ratio,
        window=args.window,
        ne_window=args.ne_window,
        rate=args.rate,
        duration=args.duration,
        warmup=args.warmup,
    )
    existing = None
    if args.no_start:
        if not args.config:
            print("smps bench: --no-start needs -c FILE", file=sys.stderr)
            return 2
        existing = (load(args.config), args.pid)
    try:
        report = Run(scenario, pin=not args.no_pin, keep=args.keep, profile=args.profile).execute(
            existing
        )
    except SmpsError as exc:
        print(f"smps bench: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(report, file, indent=2)
            file.write("\n")
    return 0 if report["missing"] == 0 and report["duplicates"] == 0 else 1


def main(argv: list[str] | None = None) -> int:
    """`smps bench ...` on its own (the command register() adds)."""
    parser = argparse.ArgumentParser(prog="smps", description="SMPS load runs.")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
