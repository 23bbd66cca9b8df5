"""``smps screen test``: try a message on a running node's screening rules over its
REST API (``POST /api/v1/screening/test``); it is counted in no velocity window.

    smps screen test --from N --to N [--text T] [--pid P] [--dcs D] [--smsc NAME] [-c FILE]

Prints every rule that fired, in order, and the verdict; exit 0 whatever the
verdict (1 when the API refused or could not be reached, 2 bad usage). The node
is the one that ``-c FILE`` configures (its control socket tells the HTTP port),
unless ``--url`` or ``$SMPS_URL`` names one; the token is ``--token`` or
``$SMPS_TOKEN``, of any role (:mod:`smps.api_cli`).
"""

from __future__ import annotations

import argparse
from typing import Any

from smps.api_cli import add_api_options, api_path, request, with_token
from smps.cli_support import add_command, add_group
from smps.config import add_config_option

_OPTIONAL = ("pid", "dcs", "smsc", "source_ton", "dest_ton")


def _cmd_test(args: argparse.Namespace) -> int:
    message: dict[str, Any] = {
        "source": args.source,
        "destination": args.destination,
        "text": args.text,
    }
    message.update(
        {name: getattr(args, name) for name in _OPTIONAL if getattr(args, name) is not None}
    )
    print(render_result(request(args, "POST", api_path("screening", "test"), message)))
    return 0


def render_result(result: dict[str, Any]) -> str:
    """The rules that fired, one a line, then the verdict and what it means."""
    lines = [f"fired   {r['id']} ({r['type']}, {r['action']})" for r in result["fired"]]
    if not result["enabled"]:
        lines.append("screening is off on this node (screening.enabled): no rule ran")
    elif not lines:
        lines.append("no rule fired")
    verdict, rule, status = result["verdict"], result["rule"], result["status"]
    if status is not None:
        meaning = f"the SMSC gets 0x{status:08X} at once, no NE gets a copy"
    elif verdict == "allow":
        meaning = "the rules after it are skipped, the NEs' verdict decides"
    else:
        meaning = "no rule decided, the NEs' verdict decides"
    lines.append(f"verdict {verdict}" + (f" by {rule}" if rule else "") + f": {meaning}")
    return "\n".join(lines)


def _octet(text: str) -> int:
    """64 or 0x40."""
    try:
        value = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number such as 64 or 0x40, got {text!r}"
        ) from None
    if not 0 <= value <= 255:
        raise argparse.ArgumentTypeError(f"expected 0 to 255, got {value}")
    return value


def _options(parser: argparse.ArgumentParser) -> None:
    add_config_option(parser)
    add_api_options(parser, from_config=True)


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``screen`` command to the ``smps`` parser."""
    actions = add_group(
        commands,
        "screen",
        help="the screening rules of a running node",
        description="The screening rules of a running node, through its REST API.",
    )
    test = add_command(
        actions,
        "test",
        with_token(_cmd_test, "any role may try a message: check the token"),
        help="try a message on the live rules, counted in no velocity window",
        description="Judge a message as if an SMSC had sent it, with the node's live rules "
        "and velocity counts, without counting it; print every rule that fires and the verdict.",
        options=_options,
    )
    test.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="N",
        help="the sender: a number (+86..., national) or a sender ID",
    )
    test.add_argument("--to", dest="destination", required=True, metavar="N", help="the recipient")
    test.add_argument("--text", default="", metavar="T", help="the text (default: none)")
    test.add_argument(
        "--pid", type=_octet, metavar="P", help="protocol_id (default 0; 0x40: silent)"
    )
    test.add_argument(
        "--dcs",
        type=_octet,
        metavar="D",
        help="data_coding (default: GSM 7-bit when the text fits, else UCS-2)",
    )
    test.add_argument("--smsc", metavar="NAME", help="the SMSC it comes from (default: the first)")
    test.add_argument(
        "--source-ton",
        type=_octet,
        metavar="TON",
        help="the sender's TON (default: 5 for a sender ID, else 0)",
    )
    test.add_argument("--dest-ton", type=_octet, metavar="TON", help="the recipient's TON")
