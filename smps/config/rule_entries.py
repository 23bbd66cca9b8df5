"""The screening rules' entries and patterns: their syntax, their files, and the one
way they are compiled, so a rule the configuration accepts is a rule the engine
(`smps.proxy.screening`) can build.

List entries (``entries`` and ``scope`` of any rule, list files):

=====================  ==========================================================
``8613800000666``      one number (``+``/``00`` international forms too); it is
                       normalised as ``trace.country_code`` normalises numbers
``prefix:86170``       every number that starts so (``86170*`` too)
``FAKEBANK``           an alphanumeric sender ID, whatever its case
=====================  ==========================================================

URL entries are domains (``bad.example``: it and every subdomain); a scheme or a
path around one is dropped. Files hold one entry a line; ``#`` starts a comment.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import hyperscan

PREFIX = "prefix:"
_NUMBER = re.compile(r"^(\+|00)?[0-9]+$")
_DOMAIN = re.compile(r"^[^\s/:.@]+(\.[^\s/:.@]+)+$")

# Every content pattern is matched on case-folded text, as UTF-8; a regex sees
# whole characters (UTF8) and ignores case (CASELESS); each pattern reports its
# first match only (SINGLEMATCH), all a rule needs.
_FLAGS = hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_SINGLEMATCH


class EntryError(ValueError):
    """An entry, a file line or a pattern the engine cannot use."""


def list_entry(text: str) -> tuple[str, str]:
    """("number" | "prefix" | "sender_id", value) of one list entry."""
    entry = text.strip()
    if not entry:
        raise EntryError("an empty entry")
    if entry.startswith(PREFIX) or (entry.endswith("*") and len(entry) > 1):
        digits = entry[len(PREFIX) :] if entry.startswith(PREFIX) else entry[:-1]
        if not _NUMBER.match(digits.strip()):
            raise EntryError(f"{entry!r}: a prefix is digits, e.g. prefix:86170")
        return "prefix", digits.strip()
    if _NUMBER.match(entry):
        return "number", entry
    if len(entry) > 20 or not entry.isprintable():
        raise EntryError(f"{entry!r}: not a number, a prefix or a sender ID (1 to 20 characters)")
    return "sender_id", entry


def domain_entry(text: str) -> str:
    """The domain of one URL-rule entry, lower case (``https://Bad.example/x`` →
    ``bad.example``)."""
    entry = text.strip().lower()
    entry = re.sub(r"^[a-z]+://", "", entry).split("/", 1)[0].strip(".")
    if not _DOMAIN.match(entry):
        raise EntryError(f"{text.strip()!r}: not a domain, e.g. bad.example")
    return entry


def fingerprint_entry(text: str) -> int:
    """A fingerprint rule's entry: a campaign's content fingerprint, 16 hex digits
    (as the campaigns view and the decisions show it)."""
    entry = text.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{16}", entry):
        raise EntryError(f"{text.strip()!r}: not a fingerprint (16 hex digits)")
    return int(entry, 16)


def file_lines(path: str) -> Iterator[tuple[int, str]]:
    """(line number, entry) of every entry in a list file."""
    try:
        with open(path, encoding="utf-8") as stream:
            for number, line in enumerate(stream, 1):
                entry = line.split("#", 1)[0].strip()
                if entry:
                    yield number, entry
    except FileNotFoundError:
        raise EntryError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise EntryError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise EntryError(f"{path}: cannot read: {exc.strerror}") from None


def content_database(patterns: list[tuple[str, bool]]) -> hyperscan.Database:
    """One Hyperscan database of (pattern, is_regex); pattern ids are list indexes.
    Keywords match as literal text, case-folded here as the message text is."""
    expressions = [
        (p if regex else re.escape(p.casefold())).encode("utf-8") for p, regex in patterns
    ]
    database = hyperscan.Database()
    try:
        database.compile(
            expressions=expressions,
            ids=list(range(len(expressions))),
            elements=len(expressions),
            flags=[_FLAGS] * len(expressions),
        )
    except hyperscan.error as exc:
        raise EntryError(str(exc)) from None
    return database


def check_pattern(pattern: str, regex: bool) -> None:
    """Refuse a pattern that would not compile, with Hyperscan's reason."""
    if not pattern.strip():
        raise EntryError("an empty pattern")
    try:
        content_database([(pattern, regex)])
    except EntryError as exc:
        reason = re.sub(r"^error compiling expression\s*\d*:?\s*", "", str(exc), flags=re.I)
        raise EntryError(f"{pattern!r} is not a valid regular expression: {reason}") from None
