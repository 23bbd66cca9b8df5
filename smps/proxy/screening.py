"""The screening engine's rules, compiled from the configuration for the native
engine (`smps._native.screen`), and the shared velocity counters it counts in.

A data plane builds one `Engine` at start and again on every configuration
change (list files are read again then: that is how a SIGHUP or an API edit
reloads them); the velocity counters outlive it, so a reload neither resets a
sender's count nor drops a message. The configuration was checked already
(`smps.config.checks`): what fails here is a list file changed since, and the
previous engine then stays (the caller logs why).
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Iterable

from smps._native import screen
from smps._native.screen import Engine, Judgement
from smps._native.velocity import VelocityTable, velocity_table_size
from smps.config import Config, RuleScope, ScreeningRule
from smps.config.rule_entries import (
    EntryError,
    content_database,
    domain_entry,
    file_lines,
    fingerprint_entry,
    list_entry,
)
from smps.proxy.trace_match import normalise_rule_number

__all__ = [
    "Engine",
    "EntryError",
    "Judgement",
    "Screening",
    "address_set",
    "attach_velocity_table",
    "build_engine",
    "private_velocity_table",
    "velocity_memory",
]

log = logging.getLogger("smps.screening")

ACTIONS = {"block": screen.ACTION_BLOCK, "allow": screen.ACTION_ALLOW,
           "monitor": screen.ACTION_MONITOR}  # fmt: skip
ACTION_NAMES = {code: name for name, code in ACTIONS.items()}
_KINDS = {"list": screen.KIND_LIST, "keyword": screen.KIND_CONTENT, "regex": screen.KIND_CONTENT,
          "url": screen.KIND_URL, "special": screen.KIND_SPECIAL,
          "velocity": screen.KIND_VELOCITY, "fingerprint": screen.KIND_FINGERPRINT}  # fmt: skip
_KEYS = {"source": screen.KEY_SOURCE, "destination": screen.KEY_DESTINATION,
         "pair": screen.KEY_PAIR, "fingerprint": screen.KEY_FINGERPRINT}  # fmt: skip
_SPECIAL = {"silent": screen.SPECIAL_SILENT, "flash": screen.SPECIAL_FLASH,
            "binary": screen.SPECIAL_BINARY, "wap_push": screen.SPECIAL_WAP_PUSH}  # fmt: skip


class Screening:
    """A data plane's screening stage: the engine for the live configuration (None
    when screening is off), built again over the same velocity counters when what
    it is made of changed, and the totals of every engine so far."""

    def __init__(self, keys: int, velocity: VelocityTable | None = None):
        self.velocity = velocity or private_velocity_table(keys)
        self.engine: Engine | None = None  # until apply()
        self._inputs: tuple | None = None  # what the engine was built from
        # Of the engines replaced, so that the totals never go back.
        self._retired: dict[tuple[str, str], int] = {}  # hits by (rule id, action)
        self._retired_screened = 0
        self._retired_nanoseconds = 0

    def apply(self, config: Config) -> None:
        """The engine for ``config``. A change elsewhere in the configuration (an NE
        account, a route) keeps the engine: building one reads every list file and
        compiles every pattern, seconds for a million entries, on the event loop.
        On a list file that went bad since the configuration was checked, the rules
        stay as they were."""
        inputs = _engine_inputs(config)
        if inputs == self._inputs:
            return
        try:
            engine = build_engine(config, self.velocity)
        except EntryError as exc:
            log.error("screening rules not changed: %s", exc)
            return
        self._retired = self.hits()
        if self.engine is not None:
            self._retired_screened += self.engine.screened
            self._retired_nanoseconds += self.engine.nanoseconds
        self.engine = engine
        self._inputs = inputs

    def judged(self) -> tuple[int, float]:
        """(originals judged, seconds spent judging them) since start."""
        screened, nanoseconds = self._retired_screened, self._retired_nanoseconds
        if self.engine is not None:
            screened += self.engine.screened
            nanoseconds += self.engine.nanoseconds
        return screened, nanoseconds / 1e9

    def hits(self) -> dict[tuple[str, str], int]:
        """Hits per (rule id, action) since start."""
        hits = dict(self._retired)
        if self.engine is not None:
            for rule, count in zip(self.engine.rules, self.engine.counts, strict=True):
                if count:
                    key = (rule.id, ACTION_NAMES[rule.action])
                    hits[key] = hits.get(key, 0) + count
        return hits


def velocity_memory(keys: int) -> int:
    """A memfd holding an empty velocity table for ``keys`` counters, for the
    workers of a node to share (the master passes the descriptor on)."""
    fd = os.memfd_create("smps-velocity", os.MFD_CLOEXEC)
    size = velocity_table_size(keys)
    os.ftruncate(fd, size)
    with mmap.mmap(fd, size) as memory:
        VelocityTable(memory, True)
    return fd


def attach_velocity_table(fd: int) -> VelocityTable:
    """The table in the master's memfd (a worker)."""
    return VelocityTable(mmap.mmap(fd, os.fstat(fd).st_size))


