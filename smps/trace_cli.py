"""``smps trace``: trace rules and traced messages, over the REST API of a running node.

    smps trace add NUMBER [--side both|sender|receiver] [--expires 2h|ISO] [--decode-content]
    smps trace list
    smps trace remove NUMBER
    smps trace messages [--number NUMBER] [--limit N]
    smps trace show MESSAGE_ID

Every action talks to ``--url`` (default ``$SMPS_URL`` or http://127.0.0.1:8080)
with ``--token`` (default ``$SMPS_TOKEN``; ``smps token create``), through
:mod:`smps.api_cli`: a rule added here is audited and reaches the running tracer
at once. Exit status: 0 done, 1 the API refused or could not be reached, 2 bad usage.
"""

from __future__ import annotations

import argparse
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from smps.api_cli import add_api_options, api_path, request, with_token
from smps.cli_support import add_command, add_group
from smps.config import parse_duration

# The ladder's three columns, SMSC | SMPS | NE, and where each event goes between them.
ARROWS = {
    "smsc->smps": "SMSC --> SMPS       ",
    "smps->ne": "        SMPS --> NE ",
    "ne->smps": "        SMPS <-- NE ",
    "smps->smsc": "SMSC <-- SMPS       ",
    "smps": "        SMPS  x     ",
}


# ------------------------------------------------------------------------- actions


def _cmd_add(args: argparse.Namespace) -> int:
    rule: dict[str, Any] = {"number": args.number, "side": args.side}
    if args.expires is not None:
        rule["expires"] = args.expires
    if args.decode_content is not None:
        rule["decode_content"] = args.decode_content
    created = request(args, "POST", api_path("trace_rules"), rule)
    print(f"tracing {created['number']} ({_describe(created)})")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    rules = request(args, "GET", api_path("trace_rules"))
    if not rules:
        print("no trace rules")
        return 0
    now = datetime.now(UTC)
    rows = [("NUMBER", "SIDE", "EXPIRES", "CONTENT", "FROM")]
    for rule in rules:
        expires = rule.get("expires") or "never"
        if rule.get("expires") and _parse_time(rule["expires"]) <= now:
            expires += " (expired)"
        rows.append(
            (
                rule["number"],
                rule["side"],
                expires,
                _content_choice(rule.get("decode_content")),
                "file" if rule["file_managed"] else "api",
            )
        )
    print(_table(rows))
    return 0


def _cmd_remove(args: argparse.Namespace) -> int:
    request(args, "DELETE", api_path("trace_rules", args.number))
    print(f"no longer tracing {args.number}")
    return 0


def _cmd_messages(args: argparse.Namespace) -> int:
    query = {"limit": str(args.limit)}
    if args.number:
        query["number"] = args.number
    page = request(args, "GET", api_path("traces") + "?" + urllib.parse.urlencode(query))
    if not page["items"]:
        print("no traced messages")
        return 0
    rows = [("ARRIVED (UTC)", "MESSAGE ID", "FROM", "TO", "VERDICT", "STATUS", "EVENTS")]
    for item in page["items"]:
        rows.append(
            (
                _clock(item["first_us"], date=True),
                item["message_id"],
                item["source_addr"],
                item["destination_addr"],
                item["verdict"] or "-",
                _status(item["status"]) or "-",
                str(item["events"]),
            )
        )
    print(_table(rows))
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    trace = request(args, "GET", api_path("traces", args.message_id))
    print(render_ladder(trace["events"]))
    return 0


# ------------------------------------------------------------------------ rendering


def render_ladder(events: list[dict[str, Any]]) -> str:
    """One traced message as text: a header, then one line per event between the
    SMSC, SMPS and NE columns, then the decoded text when content was allowed."""
    if not events:
        return "no events"
    first = events[0]
    lines = [
        f"message {first['message_id']}: {first['source_addr']} -> {first['destination_addr']}"
        f" via {first['smsc']}"
        + (f", rules {', '.join(first['rules'])}" if first.get("rules") else "")
        + ("" if first.get("content") else "; content hidden"),
    ]
    start = first["ts_us"]
    for event in events:
        lines.append(
            "  ".join(
                (
                    _clock(event["ts_us"]),
                    f"{(event['ts_us'] - start) / 1000:+10.3f} ms",
                    ARROWS.get(event["direction"], event["direction"].ljust(20)),
                    (event.get("command") or "(no pdu)").ljust(18),
                    f"seq {event['sequence']}".ljust(14) if "sequence" in event else " " * 14,
                    _status(event.get("status")).ljust(10),
                    _details(event),
                )
            ).rstrip()
        )
    for event in events:
        if event.get("text") is not None:
            lines.append(f"text ({event.get('encoding')}): {event['text']}")
        whole = event.get("reassembled") or {}
        if whole.get("text") is not None:
            parts = len(whole.get("parts", []))
            lines.append(f"reassembled ({whole.get('encoding')}, {parts} parts): {whole['text']}")
    return "\n".join(lines)


