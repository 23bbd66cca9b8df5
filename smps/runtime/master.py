"""The master process: supervises `node.workers` worker processes and owns
everything that is not the data plane.

It opens the database (migrations at start; a schema newer than this SMPS
knows is refused), runs the one batched writer that the workers' decision and
trace records go to, serves HTTP (/health, /metrics, the REST API /api/v1),
the control socket (`control_socket`: `smps status`, reload, kick,
`smps ha notify|check`), is the only writer of the log, places NE connections
on workers (`intake`), keeps the node's bind lockouts (the workers report failed
binds; a pair locked out is pushed to every worker), and restarts a worker that
dies, with back-off while it keeps dying (`supervisor`). What the node reports
about itself is made in `status`. This module puts them together: the start
order, the live configuration, role changes and stopping.

The live configuration (the file's, plus the accounts, SMSC connections,
routes, policy, trace and screening rules changed through the API) is loaded from the
database at start and again after every committed API change (and SIGHUP), and
pushed to every worker; a worker rebinds only to the SMSCs whose connection
changed. SMSC binds stay per worker: each worker binds each SMSC's `binds`.

Stopping (SIGTERM/SIGINT): no more NE connections; every worker stops reading
originals and answers what it has in flight (forwarded copies included, as all
NE binds are still up); once all have drained they unbind and exit, and their
last records reach the writer before it closes. SIGHUP re-reads the
configuration file and applies it to every worker live.

The role (active, standby, fault) is decided by smps.ha.controller.HaController, from
`ha.mode`, keepalived's state and the database lease; the master applies it
(`_on_role`): a standby or faulty node closes its NE listener and its workers
drain, then unbind from the SMSCs and the NEs; an active node listens and its
workers bind.
"""

import asyncio
import logging
import signal
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import msgspec

from smps import __version__
from smps.config import Config
from smps.errors import ConfigError
from smps.ha.controller import HaController, Role
from smps.ha.lease import DbLease, holder_id
from smps.log import LogWriter
from smps.metrics import CallbackCollector, make_registry
from smps.proxy.campaigns import CampaignReader, campaign_metrics
from smps.proxy.screening import attach_velocity_table, velocity_memory
from smps.proxy.screening_trial import ScreeningTrial
from smps.proxy.trace_hub import TraceHub
from smps.runtime import control_socket, heap, status
from smps.runtime.control import Account, Message, config_message
from smps.runtime.intake import NeIntake
from smps.runtime.metrics import collect
from smps.runtime.placement import Placement
from smps.runtime.records import RECORDS, decode_records
from smps.runtime.stats import STATS, read_stats, verdict_totals
from smps.runtime.supervisor import Supervisor, WorkerSlot
from smps.runtime.ui_view import MasterView
from smps.smpp.bind_guard import BindLockout
from smps.store import file_sync, live_config
from smps.store.db import SchemaError, Store
from smps.store.startup import open_database
from smps.store.writer import DecisionWriter
from smps.web.api import add_api_routes
from smps.web.http import HttpServer, degraded, make_app
from smps.web.node import kick
from smps.web.ui import TRACE_SETTINGS, add_ui_routes

log = logging.getLogger("smps.master")