def private_velocity_table(keys: int) -> VelocityTable:
    """A table for one process alone (the single-process node, tests)."""
    return VelocityTable(mmap.mmap(-1, velocity_table_size(keys)), True)


def _engine_inputs(config: Config) -> tuple:
    """What an engine is made of: the screening section, the country code its
    numbers are normalised with, the SMSCs' alphabets, and each list file as it is
    on disk now (an edited file is a change: SIGHUP or ``POST /api/v1/reload``)."""
    files = []
    for rule in config.screening.rules:
        if rule.file is not None:
            try:
                stat = os.stat(rule.file)
            except OSError:
                files.append((rule.file, None))  # building will say what is wrong
            else:
                files.append((rule.file, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    alphabets = tuple((s.name, s.default_alphabet, s.gsm7_packed) for s in config.smsc)
    return config.screening, config.trace.country_code, alphabets, tuple(files)


def build_engine(config: Config, table: VelocityTable) -> Engine | None:
    """The enabled rules of ``config`` as an engine; None when screening is off or
    no rule is enabled. Raises EntryError when a list file went bad since the
    configuration was checked."""
    if not config.screening.enabled:
        return None
    country_code = config.trace.country_code.encode("ascii")
    rules = []
    patterns: list[tuple[str, bool]] = []
    pattern_rules: list[int] = []
    for rule in config.screening.rules:
        if not rule.enabled:
            continue
        if rule.type in ("keyword", "regex"):
            for pattern in rule.patterns:
                patterns.append((pattern, rule.type == "regex"))
                pattern_rules.append(len(rules))
        rules.append(_compile(rule, country_code))
    if not rules:
        return None
    return Engine(
        rules,
        table,
        country_code,
        database=content_database(patterns) if patterns else None,
        pattern_rules=pattern_rules,
        alphabets={s.name: (s.default_alphabet, s.gsm7_packed) for s in config.smsc},
    )


def _compile(rule: ScreeningRule, country_code: bytes) -> screen.Rule:
    kind = _KINDS[rule.type]
    options: dict = {"skip_ne": rule.skip_ne}
    if rule.scope is not None:
        options.update(_scope(rule.scope, country_code))
    if rule.type == "list":
        options["on_destination"] = rule.field == "destination"
        options["entries"] = address_set(_entries(rule, rule.entries), country_code)
    elif rule.type == "url":
        options["domains"] = {domain_entry(e) for e in _entries(rule, rule.entries)}
    elif rule.type == "special":
        options["special"] = sum({_SPECIAL[k] for k in rule.kinds})
    elif rule.type == "fingerprint":
        options["fingerprints"] = {fingerprint_entry(e) for e in rule.entries}
    elif rule.type == "velocity":
        options.update(key=_KEYS[rule.key], limit=rule.limit, window_ms=round(rule.window * 1000))
    return screen.Rule(rule.id, kind, ACTIONS[rule.action], **options)


def _scope(scope: RuleScope, country_code: bytes) -> dict:
    return {
        f"scope_{side}": address_set(entries, country_code)
        for side in ("source", "destination")
        if (entries := getattr(scope, side))
    }


def _entries(rule: ScreeningRule, inline: list[str]) -> Iterable[str]:
    yield from inline
    if rule.file is not None:
        for _number, entry in file_lines(rule.file):
            yield entry


def address_set(entries: Iterable[str], country_code: bytes) -> screen.AddressSet:
    """List entries as the engine matches them: numbers and prefixes normalised
    the way the tracer normalises (``trace.country_code``), sender IDs in lower case."""
    exact: set[bytes] = set()
    prefixes: set[bytes] = set()
    for text in entries:
        kind, value = list_entry(text)
        if kind == "sender_id":
            exact.add(value.lower().encode("utf-8"))
        elif kind == "prefix":
            prefixes.add(normalise_rule_number(value + "*", country_code)[0])
        else:
            exact.add(normalise_rule_number(value, country_code)[0])
    return screen.AddressSet(exact, prefixes)
