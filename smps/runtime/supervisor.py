"""The worker processes: start them, hear what they say, restart one that dies,
and stop them all.

Workers are started with fork+exec (`python -m smps.runtime.worker`), never by
forking the master's running loop (docs/architecture.md §6); their socket pairs (control,
handoff, mesh) are made here and inherited as file descriptors. When a worker
restarts, new mesh sockets reach its live peers over their handoff channels.

A worker that dies is restarted after RESTART_INITIAL seconds, twice as long
each time it dies again soon (up to RESTART_MAX); one that ran STABLE_RUN
seconds is restarted without back-off.

The handshake over the control channel: a worker says ``ready`` once it serves,
``role_set`` once it applied the last role sent, and ``drained`` once it has
answered what it had in flight after ``stop``; after ``exit`` it unbinds and
ends within EXIT_GRACE seconds, or is killed. Whatever else a worker says
(stats, records, binds, placements, binds that count for the lockouts) goes to
the master's `on_message`.
"""

import asyncio
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path

import smps
from smps.proxy.campaigns import campaign_memory
from smps.runtime.control import ControlChannel, Message, handoff_pair, send_fd
from smps.runtime.stats import Counters, PlaneReport, add

log = logging.getLogger("smps.master")

RESTART_INITIAL = 0.5  # seconds before restarting a worker that died
RESTART_MAX = 30.0
STABLE_RUN = 10.0  # a worker that ran this long restarts without back-off
EXIT_GRACE = 3.0  # after "exit": time to unbind before a worker is killed
LAST_WORDS = 2.0  # after a worker ended: time to read its last records and stats

Spawn = Callable[[Coroutine], asyncio.Task]


class WorkerSlot:
    """One worker position; its process changes when it restarts."""

    def __init__(self, index: int):
        self.index = index
        self.process: asyncio.subprocess.Process | None = None
        self.control: ControlChannel | None = None
        self.handoff: socket.socket | None = None
        self.started = 0.0
        self.started_wall = 0.0
        self.ready = False
        self.drained = asyncio.Event()
        self.role_set = asyncio.Event()  # the worker applied the last role sent
        self.reader: asyncio.Task | None = None  # reads the worker's control messages
        self.restart_delay = RESTART_INITIAL
        self.restarts = 0
        self.report = PlaneReport()  # the current process's latest
        self.retired = Counters()  # what the earlier processes in this position counted
        self.rate = 0.0
        self._last_received: tuple[float, float] | None = None

    @property
    def reachable(self) -> bool:
        return self.handoff is not None

    def counters(self) -> Counters:
        """This position's counters: those of earlier processes plus the current one's."""
        return add(self.retired, self.report.counters)

    def on_stats(self, report: PlaneReport) -> None:
        self.report = report
        received = report.counters.originals_received
        now = time.monotonic()
        if self._last_received is not None:
            last, at = self._last_received
            self.rate = max(received - last, 0) / max(now - at, 1e-9)
        self._last_received = (received, now)

    def gone(self) -> None:
        self.retired = self.counters()  # the process ended: its last totals join the base
        self.report = PlaneReport()
        self.rate = 0.0
        self._last_received = None
        self.ready = False
        self.drained.set()
        self.role_set.set()


