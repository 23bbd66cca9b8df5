"""`smps sim smsc` and `smps sim ne`: the simulators on the command line.

`register(commands)` adds the `sim` command to the top-level `smps` parser;
`main(argv)` runs the same commands on their own. Each simulator prints a
progress line now and then (stderr), a summary table at the end (stdout) and,
with --json, the summary as JSON. Ctrl-C or SIGTERM stops cleanly — the SMSC
simulator still waits for the answers in flight — and the summary is printed
all the same; a second Ctrl-C skips the wait.

Exit status of `sim smsc`: 0 when SMPS bound and every original got exactly one
answer (missing 0, duplicates 0), else 1. `sim ne`: 0 after a clean stop.
"""

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TextIO

from smps._native.pdu import Status
from smps.config import format_address, parse_address, parse_duration
from smps.sim.ne import Latency, SimNe
from smps.sim.smsc import SimSmsc
from smps.sim.traffic import (
    DEFAULT_DESTINATIONS,
    DEFAULT_SOURCES,
    STANDARD_MIX,
    Mix,
    NumberRange,
    Traffic,
)

# ---- option types ------------------------------------------------------------


def option_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Turn a parser's ValueError into argparse's one-line usage error."""

    def convert(value: str) -> Any:
        try:
            return parse(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def _ratio(value: str) -> float:
    text = value.strip()
    number = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a ratio between 0 and 1 (or 0% and 100%)")
    return number


def parse_rate(value: str) -> float | None:
    if value.strip().lower() == "max":
        return None
    rate = float(value)
    if rate <= 0:
        raise ValueError(f"rate must be > 0 or 'max', not {value!r}")
    return rate


def _positive_duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds <= 0:
        raise ValueError(f"duration must be > 0, not {value!r}")
    return seconds


def _duration(value: str) -> float:
    seconds = parse_duration(value)
    if seconds < 0:
        raise ValueError(f"duration must be >= 0, not {value!r}")
    return seconds


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(f"must be a whole number >= 1, not {value!r}")
    return number


def _status(value: str) -> int:
    status = int(value, 0)
    if not 0 <= status <= 0xFFFFFFFF:
        raise ValueError(f"{value!r} is not a command_status")
    return status


def _numbers(value: str) -> list[bytes]:
    numbers = [n.strip() for n in value.split(",") if n.strip()]
    if not numbers or not all(n.isdigit() and len(n) <= 20 for n in numbers):
        raise ValueError(f"{value!r}: expected comma-separated phone numbers")
    return [n.encode() for n in numbers]


address = option_type(parse_address)
ratio = option_type(_ratio)
rate = option_type(parse_rate)
duration = option_type(_duration)
positive_duration = option_type(_positive_duration)
status = option_type(_status)
positive_int = option_type(_positive_int)
numbers = option_type(_numbers)
mix = option_type(Mix.parse)
number_range = option_type(NumberRange.parse)


# ---- the parsers -------------------------------------------------------------


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


# ---- running -----------------------------------------------------------------


class Stopper:
    """Ctrl-C / SIGTERM: the first asks for a clean stop, the second for a quick one."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()

    def __call__(self) -> None:
        (self.hurry if self.requested.is_set() else self.requested).set()


def cmd_smsc(args: argparse.Namespace) -> int:
    return _run(smsc_main, args)


def cmd_ne(args: argparse.Namespace) -> int:
    return _run(ne_main, args)


def _run(
    main: Callable[[argparse.Namespace, Stopper], Awaitable[int]], args: argparse.Namespace
) -> int:
    import uvloop

    from smps import log as smps_log

    smps_log.configure(level=args.log_level, process_name=f"sim-{args.simulator}")

    async def with_signals() -> int:
        stopper = Stopper()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopper)
        return await main(args, stopper)

    return uvloop.run(with_signals())


