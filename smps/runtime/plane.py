"""The data plane: the message path from the SMSCs to the NEs and back, built here
and nowhere else, for both ways SMPS runs.

A `DataPlane` holds the SMSC clients, the dispatcher (copies, verdicts, deadlines),
the NE server and the tracer, wired to each other: originals read from the SMSC
binds go to the dispatcher (or are turned away once their SMSC is being left), NE
binds coming and going reach the dispatcher's lanes. Where decisions and trace
events go is its user's choice, the sinks it is given:

- a worker process (`smps.runtime.worker`, what ``smps run`` runs) adds the control
  channel to the master, the mesh to the other workers and the record forwarder;
- the single-process node (`smps.app`: ``smps demo`` and the in-process tests) adds
  the database, the HTTP side and live trace watchers.

Nothing here runs per message: the plane wires the objects, drives their lifecycle
(start; serve: accept NEs, bind to the SMSCs; follow the live configuration;
answer what is in flight before letting go; stop) and reads their counters into
one snapshot (`smps.runtime.stats.PlaneReport`), which a worker sends to the
master and a single-process node exports on /metrics, both through
`smps.runtime.metrics.families`.
"""

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol

from prometheus_client.core import Metric

from smps._native.campaigns import CampaignTable
from smps.config import Config
from smps.proxy.campaigns import private_campaign_table
from smps.proxy.dispatcher import Dispatcher
from smps.proxy.records import DecisionSink, TraceEvent, TraceSink
from smps.proxy.screening import VelocityTable
from smps.proxy.tracer import Tracer
from smps.proxy.verdicts import STATE_NAMES
from smps.runtime.control import Account
from smps.runtime.metrics import families
from smps.runtime.stats import Counters, Gauges, Latency, PlaneReport
from smps.smpp.client import SmscClients
from smps.smpp.server import NeServer

log = logging.getLogger("smps.plane")

# Past the verdict timeout, time for the tick that answers the last original.
DRAIN_MARGIN = 0.5


