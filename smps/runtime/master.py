"""The master process: supervises `node.workers` worker processes and owns
everything that is not the data plane.

It opens the database (migrations at start; a schema newer than this SMPS
knows is refused), runs the one batched writer that the workers' decision and
trace records go to, serves HTTP (/health, /metrics, the REST API /api/v1),
the control socket `{state_dir}/smps.sock` (`smps status`, reload, kick,
`smps ha notify|check`), is the only writer of the log, places NE connections on workers
(balanced placement), keeps the node's bind lockouts (the workers report failed
binds; a pair locked out is pushed to every worker), and restarts a worker that
dies, with back-off while it keeps dying.

The live configuration (the file's, plus the accounts, SMSC connections,
routes, policy and trace rules changed through the API) is loaded from the
database at start and again after every committed API change (and SIGHUP), and
pushed to every worker; a worker rebinds only to the SMSCs whose connection
changed. SMSC binds stay per worker: each worker binds each SMSC's `binds`.

With `server.placement: reuseport` the workers listen themselves on one
SO_REUSEPORT port; operators should set `net.ipv4.tcp_migrate_req=1`, or the
connections queued on a worker's listener are reset when that worker stops.

Workers are started with fork+exec (`python -m smps.runtime.worker`), never by
forking this process's running loop (design.md 4.1); their socket pairs (control,
handoff, mesh) are made here and inherited as file descriptors. When a worker
restarts, new mesh sockets reach its live peers over their handoff channels.

Stopping (SIGTERM/SIGINT): no more NE connections; every worker stops reading
originals and answers what it has in flight (forwarded copies included, as all
NE binds are still up); once all have drained they unbind and exit, and their
last records reach the writer before it closes. SIGHUP re-reads the
configuration file and applies it to every worker live.

The role (active, standby, fault) is decided by smps.ha.HaController, from
`ha.mode`, keepalived's state and the database lease; the master applies it
(`_on_role`): a standby or faulty node closes its NE listener and its workers
drain, then unbind from the SMSCs and the NEs; an active node listens and its
workers bind.
"""

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec

import smps
from smps import __version__
from smps.config import Config
from smps.errors import ConfigError, FramingError
from smps.ha import DbLease, HaController, Role, holder_id
from smps.log import LogWriter
from smps.metrics import CallbackCollector, make_registry
from smps.proxy.trace_hub import TraceHub
from smps.runtime import heap
from smps.runtime.control import (
    Account,
    ControlChannel,
    Message,
    config_message,
    handoff_pair,
    send_fd,
)
from smps.runtime.metrics import WorkerTotals, collect, key
from smps.runtime.placement import Placement, answer_framing_error, peek_bind
from smps.runtime.records import RECORDS, decode_records, trace_event
from smps.runtime.ui_view import MasterView
from smps.smpp.bind_guard import BindLockout, RefusalLog, UnboundLimit
from smps.store import live_config, repo
from smps.store.db import SchemaError, Store
from smps.store.startup import open_database
from smps.store.writer import DecisionWriter
from smps.web.api import add_api_routes
from smps.web.http import HttpServer, degraded, make_app
from smps.web.node import kick
from smps.web.ui import TRACE_SETTINGS, add_ui_routes

log = logging.getLogger("smps.master")

RESTART_INITIAL = 0.5  # seconds before restarting a worker that died
RESTART_MAX = 30.0
STABLE_RUN = 10.0  # a worker that ran this long restarts without back-off
EXIT_GRACE = 3.0  # after "exit": time to unbind before a worker is killed
LAST_WORDS = 2.0  # after a worker ended: time to read its last records and stats
RESTART_SECTIONS = ("node", "server", "web", "log")  # not applied live
CONTROL_SOCKET = "smps.sock"
LOG_SOCKET = "smps-log.sock"


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
        self.report: dict[str, Any] = {}
        self.totals = WorkerTotals()
        self.rate = 0.0
        self._last_received: tuple[float, float] | None = None

    @property
    def reachable(self) -> bool:
        return self.handoff is not None

    def on_stats(self, report: dict[str, Any]) -> None:
        self.report = report
        self.totals.update(report["counters"], report["gauges"])
        received = report["counters"].get("smps_originals_received_total", 0)
        now = time.monotonic()
        if self._last_received is not None:
            last, at = self._last_received
            self.rate = max(received - last, 0) / max(now - at, 1e-9)
        self._last_received = (received, now)

    def gone(self) -> None:
        self.totals.retire()
        self.report = {}
        self.rate = 0.0
        self._last_received = None
        self.ready = False
        self.drained.set()
        self.role_set.set()


