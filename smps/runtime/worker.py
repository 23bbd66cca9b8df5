"""One worker process: a full data plane on its own uvloop.

A worker opens its own binds to every SMSC (each SMSC's `binds` per worker),
following the live SMSC list the master pushes; it serves the NE binds the master
hands it (or accepts them itself on an SO_REUSEPORT listener), runs a
dispatcher, and reaches accounts bound elsewhere through the mesh. It learns
everything from the master: the configuration comes first on the control
channel; NE connections and mesh sockets of restarted peers arrive on the
handoff channel.

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
from smps.config import Config
from smps.proxy.dispatcher import Dispatcher
from smps.proxy.trace_store import TraceFileSink
from smps.proxy.tracer import Tracer
from smps.proxy.verdicts import STATE_NAMES
from smps.runtime import heap
from smps.runtime.control import Account, ControlChannel, Message, read_config, watch_handoffs
from smps.runtime.mesh import Mesh
from smps.runtime.metrics import key
from smps.runtime.records import RecordForwarder, TraceTee
from smps.smpp.client import SmscClients
from smps.smpp.server import NeServer
from smps.store.minute_counts import verdict_totals

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
    ):
        self.index = index
        self.config = config
        self.control = control
        self.role = role
        self.wanted_role = role  # what the master said; role is it unless the lease lapsed
        # The lease's deadline (time.monotonic()) while the master holds it: stand down by
        # then unless the master extends it, even when the master stalls and cannot say so.
        self.serve_until: float | None = None
        self._lapse: asyncio.TimerHandle | None = None
        self._role_lock = asyncio.Lock()
        self.started = time.time()
        self.trace_files = TraceFileSink(
            config.node.state_dir, retention_days=config.database.retention_days
        )
        # Decisions and trace events go to the master's database writer.
        self.records = RecordForwarder(control)
        self.tracer = Tracer.from_config(
            config, TraceTee(self.trace_files, self.records), worker=index
        )
        self.dispatcher = Dispatcher(config, sink=self.records, tracer=self.tracer)
        self.dispatcher.apply_config(config, accounts)
        self.ne_server = NeServer(config.server, accounts, copy_timeout=config.policy.timeout)
        self.mesh = Mesh(index, self.dispatcher, self.ne_server.registry)
        self.ne_server.registry.listeners.append(self.mesh.on_bind_change)
        self.ne_server.registry.listeners.append(self._report_binds)
        self.ne_server.binds_elsewhere = self._binds_elsewhere
        self.ne_server.refusal_listeners.append(self._placed)
        self.ne_server.auth_listeners.append(self._report_auth)
        self.smsc_clients = SmscClients(
            self.dispatcher.on_message,
            turn_away=self.dispatcher.turn_away,
            name_prefix=f"w{index}:",
        )
        self.counters = SessionTotals()
        self._elsewhere: dict[str, int] = {}
        self._adopting: dict[Any, int] = {}  # NE session -> handoff id, until it binds or closes
        self._listening = False
        self._exit = asyncio.Event()
        self._stopping = False
        self._tasks: set[asyncio.Task] = set()

    # ---- lifecycle -----------------------------------------------------------------

    async def run(self, handoff: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._spawn_stop)
        self.dispatcher.start()
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
        await self.smsc_clients.apply(self.config.smsc, self._answer_smsc_in_flight)
        if self.config.server.placement == "reuseport" and not self._listening:
            await self.ne_server.start(reuse_port=True)
            self._listening = True

    async def _deactivate(self) -> None:
        """Standby (or fault): stop reading originals, answer those in flight while
        the NE binds are still up, then unbind from the SMSCs and the NEs."""
        await self._answer_in_flight("standing down")
        await self.smsc_clients.stop()
        await self.ne_server.stop()

    async def _answer_smsc_in_flight(self) -> None:
        """Before the binds of a removed or changed SMSC go: their originals are
        answered by the verdict timeout at the latest (other SMSCs' traffic may
        keep the dispatcher from ever being empty)."""
        await self.dispatcher.drain(self.config.policy.timeout + 0.5)

    async def _follow_smsc_list(self) -> None:
        """The live SMSC list changed: rebind only where it changed (active only)."""
        async with self._role_lock:
            if self.role == "active" and not self._stopping:
                await self.smsc_clients.apply(self.config.smsc, self._answer_smsc_in_flight)

    async def _answer_in_flight(self, doing: str) -> None:
        """Turn new originals away and accept no NEs, then answer everything in flight."""
        self.smsc_clients.pause()
        await self.ne_server.stop_listening()
        self._listening = False
        if not await self.dispatcher.drain(self.config.policy.timeout + 0.5):
            log.error("%s: %d originals still unanswered", doing, self.dispatcher.in_flight)

    async def _drain(self) -> None:
        self._stopping = True
        await self._answer_in_flight("stopping")

    async def _shutdown(self) -> None:
        await self.smsc_clients.stop()
        await self.ne_server.stop()
        self.mesh.close()
        self.dispatcher.stop()
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
                self.ne_server.lockout.lock(address, system_id, until)
        elif kind == "kick":
            count = self.ne_server.kick(message["account"])
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
            self.control.send({"t": "drained", "in_flight": self.dispatcher.in_flight})
        elif kind == "exit":
            self._exit.set()
        elif kind == "mesh_closed":
            link = self.mesh.links.get(message["peer"])
            if link is not None:
                link.close()

    def apply_config(self, config: Config, accounts: list[Account]) -> None:
        """Accounts, routes, policy, trace rules and SMSCs, live; binds not
        concerned by a change stay up."""
        smsc_changed = config.smsc != self.config.smsc
        self.config = config
        self.dispatcher.apply_config(config, accounts)
        self.ne_server.set_accounts(accounts)
        self.tracer.apply_config(config)
        if smsc_changed:
            self._spawn(self._follow_smsc_list())
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
            session = await self.ne_server.adopt(sock)
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
        self.control.send({"t": "binds", "binds": self.ne_binds()})
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

    def smsc_down(self) -> list[str]:
        """Why this worker's SMSC binds make the node degraded (SmscClient.down_reason)."""
        now = time.monotonic()
        return [reason for client in self.smsc_clients if (reason := client.down_reason(now))]

    def ne_binds(self) -> dict[str, int]:
        return {a: len(s) for a, s in self.ne_server.registry.by_account.items() if s}

    # ---- stats -------------------------------------------------------------------

    async def _report_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL)
            self._send_stats()
            self.tracer.prune_expired()

    def _send_stats(self) -> None:
        self.control.send({"t": "stats", **self.snapshot()})

    def snapshot(self) -> dict[str, Any]:
        """Plain totals since this worker started (the master keeps them monotonic)."""
        stats = self.dispatcher.stats
        counters: dict[str, float] = {
            "smps_originals_received_total": stats.received,
            "smps_late_answers_total": stats.late_answers,
            "smps_throttled_total": stats.throttled,
            "smps_copies_dropped_total": stats.queue_dropped,
            "smps_copies_retried_total": stats.retried,
            "smps_copies_withdrawn_total": stats.withdrawn,
            "smps_internal_errors_total": stats.internal_errors,
            "smps_auth_failures_total": self.ne_server.auth_failures,
        }
        for reason, count in self.ne_server.unbound.refused.items():
            counters[key("smps_ne_connections_refused_total", reason=reason)] = count
        for kind, count in self.records.dropped.items():
            counters[key("smps_records_forward_dropped_total", kind=kind)] = count
        for (verdict, reason), count in stats.decisions.items():
            counters[key("smps_verdicts_total", verdict=verdict, reason=reason)] = count
        add_histogram(counters, "smps_decision_seconds", self.dispatcher.decision_latency)
        for name, lane in self.dispatcher.lanes.items():
            counters[key("smps_copies_sent_total", account=name)] = lane.copies_sent
            add_histogram(counters, "smps_ne_answer_seconds", lane.latency, account=name)
            for state, count in lane.answers.items():
                counters[key("smps_ne_answers_total", account=name, verdict=STATE_NAMES[state])] = (
                    count
                )
        out, into = self.mesh.counts()
        counters[key("smps_forwarded_copies_total", direction="out")] = out
        counters[key("smps_forwarded_copies_total", direction="in")] = into
        for client in self.smsc_clients:
            counters[key("smps_smsc_reconnects_total", smsc=client.cfg.name)] = client.reconnects
        sessions = [s for c in self.smsc_clients for s in c.sessions]
        sessions += list(self.ne_server.registry.sessions())
        counters.update(self.counters.totals(sessions))
        gauges: dict[str, float] = {"smps_in_flight": self.dispatcher.in_flight}
        smsc_binds = {}
        for client in self.smsc_clients:
            smsc_binds[client.cfg.name] = client.binds_up
            gauges[key("smps_binds_up", side="smsc", account=client.cfg.name)] = client.binds_up
        for account, count in self.ne_binds().items():
            gauges[key("smps_binds_up", side="ne", account=account)] = count
        return {
            "pid": os.getpid(),
            "started": self.started,
            "role": self.role,
            "ne_binds": self.ne_binds(),
            "smsc_binds": smsc_binds,
            "in_flight": self.dispatcher.in_flight,
            "smsc_down": self.smsc_down(),  # for the master's /health
            "counters": counters,
            "gauges": gauges,
            # For the per-minute counters in the database (smps.store.minute_counts).
            "verdicts": [[a, v, n] for (a, v), n in verdict_totals(self.dispatcher).items()],
        }