async def smsc_main(args: argparse.Namespace, stopper: Stopper, out: TextIO = sys.stdout) -> int:
    """Listen, wait for SMPS's binds, drive traffic, report. Returns the exit status."""
    try:
        traffic = Traffic(
            args.mix,
            sources=args.sources,
            destinations=args.destinations,
            traced=args.traced,
            traced_ratio=args.traced_ratio,
            data_sm_ratio=args.data_sm_ratio,
            seed=args.seed,
        )
    except ValueError as exc:
        _note(f"cannot build the traffic: {exc}")
        return 2
    sim = SimSmsc(
        system_id=args.system_id,
        password=args.password,
        window=args.window,
        response_timeout=args.response_timeout,
    )
    host, port = args.listen
    port = await sim.start(host, port)
    _note(f"listening on {format_address((host, port))}; waiting for {args.binds} bind(s)")
    bound = False
    try:
        bound = await _unless_stopped(sim.wait_bound(args.binds, args.bind_timeout), stopper)
        if bound:
            _note(
                f"{args.binds} bind(s) up; sending "
                f"{'as fast as the windows allow' if args.rate is None else f'{args.rate:g}/s'}"
            )
            run = asyncio.create_task(sim.run(args.rate, args.duration, args.count, traffic))
            await _supervise(
                run,
                sim.summary,
                _smsc_progress,
                args.progress,
                stopper,
                on_stop=sim.stop_run,
                on_hurry=lambda: sim.stop_run(drain=False),
            )
        elif not stopper.requested.is_set():
            _note(f"SMPS did not bind {args.binds} time(s) within {args.bind_timeout:g} s")
    finally:
        await sim.stop()
    summary = sim.summary()
    summary["scenario"] = {
        "rate": args.rate,
        "duration_s": args.duration,
        "count": args.count,
        "mix": args.mix.weights(),
        "binds": args.binds,
        "window": args.window,
        "traced_ratio": args.traced_ratio,
        "data_sm_ratio": args.data_sm_ratio,
    }
    ok = bound and summary["missing"] == 0 and summary["duplicates"] == 0
    print(format_smsc_summary(summary, ok), file=out)
    _write_json(args.json, summary)
    return 0 if ok else 1


async def ne_main(args: argparse.Namespace, stopper: Stopper, out: TextIO = sys.stdout) -> int:
    """Bind to SMPS, answer copies until --duration or Ctrl-C, report."""
    host, port = args.connect
    ne = SimNe(
        host,
        port,
        system_id=args.system_id,
        password=args.password,
        bind=args.bind,
        binds=args.binds,
        block_ratio=args.block_ratio,
        block_status=args.block_status,
        latency=Latency(args.latency, args.latency_dist),
        silent_ratio=args.silent_ratio,
        disconnect_every=args.disconnect_every,
        disconnect_ratio=args.disconnect_ratio,
        reconnect_initial=args.reconnect_initial,
        reconnect_max=args.reconnect_max,
        seed=args.seed,
    )
    _note(f"{args.system_id}: binding {args.binds} time(s) to {format_address((host, port))}")
    ne.start()
    try:
        ends = asyncio.create_task(asyncio.sleep(args.duration if args.duration else 1e9))
        await _supervise(
            ends,
            ne.summary,
            _ne_progress,
            args.progress,
            stopper,
            on_stop=ends.cancel,
            on_hurry=ends.cancel,
        )
    finally:
        await ne.stop()
    summary = ne.summary()
    print(format_ne_summary(summary), file=out)
    _write_json(args.json, summary)
    return 0


async def _unless_stopped(waiting: Awaitable[None], stopper: Stopper) -> bool:
    """True when `waiting` finished; False on its timeout or on Ctrl-C."""
    task = asyncio.ensure_future(waiting)
    stop = asyncio.ensure_future(stopper.requested.wait())
    await asyncio.wait((task, stop), return_when=asyncio.FIRST_COMPLETED)
    stop.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return False
    return task.exception() is None


async def _supervise(
    work: "asyncio.Future[Any]",
    summary: Callable[[], dict[str, Any]],
    progress_line: Callable[[dict[str, Any], float], str],
    every: float,
    stopper: Stopper,
    *,
    on_stop: Callable[[], Any],
    on_hurry: Callable[[], Any],
) -> None:
    """Wait for `work`, printing progress and passing on Ctrl-C (twice = hurry)."""
    started = time.monotonic()
    stop = asyncio.ensure_future(stopper.requested.wait())
    hurry = asyncio.ensure_future(stopper.hurry.wait())
    pending = {work, stop, hurry}
    try:
        while not work.done():
            done, _ = await asyncio.wait(
                pending, timeout=every or None, return_when=asyncio.FIRST_COMPLETED
            )
            if stop in done:
                pending.discard(stop)
                on_stop()
            if hurry in done:
                pending.discard(hurry)
                on_hurry()
            if not done and every:
                _note(progress_line(summary(), time.monotonic() - started))
    finally:
        stop.cancel()
        hurry.cancel()
    if not work.cancelled():
        work.result()  # re-raise what went wrong inside


