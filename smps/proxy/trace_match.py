"""Which originals a trace rule selects: phone number normalisation and the rule
index that `smps.proxy.tracer.Tracer.match` looks numbers up in.

Number normalisation (`normalise_address`, compiled in `smps._native.numbers`),
applied to both addresses and to rule numbers (rules as TON 0 / NPI 1), so
``13800138000``, ``+8613800138000`` and ``008613800138000`` are one subscriber
under ``country_code: "86"``:

====================  ==========================  ===========================
TON (NPI 0/1/6/8)     address as sent             normalised (cc = 86)
====================  ==========================  ===========================
1 international       8613800138000               8613800138000
1 (sloppy)            +8613800138000 / 0086...    8613800138000
2 national            13800138000                 8613800138000
2 (trunk 0)           013800138000                8613800138000
2 (sloppy)            +8613800138000              8613800138000
0 unknown, + or 00    +4467811223344              4467811223344
0, leading 0 (trunk)  013800138000                8613800138000
0, starts with cc,    8613800138000               8613800138000
  >= len(cc)+7 digits
0, 7..15-len(cc)      13800138000                 8613800138000
  digits (national)
0, <= 6 digits        10086                       10086 (short code)
0, longer             1234567890123456            unchanged
5 alphanumeric        MyBank                      MyBank (bytes, literal)
3, 4, 6 and others    1234                        unchanged
any, non-digits       ABC / +ABC                  unchanged
NPI 3/4/9/10/14/18    anything                    unchanged (not phone numbers)
no country code       digits after +/00 stripped  national forms unchanged
====================  ==========================  ===========================

"National length" is a guess that TON 0 cannot avoid: 7 digits is the
shortest national significant number in use, 15 (E.164) minus the country
code the longest. Foreign numbers in rules must be written with ``+`` or
``00``; prefix rules (``8613*``) are written in international form or with a
trunk ``0`` (prefixes are too short for the length analysis).
"""

from collections.abc import Iterable
from datetime import datetime

from smps._native.numbers import TON_UNKNOWN, normalise_address
from smps.config import TraceRule


def normalise_rule_number(number: str, country_code: bytes) -> tuple[bytes, bool]:
    """(key, is_prefix) for a rule's number; see the module docstring."""
    number = number.strip()
    prefix = number.endswith("*")
    raw = number.rstrip("*").encode("utf-8")
    if not prefix:
        return normalise_address(raw, TON_UNKNOWN, 1, country_code), False
    digits = raw[1:] if raw[:1] == b"+" else raw[2:] if raw[:2] == b"00" else raw
    if digits is raw and digits[:1] == b"0" and country_code:
        digits = country_code + digits[1:]
    return digits, True


class Rule:
    """One trace rule as matching needs it: its number, its expiry in epoch µs, and
    whether it lets content be decoded."""

    __slots__ = ("decode_content", "expires_us", "number")

    def __init__(self, rule: TraceRule, decode_default: bool):
        self.number = rule.number
        self.expires_us = epoch_us(rule.expires) if rule.expires is not None else None
        allowed = rule.decode_content if rule.decode_content is not None else decode_default
        self.decode_content = decode_default and allowed


class Side:
    """Rules for one address: exact numbers plus prefixes keyed by length, and
    the raw forms that may match (a superset: `normalise_address` only strips
    ``+``, ``00`` or a trunk ``0`` and prepends the country code)."""

    __slots__ = ("exact", "lengths", "prefixes", "raw", "raw_stem", "raw_stems", "shortest",
                 "stems")  # fmt: skip

    def __init__(self) -> None:
        self.exact: dict[bytes, tuple[Rule, ...]] = {}
        self.prefixes: dict[bytes, tuple[Rule, ...]] = {}
        self.lengths: tuple[int, ...] = ()
        self.shortest = 0
        self.stems: frozenset[bytes] = frozenset()  # every prefix cut to the shortest length
        self.raw: frozenset[bytes] = frozenset()  # every address as sent that may be exact
        self.raw_stem = 0
        self.raw_stems: frozenset[bytes] = frozenset()  # raw prefix forms cut to raw_stem

    def add(self, key: bytes, prefix: bool, rule: Rule) -> None:
        table = self.prefixes if prefix else self.exact
        table[key] = (*table.get(key, ()), rule)

    def seal(self, country_code: bytes) -> None:
        self.lengths = tuple(sorted({len(key) for key in self.prefixes}))
        self.shortest = self.lengths[0] if self.lengths else 0
        self.stems = frozenset(key[: self.shortest] for key in self.prefixes)
        self.raw = frozenset(f for key in self.exact for f in _raw_forms(key, country_code))
        stems = {f for key in self.prefixes for f in _raw_forms(key, country_code)}
        self.raw_stem = min(map(len, stems), default=0)
        self.raw_stems = frozenset(f[: self.raw_stem] for f in stems)

    def find(self, number: bytes) -> tuple[Rule, ...] | None:
        found = self.exact.get(number)
        if number[: self.shortest] not in self.stems:  # one lookup rejects most numbers
            return found
        prefixes = self.prefixes
        for length in self.lengths:
            hit = prefixes.get(number[:length])
            if hit is not None:
                found = hit if found is None else found + hit
        return found


def _raw_forms(key: bytes, country_code: bytes) -> tuple[bytes, ...]:
    """Every start of an address as sent whose normalised form starts with `key`
    (for an exact key: every address that may normalise to it)."""
    forms = (key, b"+" + key, b"00" + key)
    if key.startswith(country_code):  # national, with or without the trunk 0
        national = key[len(country_code) :]
        return (*forms, b"0" + national, national)
    if country_code.startswith(key):  # a prefix of the country code: any national number
        return (*forms, b"")
    return forms


class RuleIndex:
    """Every rule, by the side it watches (sender, receiver); made whole when the
    rules change, so that a match sees the old rules or the new ones, never a mix."""

    __slots__ = ("country_code", "decode_default", "receiver", "rules", "sender")

    def __init__(self, rules: Iterable[TraceRule], decode_default: bool, country_code: str):
        self.rules = tuple(rules)
        self.decode_default = decode_default
        self.country_code = country_code.encode("ascii")
        self.sender = Side()
        self.receiver = Side()
        for rule in self.rules:
            key, prefix = normalise_rule_number(rule.number, self.country_code)
            compiled = Rule(rule, decode_default)
            if rule.side in ("sender", "both"):
                self.sender.add(key, prefix, compiled)
            if rule.side in ("receiver", "both"):
                self.receiver.add(key, prefix, compiled)
        self.sender.seal(self.country_code)
        self.receiver.seal(self.country_code)


def epoch_us(when: datetime) -> int:
    """A rule's expiry in epoch µs; a naive datetime is local time."""
    return int(when.timestamp() * 1_000_000)
