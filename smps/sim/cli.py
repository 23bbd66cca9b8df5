"""`smps sim smsc` and `smps sim ne`: the simulators on the command line.

`register(commands)` adds the `sim` command to the top-level `smps` parser;
`main(argv)` runs the same commands on their own. What they do once parsed is
in `smps.sim.commands`; the option value types are in `smps.sim.options`.

Exit status of `sim smsc`: 0 when SMPS bound and every original got exactly one
answer (missing 0, duplicates 0), else 1. `sim ne`: 0 after a clean stop.
"""

import argparse
from collections.abc import Sequence

from smps._native.pdu import Status
from smps.sim.commands import cmd_ne, cmd_smsc
from smps.sim.options import (
    address,
    duration,
    mix,
    number_range,
    numbers,
    positive_duration,
    positive_int,
    rate,
    ratio,
    status,
)
from smps.sim.traffic import DEFAULT_DESTINATIONS, DEFAULT_SOURCES, STANDARD_MIX


def register(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """Add `sim smsc` and `sim ne` to the top-level subcommands."""
    sim = commands.add_parser(
        "sim",
        help="SMSC and NE simulators",
        description="Simulated peers for SMPS: an SMSC that sends traffic and counts the "
        "verdicts, and NEs that answer copies.",
    )
    simulators = sim.add_subparsers(dest="simulator", metavar="SIMULATOR", required=True)
    _add_smsc_parser(simulators)
    _add_ne_parser(simulators)


def _add_common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the summary as JSON to FILE")
    parser.add_argument(
        "--progress",
        type=duration,
        default=5.0,
        metavar="DURATION",
        help="print a progress line to stderr this often; 0 = never (default: 5s)",
    )
    parser.add_argument(
        "--seed", type=int, default=1, help="random seed, for repeatable runs (default: 1)"
    )
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level on stderr (default: WARNING)",
    )


