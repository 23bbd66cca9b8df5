"""What `smps sim smsc` and `smps sim ne` do once parsed (`smps.sim.cli`): run a
simulator until it is done or stopped, with a progress line now and then
(stderr), a summary table at the end (stdout) and, with --json, the summary as
JSON. Ctrl-C or SIGTERM stops cleanly (`Stopper`): the SMSC simulator still
waits for the answers in flight; a second Ctrl-C skips the wait.
"""

import argparse
import asyncio
import json
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TextIO

from smps._native.pdu import Status
from smps.config import format_address
from smps.sim.ne import Latency, SimNe
from smps.sim.smsc import SimSmsc
from smps.sim.traffic import Traffic


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