class DataPlane:
    """The SMSC clients, dispatcher, NE server and tracer of one process, wired."""

    def __init__(
        self,
        config: Config,
        accounts: list[Account],
        *,
        decisions: DecisionSink,
        traces: TraceSink,
        worker: int | None = None,
        velocity: VelocityTable | None = None,
        campaigns: CampaignTable | None = None,
    ):
        self.config = config  # the live one: apply() replaces it
        self.tracer = Tracer.from_config(config, traces, worker=worker or 0)
        # The screening engine's velocity counters: the node's shared table in a
        # worker, this process's own otherwise.
        self.dispatcher = Dispatcher(
            config, accounts, sink=decisions, tracer=self.tracer, velocity=velocity
        )
        # Whole messages by fingerprint: the worker slot's table, this process's own otherwise.
        self.dispatcher.campaigns = campaigns if campaigns is not None else private_campaign_table()
        self.ne_server = NeServer(config.server, accounts, copy_timeout=config.policy.timeout)
        self.ne_server.registry.listeners.append(self.dispatcher.on_bind_change)
        self.smsc_clients = SmscClients(
            self.dispatcher.on_message,
            turn_away=self.dispatcher.turn_away,
            name_prefix="" if worker is None else f"w{worker}:",
        )
        self.serving = False  # bound to the SMSCs, following their live list
        self.listening = False  # accepting NE connections on server.listen
        self._lock = asyncio.Lock()  # serve, follow the SMSC list, unbind: one at a time
        self._following: set[asyncio.Task[None]] = set()
        self._pdu_errors = PduErrors()

    def sink_to(self, decisions: DecisionSink, traces: TraceSink) -> None:
        """Where decisions and trace events go from now on (the single-process node
        adds its database once it is open)."""
        self.dispatcher.sink = decisions
        self.tracer.sink = traces

    # ---- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the dispatcher's tick (verdict deadlines, queued copies)."""
        self.dispatcher.start()

    async def serve(self, *, listen: bool = True, reuse_port: bool = False) -> int | None:
        """Accept NE connections on server.listen (listen=False: another process
        accepts them and hands them over) and bind to the SMSCs, following the live
        SMSC list from now on; returns the NE port when it listens."""
        async with self._lock:
            port = None
            if listen and not self.listening:
                port = await self.ne_server.start(reuse_port=reuse_port)
                self.listening = True
            self.serving = True
            await self.smsc_clients.apply(self.config.smsc, self._answer_smsc_in_flight)
            return port

    def apply(self, config: Config, accounts: list[Account]) -> None:
        """Accounts, routes, policy, flow and trace rules, live; binds not concerned
        by a change stay up. While serving, the SMSC list too, in the background:
        new SMSCs bind, and a removed or moved one unbinds once what it delivered
        is answered."""
        smsc_changed = config.smsc != self.config.smsc
        self.config = config
        self.dispatcher.apply_config(config, accounts)
        self.ne_server.set_accounts(accounts)
        self.tracer.apply_config(config)
        if smsc_changed and self.serving:
            task = asyncio.ensure_future(self._follow_smsc_list())
            self._following.add(task)
            task.add_done_callback(self._following.discard)

    async def _follow_smsc_list(self) -> None:
        async with self._lock:
            if self.serving:  # not once answer_in_flight has begun to let go
                await self.smsc_clients.apply(self.config.smsc, self._answer_smsc_in_flight)
                if not self.serving:  # it began meanwhile: new binds turn originals away too
                    self.smsc_clients.pause()

    async def _answer_smsc_in_flight(self) -> None:
        """Before the binds of a removed or moved SMSC go: their originals are
        answered by the verdict timeout at the latest (other SMSCs' traffic may
        keep the dispatcher from ever being empty)."""
        await self.dispatcher.drain(self.config.policy.timeout + DRAIN_MARGIN)

    async def answer_in_flight(self, doing: str) -> None:
        """Before letting go (stopping, standing down): turn new originals away,
        accept no new NE connection, then answer every original in flight while
        the binds are still up, by the verdict timeout at the latest. It does not
        wait for a change of the SMSC list under way (the master's wait for a
        drained worker allows one verdict timeout)."""
        self.serving = False
        self.smsc_clients.pause()
        await self.ne_server.stop_listening()
        self.listening = False
        if in_flight := self.dispatcher.in_flight:
            log.info("%s: answering %d originals in flight", doing, in_flight)
        if not await self.dispatcher.drain(self.config.policy.timeout + DRAIN_MARGIN):
            log.error("%s: %d originals still unanswered", doing, self.dispatcher.in_flight)

    async def unbind(self) -> None:
        """Unbind from the SMSCs and the NEs (after answer_in_flight)."""
        async with self._lock:
            self.serving = False
            self.listening = False
            await self.smsc_clients.stop()
            await self.ne_server.stop()

    async def stop(self) -> None:
        """Unbind everything and stop the dispatcher's tick."""
        await self.unbind()
        await asyncio.gather(*self._following)  # nothing left to follow: they end at once
        self.dispatcher.stop()

    # ---- what it serves ------------------------------------------------------------

    def ne_binds(self) -> dict[str, int]:
        return {a: len(s) for a, s in self.ne_server.registry.by_account.items() if s}

    def smsc_down(self) -> list[str]:
        """Why the SMSC binds make the node degraded (SmscClient.down_reason)."""
        now = time.monotonic()
        return [reason for client in self.smsc_clients if (reason := client.down_reason(now))]

    def snapshot(self) -> PlaneReport:
        """Its counters since it started, its gauges and its SMSC health: what a worker
        reports to the master every second, and what a single-process node exports
        (`metric_families`)."""
        stats = self.dispatcher.stats
        lanes = self.dispatcher.lanes
        screen = self.dispatcher.screening.engine
        judged = self.dispatcher.screening.judged()
        counters = Counters(
            originals_received=stats.received,
            verdicts=dict(stats.decisions),
            decision_seconds=Latency.of(self.dispatcher.decision_latency),
            screening_hits=self.dispatcher.screening.hits(),
            screened=judged[0] if judged[0] or screen is not None else None,
            screening_seconds=judged[1] if judged[0] or screen is not None else None,
            copies_sent={name: lane.copies_sent for name, lane in lanes.items()},
            ne_answers={
                (name, STATE_NAMES[state]): count
                for name, lane in lanes.items()
                for state, count in lane.answers.items()
            },
            ne_answer_seconds={name: Latency.of(lane.latency) for name, lane in lanes.items()},
            late_answers=stats.late_answers,
            monitor_answers={
                name: lane.monitor_answers
                for name, lane in lanes.items()
                if lane.monitor_answers or not lane.decisive
            },
            throttled=stats.throttled,
            copies_dropped=stats.queue_dropped,
            copies_retried=stats.retried,
            copies_withdrawn=stats.withdrawn,
            internal_errors=stats.internal_errors,
            whole_messages={
                name: count
                for name, count in zip(
                    ("incomplete", "complete"), stats.whole_messages, strict=True
                )
                if count
            },
            concat_overflow=stats.concat_overflow,
            concat_duplicate_parts=stats.duplicate_parts,
            concat_late_parts=stats.late_parts,
            concat_parts_forwarded=stats.parts_forwarded,
            campaign_blocks=stats.campaign_blocks,
            pdu_errors=self._pdu_errors.totals(
                [
                    *(s for c in self.smsc_clients for s in c.sessions),
                    *self.ne_server.registry.sessions(),
                ]
            ),
            smsc_reconnects={c.cfg.name: c.reconnects for c in self.smsc_clients},
            auth_failures=self.ne_server.auth_failures,
            ne_connections_refused=dict(self.ne_server.unbound.refused),
        )
        gauges = Gauges(
            in_flight=self.dispatcher.in_flight,
            concat_held=len(self.dispatcher.assembly.held),
            smsc_binds={c.cfg.name: c.binds_up for c in self.smsc_clients},
            ne_binds=self.ne_binds(),
        )
        return PlaneReport(counters=counters, gauges=gauges, smsc_down=self.smsc_down())

    def metric_families(self) -> Iterator[Metric]:
        """The snapshot as /metrics shows it (a worker's reach /metrics through the
        master, summed over the workers, by the same `families`)."""
        report = self.snapshot()
        return families(report.counters, report.gauges)


