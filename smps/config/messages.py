"""msgspec's validation errors, in the operator's words: key path, what was expected, what
was found (secrets only by their shape), and the nearest key name for a misspelt one."""

from __future__ import annotations

import difflib
import re
from typing import Any

from msgspec import inspect as mi

from smps.config.schema import _TYPE_WORDS, InvalidValue, _describe, _Path, _unwrap
from smps.config.sections import _SCHEMA

_MSGSPEC_ERROR = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _split_path(text: str) -> _Path:
    return tuple(int(index) if index else key for key, index in _PATH_PART.findall(text[1:]))


def _resolve(path: _Path) -> tuple[mi.Type | None, dict[str, Any], list[str]]:
    """Type, merged ``extra`` and (for mappings) key names at ``path`` in the schema."""
    t: mi.Type | None = _SCHEMA
    for part in path:
        inner, _ = _unwrap(t)
        if isinstance(inner, mi.UnionType):
            inner = next(
                (_unwrap(m)[0] for m in inner.types if not isinstance(m, mi.NoneType)), inner
            )
        if isinstance(inner, mi.StructType) and isinstance(part, str):
            t = next((f.type for f in inner.fields if f.encode_name == part), None)
        elif isinstance(inner, mi.ListType) and isinstance(part, int):
            t = inner.item_type
        else:
            t = None
        if t is None:
            return None, {}, []
    inner, extra = _unwrap(t)
    if isinstance(inner, mi.UnionType):
        structs = [_unwrap(m)[0] for m in inner.types]
        inner = next((s for s in structs if isinstance(s, mi.StructType)), inner)
    keys = [f.encode_name for f in inner.fields] if isinstance(inner, mi.StructType) else []
    return t, extra, keys


def _expects(t: mi.Type) -> str | None:
    """Plain words for what a scalar type accepts, or None to keep msgspec's wording."""
    inner, extra = _unwrap(t)
    if "expects" in extra:
        return extra["expects"]
    if isinstance(inner, mi.LiteralType):
        return "one of " + ", ".join(str(v) for v in inner.values)
    if isinstance(inner, mi.IntType):
        low = inner.ge if inner.ge is not None else None if inner.gt is None else inner.gt + 1
        if low is not None and inner.le is not None:
            return f"an integer from {low} to {inner.le}"
        if low is not None:
            return f"an integer >= {low}"
        return "an integer"
    if isinstance(inner, mi.StrType):
        if inner.min_length:
            return "a non-empty string"
        return "a string"
    if isinstance(inner, mi.BoolType):
        return "true or false"
    return None


def _raw_at(raw: Any, path: _Path) -> tuple[bool, Any]:
    for part in path:
        if isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        elif not isinstance(raw, dict) or part not in raw:
            return False, None
        else:
            raw = raw[part]
    return True, raw


def _translate(message: str, raw: dict[str, Any]) -> InvalidValue:
    """A msgspec ValidationError message → (key path, reason in the operator's words)."""
    match = _MSGSPEC_ERROR.match(message)
    text, path = match.group("message"), _split_path(match.group("path") or "$")
    t, extra, keys = _resolve(path)
    if found := re.fullmatch(r"Object contains unknown field `(.*)`", text):
        key = found.group(1)
        hint = difflib.get_close_matches(key, keys, n=1)
        return InvalidValue(
            (*path, key), "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )
    if found := re.fullmatch(r"Object missing required field `(.*)`", text):
        return InvalidValue((*path, found.group(1)), "required key missing")
    expects = _expects(t) if t is not None else None
    if expects is None:
        # msgspec's own words, e.g. "Expected `object | null`, got `int`"; keep the first part.
        head = text.split(", got ")[0]
        expects = re.sub(
            r"`([^`]*)`",
            lambda m: " or ".join(_TYPE_WORDS.get(w, w) for w in m.group(1).split(" | ")),
            head,
        )
        expects = expects[0].lower() + expects[1:]
        expects = expects.removeprefix("expected ")
    reason = f"expected {expects}"
    present, value = _raw_at(raw, path)
    if present:
        reason += f", got {_describe(value, bool(extra.get('secret')))}"
        wants_text = isinstance(_unwrap(t)[0], mi.StrType) if t is not None else False
        if wants_text and isinstance(value, int | float) and not isinstance(value, bool):
            reason += " (quote it in YAML)"
    return InvalidValue(path, reason)