RESTART_SECTIONS = ("node", "server", "web", "log")  # not applied live
LOG_SOCKET = "smps-log.sock"


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
        self.state_dir = Path(config.node.state_dir)
        velocity_fd = velocity_memory(config.screening.velocity_keys)
        self.supervisor = Supervisor(
            config.node.worker_count,
            self.state_dir / LOG_SOCKET,
            spawn=self._spawn,
            on_start=self._on_worker_start,
            on_message=self._on_worker_message,
            on_gone=self._on_worker_gone,
            velocity_fd=velocity_fd,
        )
        # Messages tried through the API and the UI see the counts the workers share.
        self.screening = ScreeningTrial(
            lambda: self.live_config, attach_velocity_table(velocity_fd)
        )
        # Every worker's campaign table, merged when the API asks.
        self.campaigns = CampaignReader.of_fds(
            self.supervisor.campaign_fds, lambda: self.live_config
        )
        self.placement = Placement(config.node.worker_count)
        self.intake = NeIntake(
            config.server,
            self.supervisor.slots,
            self.placement,
            active=lambda: self.role == "active",
            on_placed=self._share_counts,
            spawn=self._spawn,
        )
        # The node's bind lockouts, fed by the workers' reports and pushed back to them.
        self.lockout = BindLockout(config.server.auth_lockout_failures, config.server.auth_lockout)
        self.registry = make_registry()
        self.registry.register(CallbackCollector(self._collect))
        self.registry.register(CallbackCollector(lambda: campaign_metrics(self.campaigns)))
        self.http_port: int | None = None
        self.smpp_port: int | None = None
        self.store: Store | None = None
        self.writer: DecisionWriter | None = None
        self.trace_hub = TraceHub()  # live trace events for /api/v1/traces/stream
        self._stopping = False
        self._stop = asyncio.Event()
        self._config_lock = asyncio.Lock()  # pushes go out in the order they were loaded
        self._tasks: set[asyncio.Task] = set()
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
        keys = self.config.screening.velocity_keys  # the workers' shared table is made once
        if new.screening.velocity_keys != keys:
            log.warning("reload: screening.velocity_keys changed; that takes a restart")
            running["screening"] = msgspec.structs.replace(new.screening, velocity_keys=keys)
        self.config = msgspec.structs.replace(new, **running)
        await file_sync.sync_file_config(self.store, self.config)
        await self.apply_live_config()
        return "applied"

    async def apply_live_config(self) -> None:
        """Load the live configuration from the database and push it to every worker."""
        async with self._config_lock:
            self.live_config, self.accounts = await live_config.load(self.store, self.config)
            self.supervisor.send_all(self._config_message())
        if self.supervisor.live():  # at start the workers get it as their first message
            log.info("configuration applied to %d workers", len(self.supervisor.live()))

    async def _on_config_change(self, entity: str, key: str) -> None:
        log.info("configuration changed through the API: %s %s; applying live", entity, key)
        await self.apply_live_config()

    def kick(self, account: str) -> None:
        self.supervisor.send_all({"t": "kick", "account": account})

    async def set_role(self, role: str) -> None:
        """active: SMSC binds and NE binds; standby and fault: neither.

        Going active returns at once (the workers bind in the background).
        Leaving active returns once every worker has answered what it had in
        flight and unbound, or after the verdict timeout and a little more.
        """
        if role not in ("active", "standby", "fault") or role == self.role:
            return
        self.role = role
        until = self.ha.serve_until if self.ha is not None else None
        wait = None if role == "active" else self.config.policy.timeout + 2.0
        await self.supervisor.set_role(role, until, wait)

    async def _on_role(self, role: Role, reason: str) -> None:
        """The HA controller's callback: make the data plane match ``role``."""
        if self._stopping:
            return
        log.info("role %s: %s", role, reason)
        if role == Role.ACTIVE:
            # Decisions from now on carry the lease epoch this node serves under (#11).
            await self.writer.set_epoch(self.ha.epoch)
            self.intake.open()
            await self.set_role("active")
        else:
            if self.config.server.placement == "balanced":
                await self.intake.close()  # NEs reconnect to the VIP, on the other node
            await self.set_role(str(role))
        log.info("role %s applied", role)

    def health(self) -> tuple[bool, dict[str, Any]]:
        """/health: 503 while a worker is down, in FAULT, or keepalived's MASTER
        waits for the lease; "degraded" (200, 503 under ``web.health_strict``) while
        an SMSC is down or the database writer fails; a healthy standby is 200."""
        ok, body = status.workers_health(self)
        body["role"] = self.role
        ok, body = degraded(
            ok, body, status.degradations(self), strict=self.config.web.health_strict
        )
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
                await _first(self.supervisor.all_up.wait(), self._stop.wait())
                if not self._stop.is_set():
                    log.info(
                        "SMPS %s ready: node=%s role=%s workers=%d placement=%s smpp=%s:%d",
                        __version__,
                        self.config.node.name,
                        self.role,
                        len(self.supervisor.slots),
                        self.config.server.placement,
                        self.config.server.listen[0],
                        self.smpp_port,
                    )
                    heap.settle()
                await self._stop.wait()
                log.info("stopping")
                self._stopping = True
                await self.intake.close()
                await self.supervisor.stop(drain_timeout=self.config.policy.timeout + 1.0)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("stopped")
            await self._log_writer.close()
        return 0

    async def _start_node(self, stack: AsyncExitStack) -> None:
        """Database and writer, HTTP, the NE port, the workers and the control
        socket, in that order; `stack` undoes them in reverse."""
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
            screening_trial=self.screening,
            campaigns=self.campaigns,
            country_code=self.config.trace.country_code,
        )
        add_ui_routes(app, self.store, view, screening=self.screening, campaigns=self.campaigns)
        app[TRACE_SETTINGS] = lambda: self.config.trace  # live: a reload may change it
        http = HttpServer(app, tls=self.config.web.tls)
        host, port = self.config.web.listen
        self.http_port = await http.start(host, port)
        stack.push_async_callback(http.close)
        log.info("HTTP listening on %s:%d (admin UI, /health, /metrics, /api/v1)", host,
                 self.http_port)  # fmt: skip
        self._bind_ne_port()
        stack.push_async_callback(self.intake.close)
        await self.apply_live_config()
        self.store.listeners.append(self._on_config_change)
        stack.push_async_callback(self._cancel_tasks)
        self.supervisor.start()
        control = await control_socket.serve(self.state_dir, self._control_command)
        stack.callback(control_socket.close, control, self.state_dir)
        self._spawn(self._report_stats())
        await self.ha.start()  # applies the first role, then follows keepalived and the lease

    def _make_ha(self) -> None:
        ha = self.config.ha
        lease = None
        if ha.lease.enabled:
            lease = DbLease(self.store.engine, holder_id(self.config.node.name), ha.lease.ttl)
        self.ha = HaController(
            ha,
            self._on_role,
            health=lambda: status.workers_health(self),
            lease=lease,
            on_lease=self._send_lease,
        )
        self.role = str(self.ha.role)  # workers start in it; the first on_role confirms it
        self.registry.register(CallbackCollector(self.ha.metrics))

    def _bind_ne_port(self) -> None:
        """Reserve the NE port; one configured as 0 is fixed from now on (the
        workers listen on it themselves under reuseport)."""
        self.smpp_port = self.intake.bind()
        host, port = self.config.server.listen
        if port == 0:
            server = msgspec.structs.replace(self.config.server, listen=(host, self.smpp_port))
            self.config = msgspec.structs.replace(self.config, server=server)

    async def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- the workers ---------------------------------------------------------------

    def _on_worker_start(self, slot: WorkerSlot) -> None:
        """A new worker's first messages: the live configuration and role, the
        lockouts in force, the lease deadline."""
        slot.control.send(self._config_message())
        if locked := self.lockout.active():
            slot.control.send({"t": "lockouts", "locked": locked})
        if self.ha is not None and self.ha.serve_until is not None:
            slot.control.send({"t": "lease", "until": self.ha.serve_until})

    def _on_worker_message(self, slot: WorkerSlot, message: Message) -> None:
        kind = message["t"]
        if kind == RECORDS:
            self._take_records(message)
        elif kind == STATS:
            report = read_stats(message)
            slot.on_stats(report)
            if self.writer is not None:
                self.writer.add_totals(slot.index, verdict_totals(report.counters))
        elif kind == "binds":
            self.placement.bound[slot.index] = message["binds"]
            self._share_counts()
        elif kind == "placed":
            self.placement.settled(slot.index, message["id"])
            self._share_counts()
        elif kind == "auth":
            self._count_auth(message["address"], message["system_id"], message["ok"])

    def _on_worker_gone(self, slot: WorkerSlot) -> None:
        self.placement.forget(slot.index)
        if self.writer is not None:
            self.writer.forget_source(slot.index)
        self._share_counts()

    def _config_message(self) -> Message:
        return config_message(self.live_config, self.accounts, self.role)

    def _send_lease(self, until: float) -> None:
        """Every renewal moves the deadline by which the workers stand down by themselves."""
        self.supervisor.send_all({"t": "lease", "until": until})

    def _take_records(self, message: Message) -> None:
        """A worker's batch of decisions and trace events: to the writer, and the trace
        events to the live watchers too."""
        decisions, events = decode_records(message)
        self.writer.put_many(decisions)
        put_live = self.trace_hub.put
        for event in events:
            self.writer.put_trace(event)
            put_live(event)

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
        self.supervisor.send_all({"t": "lockouts", "locked": [(address, system_id, until)]})

    def _share_counts(self) -> None:
        """Tell each worker the binds held elsewhere, so max_binds holds node-wide."""
        for slot in self.supervisor.live():
            slot.control.send({"t": "elsewhere", "counts": self.placement.elsewhere(slot.index)})

    # ---- control socket, metrics, stats line -----------------------------------------

    async def _control_command(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "status":
            return status.report(self)
        if command == "reload":
            return {"result": await self.reload()}
        if command == "kick":
            account = str(request.get("account", ""))
            count = await kick(self.store, MasterView(self), account, "control-socket")
            return {"result": "ok", "unbound": count}
        if isinstance(command, str) and command.startswith("ha."):
            return await self.ha.handle_control(request)
        return {"error": f"unknown command {command!r}"}

    def _collect(self):
        return collect(self.supervisor.slots, self.role, self.intake.counters())

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(self.config.log.stats_interval)
            log.info("%s", status.stats_line(self))


async def _first(*waits) -> None:
    """Wait until the first of several coroutines finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def run(config: Config, config_path: str | None = None) -> int:
    """`smps run`: the master and its workers until SIGTERM/SIGINT; returns the exit status."""
    import uvloop

    master = Master(config, config_path)
    try:
        return uvloop.run(master.run())
    except (OSError, SchemaError) as exc:
        log.critical("cannot start: %s", exc)
        return 1