def _add_smsc_parser(simulators: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = simulators.add_parser(
        "smsc",
        help="SMSC simulator: accepts SMPS's binds, sends originals, counts the verdicts",
        description="Accept SMPS's binds, send originals (deliver_sm/data_sm) at a rate with a "
        "realistic mix, count every response by status, and report missing and duplicate "
        "responses and response-time percentiles. Exit 0 only when nothing is missing or "
        "duplicated.",
    )
    p.add_argument(
        "--listen",
        type=address,
        default=("127.0.0.1", 2776),
        metavar="HOST:PORT",
        help="address to accept SMPS's binds on (default: 127.0.0.1:2776)",
    )
    p.add_argument(
        "--system-id", default="smps", help="system_id SMPS must bind with (default: smps)"
    )
    p.add_argument(
        "--password", default="secret", help="password SMPS must bind with (default: secret)"
    )
    p.add_argument(
        "--binds",
        type=positive_int,
        default=1,
        help="binds to wait for before sending (default: 1)",
    )
    p.add_argument(
        "--bind-timeout",
        type=positive_duration,
        default=60.0,
        metavar="DURATION",
        help="give up (exit 1) when SMPS has not bound within this (default: 60s)",
    )
    p.add_argument(
        "--rate",
        type=rate,
        default=100.0,
        help="originals per second, or 'max' for as fast as the windows allow (default: 100)",
    )
    p.add_argument(
        "--duration",
        type=positive_duration,
        metavar="DURATION",
        help="send for this long (e.g. 30s, 5m); with neither --duration nor --count, until Ctrl-C",
    )
    p.add_argument("--count", type=positive_int, help="send this many originals (PDUs), then stop")
    p.add_argument(
        "--mix",
        type=mix,
        default=STANDARD_MIX,
        metavar="KIND=WEIGHT,...",
        help="message mix by weight of kinds gsm7, ucs2, concat (3-part), receipt "
        "(default: gsm7=70,ucs2=20,concat=10,receipt=0)",
    )
    p.add_argument(
        "--data-sm-ratio",
        type=ratio,
        metavar="RATIO",
        default=0.05,
        help="share of single-part messages sent as data_sm (default: 0.05)",
    )
    p.add_argument(
        "--sources",
        type=number_range,
        default=DEFAULT_SOURCES,
        metavar="FIRST-LAST",
        help="source numbers (default: 8613800000000-8613899999999)",
    )
    p.add_argument(
        "--destinations",
        type=number_range,
        default=DEFAULT_DESTINATIONS,
        metavar="FIRST-LAST",
        help="destination numbers (default: 8613900000000-8613999999999)",
    )
    p.add_argument(
        "--traced",
        type=numbers,
        default=[],
        metavar="NUMBER,...",
        help="numbers to put into a share of the messages, for trace rules",
    )
    p.add_argument(
        "--traced-ratio",
        type=ratio,
        metavar="RATIO",
        default=0.0,
        help="share of messages with a --traced number as source or destination (default: 0)",
    )
    p.add_argument(
        "--window",
        type=positive_int,
        default=1000,
        help="originals outstanding per bind at most (default: 1000)",
    )
    p.add_argument(
        "--response-timeout",
        type=positive_duration,
        default=10.0,
        metavar="DURATION",
        help="an original unanswered this long counts as missing (default: 10s)",
    )
    _add_common_options(p)
    p.set_defaults(handler=cmd_smsc)


def _add_ne_parser(simulators: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    p = simulators.add_parser(
        "ne",
        help="NE simulator: binds to SMPS and answers copies",
        description="Bind to SMPS's NE server as one NE account and answer each copy: block a "
        "share, leave a share unanswered, allow the rest, after a think time; optionally drop "
        "binds now and then (they come back after a back-off).",
    )
    p.add_argument(
        "--connect",
        type=address,
        default=("127.0.0.1", 2775),
        metavar="HOST:PORT",
        help="SMPS's NE server (default: 127.0.0.1:2775)",
    )
    p.add_argument("--system-id", required=True, help="NE account system_id")
    p.add_argument("--password", required=True, help="NE account password")
    p.add_argument(
        "--bind",
        choices=["receiver", "transceiver"],
        default="transceiver",
        help="bind type (default: transceiver)",
    )
    p.add_argument("--binds", type=positive_int, default=1, help="binds to keep up (default: 1)")
    p.add_argument(
        "--block-ratio",
        type=ratio,
        metavar="RATIO",
        default=0.0,
        help="share of copies answered with --block-status (default: 0)",
    )
    p.add_argument(
        "--block-status",
        type=status,
        default=Status.RX_R_APPN,
        help="command_status of a block (default: 0x66)",
    )
    p.add_argument(
        "--silent-ratio",
        type=ratio,
        metavar="RATIO",
        default=0.0,
        help="share of copies never answered (default: 0)",
    )
    p.add_argument(
        "--latency",
        type=duration,
        default=0.0,
        metavar="DURATION",
        help="think time per copy, e.g. 5ms; the mean for uniform/exp (default: 0)",
    )
    p.add_argument(
        "--latency-dist",
        choices=["fixed", "uniform", "exp"],
        default="fixed",
        help="think time distribution: fixed, uniform over mean±50%%, or exponential "
        "(default: fixed)",
    )
    p.add_argument(
        "--disconnect-every",
        type=positive_duration,
        metavar="DURATION",
        help="drop one bind at random about this often (0.5-1.5×)",
    )
    p.add_argument(
        "--disconnect-ratio",
        type=ratio,
        metavar="RATIO",
        default=0.0,
        help="probability that a copy makes its bind drop (default: 0)",
    )
    p.add_argument(
        "--reconnect-initial",
        type=positive_duration,
        default=0.2,
        metavar="DURATION",
        help="first reconnect back-off (default: 200ms)",
    )
    p.add_argument(
        "--reconnect-max",
        type=positive_duration,
        default=5.0,
        metavar="DURATION",
        help="longest reconnect back-off (default: 5s)",
    )
    p.add_argument(
        "--duration",
        type=positive_duration,
        metavar="DURATION",
        help="run for this long (default: until Ctrl-C)",
    )
    _add_common_options(p)
    p.set_defaults(handler=cmd_ne)


def main(argv: Sequence[str] | None = None) -> int:
    """`smps sim ...` on its own (the same commands register() adds)."""
    parser = argparse.ArgumentParser(prog="smps", description="SMPS simulators.")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)