class PduErrors:
    """PDU errors by kind summed over sessions, including closed ones."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[Any, dict[str, int]]] = {}
        self._retired: dict[str, int] = {}

    def totals(self, sessions) -> dict[str, int]:
        seen: dict[int, tuple[Any, dict[str, int]]] = {}
        for session in sessions:
            seen[id(session)] = (session, dict(session.stats.errors))
        for ident, (session, errors) in self._last.items():
            if ident not in seen or seen[ident][0] is not session:
                for kind, count in errors.items():
                    self._retired[kind] = self._retired.get(kind, 0) + count
        self._last = seen
        result = dict(self._retired)
        for _session, errors in seen.values():
            for kind, count in errors.items():
                result[kind] = result.get(kind, 0) + count
        return result


class TraceRecords(Protocol):
    """The database side of trace events: the writer, or in a worker the forwarder
    to the master's writer."""

    def put_trace(self, event: TraceEvent) -> None: ...


class TraceTee:
    """A data plane's trace sink: each event goes to the day files and toward the
    database; in a single-process node to live watchers too (in ``smps run`` the
    master shows them as the workers forward them)."""

    def __init__(self, files: TraceSink, database: TraceRecords, live: TraceSink | None = None):
        self.files = files
        self.database = database
        self.live = live

    def put(self, event: TraceEvent) -> None:
        self.files.put(event)
        self.database.put_trace(event)
        if self.live is not None:
            self.live.put(event)
