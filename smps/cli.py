"""The `smps` command.

Exit status: 0 success, 1 failure while running, 2 bad usage or bad configuration.
"""

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from smps import __version__
from smps.cli_support import add_command, add_group
from smps.errors import ConfigError, StateDirBusy

log = logging.getLogger("smps.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smps",
        description="SMPS: SMPP proxy that copies every short message to inspection "
        "systems (NEs), combines their verdicts and answers the SMSC exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"smps {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    add_command(commands, "run", _cmd_run, help="run the proxy", description="Run the proxy.")
    add_command(
        commands,
        "status",
        _cmd_status,
        help="role, workers, binds and rates of the running node",
        description="Ask the running node (over its control socket under node.state_dir) for "
        "its role, workers, SMSC and NE binds and in-flight originals. Exit 1 when none runs.",
    )

    demo = add_command(
        commands,
        "demo",
        _cmd_demo,
        help="SMPS with a simulated SMSC, three simulated NEs and live traffic",
        description="Run SMPS on embedded defaults with a simulated SMSC, three simulated NEs "
        "(one slow enough to hit the 2 s timeout) and traffic, showing live stats. "
        "Ctrl-C stops cleanly.",
        options=None,
    )
    demo.add_argument(
        "--rate",
        type=float,
        default=200.0,
        metavar="N",
        help="originals per second from the simulated SMSC (default: 200)",
    )
    demo.add_argument(
        "--duration",
        type=_duration,
        default=None,
        metavar="TIME",
        help="stop by itself after this long, e.g. 30s (default: until Ctrl-C)",
    )
    demo.add_argument(
        "--web-port",
        type=int,
        default=8080,
        metavar="PORT",
        help="port of /health and /metrics on 127.0.0.1 (default: 8080; any free port if taken)",
    )

    config_commands = add_group(
        commands, "config", help="configuration tools", description="Configuration tools."
    )
    add_command(
        config_commands,
        "check",
        _cmd_config_check,
        help="validate a configuration file without starting anything",
        description="Validate a configuration file; exit 0 when valid, 2 with the reason when not.",
    )

    from smps.ha_cli import register as register_ha
    from smps.screen_cli import register as register_screen
    from smps.sim.cli import register as register_sim
    from smps.store.cli import register as register_store
    from smps.trace_cli import register as register_trace

    register_sim(commands)
    _register_bench(commands)
    register_trace(commands)
    register_screen(commands)
    register_store(commands)
    register_ha(commands)
    return parser


def _register_bench(commands: argparse._SubParsersAction) -> None:
    """`smps bench` from the source checkout's bench/loadrun, beside the smps package
    (the editable install); installed without the checkout, `smps bench` says so."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "bench" / "loadrun" / "__init__.py").is_file():
        if str(checkout) not in sys.path:
            sys.path.append(str(checkout))  # the spawned load generators inherit it
        from bench.loadrun.command import register

        register(commands)
        return
    # Any arguments at all ("\0": nothing is an option), to answer with the reason.
    bench = commands.add_parser(
        "bench", help="load run (from a source checkout)", add_help=False, prefix_chars="\0"
    )
    bench.add_argument("ignored", nargs="*")
    bench.set_defaults(handler=lambda _args: _no_checkout(checkout))


def _no_checkout(installed_in: Path) -> int:
    print(
        "smps bench runs from a source checkout: it needs bench/loadrun beside the smps "
        f"package, and this smps is installed in {installed_in} without it",
        file=sys.stderr,
    )
    return 2


def _load_config(path: str):
    from smps import config

    return config.load(path)


def _duration(text: str) -> float:
    from smps.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_demo(args: argparse.Namespace) -> int:
    import uvloop

    from smps import log as smps_log
    from smps.demo import run_demo

    if args.rate <= 0:
        print("smps: --rate must be > 0", file=sys.stderr)
        return 2
    smps_log.configure(level="WARNING", process_name="demo")
    summary = uvloop.run(run_demo(args.rate, args.duration, args.web_port))
    return 0 if summary["missing"] == 0 and summary["duplicates"] == 0 else 1


def _cmd_config_check(args: argparse.Namespace) -> int:
    from smps.ha.lease import check_config

    cfg = _load_config(args.config)
    check_config(cfg)
    print(
        f"{args.config}: OK ({len(cfg.smsc)} SMSC, {len(cfg.ne_accounts)} NE accounts, "
        f"{len(cfg.routes)} routes)"
    )
    return 0


def _run_node(cfg, config_path: str) -> int:
    """The master and its `node.workers` worker processes until SIGTERM/SIGINT."""
    from smps.runtime import master

    return master.run(cfg, config_path)


def _cmd_run(args: argparse.Namespace) -> int:
    from smps import log as smps_log
    from smps.ha.lease import check_config
    from smps.runtime import state_lock, status

    cfg = _load_config(args.config)
    check_config(cfg)
    with state_lock.hold(cfg.node.state_dir):  # before the log, the database, any port
        smps_log.configure_from(cfg.log)
        for line in status.banner(cfg, args.config):
            log.info("%s", line)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("configuration (secrets masked): %s", json.dumps(cfg.masked()))
        return _run_node(cfg, args.config)


def _cmd_status(args: argparse.Namespace) -> int:
    from smps.runtime import status

    return status.show(_load_config(args.config))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (ConfigError, StateDirBusy) as exc:
        print(f"smps: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
