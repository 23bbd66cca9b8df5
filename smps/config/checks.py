"""Rules that span keys, checked once every value is valid on its own."""

from __future__ import annotations

from typing import Any

from smps.config.environment import _env_name
from smps.config.rule_entries import (
    EntryError,
    check_pattern,
    domain_entry,
    file_lines,
    fingerprint_entry,
    list_entry,
)
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

    hold = config.policy.concat_hold
    if hold is not None and hold > config.policy.timeout:
        raise InvalidValue(
            ("policy", "concat_hold"),
            f"must be at most policy.timeout ({config.policy.timeout:g}s), "
            f"got {hold:g}s: a held part would wait past its deadline",
        )

    _unique(config.screening.rules, ("screening", "rules"), "id", "rule id")
    for i, rule in enumerate(config.screening.rules):
        check_screening_rule(rule, ("screening", "rules", i))

    if _same_listener(config.server.listen, config.web.listen):
        raise InvalidValue(
            ("web", "listen"),
            f"{format_address(config.web.listen)} clashes with server.listen "
            f"{format_address(config.server.listen)}",
        )


def _unique(entries: list[Any], section: str | tuple, key: str, what: str) -> set[str]:
    """The ``key`` of every entry, refused when one repeats."""
    values = [getattr(entry, key) for entry in entries]
    path = section if isinstance(section, tuple) else (section,)
    if repeat := _first_repeat(values):
        i, first = repeat
        raise InvalidValue(
            (*path, i, key), f"duplicate {what} {values[i]!r} (first at {path[-1]}[{first}])"
        )
    return set(values)


# Which of a screening rule's keys each type takes (the others must stay unset).
_RULE_KEYS = {
    "list": {"field", "entries", "file"},
    "keyword": {"patterns"},
    "regex": {"patterns"},
    "url": {"entries", "file"},
    "velocity": {"key", "limit", "window"},
    "special": {"kinds"},
    "fingerprint": {"entries"},
}
_TYPED_KEYS = set().union(*_RULE_KEYS.values())


def check_screening_rule(rule: Any, path: tuple = ()) -> None:
    """A screening rule: the keys of its type, set and valid; no key of another type.
    The store checks a rule made through the API with it too (``path`` then empty)."""
    wanted = _RULE_KEYS[rule.type]
    for key in sorted(_TYPED_KEYS - wanted):
        if getattr(rule, key) not in (None, [], ""):
            raise InvalidValue((*path, key), f"does not apply to a {rule.type} rule")
    if rule.skip_ne and rule.action != "allow":
        raise InvalidValue((*path, "skip_ne"), "applies to allow rules only")
    if rule.type == "list" and rule.field is None:
        raise InvalidValue((*path, "field"), "a list rule needs field: source or destination")
    if rule.type == "fingerprint" and not rule.entries:
        raise InvalidValue((*path, "entries"), "a fingerprint rule needs entries")
    if rule.type in ("list", "url") and not rule.entries and rule.file is None:
        raise InvalidValue((*path, "entries"), f"a {rule.type} rule needs entries or a file")
    if rule.type in ("keyword", "regex") and not rule.patterns:
        raise InvalidValue((*path, "patterns"), f"a {rule.type} rule needs at least one pattern")
    if rule.type == "velocity":
        for key in ("key", "limit", "window"):
            if getattr(rule, key) is None:
                raise InvalidValue((*path, key), "a velocity rule needs key, limit and window")
    if rule.type == "special" and not rule.kinds:
        raise InvalidValue((*path, "kinds"), "a special rule needs at least one kind")
    entry = {"list": list_entry, "fingerprint": fingerprint_entry}.get(rule.type, domain_entry)
    try:
        for j, text in enumerate(rule.entries):
            _entry(entry, text, (*path, "entries", j))
        for j, pattern in enumerate(rule.patterns):
            _entry(check_pattern, pattern, (*path, "patterns", j), rule.type == "regex")
        if rule.scope is not None:
            for side in ("source", "destination"):
                for j, text in enumerate(getattr(rule.scope, side)):
                    _entry(list_entry, text, (*path, "scope", side, j))
        if rule.file is not None:
            for number, text in file_lines(rule.file):
                try:
                    entry(text)
                except EntryError as exc:
                    raise EntryError(f"{rule.file} line {number}: {exc}") from None
    except EntryError as exc:
        raise InvalidValue((*path, "file"), str(exc)) from None


def _entry(check: Any, text: str, path: tuple, *args: Any) -> None:
    try:
        check(text, *args)
    except EntryError as exc:
        raise InvalidValue(path, str(exc)) from None


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