class Master:
    def __init__(self, config: Config, config_path: str | None = None):
        self.config = config
        # What the workers run: the file's config with the database's SMSCs,
        # routes, policy and trace rules, and the NE accounts (file and API made).
        self.live_config = config
        self.accounts: list[Account] = list(config.ne_accounts)
        self.config_path = config_path
        self.started = time.monotonic()
        self.role = "standby"  # until the HA controller, made once the database is open, decides
        self.ha: HaController | None = None
        self._role_seq = 0
        self.state_dir = Path(config.node.state_dir)
        self.slots = [WorkerSlot(i) for i in range(config.node.worker_count)]
        self.placement = Placement(len(self.slots))
        # The node's bind lockouts, fed by the workers' reports and pushed back to them.
        self.lockout = BindLockout(config.server.auth_lockout_failures, config.server.auth_lockout)
        # The NE connections being peeked at (balanced placement), and what went wrong there.
        self.unbound = UnboundLimit(
            config.server.max_unbound_per_address, config.server.max_unbound
        )
        self.peek_errors = {"first_pdu_timeout": 0, "framing": 0}
        self._dropped = RefusalLog(log, "NE connections refused before their first PDU")
        self.registry = make_registry()
        self.registry.register(CallbackCollector(self._collect))
        self.http_port: int | None = None
        self.smpp_port: int | None = None
        self.store: Store | None = None
        self.writer: DecisionWriter | None = None
        self.trace_hub = TraceHub()  # live trace events for /api/v1/traces/stream
        self._listener: socket.socket | None = None
        self._accepting: asyncio.Task | None = None
        self._stopping = False
        self._stop = asyncio.Event()
        self._all_up = asyncio.Event()
        self._config_lock = asyncio.Lock()  # pushes go out in the order they were loaded
        self._tasks: set[asyncio.Task] = set()
        self._supervisors: list[asyncio.Task] = []
        self._log_writer = LogWriter()

    # ---- public -------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    async def reload(self) -> str:
        """Re-read the configuration file, store its entities, and apply the
        live configuration to every worker."""
        if self.config_path is None:
            return "no configuration file to reload"
        from smps import config as config_module

        try:
            new = config_module.load(self.config_path)
        except ConfigError as exc:
            log.error("reload refused: %s", exc)
            return f"refused: {exc}"
        running = {}
        for section in RESTART_SECTIONS:
            if getattr(new, section) != getattr(self.config, section):
                log.warning("reload: %s changed; that takes a restart", section)
            running[section] = getattr(self.config, section)
        self.config = msgspec.structs.replace(new, **running)
        await repo.sync_file_config(self.store, self.config)
        await self.apply_live_config()
        return "applied"

    async def apply_live_config(self) -> None:
        """Load the live configuration from the database and push it to every worker."""
        async with self._config_lock:
            self.live_config, self.accounts = await live_config.load(self.store, self.config)
            for slot in self._live():
                self._send_config(slot)
        log.info("configuration applied to %d workers", len(self._live()))

    async def _on_config_change(self, entity: str, key: str) -> None:
        log.info("configuration changed through the API: %s %s; applying live", entity, key)
        await self.apply_live_config()

    def kick(self, account: str) -> None:
        for slot in self._live():
            slot.control.send({"t": "kick", "account": account})

    async def set_role(self, role: str) -> None:
        """active: SMSC binds and NE binds; standby and fault: neither.

        Going active returns at once (the workers bind in the background).
        Leaving active returns once every worker has answered what it had in
        flight and unbound, or after the verdict timeout and a little more.
        """
        if role not in ("active", "standby", "fault") or role == self.role:
            return
        self.role = role
        self._role_seq += 1
        live = self._live()
        until = self.ha.serve_until if self.ha is not None else None
        for slot in live:
            slot.role_set.clear()
            slot.control.send({"t": "role", "role": role, "seq": self._role_seq, "until": until})
        if role == "active":
            return
        # asyncio.timeout rather than wait_for everywhere here: on Python 3.11
        # wait_for can drop a cancel that arrives as the awaited thing completes.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.policy.timeout + 2.0):
                await asyncio.gather(*(s.role_set.wait() for s in live))

    async def _on_role(self, role: Role, reason: str) -> None:
        """The HA controller's callback: make the data plane match ``role``."""
        if self._stopping:
            return
        log.info("role %s: %s", role, reason)
        if role == Role.ACTIVE:
            # Decisions from now on carry the lease epoch this node serves under (#11).
            await self.writer.set_epoch(self.ha.epoch)
            self._open_ne_listener()
            await self.set_role("active")
        else:
            if self.config.server.placement == "balanced":
                await self._close_ne_listener()  # NEs reconnect to the VIP, on the other node
            await self.set_role(str(role))
        log.info("role %s applied", role)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """/health: 503 while a worker is down, in FAULT, or keepalived's MASTER
        waits for the lease; "degraded" (200, 503 under ``web.health_strict``) while
        an SMSC is down or the database writer fails; a healthy standby is 200."""
        ok, body = self._workers_health()
        body["role"] = self.role
        ok, body = degraded(ok, body, self.degradations(), strict=self.config.web.health_strict)
        if self.ha is not None:
            snapshot = self.ha.snapshot()
            body["ha"] = snapshot
            if snapshot["role"] == Role.FAULT:
                ok, body["status"] = False, "fault"
                body["reason"] = f"HA fault: {snapshot['reason']}"
                body["reasons"].insert(0, body["reason"])
            elif snapshot.get("lease", {}).get("waiting"):
                ok, body["status"] = False, "waiting"
                body["reason"] = snapshot["reason"]
                body["reasons"].insert(0, body["reason"])
        return ok, body

    def _workers_health(self) -> tuple[bool, dict[str, Any]]:
        """Whether every worker runs: the HA check's part (independent of the role)."""
        up = sum(1 for s in self.slots if s.ready)
        body = {
            "status": "ok" if up == len(self.slots) else "degraded",
            "node": self.config.node.name,
            "version": __version__,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "workers": {"up": up, "configured": len(self.slots)},
            "binds": self._ne_binds(),
        }
        if up < len(self.slots):
            body["reason"] = f"{len(self.slots) - up} of {len(self.slots)} workers not running"
            body["reasons"] = [body["reason"]]
        return up == len(self.slots), body

    def degradations(self) -> list[str]:
        """What the node serves worse for now: SMSC binds down for longer than their
        back-off, as the workers last reported them, and database writes failing."""
        reasons = [
            f"worker {slot.index}: {reason}"
            for slot in self.slots
            for reason in slot.report.get("smsc_down", ())
        ]
        if self.writer is not None and (failing := self.writer.failing()):
            reasons.append(failing)
        return reasons

    def status(self) -> dict[str, Any]:
        now = time.time()
        workers = []
        smsc: dict[str, int] = {}
        for slot in self.slots:
            report = slot.report
            for name, count in report.get("smsc_binds", {}).items():
                smsc[name] = smsc.get(name, 0) + count
            workers.append(
                {
                    "index": slot.index,
                    "pid": slot.process.pid if slot.ready else None,
                    "up": slot.ready,
                    "uptime_s": round(now - slot.started_wall, 1) if slot.ready else None,
                    "restarts": slot.restarts,
                    "ne_binds": self.placement.bound[slot.index],
                    "smsc_binds": report.get("smsc_binds", {}),
                    "in_flight": report.get("in_flight", 0),
                    "received_per_s": round(slot.rate, 1),
                }
            )
        return {
            "node": self.config.node.name,
            "version": __version__,
            "role": self.role,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started, 1),
            "placement": self.config.server.placement,
            "smpp_port": self.smpp_port,
            "http_port": self.http_port,
            "workers": workers,
            "smsc_binds": smsc,
            "ne_binds": self._ne_binds(),
            "in_flight": sum(w["in_flight"] for w in workers),
            "ha": self.ha.snapshot() if self.ha is not None else None,
        }

    # ---- run ----------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        loop.add_signal_handler(signal.SIGHUP, lambda: self._spawn(self.reload()))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        await self._log_writer.start(str(self.state_dir / LOG_SOCKET))
        try:
            async with AsyncExitStack() as stack:
                await self._start_node(stack)
                await _first(self._all_up.wait(), self._stop.wait())
                if not self._stop.is_set():
                    log.info(
                        "SMPS %s ready: node=%s role=%s workers=%d placement=%s smpp=%s:%d",
                        __version__,
                        self.config.node.name,
                        self.role,
                        len(self.slots),
                        self.config.server.placement,
                        self.config.server.listen[0],
                        self.smpp_port,
                    )
                    heap.settle()
                await self._stop.wait()
                log.info("stopping")
                await self._stop_workers()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("stopped")
            await self._log_writer.close()
        return 0

    async def _start_node(self, stack: AsyncExitStack) -> None:
        """Database and writer, HTTP, the NE listener, the workers and the
        control socket, in that order; `stack` undoes them in reverse."""
        self.store, self.writer = await open_database(self.config, stack)
        self.registry.register(self.writer.collector())
        self._make_ha()
        stack.push_async_callback(self.ha.stop)  # gives the lease back once nothing is served
        app = make_app(
            self.health,
            self.registry,
            metrics_auth=self.store if self.config.web.metrics_auth else None,
        )
        view = MasterView(self)
        add_api_routes(
            app,
            self.store,
            trace_hub=self.trace_hub,
            node=view,
            country_code=self.config.trace.country_code,
        )
        add_ui_routes(app, self.store, view)
        app[TRACE_SETTINGS] = lambda: self.config.trace  # live: a reload may change it
        http = HttpServer(app, tls=self.config.web.tls)
        host, port = self.config.web.listen
        self.http_port = await http.start(host, port)
        stack.push_async_callback(http.close)
        log.info("HTTP listening on %s:%d (admin UI, /health, /metrics, /api/v1)", host,
                 self.http_port)  # fmt: skip
        self._bind_ne_port()
        stack.push_async_callback(self._close_ne_listener)
        await self.apply_live_config()
        self.store.listeners.append(self._on_config_change)
        stack.push_async_callback(self._cancel_tasks)
        self._start_workers()
        control_path = self.state_dir / CONTROL_SOCKET
        control = await asyncio.start_unix_server(self._serve_control, str(control_path))
        stack.callback(_close_unix_server, control, control_path)
        self._spawn(self._report_stats())
        await self.ha.start()  # applies the first role, then follows keepalived and the lease

    def _make_ha(self) -> None:
        ha = self.config.ha
        lease = None
        if ha.lease.enabled:
            lease = DbLease(self.store.engine, holder_id(self.config.node.name), ha.lease.ttl)
        self.ha = HaController(
            ha, self._on_role, health=self._workers_health, lease=lease, on_lease=self._send_lease
        )
        self.role = str(self.ha.role)  # workers start in it; the first on_role confirms it
        self.registry.register(CallbackCollector(self.ha.metrics))

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _close_ne_listener(self) -> None:
        """No NE connections any more: connecting gets a reset."""
        if self._accepting is not None:
            self._accepting.cancel()
            await asyncio.gather(self._accepting, return_exceptions=True)
            self._accepting = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _bind_ne_port(self) -> None:
        """Bind the NE port without listening: it is reserved (fixed once, when
        configured as 0), and a bound socket that never listens gets no
        connections. With reuseport this is all the master does: the workers
        listen on the same port."""
        if self._listener is not None:
            return
        host, port = self.config.server.listen
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self.config.server.placement == "reuseport":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.setblocking(False)
        self._listener = sock
        self.smpp_port = sock.getsockname()[1]
        if port == 0:
            server = msgspec.structs.replace(self.config.server, listen=(host, self.smpp_port))
            self.config = msgspec.structs.replace(self.config, server=server)

    def _open_ne_listener(self) -> None:
        """Active, balanced placement: the master accepts NE connections and places them."""
        self._bind_ne_port()
        if self.config.server.placement == "balanced" and self._accepting is None:
            self._listener.listen(1024)
            self._accepting = self._spawn(self._accept())

    # ---- workers ------------------------------------------------------------------

    def _start_workers(self) -> None:
        self._supervisors = [self._spawn(self._supervise(slot)) for slot in self.slots]

    async def _supervise(self, slot: WorkerSlot) -> None:
        while not self._stopping:
            await self._start(slot)
            code = await slot.process.wait()
            lived = time.monotonic() - slot.started
            await self._last_words(slot)
            self._worker_gone(slot)
            if self._stopping:
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
                    await self._stop.wait()

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
            str(self.state_dir / LOG_SOCKET),
            *mesh_args,
        ]
        env = dict(os.environ)
        package_root = str(Path(smps.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        try:
            slot.process = await asyncio.create_subprocess_exec(
                *args, pass_fds=[s.fileno() for s in inherited], stdin=subprocess.DEVNULL, env=env
            )
        finally:
            for sock in inherited:
                sock.close()
        slot.started = time.monotonic()
        slot.started_wall = time.time()
        slot.control = await ControlChannel.open(master_control)
        self._send_config(slot)
        if locked := self.lockout.active():
            slot.control.send({"t": "lockouts", "locked": locked})
        if self.ha is not None and self.ha.serve_until is not None:
            slot.control.send({"t": "lease", "until": self.ha.serve_until})
        slot.reader = self._spawn(self._read_worker(slot, slot.control))

    def _send_lease(self, until: float) -> None:
        """Every renewal moves the deadline by which the workers stand down by themselves."""
        for slot in self._live():
            slot.control.send({"t": "lease", "until": until})

    def _send_config(self, slot: WorkerSlot) -> None:
        slot.control.send(config_message(self.live_config, self.accounts, self.role))

    def _worker_gone(self, slot: WorkerSlot) -> None:
        if slot.handoff is not None:
            slot.handoff.close()
            slot.handoff = None
        if slot.control is not None:
            self._spawn(slot.control.close())
        self.placement.forget(slot.index)
        if self.writer is not None:
            self.writer.forget_source(slot.index)
        slot.gone()
        self._share_counts()

    async def _read_worker(self, slot: WorkerSlot, control: ControlChannel) -> None:
        while (message := await control.receive()) is not None:
            if slot.control is not control:
                return
            self._on_worker_message(slot, message)

    def _on_worker_message(self, slot: WorkerSlot, message: Message) -> None:
        kind = message["t"]
        if kind == RECORDS:
            self._take_records(message)
        elif kind == "stats":
            slot.on_stats(message)
            if self.writer is not None:
                self.writer.add_totals(slot.index, {(a, v): n for a, v, n in message["verdicts"]})
        elif kind == "binds":
            self.placement.bound[slot.index] = message["binds"]
            self._share_counts()
        elif kind == "placed":
            self.placement.settled(slot.index, message["id"])
            self._share_counts()
        elif kind == "auth":
            self._count_auth(message["address"], message["system_id"], message["ok"])
        elif kind == "ready":
            slot.ready = True
            log.info("worker %d up (pid %d)", slot.index, message["pid"])
            if all(s.ready for s in self.slots):
                self._all_up.set()
        elif kind == "drained":
            slot.drained.set()
        elif kind == "role_set" and message["seq"] == self._role_seq:
            slot.role_set.set()

    def _take_records(self, message: Message) -> None:
        """A worker's batch of decision and trace rows: to the writer, and trace
        events to the live watchers."""
        decisions, traces = decode_records(message)
        for row in decisions:
            self.writer.put_row(row)
        watched = self.trace_hub.subscribers
        for row in traces:
            self.writer.put_trace(row)
            if watched:
                self.trace_hub.put(trace_event(row))

    def _count_auth(self, address: str, system_id: str, succeeded: bool) -> None:
        """A worker's bind that counts for the lockout; a pair this locks out is
        pushed to every worker."""
        if succeeded:
            self.lockout.succeeded(address, system_id)
            return
        until = self.lockout.failed(address, system_id)
        if until is None:
            return
        log.warning(
            "%s: locked out as %r on every worker for %gs after %d failed binds across them",
            address,
            system_id,
            self.lockout.duration,
            self.lockout.failures,
        )
        for live in self._live():
            live.control.send({"t": "lockouts", "locked": [(address, system_id, until)]})

    def _share_counts(self) -> None:
        """Tell each worker the binds held elsewhere, so max_binds holds node-wide."""
        for slot in self._live():
            slot.control.send({"t": "elsewhere", "counts": self.placement.elsewhere(slot.index)})

    def _live(self) -> list[WorkerSlot]:
        return [s for s in self.slots if s.reachable and s.control is not None]

    async def _stop_workers(self) -> None:
        self._stopping = True
        await self._close_ne_listener()
        live = self._live()
        for slot in live:
            slot.control.send({"t": "stop"})
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.config.policy.timeout + 1.0):
                await asyncio.gather(*(s.drained.wait() for s in live))
        for slot in self._live():
            slot.control.send({"t": "exit"})
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
        # Each supervisor reads its worker's last records and folds its counters.
        await asyncio.wait(self._supervisors, timeout=LAST_WORDS + 1.0)

    # ---- NE placement ---------------------------------------------------------------

    async def _accept(self) -> None:
        loop = asyncio.get_running_loop()
        while self._listener is not None:
            try:
                conn, peer = await loop.sock_accept(self._listener)
            except OSError:
                return
            self._spawn(self._place(conn, peer[0]))

    async def _place(self, conn: socket.socket, address: str) -> None:
        if self.role != "active":
            conn.close()  # a standby node accepts no NE bind
            return
        if self.config.server.tls is not None:
            account = None  # the bind is inside TLS: place round-robin
        else:
            account = await self._peek(conn, address)
            if account is False:
                conn.close()
                return
        candidates = [s.index for s in self.slots if s.ready and s.reachable]
        if not candidates:
            log.warning("no worker running to take an NE connection; closing it")
            conn.close()
            return
        index = self.placement.choose(candidates, account)
        handoff_id = self.placement.placed(index, account)
        message = {"t": "ne", "id": handoff_id, "elsewhere": self.placement.elsewhere(index)}
        try:
            send_fd(self.slots[index].handoff, message, conn.fileno())
        except OSError as exc:
            log.warning("cannot hand an NE connection to worker %d: %s", index, exc)
            self.placement.settled(index, handoff_id)
        finally:
            conn.close()
        self._share_counts()

    async def _peek(self, conn: socket.socket, address: str) -> str | bool | None:
        """The first PDU's bind system_id, as `peek_bind` says; False when the peer
        closed, or when the connection is refused: over an unbound cap (closed at
        once), no whole PDU in time, or a bad command_length (answered first)."""
        server = self.config.server
        over = self.unbound.admit(address)
        if over is not None:
            self.unbound.note_refusal(self._dropped, address, over)
            return False
        try:
            return await peek_bind(conn, server.first_pdu_deadline, server.max_pdu_size)
        except TimeoutError:
            self.peek_errors["first_pdu_timeout"] += 1
            self._dropped.note(
                address,
                "(no first PDU)",
                f"{address}: no whole PDU within {server.first_pdu_deadline:g}s; closed",
            )
            return False
        except FramingError as exc:
            answer_framing_error(conn, exc)
            self.peek_errors["framing"] += 1
            self._dropped.note(
                address, "(bad command_length)", f"{address}: {exc}; answered generic_nack, closed"
            )
            return False
        finally:
            self.unbound.release(address)

    # ---- control socket ---------------------------------------------------------------

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            async with asyncio.timeout(5.0):
                line = await reader.readline()
            request = json.loads(line or b"{}")
            answer = await self._control_command(request)
        except (TimeoutError, ValueError, ConnectionError) as exc:
            answer = {"error": str(exc) or type(exc).__name__}
        with contextlib.suppress(ConnectionError):
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()
            writer.close()

    async def _control_command(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "status":
            return self.status()
        if command == "reload":
            return {"result": await self.reload()}
        if command == "kick":
            account = str(request.get("account", ""))
            count = await kick(self.store, MasterView(self), account, "control-socket")
            return {"result": "ok", "unbound": count}
        if isinstance(command, str) and command.startswith("ha."):
            return await self.ha.handle_control(request)
        return {"error": f"unknown command {command!r}"}

    # ---- metrics -----------------------------------------------------------------------

    def _collect(self):
        own = {key("smps_pdu_errors_total", kind=k): n for k, n in self.peek_errors.items()}
        for reason, count in self.unbound.refused.items():
            own[key("smps_ne_connections_refused_total", reason=reason)] = count
        return collect(self.slots, self.role, own)

    def _ne_binds(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for bound in self.placement.bound:
            for account, count in bound.items():
                totals[account] = totals.get(account, 0) + count
        return totals

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- stats line ------------------------------------------------------------------

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(self.config.log.stats_interval)
            log.info("%s", self.stats_line())

    def stats_line(self) -> str:
        report = self.status()
        fields: dict[str, Any] = {
            "uptime": f"{report['uptime_s']:.0f}s",
            "workers": f"{sum(1 for w in report['workers'] if w['up'])}/{len(self.slots)}",
            "smsc_binds": ",".join(f"{n}:{c}" for n, c in sorted(report["smsc_binds"].items()))
            or "-",
            "ne_binds": ",".join(f"{a}:{c}" for a, c in sorted(report["ne_binds"].items())) or "-",
            "received_s": f"{sum(w['received_per_s'] for w in report['workers']):.1f}",
            "in_flight": report["in_flight"],
        }
        if self.writer is not None:
            fields.update(self.writer.stats())
        return "stats " + " ".join(f"{key}={value}" for key, value in fields.items())


async def _first(*waits) -> None:
    """Wait until the first of several coroutines finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _close_unix_server(server: asyncio.AbstractServer, path: Path) -> None:
    server.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    return f"exit status {code}"


def run(config: Config, config_path: str | None = None) -> int:
    """`smps run`: the master and its workers until SIGTERM/SIGINT; returns the exit status."""
    import uvloop

    master = Master(config, config_path)
    try:
        return uvloop.run(master.run())
    except (OSError, SchemaError) as exc:
        log.critical("cannot start: %s", exc)
        return 1


def request(config: Config, message: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one command to a running master's control socket; raises OSError when none runs."""
    path = str(Path(config.node.state_dir) / CONTROL_SOCKET)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(json.dumps(message).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


def status(config: Config) -> int:
    """`smps status`: print role, workers, binds and in flight; 1 when no master runs."""
    try:
        report = request(config, {"cmd": "status"})
    except OSError as exc:
        print(f"smps: no running node at {config.node.state_dir}: {exc.strerror or exc}")
        return 1
    print(format_status(report))
    return 0


def format_status(report: dict[str, Any]) -> str:
    lines = [
        f"node {report['node']}  role {report['role']}  version {report['version']}  "
        f"master pid {report['pid']}  up {report['uptime_s']:.0f}s",
        f"placement {report['placement']}  smpp :{report['smpp_port']}  "
        f"http :{report['http_port']}  in flight {report['in_flight']}",
        "workers:",
    ]
    for worker in report["workers"]:
        binds = ",".join(f"{a}:{n}" for a, n in sorted(worker["ne_binds"].items())) or "-"
        uptime = f"{worker['uptime_s']:.0f}s" if worker["uptime_s"] is not None else "-"
        lines.append(
            f"  #{worker['index']} pid {worker['pid'] or '-'}  "
            f"{'up' if worker['up'] else 'DOWN'} {uptime}  restarts {worker['restarts']}  "
            f"{worker['received_per_s']:.1f} msg/s  in flight {worker['in_flight']}  "
            f"NE binds {binds}"
        )
    smsc = ", ".join(f"{n}:{c}" for n, c in sorted(report["smsc_binds"].items())) or "-"
    ne = ", ".join(f"{a}:{c}" for a, c in sorted(report["ne_binds"].items())) or "-"
    lines.append(f"SMSC binds: {smsc}")
    lines.append(f"NE binds:   {ne}")
    if report.get("ha"):
        lines.append(format_ha(report["ha"]))
    return "\n".join(lines)


def format_ha(ha: dict[str, Any]) -> str:
    """One line: mode, role and why, keepalived's last word, the lease."""
    keepalived = ha["keepalived"]["state"] if ha["keepalived"] else "-"
    line = f"HA {ha['mode']}: {ha['role']} ({ha['reason']})  keepalived {keepalived}"
    lease = ha.get("lease")
    if lease is not None:
        holder = lease["holder"] or "none"
        line += f"  lease holder {holder} epoch {lease['epoch']}"
        if lease["held"]:
            line += " (held here)"
        elif lease["waiting"]:
            line += " (waiting for it)"
        if lease["error"]:
            line += f"  lease error: {lease['error']}"
    return line
