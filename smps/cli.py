"""The `smps` command.

Exit status: 0 success, 1 failure while running, 2 bad usage or bad configuration.
"""

import argparse
import logging
import sys
from collections.abc import Sequence

import msgspec

from smps import __version__
from smps.errors import ConfigError

DEFAULT_CONFIG = "config/smps.yaml"

log = logging.getLogger("smps.cli")


def _add_config_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        metavar="FILE",
        help=f"configuration file (default: {DEFAULT_CONFIG})",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smps",
        description="SMPS: SMPP proxy that copies every short message to inspection "
        "systems (NEs), combines their verdicts and answers the SMSC exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"smps {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the proxy", description="Run the proxy.")
    _add_config_option(run)
    run.set_defaults(handler=_cmd_run)

    config = commands.add_parser(
        "config", help="configuration tools", description="Configuration tools."
    )
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = config_commands.add_parser(
        "check",
        help="validate a configuration file without starting anything",
        description="Validate a configuration file; exit 0 when valid, 2 with the reason when not.",
    )
    _add_config_option(check)
    check.set_defaults(handler=_cmd_config_check)
    return parser


def _load_config(path: str):
    from smps import config

    return config.load(path)


def _cmd_config_check(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    print(
        f"{args.config}: OK ({len(cfg.smsc)} SMSC, {len(cfg.ne_accounts)} NE accounts, "
        f"{len(cfg.routes)} routes)"
    )
    return 0


def _configure_logging(cfg, process_name: str = "master") -> None:
    from smps import log as smps_log

    smps_log.configure(
        level=cfg.log.level,
        file=cfg.log.file or None,
        max_bytes=cfg.log.max_bytes,
        backups=cfg.log.backups,
        color=cfg.log.color,
        process_name=process_name,
    )


def _run_node(cfg) -> int:
    import uvloop

    from smps.app import Node

    node = Node(cfg)
    try:
        uvloop.run(node.run())
    except OSError as exc:
        log.critical("cannot start: %s", exc)
        return 1
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    cfg = _load_config(args.config)
    _configure_logging(cfg)
    log.info("configuration %s: %s", args.config, msgspec.json.encode(cfg.masked()).decode())
    return _run_node(cfg)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as exc:
        print(f"smps: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