def add_histogram(counters: dict[str, float], name: str, histogram, **labels: str) -> None:
    """A histogram's samples (cumulative buckets, sum, count) in a snapshot."""
    for bound, count in histogram.cumulative():
        counters[key(f"{name}_bucket", **labels, le=bound)] = count
    counters[key(f"{name}_sum", **labels)] = histogram.total
    counters[key(f"{name}_count", **labels)] = histogram.count


class SessionTotals:
    """PDU errors and NE answer times summed over sessions, including closed ones."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[Any, dict[str, float]]] = {}
        self._retired: dict[str, float] = {}

    def totals(self, sessions) -> dict[str, float]:
        seen: dict[int, tuple[Any, dict[str, float]]] = {}
        for session in sessions:
            seen[id(session)] = (session, self._of(session))
        for ident, (session, values) in self._last.items():
            if ident not in seen or seen[ident][0] is not session:
                for name, value in values.items():
                    self._retired[name] = self._retired.get(name, 0) + value
        self._last = seen
        result = dict(self._retired)
        for _session, values in seen.values():
            for name, value in values.items():
                result[name] = result.get(name, 0) + value
        return result

    @staticmethod
    def _of(session) -> dict[str, float]:
        values = {
            key("smps_pdu_errors_total", kind=kind): count
            for kind, count in session.stats.errors.items()
        }
        return values


async def _main(args: argparse.Namespace) -> None:
    control = await ControlChannel.open(socket.socket(fileno=args.control_fd))
    first = await control.receive()
    if first is None or first["t"] != "config":
        raise SystemExit("worker: no configuration from the master")
    config, accounts = read_config(first)
    smps_log.forward_to(args.log_socket, f"worker-{args.index}", config.log.level)
    worker = Worker(args.index, config, accounts, control, first["role"])
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
    parser.add_argument("--mesh", action="append", default=[], metavar="PEER:FD")
    args = parser.parse_args(argv)
    # Ctrl-C reaches the whole process group; the master alone decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import uvloop

    uvloop.run(_main(args))


if __name__ == "__main__":
    main()
