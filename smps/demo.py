"""`smps demo`: SMPS on embedded defaults with a simulated SMSC, three
simulated NEs and live traffic, watched from the terminal.

Everything runs in this one process on loopback: the SMSC simulator binds
nothing (SMPS binds to it), the NEs bind to SMPS's NE server, and traffic
flows at a fixed rate with the standard mix (GSM7, UCS-2 with emoji,
concatenated). One NE is fast, one blocks more, and `audit` thinks slowly
enough that some copies hit the 2 s verdict timeout. Ctrl-C stops the
traffic, lets every original be answered, then stops SMPS and the NEs, and
prints what the SMSC saw: every original answered exactly once.
"""

import asyncio
import contextlib
import signal
import socket
import sys
import tempfile
import time
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

import yaml

from smps import config as smps_config
from smps.app import Node
from smps.config import Config
from smps.sim.ne import Latency, SimNe
from smps.sim.smsc import SimSmsc

# (system_id, password, block ratio, latency, silent ratio): as in demo.yaml
DEMO_NES = (
    ("antispam", "spam-pw", 0.05, Latency(0.010, "exp"), 0.0),
    ("antifrd", "fraud-pw", 0.02, Latency(0.030, "uniform"), 0.0),
    ("audit", "audit-pw", 0.01, Latency(0.500, "exp"), 0.002),
)
CLEAR = "\x1b[H\x1b[2J"


def demo_config(smsc_port: int, state_dir: str, web_port: int) -> Config:
    """The embedded demo.yaml with the run's SMSC port, state dir and web port. Its
    database lives in the state dir too: the demo never writes the service's ./var."""
    raw = yaml.safe_load(resources.files("smps").joinpath("demo.yaml").read_text())
    raw["smsc"][0]["port"] = smsc_port
    raw["node"]["state_dir"] = state_dir
    raw["database"]["url"] = f"sqlite:///{Path(state_dir, 'smps.db')}"
    raw["web"]["listen"] = f"127.0.0.1:{web_port}"
    return smps_config.loads(yaml.safe_dump(raw), file="smps/demo.yaml")


