"""One worker process: a data plane (`smps.runtime.plane`) on its own uvloop, with
what joins it to the master and the other workers.

A worker's data plane opens its own binds to every SMSC (each SMSC's `binds` per
worker), following the live SMSC list the master pushes; it serves the NE binds
the master hands it (or accepts them itself on an SO_REUSEPORT listener), and
reaches accounts bound elsewhere through the mesh. It learns everything from the
master: the configuration comes first on the control channel; NE connections and
mesh sockets of restarted peers arrive on the handoff channel. The master's role
(active, standby) and lease decide when it serves.

Its decisions and trace events go to the master's database writer in batches
(`RecordForwarder`); it writes the daily trace files itself.

Started by the master as ``python -m smps.runtime.worker`` with its socket
pairs passed as inherited file descriptors, so no event loop is ever forked.

Stopping is a two-step handshake so that copies forwarded between workers are
answered too: on ``stop`` the worker stops reading originals, answers what it
has in flight and reports ``drained``; on ``exit`` (sent once every worker has
drained) it unbinds from the SMSCs and NEs and ends. If the master vanishes
(the control channel closes) the worker does both steps on its own.
"""

import argparse
import asyncio
import logging
import os
import signal
import socket
import time
from typing import Any

from smps import log as smps_log
from smps._native.campaigns import CampaignTable
from smps.config import Config
from smps.proxy.campaigns import attach_campaign_table
from smps.proxy.screening import VelocityTable, attach_velocity_table
from smps.proxy.trace_store import TraceFileSink
from smps.runtime import heap
from smps.runtime.control import Account, ControlChannel, Message, read_config, watch_handoffs
from smps.runtime.mesh import Mesh
from smps.runtime.plane import DataPlane, TraceTee
from smps.runtime.records import RecordForwarder
from smps.runtime.stats import PlaneReport, stats_message

log = logging.getLogger("smps.worker")

STATS_INTERVAL = 1.0