# ---- output ------------------------------------------------------------------


def _note(text: str) -> None:
    print(f"sim: {text}", file=sys.stderr, flush=True)


def _smsc_progress(s: dict[str, Any], elapsed: float) -> str:
    return (
        f"{elapsed:6.0f}s  sent {s['sent']}  answered {s['answered']}  "
        f"outstanding {s['outstanding']}  missing {s['missing']}  "
        f"duplicates {s['duplicates']}  {s.get('msgs_per_s', 0):.0f} msg/s  "
        f"binds {s['binds']}"
    )


def _ne_progress(s: dict[str, Any], elapsed: float) -> str:
    return (
        f"{elapsed:6.0f}s  {s['system_id']}: received {s['received']}  "
        f"allow {s['answered']['allow']}  block {s['answered']['block']}  "
        f"silent {s['unanswered']}  binds {s['binds_up']}/{s['binds']}  "
        f"disconnects {s['disconnects']}"
    )


def _status_name(key: str) -> str:
    value = int(key, 16)
    try:
        return f"{key} {Status(value).name}"
    except ValueError:
        return key


def _table(title: str, rows: list[tuple[str, Any]]) -> str:
    width = max(len(name) for name, _ in rows)
    return "\n".join([title, *(f"  {name:<{width}}  {value}" for name, value in rows)])


def format_smsc_summary(s: dict[str, Any], ok: bool) -> str:
    latency = s["latency_ms"]
    rows: list[tuple[str, Any]] = [
        (
            "sent",
            f"{s['sent']} originals"
            + (
                f" ({', '.join(f'{k} {v}' for k, v in s['messages'].items())} messages)"
                if s["messages"]
                else ""
            ),
        ),
        ("answered", s["answered"]),
        *((f"  {_status_name(k)}", v) for k, v in s["statuses"].items()),
        ("missing", s["missing"]),
        ("duplicates", s["duplicates"]),
    ]
    if "elapsed_s" in s:
        offered = "max" if s["rate_offered"] is None else f"{s['rate_offered']:g}/s"
        rows += [
            (
                "rate",
                f"{s['msgs_per_s']:.1f} msg/s answered (offered {offered}, stalled {s['stalled']})",
            ),
            ("elapsed", f"{s['elapsed_s']:.3f} s"),
            (
                "cpu",
                f"{s['cpu_s']:.3f} s"
                + (f" = {s['cpu_us_per_msg']:.2f} µs/msg" if s["cpu_us_per_msg"] else ""),
            ),
        ]
    if latency["p50"] is not None:
        rows.append(
            (
                "latency ms",
                f"p50 {latency['p50']:.3f}  p90 {latency['p90']:.3f}  "
                f"p99 {latency['p99']:.3f}  max {latency['max']:.3f}",
            )
        )
    return _table(f"sim smsc: {'OK' if ok else 'FAILED'}", rows)


def format_ne_summary(s: dict[str, Any]) -> str:
    rows: list[tuple[str, Any]] = [
        ("copies received", s["received"]),
        ("answered allow", s["answered"]["allow"]),
        ("answered block", s["answered"]["block"]),
        ("never answered", s["unanswered"]),
        ("dropped (bind gone)", s["dropped"]),
        ("disconnects", f"{s['disconnects']} by us, {s['reconnects']} reconnects"),
        ("bind failures", s["bind_failures"]),
        (
            "cpu",
            f"{s['cpu_s']:.3f} s"
            + (f" = {s['cpu_us_per_copy']:.2f} µs/copy" if s["cpu_us_per_copy"] else ""),
        ),
    ]
    return _table(f"sim ne {s['system_id']}", rows)


def _write_json(path: str | None, summary: dict[str, Any]) -> None:
    if path:
        with open(path, "w", encoding="utf-8") as file:
            json.dump(summary, file, indent=2)
            file.write("\n")


def main(argv: Sequence[str] | None = None) -> int:
    """`smps sim ...` on its own (the same commands register() adds)."""
    parser = argparse.ArgumentParser(prog="smps", description="SMPS simulators.")
    register(parser.add_subparsers(dest="command", metavar="COMMAND", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)
