"""`smps bench`: its options, and the runs they ask for: one point, one per
point of a --nes/--workers list, or a max run and then one at a share of its
rate (--rate N%); with --baseline, each point's SMPS run followed by the bare
relay's in the same scenario, and their ratio."""

import argparse
import json
import sys
from dataclasses import dataclass
from typing import Any

from bench.loadrun.driver import Run
from bench.loadrun.report import (
    baseline_ratio,
    format_added_cpu,
    format_baseline,
    format_inflight_report,
    format_report,
    format_sweep,
    succeeded,
)
from bench.loadrun.scenario import (
    CONCAT_MIX,
    INFLIGHT_NE_WINDOW,
    INFLIGHT_RATE,
    INFLIGHT_TIMEOUT,
    Scenario,
)
from smps.config import Config, load
from smps.errors import SmpsError
from smps.sim import options


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `bench` to the top-level subcommands."""
    p = commands.add_parser(
        "bench",
        help="load run: throughput, added latency and proxy CPU per message",
        description="Start SMPS (or use a running one with --no-start), a simulated SMSC and "
        "simulated NEs as separate processes, drive the standard scenario "
        "(docs/architecture.md §6) for a warm-up and a measured interval, and report "
        "messages/s, added latency, proxy CPU µs/message, peak RSS, throttled, timeouts, "
        "missing and duplicates. Exit 0 when no response was missing or duplicated.",
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
        type=options.positive_int,
        default=None,
        help=f"binds per NE account (default: {defaults.ne_binds}; with --inflight enough "
        "for every copy to fit the NE windows)",
    )
    p.add_argument(
        "--smsc-binds",
        type=options.positive_int,
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
        type=options.duration,
        default=defaults.ne_latency,
        metavar="DURATION",
        help="NE think time per copy, fixed (default: 0)",
    )
    p.add_argument(
        "--block-ratio",
        type=options.ratio,
        default=defaults.block_ratio,
        metavar="RATIO",
        help="share of copies each NE blocks (default: 0.05)",
    )
    p.add_argument(
        "--window",
        type=options.positive_int,
        default=None,
        help=f"originals outstanding per SMSC bind (default: {defaults.window}; with "
        "--inflight room for all of them)",
    )
    p.add_argument(
        "--ne-window",
        type=options.positive_int,
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
        type=options.positive_int,
        metavar="N",
        help="memory per original in flight instead of a timed run: send N originals to "
        f"NEs that never answer (policy.timeout {INFLIGHT_TIMEOUT:g} s) and report SMPS's "
        "RSS before and with all N held, and the difference / N",
    )
    p.add_argument(
        "--rss-every",
        type=options.positive_duration,
        default=defaults.rss_every,
        metavar="DURATION",
        help="sample SMPS's RSS this often over the measured interval (default: 10s)",
    )
    p.add_argument(
        "--cpu-every",
        type=options.positive_duration,
        default=defaults.cpu_every,
        metavar="DURATION",
        help="split the measured interval into parts this long and report SMPS's CPU per "
        "message (and the master's per row written) in each: the first against the last "
        "shows creep (default: 60s)",
    )
    p.add_argument(
        "--record",
        choices=("all", "non_allow", "none"),
        default=defaults.record,
        help="database.record of the started SMPS: which decisions become rows "
        f"(default: {defaults.record})",
    )
    p.add_argument(
        "--database",
        metavar="URL",
        help="database.url of the started SMPS, e.g. mysql+asyncmy://root@127.0.0.1:3306/"
        "smps_bench (an existing database, best empty; default: SQLite in the run's directory)",
    )
    p.add_argument(
        "--duration",
        type=options.positive_duration,
        default=defaults.duration,
        metavar="DURATION",
        help="measured interval (default: 30s)",
    )
    p.add_argument(
        "--warmup",
        type=options.duration,
        default=defaults.warmup,
        metavar="DURATION",
        help="load before measuring (default: 5s)",
    )
    p.add_argument(
        "--screening",
        action="store_true",
        help="the screening scenario: 10k list entries, 1k keywords, 20 regexes, 10k URL "
        "domains and 5 velocity rules that the traffic does not trip (bench/screening_rules.py)",
    )
    p.add_argument(
        "--concat",
        action="store_true",
        help="the concat scenario: 30%% of the messages in 3 parts (8-bit UDH, 16-bit UDH and "
        "SAR in turn, a fifth out of order, parts spread over the SMSC binds); reports whole "
        "messages too and fails when the parts of one message are answered differently",
    )
    p.add_argument(
        "--no-hold",
        action="store_true",
        help="SMPS judges every part alone (policy.concat_max_held 0, NE accounts in segments "
        "mode), as before whole-message verdicts: with --concat, the run to --compare-to for "
        "what the hold costs (parts answered differently are then no failure)",
    )
    p.add_argument(
        "--compare-to",
        metavar="FILE",
        help="a JSON report of an earlier run (--json): also print the CPU per original this "
        "run added to it, named by what the scenario changed (make bench: what screening "
        "and the hold cost)",
    )
    p.add_argument(
        "--baseline",
        action="store_true",
        help="after each SMPS run, run the bare relay (bench/bare_relay.py: copies to every "
        "NE, answers the SMSC, nothing else) in the same scenario and print the ratio of "
        "SMPS's CPU per message to the relay's (JSON: baseline, ratio)",
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
        return options.parse_rate(text)
    share = float(text[:-1]) / 100
    if not 0.0 < share <= 1.0:
        raise ValueError(f"a share of the maximum rate is above 0% and at most 100%, not {value!r}")
    return RateShare(share)


int_list = options.option_type(_int_list)
bench_rate = options.option_type(_bench_rate)


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
        cpu_every=args.cpu_every,
        record=args.record,
        database=args.database,
        screening=args.screening,
        concat=args.concat,
        hold=not args.no_hold,
        mix=dict(CONCAT_MIX) if args.concat else defaults.mix,
    )


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
        report = run(args.rate)
    else:
        top = run(None)
        if not succeeded(top) or not top["msgs_per_s"]:
            return top
        report = run(round(args.rate.share * top["msgs_per_s"], 1))
        report["rate_share"] = args.rate.share
        report["max_run"] = {
            key: top[key]
            for key in ("msgs_per_s", "cpu_us_per_msg", "latency_ms", "missing", "duplicates")
        }
        report["ok"] = succeeded(top) and succeeded(report)
    if args.baseline:
        _add_baseline(args, report)
    return report


def _add_baseline(args: argparse.Namespace, report: dict[str, Any]) -> None:
    """The bare relay in the scenario (and at the rate) SMPS just ran, after it,
    never beside it: its report and the ratio of the CPU figures join SMPS's."""
    s = report["scenario"]
    rate = None if s["rate"] == "max" else s["rate"]
    relay = Run(
        scenario_of(args, s["nes"], s["workers"], rate), pin=not args.no_pin, relay=True
    ).execute()
    print(format_report(relay))
    report["baseline"] = relay
    report["ratio"] = baseline_ratio(report, relay)
    report["ok"] = report.get("ok", succeeded(report)) and succeeded(relay)
    print(format_baseline(report))


def cmd_bench(args: argparse.Namespace) -> int:
    if args.baseline and (args.inflight or args.no_start):
        print(
            "smps bench: --baseline compares timed runs of an SMPS it starts, "
            "not --inflight or --no-start",
            file=sys.stderr,
        )
        return 2
    points = [(nes, workers) for workers in args.workers for nes in args.nes]
    existing = None
    if args.no_start:
        if not args.config:
            print("smps bench: --no-start needs -c FILE", file=sys.stderr)
            return 2
        if len(points) > 1:
            print("smps bench: --no-start runs one point, not a list", file=sys.stderr)
            return 2
        if args.no_hold:
            print(
                "smps bench: --no-hold configures the SMPS it starts; with --no-start set "
                "policy.concat_max_held: 0 in your configuration",
                file=sys.stderr,
            )
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
    if args.compare_to:
        with open(args.compare_to, encoding="utf-8") as file:
            print(format_added_cpu(json.load(file), reports[-1]))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(reports[0] if len(reports) == 1 else {"sweep": reports}, file, indent=2)
            file.write("\n")
    return 0 if all(r.get("ok", succeeded(r)) for r in reports) else 1


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
