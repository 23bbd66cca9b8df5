"""What a load run does: the scenario (by default the standard one of
docs/architecture.md §6) and the configuration the started SMPS runs with."""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from bench.screening_rules import screening_section
from smps.config import loads
from smps.sim.traffic import CONCAT_STYLES, STANDARD_LONG, LongMessages

SMSC_SYSTEM_ID = "smps"
SMSC_PASSWORD = "secret"
TRACED_NUMBER_BASE = 8613700000000  # outside the traffic's source and destination ranges
INFLIGHT_RATE = 10_000.0  # originals/s of an in-flight run without --rate
INFLIGHT_NE_WINDOW = 10_000  # the largest ne_accounts[].window
INFLIGHT_TIMEOUT = 600.0  # policy.timeout of an in-flight run: nothing expires while measured
# The concat scenario (--concat): 30 % of the messages in three parts, the single-part rest
# in the standard 70:20 of GSM 7-bit and UCS-2; the long ones in GSM 7-bit, tied by 8-bit
# UDH, 16-bit UDH and SAR TLVs in turn, a fifth of them with their parts out of order.
CONCAT_MIX = {"gsm7": 56.0, "ucs2": 14.0, "concat": 30.0, "receipt": 0.0}
CONCAT_LONG = LongMessages(styles=CONCAT_STYLES, reordered=0.2, ucs2=False)


@dataclass(frozen=True)
class Scenario:
    """What one run does; the defaults are the standard scenario of docs/architecture.md §6."""

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
    record: str = "non_allow"  # database.record
    database: str | None = None  # database.url; None: SQLite in the run's directory
    timeout: float = 2.0  # policy.timeout
    inflight: int = 0  # > 0: the in-flight memory run (send this many, NEs never answer)
    rss_every: float = 10.0  # seconds between RSS samples over the measured interval
    cpu_every: float = 60.0  # seconds between CPU (and rows written) samples: the creep
    screening: bool = False  # the screening scenario's rules (bench/screening_rules.py)
    # The concat scenario: CONCAT_MIX and CONCAT_LONG, a long message's parts spread over
    # the SMSC binds, and every part of one message expected to get the same answer.
    concat: bool = False
    # False: SMPS judges every part alone, as before whole-message verdicts
    # (policy.concat_max_held 0, NE accounts in segments mode): what the hold costs
    hold: bool = True
    mix: dict[str, float] = field(
        default_factory=lambda: {"gsm7": 70.0, "ucs2": 20.0, "concat": 10.0, "receipt": 0.0}
    )

    @property
    def max_inflight(self) -> int:
        """flow.max_inflight per worker: the default, or room for every original of
        an in-flight run (whichever worker gets them) so that none is throttled."""
        return max(20_000, self.inflight + self.inflight // 10)

    @property
    def long_messages(self) -> LongMessages:
        """How the traffic's three-part messages are tied together and ordered."""
        return CONCAT_LONG if self.concat else STANDARD_LONG

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
        "database": {
            "url": scenario.database or f"sqlite:///{workdir / 'smps.db'}",
            "record": scenario.record,
        },
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
                **({} if scenario.hold else {"concat": "segments"}),
            }
            for system_id, password in scenario.accounts()
        ],
        "policy": {
            "timeout": scenario.timeout,
            **({} if scenario.hold else {"concat_max_held": 0}),
        },
        "flow": {"max_inflight": scenario.max_inflight},
        "trace": {"rules": [{"number": n.decode()} for n in scenario.traced_numbers()]},
        "web": {"listen": "127.0.0.1:0"},
    }
    if scenario.screening:
        raw["screening"] = screening_section(workdir / "screening")
    text = yaml.safe_dump(raw, sort_keys=False)
    loads(text, file="bench config")  # refuse here, not in a child's log
    return text