class Worker:
    def __init__(
        self,
        index: int,
        config: Config,
        accounts: list[Account],
        control: ControlChannel,
        role: str,
        velocity: VelocityTable | None = None,
        campaigns: CampaignTable | None = None,
    ):
        self.index = index
        self.control = control
        self.role = role
        self.wanted_role = role  # what the master said; role is it unless the lease lapsed
        # The lease's deadline (time.monotonic()) while the master holds it: stand down by
        # then unless the master extends it, even when the master stalls and cannot say so.
        self.serve_until: float | None = None
        self._lapse: asyncio.TimerHandle | None = None
        self._role_lock = asyncio.Lock()
        self.trace_files = TraceFileSink(
            config.node.state_dir, retention_days=config.database.retention_days
        )
        # Decisions and trace events go to the master's database writer.
        self.records = RecordForwarder(control)
        self.plane = DataPlane(
            config,
            accounts,
            decisions=self.records,
            traces=TraceTee(self.trace_files, self.records),
            worker=index,
            velocity=velocity,
            campaigns=campaigns,
        )
        ne_server = self.plane.ne_server
        self.mesh = Mesh(index, self.plane.dispatcher, ne_server.registry, config.node.worker_count)
        if config.node.worker_count > 1:  # parts meet in their owner worker
            self.plane.dispatcher.part_router = self.mesh
        ne_server.registry.listeners.append(self.mesh.on_bind_change)
        ne_server.registry.listeners.append(self._report_binds)
        ne_server.binds_elsewhere = self._binds_elsewhere
        ne_server.refusal_listeners.append(self._placed)
        ne_server.auth_listeners.append(self._report_auth)
        self._elsewhere: dict[str, int] = {}
        self._adopting: dict[Any, int] = {}  # NE session -> handoff id, until it binds or closes
        self._exit = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()

    # ---- lifecycle -----------------------------------------------------------------

    async def run(self, handoff: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._spawn_stop)
        self.plane.start()
        watch_handoffs(handoff, self._on_handoff)
        if self.role == "active":
            await self._activate()
        self._spawn(self._report_stats())
        self._spawn(self.trace_files.run())
        heap.settle()
        self.control.send({"t": "ready", "pid": os.getpid()})
        self._spawn(self._read_control())
        await self._exit.wait()
        await self._shutdown()

    async def _activate(self) -> None:
        """Bind to the SMSCs; accept NEs here under placement reuseport (otherwise
        the master accepts them and hands them over)."""
        listen = self.plane.config.server.placement == "reuseport"
        await self.plane.serve(listen=listen, reuse_port=True)

    async def _deactivate(self) -> None:
        """Standby (or fault): stop reading originals, answer those in flight while
        the NE binds are still up, then unbind from the SMSCs and the NEs."""
        await self.plane.answer_in_flight("standing down")
        await self.plane.unbind()

    async def _drain(self) -> None:
        self._stopping = True
        await self.plane.answer_in_flight("stopping")

    async def _shutdown(self) -> None:
        await self.plane.stop()
        self.mesh.close()
        self.trace_files.flush()
        self.records.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._send_stats()
        await self.control.close()

    def _spawn_stop(self) -> None:
        """SIGTERM to a worker alone: drain and exit without waiting for the master."""
        if not self._stopping:
            self._spawn(self._stop_alone())

    async def _stop_alone(self) -> None:
        await self._drain()
        self._exit.set()

    def _spawn(self, coroutine) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- control channel ---------------------------------------------------------

    async def _read_control(self) -> None:
        while (message := await self.control.receive()) is not None:
            await self._on_control(message)
        if not self._exit.is_set():
            log.warning("master gone; stopping")
            await self._drain()
            self._exit.set()

    async def _on_control(self, message: Message) -> None:
        kind = message["t"]
        if kind == "config":
            self.apply_config(*read_config(message))
        elif kind == "elsewhere":
            self._elsewhere = message["counts"]
        elif kind == "lockouts":
            for address, system_id, until in message["locked"]:
                self.plane.ne_server.lockout.lock(address, system_id, until)
        elif kind == "kick":
            count = self.plane.ne_server.kick(message["account"])
            log.info("kicked %d binds of %s", count, message["account"])
        elif kind == "role":
            self.wanted_role = message["role"]
            self._set_serve_until(message.get("until"))
            await self._set_role(message["role"])
            self.control.send({"t": "role_set", "seq": message.get("seq", 0)})
        elif kind == "lease":
            self._set_serve_until(message["until"])
            if self.wanted_role == "active" and self.role != "active":
                self._spawn(self._set_role("active"))  # renewed after it had lapsed here
        elif kind == "stop":
            await self._drain()
            self._send_stats()  # the final totals, for the per-minute counters
            self.control.send({"t": "drained", "in_flight": self.plane.dispatcher.in_flight})
        elif kind == "exit":
            self._exit.set()
        elif kind == "mesh_closed":
            link = self.mesh.links.get(message["peer"])
            if link is not None:
                link.close()

    def apply_config(self, config: Config, accounts: list[Account]) -> None:
        """Accounts, routes, policy, trace rules and SMSCs, live (DataPlane.apply)."""
        self.plane.apply(config, accounts)
        log.info("configuration applied")

    async def _set_role(self, role: str) -> None:
        """active: bind to the SMSCs, take NEs; standby and fault (the same here): drain, unbind."""
        async with self._role_lock:
            if role == "active" and self._lapsed():
                log.warning("not going active: the lease deadline has passed")
                role = "standby"
            was_active = self.role == "active"
            self.role = role
            if role == "active" and not was_active:
                await self._activate()
            elif role != "active" and was_active:
                await self._deactivate()
            log.info("role %s", role)

    def _set_serve_until(self, until: float | None) -> None:
        self.serve_until = until
        if self._lapse is not None:
            self._lapse.cancel()
            self._lapse = None
        if until is not None:
            delay = max(0.0, until - time.monotonic())
            self._lapse = asyncio.get_running_loop().call_later(delay, self._on_lapse)

    def _lapsed(self) -> bool:
        return self.serve_until is not None and time.monotonic() >= self.serve_until

    def _on_lapse(self) -> None:
        self._lapse = None
        if self.role == "active" and not self._stopping:
            log.warning("the lease deadline passed with no renewal from the master: standing down")
            self._spawn(self._set_role("standby"))

    # ---- NE placement ------------------------------------------------------------

    def _on_handoff(self, message: Message, sock: socket.socket) -> None:
        if message["t"] == "mesh":
            self._spawn(self.mesh.connect(message["peer"], sock))
            return
        self._elsewhere.update(message.get("elsewhere", {}))
        if self._stopping or self.role != "active":
            sock.close()
            self.control.send({"t": "placed", "id": message["id"]})
            return
        self._spawn(self._adopt(message["id"], sock))

    async def _adopt(self, handoff_id: int, sock: socket.socket) -> None:
        sock.setblocking(False)
        try:
            session = await self.plane.ne_server.adopt(sock)
        except (OSError, ConnectionError) as exc:  # TLS handshake failures land here too
            log.warning("NE connection lost before its bind: %s", exc)
            sock.close()
            self.control.send({"t": "placed", "id": handoff_id})
            return
        self._adopting[session] = handoff_id
        session.closed.add_done_callback(lambda _f: self._placed(session))

    def _placed(self, session) -> None:
        handoff_id = self._adopting.pop(session, None)
        if handoff_id is not None:
            self.control.send({"t": "placed", "id": handoff_id})

    def _report_binds(self, system_id: str, session, up: bool) -> None:
        self.control.send({"t": "binds", "binds": self.plane.ne_binds()})
        if up:
            self._placed(session)

    def _report_auth(self, address: str, system_id: str, succeeded: bool) -> None:
        """The master keeps the node's lockout table: a guesser spread over workers
        is locked out on all of them."""
        self.control.send(
            {"t": "auth", "address": address, "system_id": system_id, "ok": succeeded}
        )

    def _binds_elsewhere(self, system_id: str) -> int:
        return self._elsewhere.get(system_id, 0)

    # ---- stats -------------------------------------------------------------------

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self._send_stats()
            self.plane.tracer.prune_expired()

    def _send_stats(self) -> None:
        self.control.send(stats_message(self.snapshot()))

    def snapshot(self) -> PlaneReport:
        """The data plane's snapshot, with this worker's own counters (records it
        could not forward, copies through the mesh); the master keeps them monotonic."""
        report = self.plane.snapshot()
        counters = report.counters
        counters.records_forward_dropped = dict(self.records.dropped)
        out, into = self.mesh.counts()
        counters.forwarded_copies = {"out": out, "in": into}
        return report