class Supervisor:
    """The `node.workers` worker slots and the processes in them.

    ``spawn`` starts a task the master cancels when it shuts down;
    ``on_start(slot)`` sends a new worker what it needs before it serves;
    ``on_message(slot, message)`` takes what a worker says beyond the handshake;
    ``on_gone(slot)`` forgets what a worker that ended held.
    """

    def __init__(
        self,
        count: int,
        log_socket: Path,
        *,
        spawn: Spawn,
        on_start: Callable[[WorkerSlot], None],
        on_message: Callable[[WorkerSlot, Message], None],
        on_gone: Callable[[WorkerSlot], None],
        velocity_fd: int,
    ):
        self.slots = [WorkerSlot(i) for i in range(count)]
        self._velocity_fd = velocity_fd  # the screening counters every worker shares
        # Each slot's campaign table (smps.proxy.campaigns), which the master reads.
        self.campaign_fds = [campaign_memory() for _ in self.slots]
        self.all_up = asyncio.Event()  # every worker said "ready" once
        self._log_socket = log_socket
        self._spawn = spawn
        self._on_start = on_start
        self._on_message = on_message
        self._on_gone = on_gone
        self._stopping = asyncio.Event()
        self._role_seq = 0
        self._watchers: list[asyncio.Task] = []

    def start(self) -> None:
        self._watchers = [self._spawn(self._supervise(slot)) for slot in self.slots]

    def live(self) -> list[WorkerSlot]:
        """The workers that can be sent something now."""
        return [s for s in self.slots if s.reachable and s.control is not None]

    def send_all(self, message: Message) -> None:
        for slot in self.live():
            slot.control.send(message)

    async def set_role(self, role: str, until: float | None, wait: float | None) -> None:
        """Send every worker its role (and the lease deadline `until`); with
        `wait`, return once each has applied it, or after `wait` seconds."""
        self._role_seq += 1
        live = self.live()
        for slot in live:
            slot.role_set.clear()
            slot.control.send({"t": "role", "role": role, "seq": self._role_seq, "until": until})
        if wait is None:
            return
        # asyncio.timeout rather than wait_for everywhere here: on Python 3.11
        # wait_for can drop a cancel that arrives as the awaited thing completes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait):
                await asyncio.gather(*(s.role_set.wait() for s in live))

    async def stop(self, drain_timeout: float) -> None:
        """No more restarts; every worker answers what it has in flight (for up
        to `drain_timeout`), then unbinds and exits; returns once their last
        records and stats are read."""
        self._stopping.set()
        live = self.live()
        for slot in live:
            slot.control.send({"t": "stop"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_timeout):
                await asyncio.gather(*(s.drained.wait() for s in live))
        self.send_all({"t": "exit"})
        processes = [s.process for s in self.slots if s.process and s.process.returncode is None]
        _done, pending = await asyncio.wait(
            [asyncio.ensure_future(p.wait()) for p in processes], timeout=EXIT_GRACE
        ) if processes else (set(), set())  # fmt: skip
        if pending:
            log.error("%d workers did not exit in time; killing them", len(pending))
            for process in processes:
                if process.returncode is None:
                    process.kill()
            await asyncio.gather(*(p.wait() for p in processes))
        # Each watcher reads its worker's last records and folds its counters.
        await asyncio.wait(self._watchers, timeout=LAST_WORDS + 1.0)

    async def _supervise(self, slot: WorkerSlot) -> None:
        while not self._stopping.is_set():
            await self._start(slot)
            code = await slot.process.wait()
            lived = time.monotonic() - slot.started
            await self._last_words(slot)
            self._gone(slot)
            if self._stopping.is_set():
                return
            slot.restarts += 1
            slot.restart_delay = (
                RESTART_INITIAL if lived >= STABLE_RUN else min(slot.restart_delay * 2, RESTART_MAX)
            )
            log.error(
                "worker %d (pid %d) died with %s after %.1f s; restarting in %.1f s",
                slot.index,
                slot.process.pid,
                _exit_text(code),
                lived,
                slot.restart_delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(slot.restart_delay):
                    await self._stopping.wait()

    async def _last_words(self, slot: WorkerSlot) -> None:
        """A worker that ended may have left records and stats in its control
        socket: read them to the end before forgetting the worker."""
        if slot.reader is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(LAST_WORDS):
                    await asyncio.shield(slot.reader)

    async def _start(self, slot: WorkerSlot) -> None:
        master_control, worker_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        master_handoff, worker_handoff = handoff_pair()
        slot.handoff = master_handoff
        slot.drained.clear()
        inherited = [worker_control, worker_handoff]
        velocity = os.dup(self._velocity_fd)  # inheritable, unlike the memfd
        campaigns = os.dup(self.campaign_fds[slot.index])
        mesh_args: list[str] = []
        for peer in self.slots:
            if peer is slot or not peer.reachable:
                continue
            here, there = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            inherited.append(here)
            mesh_args += ["--mesh", f"{peer.index}:{here.fileno()}"]
            with contextlib.suppress(OSError):
                send_fd(peer.handoff, {"t": "mesh", "peer": slot.index}, there.fileno())
            there.close()
        args = [
            sys.executable,
            "-m",
            "smps.runtime.worker",
            "--index",
            str(slot.index),
            "--control-fd",
            str(worker_control.fileno()),
            "--handoff-fd",
            str(worker_handoff.fileno()),
            "--log-socket",
            str(self._log_socket),
            "--velocity-fd",
            str(velocity),
            "--campaign-fd",
            str(campaigns),
            *mesh_args,
        ]
        env = dict(os.environ)
        package_root = str(Path(smps.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        try:
            slot.process = await asyncio.create_subprocess_exec(
                *args,
                pass_fds=[velocity, campaigns, *(s.fileno() for s in inherited)],
                stdin=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(velocity)
            os.close(campaigns)
            for sock in inherited:
                sock.close()
        slot.started = time.monotonic()
        slot.started_wall = time.time()
        slot.control = await ControlChannel.open(master_control)
        self._on_start(slot)
        slot.reader = self._spawn(self._read(slot, slot.control))

    async def _read(self, slot: WorkerSlot, control: ControlChannel) -> None:
        while (message := await control.receive()) is not None:
            if slot.control is not control:
                return
            kind = message["t"]
            if kind == "ready":
                slot.ready = True
                log.info("worker %d up (pid %d)", slot.index, message["pid"])
                if all(s.ready for s in self.slots):
                    self.all_up.set()
            elif kind == "drained":
                slot.drained.set()
            elif kind == "role_set":
                if message["seq"] == self._role_seq:
                    slot.role_set.set()
            else:
                self._on_message(slot, message)

    def _gone(self, slot: WorkerSlot) -> None:
        if slot.handoff is not None:
            slot.handoff.close()
            slot.handoff = None
        if slot.control is not None:
            self._spawn(slot.control.close())
        slot.gone()
        self._on_gone(slot)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"exit status {code}"
