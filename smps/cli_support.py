"""How the `smps` commands declare themselves to argparse, written once for all of them.

A command is a parser that runs a handler (``args.handler(args)`` in smps.cli);
a group is a command with required actions under it (``smps db upgrade``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from smps.config import add_config_option

Handler = Callable[[argparse.Namespace], int]


def add_group(
    commands: argparse._SubParsersAction, name: str, *, help: str, description: str
) -> argparse._SubParsersAction:
    """The command ``name``, whose ACTION (stored in ``args.<name>_command``) must be given."""
    group = commands.add_parser(name, help=help, description=description)
    return group.add_subparsers(dest=f"{name}_command", metavar="ACTION", required=True)


def add_command(
    commands: argparse._SubParsersAction,
    name: str,
    handler: Handler,
    *,
    help: str,
    description: str | None = None,
    options: Callable[[argparse.ArgumentParser], None] | None = add_config_option,
) -> argparse.ArgumentParser:
    """The command ``name`` running ``handler``, with ``options`` (default: -c/--config);
    returned for the arguments of its own."""
    parser = commands.add_parser(name, help=help, description=description)
    if options is not None:
        options(parser)
    parser.set_defaults(handler=handler)
    return parser
