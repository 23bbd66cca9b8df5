"""Rules that span keys, checked once every value is valid on its own."""

from __future__ import annotations

from typing import Any

from smps.config.environment import _env_name
from smps.config.schema import InvalidValue
from smps.config.sections import Config
from smps.config.values import format_address


def check_config(config: Config) -> None:
    """Rules that span keys: unique names, references that resolve, ranges that relate."""
    smsc_names = _unique(config.smsc, "smsc", "name", "SMSC name")
    accounts = _unique(config.ne_accounts, "ne_accounts", "system_id", "account")
    _unique(config.routes, "routes", "name", "route name")
    _env_names_distinct(config.smsc, "smsc", "name", "SMSC")
    _env_names_distinct(config.ne_accounts, "ne_accounts", "system_id", "NE")

    for i, smsc in enumerate(config.smsc):
        if smsc.reconnect.max < smsc.reconnect.initial:
            raise InvalidValue(
                ("smsc", i, "reconnect", "max"),
                f"must be at least reconnect.initial ({smsc.reconnect.initial:g}s), "
                f"got {smsc.reconnect.max:g}s",
            )
        if smsc.tls is not None and bool(smsc.tls.cert) != bool(smsc.tls.key):
            missing = "key" if smsc.tls.cert else "cert"
            raise InvalidValue(
                ("smsc", i, "tls", missing), "cert and key go together; one is missing"
            )

    for i, route in enumerate(config.routes):
        for j, system_id in enumerate(route.accounts):
            if system_id not in accounts:
                raise InvalidValue(
                    ("routes", i, "accounts", j), f"unknown NE account {system_id!r}"
                )
        for j, name in enumerate(route.smsc):
            if name not in smsc_names:
                raise InvalidValue(("routes", i, "smsc", j), f"unknown SMSC {name!r}")

    # A zero status is ESME_ROK: the SMSC would deliver a message SMPS meant to stop.
    for key in ("block_status", "tempfail_status"):
        if getattr(config.policy, key) == 0:
            raise InvalidValue(("policy", key), "must not be 0 (ESME_ROK means delivered)")
    for j, code in enumerate(config.policy.ne_block_codes):
        if code == 0:
            raise InvalidValue(
                ("policy", "ne_block_codes", j), "must not be 0 (ESME_ROK means allow)"
            )

    if _same_listener(config.server.listen, config.web.listen):
        raise InvalidValue(
            ("web", "listen"),
            f"{format_address(config.web.listen)} clashes with server.listen "
            f"{format_address(config.server.listen)}",
        )


def _unique(entries: list[Any], section: str, key: str, what: str) -> set[str]:
    """The ``key`` of every entry, refused when one repeats."""
    values = [getattr(entry, key) for entry in entries]
    if repeat := _first_repeat(values):
        i, first = repeat
        raise InvalidValue(
            (section, i, key), f"duplicate {what} {values[i]!r} (first at {section}[{first}])"
        )
    return set(values)


def _env_names_distinct(entries: list[Any], section: str, key: str, kind: str) -> None:
    """Two names that map to one SMPS_*_PASSWORD variable could not be told apart."""
    names = [getattr(entry, key) for entry in entries]
    variables = [_env_name(kind, name) for name in names]
    if repeat := _first_repeat(variables):
        i, first = repeat
        raise InvalidValue(
            (section, i, key),
            f"{names[i]!r} and {names[first]!r} share the environment variable {variables[i]}",
        )


def _first_repeat(values: list[str]) -> tuple[int, int] | None:
    """(index, index of its first occurrence) of the first value seen before, or None."""
    first: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in first:
            return i, first[value]
        first[value] = i
    return None


def _same_listener(a: tuple[str, int], b: tuple[str, int]) -> bool:
    if a[1] == 0 or a[1] != b[1]:
        return False
    wildcards = {"0.0.0.0", "::", ""}
    return a[0] == b[0] or a[0] in wildcards or b[0] in wildcards
