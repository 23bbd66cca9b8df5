"""Walks over raw YAML data along the schema of :class:`~smps.config.sections.Config`.

Before conversion, operator syntax is parsed (:func:`prepare`); after it, the
stored values are written back the way the file writes them, secrets masked
(:func:`_present`). A refused value is an :class:`InvalidValue` with its key path.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from msgspec import inspect as mi

from smps.config.values import _PARSERS, MASK, _mask_url, format_address
from smps.errors import ConfigError

_Path = tuple[str | int, ...]


def format_path(path: _Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


class InvalidValue(Exception):
    """One refused value, before the file name and environment origin are known."""

    def __init__(self, path: _Path, reason: str):
        super().__init__(reason)
        self.path = path
        self.reason = reason

    def error(self, file: str, from_env: Mapping[str, str]) -> ConfigError:
        key = format_path(self.path)
        reason = self.reason
        variable = from_env.get(key)
        if variable:
            reason += f" (value from environment variable {variable})"
        return ConfigError(reason, file=file, path=key or None)


def _unwrap(t: mi.Type) -> tuple[mi.Type, dict[str, Any]]:
    """Strip Metadata wrappers, merging their ``extra`` (outermost wins)."""
    extra: dict[str, Any] = {}
    while isinstance(t, mi.Metadata):
        extra = {**(t.extra or {}), **extra}
        t = t.type
    return t, extra


def _member_for(t: mi.UnionType, value: Any) -> mi.Type | None:
    """The member of an Optional/union whose shape ``value`` has (mapping, list, scalar)."""
    for member in t.types:
        inner, _ = _unwrap(member)
        if isinstance(value, dict) and isinstance(inner, mi.StructType):
            return member
        if isinstance(value, list) and isinstance(inner, mi.ListType):
            return member
        if not isinstance(value, dict | list) and isinstance(member, mi.Metadata):
            return member
    return None


def prepare(value: Any, t: mi.Type, path: _Path) -> Any:
    """Copy of raw YAML data with operator syntax ("2s", "0x66", "host:port") parsed."""
    inner, extra = _unwrap(t)
    parser = _PARSERS.get(extra.get("kind", ""))
    if parser is not None and value is not None:
        try:
            value = parser(value)
        except ValueError as exc:
            raise InvalidValue(path, str(exc)) from None
    if isinstance(inner, mi.UnionType):
        member = _member_for(inner, value)
        return value if member is None else prepare(value, member, path)
    if isinstance(inner, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in inner.fields}
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidValue((*path, _describe(key, False)), "keys must be strings")
            out[key] = prepare(item, fields[key].type, (*path, key)) if key in fields else item
        return out
    if isinstance(inner, mi.ListType) and isinstance(value, list):
        return [prepare(item, inner.item_type, (*path, i)) for i, item in enumerate(value)]
    return value


def _present(value: Any, t: mi.Type) -> Any:
    """Builtins from msgspec.to_builtins → the file's own spelling, secrets masked."""
    inner, extra = _unwrap(t)
    if isinstance(value, str) and value and extra.get("secret"):
        return _mask_url(value) if extra["secret"] == "url" else MASK
    if extra.get("kind") == "address" and isinstance(value, list | tuple):
        return format_address((value[0], value[1]))
    if isinstance(inner, mi.UnionType):
        member = _member_for(inner, value)
        return value if member is None else _present(value, member)
    if isinstance(inner, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in inner.fields}
        return {key: _present(item, fields[key].type) for key, item in value.items()}
    if isinstance(inner, mi.ListType) and isinstance(value, list):
        return [_present(item, inner.item_type) for item in value]
    return value


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _describe(value: Any, secret: bool) -> str:
    """An offending value, as an operator would write it; secrets only by their shape."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if secret:
        if isinstance(value, str):
            return f"a string of {len(value)} characters"
        return f"{_TYPE_WORDS.get(type(value).__name__, type(value).__name__)}"
    text = repr(value) if not isinstance(value, datetime) else value.isoformat()
    return text if len(text) <= 80 else text[:77] + "..."