def _details(event: dict[str, Any]) -> str:
    words = []
    if event.get("account"):
        words.append(event["account"])
    if event.get("bind"):
        words.append(f"bind {event['bind']}")
    if event.get("verdict"):
        words.append(event["verdict"])
    if event.get("latency_ms") is not None:
        words.append(f"{event['latency_ms']:.1f} ms")
    if event.get("late"):
        words.append("LATE")
    if event.get("reason"):
        words.append(f"({event['reason']})")
    concat = event.get("concat")
    if concat:
        words.append(f"part {concat['part']}/{concat['total']}")
    return " ".join(words)


def _status(status: int | None) -> str:
    return "" if status is None else f"0x{status:08X}"


def _clock(ts_us: int, *, date: bool = False) -> str:
    moment = datetime.fromtimestamp(ts_us / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f" if date else "%H:%M:%S.%f")


def _content_choice(decode_content: bool | None) -> str:
    return {None: "default", True: "decoded", False: "hidden"}[decode_content]


def _describe(rule: dict[str, Any]) -> str:
    words = [f"side {rule['side']}", f"content {_content_choice(rule.get('decode_content'))}"]
    words.append(f"until {rule['expires']}" if rule.get("expires") else "no expiry")
    return ", ".join(words)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _parse_time(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _expiry(value: str) -> str:
    """``--expires``: a duration from now (``2h``, ``1d``) or an ISO 8601 time → ISO 8601."""
    try:
        seconds = parse_duration(value)
    except ValueError:
        try:
            return _parse_time(value).isoformat()
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a duration such as 2h or 1d, or an ISO 8601 time, got {value!r}"
            ) from None
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat(timespec="seconds")


# ------------------------------------------------------------------------ the parser


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``trace`` command to the ``smps`` parser."""
    actions = add_group(
        commands,
        "trace",
        help="protocol tracing of chosen numbers",
        description="Trace rules and traced messages, through the REST API of a running node.",
    )

    add = _action(
        actions,
        "add",
        _cmd_add,
        help="trace a number or prefix",
        description="Trace every message from and/or to NUMBER (a prefix ends in *).",
    )
    add.add_argument("number", metavar="NUMBER", help='e.g. 8613800138000, +8613800138000, "8613*"')
    add.add_argument("--side", choices=("both", "sender", "receiver"), default="both")
    add.add_argument(
        "--expires", type=_expiry, metavar="TIME", help="2h, 1d... from now, or an ISO 8601 time"
    )
    add.add_argument(
        "--decode-content",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show the message text (only where trace.decode_content allows it; "
        "default: trace.decode_content)",
    )

    _action(actions, "list", _cmd_list, help="list the trace rules")

    remove = _action(actions, "remove", _cmd_remove, help="stop tracing a number")
    remove.add_argument("number", metavar="NUMBER", help="as written when added")

    messages = _action(actions, "messages", _cmd_messages, help="traced messages, newest first")
    messages.add_argument("--number", help="only this number or prefix (source or destination)")
    messages.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")

    show = _action(actions, "show", _cmd_show, help="the event ladder of one traced message")
    show.add_argument("message_id", metavar="MESSAGE_ID", help="from `smps trace messages`")


def _action(
    actions: argparse._SubParsersAction,
    name: str,
    cmd: Callable[[argparse.Namespace], int],
    *,
    help: str,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """An action of ``smps trace``: the API options, and ``cmd`` run with an API token."""
    return add_command(
        actions,
        name,
        with_token(cmd, "changing trace rules needs an operator or admin token"),
        help=help,
        description=description,
        options=add_api_options,
    )
