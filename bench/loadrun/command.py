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
- missing and duplicate responses over the whole run, which must be 0;
- SMPS's RSS, sampled every `rss_every` seconds over the interval: its growth.

`--rate N%` makes a max run first and then one at that share of its msg/s;
`--nes`/`--workers` lists run one point after another. `--inflight N` is a
different run: N originals sent to NEs that never answer, with a verdict
timeout long enough that all are held, and SMPS's RSS before and after,
÷ N: the memory one original in flight costs.
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
INFLIGHT_RATE = 10_000.0  # originals/s of an in-flight run without --rate
INFLIGHT_NE_WINDOW = 10_000  # the largest ne_accounts[].window
INFLIGHT_TIMEOUT = 600.0  # policy.timeout of an in-flight run: nothing expires while measured
SETTLE = 1.0  # seconds SMPS is left alone before each in-flight RSS reading
COPIES_STALL = 10.0  # seconds without a new copy at the NEs before measuring anyway
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
    inflight: int = 0  # > 0: the in-flight memory run (send this many, NEs never answer)
    rss_every: float = 10.0  # seconds between RSS samples over the measured interval
    mix: dict[str, float] = field(
        default_factory=lambda: {"gsm7": 70.0, "ucs2": 20.0, "concat": 10.0, "receipt": 0.0}
    )

    @property
    def max_inflight(self) -> int:
        """flow.max_inflight per worker: the default, or room for every original of
        an in-flight run (whichever worker gets them) so that none is throttled."""
        return max(20_000, self.inflight + self.inflight // 10)

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
        "flow": {"max_inflight": scenario.max_inflight},
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
        return sum(self.cpu_split().values())

    def cpu_split(self) -> dict[str, float]:
        """User + system time of the root (SMPS's master) and of its descendants (the
        workers), apart: where an optimisation has to look."""
        ticks = {"master": 0, "workers": 0}
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/stat") as file:
                    fields = file.read().rpartition(")")[2].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            ticks["master" if pid == self.root else "workers"] += int(fields[11]) + int(fields[12])
        return {role: count / CLK_TCK for role, count in ticks.items()}

    def peak_rss_bytes(self) -> int:
        """Sum of each live process's peak resident set (VmHWM)."""
        return self._status_total("VmHWM:")

    def rss_bytes(self) -> int:
        """Sum of each live process's resident set now (VmRSS)."""
        return self._status_total("VmRSS:")

    def _status_total(self, key: str) -> int:
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as file:
                    for line in file:
                        if line.startswith(key):
                            total += int(line.split()[1]) * 1024
                            break
            except (FileNotFoundError, ProcessLookupError):
                continue
        return total


def _cpu_or_none(tree: ProcessTree | None) -> dict[str, float] | None:
    return tree.cpu_split() if tree is not None else None


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

        if scenario.inflight:
            await _send_and_hold(conn, sim, scenario, traffic)
            return

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
        rss: list[tuple[float, int]] = []  # (seconds into the interval, SMPS's RSS)
        next_rss = measured_from
        while not run.done():
            now = time.perf_counter()
            if first is None and now >= measured_from:
                first = sample()
                sim.latency = LatencyHistogram()
            elif first is not None and last is None and now >= measured_to:
                last = sample()
                histogram, sim.latency = sim.latency, LatencyHistogram()
                if proxy is not None:
                    rss.append((last["at"] - first["at"], proxy.rss_bytes()))
            if proxy is not None and first is not None and last is None and now >= next_rss:
                rss.append((now - first["at"], proxy.rss_bytes()))
                next_rss += scenario.rss_every
            phase = "warmup" if first is None else "measuring" if last is None else "draining"
            conn.send(("progress", phase, now - started, sim.answered))
            upcoming = (
                measured_from
                if first is None
                else min(measured_to, next_rss)
                if last is None
                else now
            )
            await asyncio.wait([run], timeout=max(0.0, min(PROGRESS_EVERY, upcoming - now)) or 0.01)
        whole = run.result()
        if last is None:  # the run ended early (everything unbound)
            raise SmpsError(f"load run ended before the measured interval was over: {whole}")
        conn.send(("result", {**_measured(first, last, histogram, whole, scenario), "rss": rss}))
    except Exception as exc:  # the driver reports it; a traceback here is lost
        conn.send(("error", f"simulated SMSC: {type(exc).__name__}: {exc}"))
    finally:
        await sim.stop()


async def _send_and_hold(conn: Connection, sim: Any, scenario: Scenario, traffic: Any) -> None:
    """The in-flight run's SMSC side: send `scenario.inflight` originals, say so,
    then hold them unanswered until the driver has measured; report the counts."""
    import asyncio

    run = asyncio.create_task(sim.run(scenario.rate, count=scenario.inflight, mix=traffic))
    started = time.perf_counter()
    try:
        while sim.sent < scenario.inflight and not run.done():
            conn.send(("progress", "sending", time.perf_counter() - started, sim.sent))
            await asyncio.wait([run], timeout=PROGRESS_EVERY)
        if run.done():  # it only ends early when every bind is gone
            raise SmpsError(f"sending ended after {sim.sent} originals: {run.result()}")
        conn.send(("sent", sim.sent))
        await _receive(conn)  # "measure": the driver has read SMPS's memory
        conn.send(("result", {key: sim.summary()[key] for key in _HELD_KEYS}))
    finally:
        sim.stop_run(drain=False)
        await asyncio.gather(run, return_exceptions=True)


_HELD_KEYS = ("sent", "answered", "missing", "duplicates", "statuses")


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
    proxy_cpu = proxy_split = None
    if last["proxy_cpu"] is not None:
        proxy_split = {role: t - first["proxy_cpu"][role] for role, t in last["proxy_cpu"].items()}
        proxy_cpu = sum(proxy_split.values())
    return {
        "interval_s": last["at"] - first["at"],
        "sent": last["sent"] - first["sent"],
        "answered": last["answered"] - first["answered"],
        "statuses": statuses,
        "latency_ms": histogram.summary_ms(),
        "timeouts": answers_at_least(histogram, scenario.timeout),
        "proxy_cpu_s": proxy_cpu,
        "proxy_cpu_split_s": proxy_split,
        "smsc_cpu_s": last["smsc_cpu"] - first["smsc_cpu"],
        "ne_cpu_s": last["ne_cpu"] - first["ne_cpu"],
        "whole_run": whole,
    }


def _split_text(report: dict[str, Any]) -> str:
    """'; master 4.1 + workers 9.9' µs/msg, when both are known."""
    split = report.get("cpu_us_per_msg_by_process") or {}
    if split.get("master") is None or split.get("workers") is None:
        return ""
    return f"; master {split['master']:.1f} + workers {split['workers']:.1f}"


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
            block_ratio=0.0 if scenario.inflight else scenario.block_ratio,
            silent_ratio=1.0 if scenario.inflight else 0.0,  # in-flight run: never answer
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
        while (await _receive(conn))[0] == "count":  # until "stop"
            conn.send(("count", sum(ne.received for ne in nes)))
        conn.send(("result", [ne.summary() for ne in nes]))
    except Exception as exc:
        conn.send(("error", f"simulated NEs: {type(exc).__name__}: {exc}"))
    finally:
        await asyncio.gather(*(ne.stop() for ne in nes))


# ---- the driver ----------------------------------------------------------------------


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
        self.pin = pin
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
            if scenario.inflight:
                return self._hold(smsc, ne_conn, ne_pid, target)
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
        smsc.send(("go", target.pid, ne_pid))
        progress = Progress(self.out, scenario.inflight / (scenario.rate or INFLIGHT_RATE), "sent")
        try:
            while True:
                message = self._expect(smsc, "sending the originals", timeout=60.0)
                if message[0] == "sent":
                    break
                progress.show(*message[1:])
        finally:
            progress.end()
        copies = self._wait_copies(ne_conn, scenario.nes * scenario.inflight)
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
        if self.smps is not None and self.smps.poll() is None:
            self.smps.send_signal(signal.SIGTERM)  # graceful: drains, unbinds
            try:
                self.smps.wait(timeout=min(self.scenario.timeout, 20.0) + 10.0)
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
    memory = _memory(measured["rss"], scenario.rss_every)
    return {
        "msgs_per_s": round(decided / interval, 1) if interval > 0 else 0.0,
        "cpu_us_per_msg": round(1e6 * proxy_cpu / decided, 2) if proxy_cpu and decided else None,
        "cpu_us_per_msg_by_process": {
            role: _per_message(seconds, decided)
            for role, seconds in (measured.get("proxy_cpu_split_s") or {}).items()
        },
        "latency_ms": latency,
        "missing": whole["missing"],
        "duplicates": whole["duplicates"],
        "throttled": statuses.get(Status.RTHROTTLED, 0),
        "timeouts": measured["timeouts"],
        "rss_mb": round(rss / 2**20, 1) if rss is not None else None,
        "rss_growth_mb": memory["rss_growth_mb"] if memory else None,
        "memory": memory,
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


def _memory(samples: list[tuple[float, int]], every: float) -> dict[str, Any] | None:
    """SMPS's RSS over the measured interval: first and last sample, growth, samples."""
    if len(samples) < 2:
        return None
    mb = [(max(0.0, round(at, 1)), round(rss / 2**20, 1)) for at, rss in samples]
    return {
        "rss_start_mb": mb[0][1],
        "rss_end_mb": mb[-1][1],
        "rss_growth_mb": round((samples[-1][1] - samples[0][1]) / 2**20, 1),
        # the first minutes include pools and caches filling; a leak shows here too
        "rss_growth_second_half_mb": round(
            (samples[-1][1] - samples[(len(samples) - 1) // 2][1]) / 2**20, 1
        ),
        "rss_max_mb": max(rss for _at, rss in mb),
        "every_s": every,
        "samples": mb,
    }


def build_inflight_report(
    scenario: Scenario,
    counts: dict[str, Any],
    copies: int,
    before: int,
    held: int,
    peak: int,
    nes: list[dict[str, Any]],
    pinning: dict[str, Any],
    target: Target,
) -> dict[str, Any]:
    """The in-flight run: what SMPS's resident memory grew by per original held."""
    in_flight = counts["sent"] - counts["answered"] - counts["missing"]
    return {
        "mode": "inflight",
        "inflight": {
            "originals": in_flight,
            "sent": counts["sent"],
            "answered": counts["answered"],
            "ne_copies": copies,
            "ne_copies_expected": scenario.nes * counts["sent"],
            "rss_before_bytes": before,
            "rss_held_bytes": held,
            "rss_before_mb": round(before / 2**20, 1),
            "rss_held_mb": round(held / 2**20, 1),
            "bytes_per_original": round((held - before) / in_flight) if in_flight > 0 else None,
            "target_bytes": 2048,
        },
        "rss_mb": round(peak / 2**20, 1),
        "duplicates": counts["duplicates"],
        "scenario": {**asdict(scenario), "rate": scenario.rate or "max"},
        "generators": {"ne_summaries": nes},
        "pinning": pinning,
        "machine": _machine(),
        "smps_pid": target.pid,
    }


def format_inflight_report(report: dict[str, Any]) -> str:
    s = report["scenario"]
    i = report["inflight"]
    per = i["bytes_per_original"]
    rows = [
        (
            "scenario",
            f"{s['nes']} NEs x {s['ne_binds']} binds (window {s['ne_window']}, never answering), "
            f"SMSC {s['smsc_binds']} binds (window {s['window']}), {s['workers']} worker(s), "
            f"policy.timeout {s['timeout']:g} s",
        ),
        (
            "in flight",
            f"{i['originals']:,} originals ({i['answered']:,} answered of {i['sent']:,} sent); "
            f"NEs hold {i['ne_copies']:,} of {i['ne_copies_expected']:,} copies",
        ),
        ("RSS before", f"{i['rss_before_mb']:,.1f} MB"),
        ("RSS held", f"{i['rss_held_mb']:,.1f} MB"),
        (
            "per original",
            "n/a"
            if per is None
            else f"{per:,} bytes (target <= {i['target_bytes']:,}: "
            f"{'met' if per <= i['target_bytes'] else 'NOT met'})",
        ),
        ("peak RSS", f"{report['rss_mb']:,.1f} MB"),
        ("code", f"commit {report['machine']['commit']}, {report['machine']['date']}"),
    ]
    lines = [f"smps bench --inflight: {'OK' if _ok(report) else 'INCOMPLETE (see counts)'}"]
    width = max(len(name) for name, _ in rows)
    return "\n".join(lines + [f"  {name:<{width}}  {value}" for name, value in rows])


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
        "commit": _commit(),
        "loadavg_1m": round(os.getloadavg()[0], 2),  # others' load makes msg/s noisy
    }


def _commit() -> str | None:
    """The source tree's commit, with -dirty when it has changes: which code ran."""
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(smps.__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


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
            f"({number(m['proxy_cpu_share'], '', '.0%')} of a core{_split_text(report)})",
        ),
        (
            "added latency",
            "n/a"
            if lat["p50"] is None
            else f"p50 {lat['p50']:.3f}  p90 {lat['p90']:.3f}  p99 {lat['p99']:.3f}  "
            f"max {lat['max']:.3f} ms",
        ),
        ("peak RSS", number(report["rss_mb"], " MB")),
        ("RSS over run", _memory_row(report["memory"])),
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
        (
            "code",
            f"commit {report['machine']['commit']}, {report['machine']['date']}, load "
            f"average {report['machine']['loadavg_1m']:g} on {report['machine']['cpus']} CPUs",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"smps bench: {'OK' if ok else 'FAILED (missing or duplicate responses)'}"]
    lines += [f"  {name:<{width}}  {value}" for name, value in rows]
    if g["cpus"] and g["cpu_share"] is not None and g["cpu_share"] > 0.9 * g["cpus"]:
        lines.append("  warning: the generators used their CPUs fully; they may be the bottleneck")
    if report["pinning"].get("shared"):
        lines.append(f"  note: {report['pinning']['shared']}")
    return "\n".join(lines)


def _memory_row(memory: dict[str, Any] | None) -> str:
    if memory is None:
        return "n/a"
    return (
        f"{memory['rss_start_mb']:,.1f} -> {memory['rss_end_mb']:,.1f} MB "
        f"(growth {memory['rss_growth_mb']:+,.1f} MB, in the second half "
        f"{memory['rss_growth_second_half_mb']:+,.1f}; max {memory['rss_max_mb']:,.1f}; "
        f"{len(memory['samples'])} samples every {memory['every_s']:g} s)"
    )


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
        type=int_list,
        default=[defaults.nes],
        metavar="N[,N...]",
        help=f"NE accounts; a list (1,3,6,10) runs one after another and ends with a table "
        f"(default: {defaults.nes})",
    )
    p.add_argument(
        "--binds",
        type=sim_cli.positive_int,
        default=None,
        help=f"binds per NE account (default: {defaults.ne_binds}; with --inflight enough "
        "for every copy to fit the NE windows)",
    )
    p.add_argument(
        "--smsc-binds",
        type=sim_cli.positive_int,
        default=defaults.smsc_binds,
        help=f"SMSC binds in all, spread over the workers (default: {defaults.smsc_binds})",
    )
    p.add_argument(
        "--workers",
        type=int_list,
        default=[defaults.workers],
        metavar="N[,N...]",
        help="node.workers of the started SMPS; a list (1,2) runs each (default: 1)",
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
        default=None,
        help=f"originals outstanding per SMSC bind (default: {defaults.window}; with "
        "--inflight room for all of them)",
    )
    p.add_argument(
        "--ne-window",
        type=sim_cli.positive_int,
        default=None,
        help=f"copies outstanding per NE bind (default: {defaults.ne_window}; with "
        f"--inflight {INFLIGHT_NE_WINDOW})",
    )
    p.add_argument(
        "--rate",
        type=bench_rate,
        default=None,
        help="originals per second; 'max' for as fast as the window allows; or a share "
        "such as '50%%': a max run first, then one at that share of its msg/s "
        f"(default: max; with --inflight {INFLIGHT_RATE:g})",
    )
    p.add_argument(
        "--inflight",
        type=sim_cli.positive_int,
        metavar="N",
        help="memory per original in flight instead of a timed run: send N originals to "
        f"NEs that never answer (policy.timeout {INFLIGHT_TIMEOUT:g} s) and report SMPS's "
        "RSS before and with all N held, and the difference / N",
    )
    p.add_argument(
        "--rss-every",
        type=sim_cli.positive_duration,
        default=defaults.rss_every,
        metavar="DURATION",
        help="sample SMPS's RSS this often over the measured interval (default: 10s)",
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
        help="record SMPS and its workers with py-spy over the measured interval "
        "(FILE.svg flame graph, FILE.json speedscope, FILE.txt collapsed stacks)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the run's directory (config, log, database)"
    )
    p.set_defaults(handler=cmd_bench)


def _int_list(value: str) -> list[int]:
    numbers = [int(n) for n in value.split(",") if n.strip()]
    if not numbers or min(numbers) < 1:
        raise ValueError(f"expected whole numbers >= 1, comma-separated, not {value!r}")
    return numbers


@dataclass(frozen=True)
class RateShare:
    """--rate 50%: that share of the msg/s a max run of the same point reached."""

    share: float


def _bench_rate(value: str) -> float | RateShare | None:
    text = value.strip()
    if not text.endswith("%"):
        return sim_cli.parse_rate(text)
    share = float(text[:-1]) / 100
    if not 0.0 < share <= 1.0:
        raise ValueError(f"a share of the maximum rate is above 0% and at most 100%, not {value!r}")
    return RateShare(share)


int_list = sim_cli.option_type(_int_list)
bench_rate = sim_cli.option_type(_bench_rate)


def scenario_of(args: argparse.Namespace, nes: int, workers: int, rate: float | None) -> Scenario:
    """The run's scenario from the options; an in-flight run sizes the windows so
    that every original and copy fits, and times nothing out while it holds them."""
    n = args.inflight or 0
    defaults = Scenario()
    ne_window = args.ne_window or (INFLIGHT_NE_WINDOW if n else defaults.ne_window)
    return Scenario(
        nes=nes,
        ne_binds=args.binds or (-(-n // ne_window) + 1 if n else defaults.ne_binds),
        smsc_binds=args.smsc_binds,
        workers=workers,
        ne_latency=args.ne_latency,
        block_ratio=args.block_ratio,
        window=args.window or (-(-n // args.smsc_binds) + 1 if n else defaults.window),
        ne_window=ne_window,
        rate=rate or (INFLIGHT_RATE if n else None),
        duration=args.duration,
        warmup=args.warmup,
        timeout=INFLIGHT_TIMEOUT if n else defaults.timeout,
        inflight=n,
        rss_every=args.rss_every,
    )


def _ok(report: dict[str, Any]) -> bool:
    """A timed run: no response missing or duplicated. An in-flight run: every
    original held unanswered, every copy at the NEs."""
    if report.get("mode") == "inflight":
        i = report["inflight"]
        return (
            i["bytes_per_original"] is not None
            and i["answered"] == 0
            and i["ne_copies"] >= i["ne_copies_expected"]
        )
    return report["missing"] == 0 and report["duplicates"] == 0


def _run_point(
    args: argparse.Namespace, nes: int, workers: int, existing: tuple[Config, int | None] | None
) -> dict[str, Any]:
    """One point of the command: a run, or with --rate N% a max run and then one at N %."""

    def run(rate: float | None) -> dict[str, Any]:
        report = Run(
            scenario_of(args, nes, workers, rate),
            pin=not args.no_pin,
            keep=args.keep,
            profile=args.profile,
        ).execute(existing)
        print(format_inflight_report(report) if args.inflight else format_report(report))
        return report

    if not isinstance(args.rate, RateShare):
        return run(args.rate)
    top = run(None)
    if not _ok(top) or not top["msgs_per_s"]:
        return top
    report = run(round(args.rate.share * top["msgs_per_s"], 1))
    report["rate_share"] = args.rate.share
    report["max_run"] = {
        key: top[key]
        for key in ("msgs_per_s", "cpu_us_per_msg", "latency_ms", "missing", "duplicates")
    }
    report["ok"] = _ok(top) and _ok(report)
    return report


def format_sweep(reports: list[dict[str, Any]]) -> str:
    """One line per point of a --nes/--workers list."""
    lines = [
        "smps bench sweep:",
        "  NEs  workers      msg/s  CPU µs/msg  p50 / p99 ms       RSS MB  missing/dup",
    ]
    for r in reports:
        s, lat = r["scenario"], r["latency_ms"]
        latency = "n/a" if lat["p50"] is None else f"{lat['p50']:.1f} / {lat['p99']:.1f}"
        cpu = "n/a" if r["cpu_us_per_msg"] is None else f"{r['cpu_us_per_msg']:.1f}"
        lines.append(
            f"  {s['nes']:>3}  {s['workers']:>7}  {r['msgs_per_s']:>9,.0f}  {cpu:>10}  "
            f"{latency:<17} {r['rss_mb'] or 0:>6.1f}  {r['missing']}/{r['duplicates']}"
            + (" (shared cores)" if r["pinning"].get("shared") else "")
        )
    return "\n".join(lines)


def cmd_bench(args: argparse.Namespace) -> int:
    points = [(nes, workers) for workers in args.workers for nes in args.nes]
    existing = None
    if args.no_start:
        if not args.config:
            print("smps bench: --no-start needs -c FILE", file=sys.stderr)
            return 2
        if len(points) > 1:
            print("smps bench: --no-start runs one point, not a list", file=sys.stderr)
            return 2
        existing = (load(args.config), args.pid)
    if args.inflight and isinstance(args.rate, RateShare):
        print("smps bench: --inflight takes a rate in originals/s, not a share", file=sys.stderr)
        return 2
    reports = []
    try:
        for nes, workers in points:
            reports.append(_run_point(args, nes, workers, existing))
    except SmpsError as exc:
        print(f"smps bench: {exc}", file=sys.stderr)
        return 1
    if len(reports) > 1 and not args.inflight:
        print(format_sweep(reports))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(reports[0] if len(reports) == 1 else {"sweep": reports}, file, indent=2)
            file.write("\n")
    return 0 if all(r.get("ok", _ok(r)) for r in reports) else 1


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