async def _main(args: argparse.Namespace) -> None:
    control = await ControlChannel.open(socket.socket(fileno=args.control_fd))
    first = await control.receive()
    if first is None or first["t"] != "config":
        raise SystemExit("worker: no configuration from the master")
    config, accounts = read_config(first)
    smps_log.forward_to(args.log_socket, f"worker-{args.index}", config.log.level)
    velocity = attach_velocity_table(args.velocity_fd)
    campaigns = attach_campaign_table(args.campaign_fd)
    worker = Worker(args.index, config, accounts, control, first["role"], velocity, campaigns)
    for pair in args.mesh:
        peer, fd = (int(x) for x in pair.split(":"))
        await worker.mesh.connect(peer, socket.socket(fileno=fd))
    log.info("worker %d started (role %s)", args.index, worker.role)
    await worker.run(socket.socket(fileno=args.handoff_fd))
    log.info("worker %d stopped", args.index)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="smps-worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--handoff-fd", type=int, required=True)
    parser.add_argument("--log-socket", required=True)
    parser.add_argument("--velocity-fd", type=int, required=True)
    parser.add_argument("--campaign-fd", type=int, required=True)
    parser.add_argument("--mesh", action="append", default=[], metavar="PEER:FD")
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group; the master alone decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import uvloop

    uvloop.run(_main(args))


if __name__ == "__main__":
    main()
