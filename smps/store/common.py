"""What the query modules share: the errors the API turns into HTTP statuses, times
as stored (epoch µs) and shown (ISO 8601), keyset cursors, the secret mask."""

from __future__ import annotations

import base64
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column

from smps.errors import SmpsError

MASK = "***"


class NotFound(SmpsError):
    """No such entity."""


class Conflict(SmpsError):
    """The change clashes with the current state (file-managed, duplicate, still referenced)."""


class Invalid(SmpsError):
    """Input refused; ``field`` is the offending key path (``allowed_ips[1]``) or None."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def now_us() -> int:
    return time.time_ns() // 1000


def iso(us: int | None) -> str | None:
    """Epoch microseconds as ISO 8601 UTC, the API's human-readable time."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


def time_window(column: Column, since_us: int | None, until_us: int | None) -> list[Any]:
    """Conditions keeping ``column`` (epoch µs) in [since, until); a None end is open."""
    conditions = []
    if since_us is not None:
        conditions.append(column >= since_us)
    if until_us is not None:
        conditions.append(column < until_us)
    return conditions


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise Invalid("not a cursor from this API", "cursor") from None


def next_page(rows: list[Any], limit: int) -> tuple[list[Any], str | None]:
    """(one page of ``rows``, the cursor of the next page or None): ``rows`` were
    fetched with ``limit + 1`` so that one more means there are more. Rows are dicts,
    or records with an ``id`` (decisions)."""
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, encode_cursor(last["id"] if isinstance(last, dict) else last.id)


def plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A result row as a dict with plain ``str`` keys (SQLAlchemy's are a str subclass)."""
    return {str(key): value for key, value in row.items()}
