"""keepalived's hooks into a running node: ``smps ha notify`` and ``smps ha check``.

Both talk to the node's control socket ``{node.state_dir}/smps.sock``
(smps.runtime.control_socket): one JSON request line, one JSON answer line
(served by ``HaController.handle_control``):

- ``{"cmd": "ha.notify", "args": ["INSTANCE", "SMPS", "MASTER", "150"]}`` (or
  ``["MASTER"]``) → ``{"result": "ok", "role": ..., "reason": ...}``
- ``{"cmd": "ha.check"}`` → ``{"healthy": true|false, "reason": ..., "role": ...}``
- anything refused → ``{"error": ...}``

``smps ha notify`` is keepalived's ``notify`` script (keepalived appends TYPE
NAME STATE PRIORITY) or a hand-typed ``MASTER|BACKUP|FAULT|STOP``; prefer the
notify FIFO (``ha.notify_fifo``), which keeps the order of state changes.
``smps ha check`` is a ``vrrp_script``: exit 0 only when the node answers
healthy within about a second; it changes nothing.
"""

from __future__ import annotations

import argparse
import sys

from smps.cli_support import add_command, add_group

CHECK_TIMEOUT = 1.0  # seconds for the node to answer `ha check`
NOTIFY_TIMEOUT = 5.0


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``ha notify`` and ``ha check`` to the ``smps`` parser."""
    ha_commands = add_group(
        commands, "ha", help="keepalived hooks", description="Hooks for keepalived (VRRP)."
    )
    notify = add_command(
        ha_commands,
        "notify",
        _cmd_notify,
        help="tell the running node keepalived's new state",
        description="Tell the running node keepalived's state: MASTER, BACKUP, FAULT or STOP, "
        "alone or as keepalived's notify-script arguments TYPE NAME STATE PRIORITY.",
    )
    notify.add_argument("words", nargs="+", metavar="STATE | TYPE NAME STATE PRIORITY")
    add_command(
        ha_commands,
        "check",
        _cmd_check,
        help="keepalived vrrp_script: exit 0 when the node can serve",
        description="Exit 0 when the running node answers healthy within about a second, "
        "1 otherwise. No side effects.",
    )


def _cmd_notify(args: argparse.Namespace) -> int:
    from smps.ha.keepalived import parse_notice

    try:
        parse_notice(args.words)
    except ValueError as exc:
        print(f"smps ha notify: {exc}", file=sys.stderr)
        return 2
    answer = _ask(args.config, {"cmd": "ha.notify", "args": args.words}, NOTIFY_TIMEOUT)
    if answer is None:
        return 1
    if "error" in answer:
        print(f"smps ha notify: refused: {answer['error']}", file=sys.stderr)
        return 1
    print(f"role {answer.get('role')}: {answer.get('reason')}")
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    answer = _ask(args.config, {"cmd": "ha.check"}, CHECK_TIMEOUT)
    if answer is None:
        return 1
    if answer.get("healthy") is not True:
        print(f"smps ha check: not healthy: {answer.get('reason') or answer}", file=sys.stderr)
        return 1
    return 0


def _ask(config_path: str, message: dict, timeout: float) -> dict | None:
    """The node's answer, or None (after saying why on stderr) when there is none."""
    from smps import config
    from smps.runtime import control_socket

    return control_socket.ask(config.load(config_path).node.state_dir, message, timeout)
