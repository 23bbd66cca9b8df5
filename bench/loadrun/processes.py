"""The processes of a run as the measurements see them: SMPS's process tree read
from /proc (CPU time, memory), and the load generators, each spawned on its own
and talking to the driver over a pipe: the simulated SMSC, which also takes every
measurement, and the simulated NEs."""

import math
import os
import time
from multiprocessing.connection import Connection
from typing import Any

from bench.loadrun.scenario import SMSC_PASSWORD, SMSC_SYSTEM_ID, Scenario
from smps.errors import SmpsError

STARTUP_TIMEOUT = 60.0  # SMPS start, migrations and every bind
PROGRESS_EVERY = 0.5  # seconds between progress reports from the SMSC process
TAIL = 0.5  # load goes on this long after the measured interval, so it ends under load
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def _rows_written(state_dir: str) -> int | None:
    """Records SMPS's writer has committed (decisions and trace events: db_written in
    its status), asked over its control socket; None when it does not answer."""
    from smps.runtime.control_socket import request

    try:
        answer = request(state_dir, {"cmd": "status"}, timeout=2.0)
    except (OSError, ValueError):
        return None
    db = answer.get("db") if isinstance(answer, dict) else None
    return db.get("db_written") if isinstance(db, dict) else None


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
        whole_messages=scenario.concat,
    )
    conn.send(("listening", await sim.start("127.0.0.1", port)))
    try:
        await sim.wait_bound(bind_count, STARTUP_TIMEOUT)
        conn.send(("bound",))
        _go, smps_pid, ne_pid, state_dir = await _receive(conn)
        proxy = ProcessTree(smps_pid) if smps_pid else None
        loop = asyncio.get_running_loop()

        async def rows_written() -> int | None:
            """The master's db_written (control socket), None without one."""
            if state_dir is None or smps_pid is None:
                return None
            return await loop.run_in_executor(None, _rows_written, state_dir)

        nes = ProcessTree(ne_pid)
        traffic = Traffic(
            Mix(**scenario.mix),
            traced=scenario.traced_numbers(),
            traced_ratio=scenario.traced_ratio,
            long=scenario.long_messages,
        )

        if scenario.inflight:
            await _send_and_hold(conn, sim, scenario, traffic)
            return

        def sample() -> dict[str, Any]:
            return {
                "at": time.perf_counter(),
                "sent": sim.sent,
                "answered": sim.answered,
                "messages": sim.messages_answered,
                "statuses": dict(sim.statuses),
                "smsc_cpu": time.process_time(),
                "ne_cpu": nes.cpu_seconds(),
                "proxy_cpu": _cpu_or_none(proxy),
            }

        async def part_sample() -> dict[str, Any]:
            """CPU, answers and rows written, at the bounds of each --cpu-every part."""
            at, answered, cpu = time.perf_counter(), sim.answered, _cpu_or_none(proxy)
            return {"at": at, "answered": answered, "proxy_cpu": cpu, "rows": await rows_written()}

        started = time.perf_counter()
        run = asyncio.create_task(
            sim.run(scenario.rate, scenario.warmup + scenario.duration + TAIL, mix=traffic)
        )
        measured_from = started + scenario.warmup
        measured_to = measured_from + scenario.duration
        first = last = None
        rss: list[tuple[float, int]] = []  # (seconds into the interval, SMPS's RSS)
        parts: list[dict[str, Any]] = []  # part_sample() every cpu_every, first and last too
        next_rss = next_part = measured_from
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
                parts.append(await part_sample())
            if proxy is not None and first is not None and last is None and now >= next_rss:
                rss.append((now - first["at"], proxy.rss_bytes()))
                next_rss += scenario.rss_every
            if first is not None and last is None and now >= next_part:
                parts.append(await part_sample())
                next_part += scenario.cpu_every
            phase = "warmup" if first is None else "measuring" if last is None else "draining"
            conn.send(("progress", phase, now - started, sim.answered))
            upcoming = (
                measured_from
                if first is None
                else min(measured_to, next_rss, next_part)
                if last is None
                else now
            )
            await asyncio.wait([run], timeout=max(0.0, min(PROGRESS_EVERY, upcoming - now)) or 0.01)
        whole = run.result()
        if last is None:  # the run ended early (everything unbound)
            raise SmpsError(f"load run ended before the measured interval was over: {whole}")
        measured = _measured(first, last, histogram, whole, scenario)
        conn.send(("result", {**measured, "rss": rss, "parts": parts}))
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
        # A long message's parts make one whole message: one copy for each NE.
        conn.send(("sent", sim.sent, sum(sim.messages.values())))
        await _receive(conn)  # "measure": the driver has read SMPS's memory
        held = {key: sim.summary()[key] for key in _HELD_KEYS}
        conn.send(("result", {**held, "messages": sum(sim.messages.values())}))
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
        "messages": last["messages"] - first["messages"],
        "statuses": statuses,
        "latency_ms": histogram.summary_ms(),
        "timeouts": answers_at_least(histogram, scenario.timeout),
        "proxy_cpu_s": proxy_cpu,
        "proxy_cpu_split_s": proxy_split,
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