def _free(port: int) -> int:
    """`port` if nothing listens there, else 0 (any free port)."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return 0
    return port


class Screen:
    """The live view: redrawn in place on a terminal, a line every few
    seconds otherwise (so a log or CI output stays readable)."""

    def __init__(self, out: TextIO, node: Node, sim: SimSmsc, nes: list[SimNe], rate: float):
        self.out = out
        self.node = node
        self.sim = sim
        self.nes = nes
        self.rate = rate
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._last = (0, time.monotonic())

    def draw(self) -> None:
        dispatcher = self.node.dispatcher
        received, then = self._last
        now = time.monotonic()
        decided_rate = (dispatcher.stats.received - received) / max(now - then, 1e-9)
        self._last = (dispatcher.stats.received, now)
        if not self.tty:
            self.out.write(
                f"demo: {now - self.started:5.0f} s  {decided_rate:7.1f} msg/s  in flight "
                f"{dispatcher.in_flight:5d}  sent {self.sim.sent}  answered {self.sim.answered}"
                f"  missing {self.sim.missing}  duplicates {self.sim.duplicates}\n"
            )
            self.out.flush()
            return
        self.out.write(CLEAR + "\n".join(self._lines(decided_rate)) + "\n")
        self.out.flush()

    def _lines(self, decided_rate: float) -> list[str]:
        dispatcher = self.node.dispatcher
        uptime = time.monotonic() - self.started
        lines = [
            "SMPS demo — Ctrl-C to stop",
            f"web  http://127.0.0.1:{self.node.http_port}/health   /metrics",
            f"state and database in {self.node.config.node.state_dir} (removed at the end)",
            "",
            f"uptime {uptime:6.0f} s   offered {self.rate:6.0f}/s   decided {decided_rate:7.1f}/s"
            f"   in flight {dispatcher.in_flight}",
            "",
            f"{'verdict / reason':<22}{'count':>10}{'share':>9}",
        ]
        decisions = dispatcher.stats.decisions
        total = sum(decisions.values()) or 1
        for (verdict, reason), count in sorted(decisions.items(), key=lambda kv: -kv[1]):
            lines.append(f"{verdict + ' / ' + reason:<22}{count:>10}{100 * count / total:>8.1f}%")
        lines += [
            "",
            f"{'NE':<10}{'binds':>6}{'copies':>9}{'allow':>9}{'block':>8}{'none':>7}"
            f"{'p50 ms':>9}{'p99 ms':>9}",
        ]
        latencies = self._latencies()
        for ne in self.nes:
            lane = dispatcher.lanes[ne.system_id]
            p50, p99 = latencies.get(ne.system_id, (None, None))
            lines.append(
                f"{ne.system_id:<10}{len(lane.binds):>4}/{ne.binds:<1}{ne.received:>9}"
                f"{lane.answers[1]:>9}{lane.answers[2]:>8}{lane.answers[3]:>7}"
                f"{_ms(p50):>9}{_ms(p99):>9}"
            )
        sim = self.sim
        lines += [
            "",
            f"SMSC simulator: sent {sim.sent}  answered {sim.answered}  "
            f"missing {sim.missing}  duplicates {sim.duplicates}",
        ]
        return lines

    def _latencies(self) -> dict[str, tuple[float, float]]:
        """Per-NE answer latency percentiles over the newest decisions."""
        samples: dict[str, list[float]] = {}
        for decision in self.node.recent.newest(5000):
            for result in decision.results:
                if result.latency_ms is not None and result.verdict != "none":
                    samples.setdefault(result.account, []).append(result.latency_ms)
        out = {}
        for account, values in samples.items():
            values.sort()
            out[account] = (values[len(values) // 2], values[int(len(values) * 0.99)])
        return out


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


async def run_demo(
    rate: float, duration: float | None, web_port: int, out: TextIO = sys.stdout
) -> dict[str, Any]:
    """Run the demo until Ctrl-C / SIGTERM or `duration`; returns the SMSC's summary."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = SimSmsc(window=2000, response_timeout=10.0)
    with tempfile.TemporaryDirectory(prefix="smps-demo-") as state_dir:
        cfg = demo_config(await sim.start(), state_dir, _free(web_port))
        out.write(f"demo: state and database in {state_dir} (removed at the end)\n")
        node = Node(cfg, recent=20_000)
        node_task = asyncio.create_task(node.run(handle_signals=False))
        nes: list[SimNe] = []
        traffic: asyncio.Task | None = None
        try:
            await sim.wait_bound(cfg.smsc[0].binds)
            for system_id, password, block, latency, silent in DEMO_NES:
                ne = SimNe(
                    "127.0.0.1",
                    node.smpp_port,
                    system_id=system_id,
                    password=password,
                    binds=2,
                    block_ratio=block,
                    latency=latency,
                    silent_ratio=silent,
                )
                ne.start()
                nes.append(ne)
            for ne in nes:
                await ne.wait_bound()
            traffic = asyncio.create_task(sim.run(rate=rate))
            screen = Screen(out, node, sim, nes, rate)
            interval = 1.0 if screen.tty else 5.0
            deadline = loop.time() + duration if duration else None
            while not stop.is_set() and not node_task.done():
                timeout = interval if deadline is None else min(interval, deadline - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(timeout, 0))
                screen.draw()
                if deadline is not None and loop.time() >= deadline:
                    break
        finally:
            out.write("\nstopping: no new traffic, answering what is in flight...\n")
            sim.stop_run()
            if traffic is not None:
                await traffic
            for ne in nes:
                await ne.stop()
            node.stop()
            await node_task
            await sim.stop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    summary = sim.summary()
    reasons = Counter({f"{v}/{r}": n for (v, r), n in node.dispatcher.stats.decisions.items()})
    out.write(
        f"SMSC saw {summary['sent']} originals: {summary['answered']} answered, "
        f"{summary['missing']} missing, {summary['duplicates']} duplicates\n"
        f"verdicts: {', '.join(f'{k} {n}' for k, n in reasons.most_common())}\n"
    )
    return summary
