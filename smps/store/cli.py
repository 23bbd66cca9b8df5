"""Database commands of ``smps``: ``db upgrade``, ``token create|list|revoke``,
``user add|list|passwd|disable|enable``.

Each reads the configuration file for ``database.url`` and ``node.state_dir``
and applies pending migrations first, so they work on a fresh database too.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING

from smps.cli_support import add_command, add_group
from smps.store.roles import ROLES

if TYPE_CHECKING:  # the database layer loads only when a command runs (keeps --help fast)
    from smps.store.db import Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add the ``db``, ``token`` and ``user`` commands to the ``smps`` parser."""
    db_commands = add_group(commands, "db", help="database tools", description="Database tools.")
    add_command(
        db_commands,
        "upgrade",
        _cmd_db_upgrade,
        help="apply pending schema migrations",
        description="Apply pending schema migrations (smps run also does this at start).",
    )

    token_commands = add_group(commands, "token", help="API tokens", description="API tokens.")
    create = add_command(
        token_commands,
        "create",
        _cmd_token_create,
        help="create an API token and print it (shown once)",
        description="Create a bearer token for /api/v1 and print it; only its hash is stored.",
    )
    create.add_argument("--name", required=True, help="who or what uses the token")
    create.add_argument("--role", choices=ROLES, default="viewer", help="default: viewer")
    create.add_argument(
        "--expires-days",
        type=float,
        default=None,
        help="valid for this many days (default: no end)",
    )

    add_command(
        token_commands,
        "list",
        _cmd_token_list,
        help="list API tokens",
        description="List every API token (never the token itself): id, name, role, times, state.",
    )
    revoke = add_command(
        token_commands,
        "revoke",
        _cmd_token_revoke,
        help="revoke an API token",
        description="Revoke a token by its id (smps token list); its next request gets 401.",
    )
    revoke.add_argument("id", type=int)

    user_commands = add_group(commands, "user", help="admin users", description="Admin UI users.")
    add = add_command(
        user_commands,
        "add",
        _cmd_user_add,
        help="add an admin UI user",
        description="Add a user; the password is asked for (or read from stdin).",
    )
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="viewer", help="default: viewer")
    _password_stdin_option(add)
    add_command(
        user_commands, "list", _cmd_user_list, help="list admin UI users", description="List users."
    )
    passwd = add_command(
        user_commands,
        "passwd",
        _cmd_user_passwd,
        help="set a user's password",
        description="Set a user's password; it is asked for (or read from stdin).",
    )
    passwd.add_argument("name")
    _password_stdin_option(passwd)
    for verb, enabled in (("disable", False), ("enable", True)):
        toggle = add_command(
            user_commands,
            verb,
            partial(_cmd_user_enabled, enabled=enabled),
            help=f"{verb} a user",
            description=f"{verb.capitalize()} a user's sign-in (audited).",
        )
        toggle.add_argument("name")


def _password_stdin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )


def _with_store(args: argparse.Namespace, work: Callable[[Store], Awaitable[int]]) -> int:
    from smps import config

    cfg = config.load(args.config)

    from smps.store.common import Conflict, NotFound
    from smps.store.db import Store, upgrade

    async def run() -> int:
        store = await Store.open(cfg.database.url, migrate=False)
        try:
            await upgrade(store.engine)
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except (Conflict, NotFound) as exc:
        print(f"smps: {exc}", file=sys.stderr)
        return 1


def _cmd_db_upgrade(args: argparse.Namespace) -> int:
    async def work(store: Store) -> int:
        print("database schema is up to date")
        return 0

    return _with_store(args, work)


def _cmd_token_create(args: argparse.Namespace) -> int:
    from smps.store import common, tokens

    expires = None
    if args.expires_days is not None:
        expires = common.now_us() + round(args.expires_days * 86_400_000_000)

    async def work(store: Store) -> int:
        print(await tokens.create_token(store, args.name, args.role, expires))
        return 0

    return _with_store(args, work)


def _cmd_token_list(args: argparse.Namespace) -> int:
    from smps.store import tokens

    async def work(store: Store) -> int:
        rows = [
            (
                str(t["id"]),
                t["name"],
                t["role"],
                t["created_at"],
                t["expires_at"] or "-",
                t["last_used_at"] or "-",
                "revoked" if t["revoked"] else "active",
            )
            for t in await tokens.list_tokens(store)
        ]
        _print_table(("ID", "NAME", "ROLE", "CREATED", "EXPIRES", "LAST USED", "STATE"), rows)
        return 0

    return _with_store(args, work)


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    from smps.store import tokens

    async def work(store: Store) -> int:
        token = await tokens.revoke_token(store, args.id, actor="cli")
        print(f"token {token['id']} ({token['name']}) revoked")
        return 0

    return _with_store(args, work)


def _read_password(args: argparse.Namespace) -> str | None:
    """The new password from stdin or asked twice; None (said why) when unusable."""
    from smps.store import admin_users

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("smps: the passwords differ", file=sys.stderr)
            return None
    if len(password) < admin_users.MIN_PASSWORD:
        print(
            f"smps: use a password of at least {admin_users.MIN_PASSWORD} characters",
            file=sys.stderr,
        )
        return None
    return password


def _cmd_user_add(args: argparse.Namespace) -> int:
    from smps.store import admin_users

    password = _read_password(args)
    if password is None:
        return 2

    async def work(store: Store) -> int:
        await admin_users.add_user(store, args.name, password, args.role, actor="cli")
        print(f"user {args.name} added ({args.role})")
        return 0

    return _with_store(args, work)


def _cmd_user_list(args: argparse.Namespace) -> int:
    from smps.store import admin_users

    async def work(store: Store) -> int:
        rows = [
            (u["name"], u["role"], "enabled" if u["enabled"] else "disabled", u["created_at"])
            for u in await admin_users.list_users(store)
        ]
        _print_table(("NAME", "ROLE", "STATE", "ADDED"), rows)
        return 0

    return _with_store(args, work)


def _cmd_user_passwd(args: argparse.Namespace) -> int:
    from smps.store import admin_users

    password = _read_password(args)
    if password is None:
        return 2

    async def work(store: Store) -> int:
        await admin_users.set_user_password(store, args.name, password, actor="cli")
        print(f"password of {args.name} set")
        return 0

    return _with_store(args, work)


def _cmd_user_enabled(args: argparse.Namespace, *, enabled: bool) -> int:
    from smps.store import admin_users

    async def work(store: Store) -> int:
        await admin_users.set_user_enabled(store, args.name, enabled, actor="cli")
        print(f"user {args.name} {'enabled' if enabled else 'disabled'}")
        return 0

    return _with_store(args, work)


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
