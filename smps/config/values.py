"""Value syntax of the configuration file: what an operator writes → the stored type.

- durations: ``2s``, ``200ms``, ``1m``, ``1h``, ``1d``, combinations such as
  ``1m30s``, or a plain number of seconds; stored as float seconds.
- sizes: ``10MiB``, ``512KiB``, ``1MB``, ``1GB``, ``100B`` or a plain number of bytes.
- addresses: ``host:port``; IPv6 in brackets, ``[::1]:2775``; stored as (host, port).
  In listen addresses port 0 asks the OS for a free port.
- IP allow-lists: addresses or networks (``10.0.0.0/8``, ``::1``), checked with
  :mod:`ipaddress`; stored normalised (``127.0.0.1`` → ``127.0.0.1/32``).
- SMPP status codes: integers or strings such as ``"0x66"``.
- timestamps without a UTC offset are taken as UTC.

The constrained types below carry a ``kind`` in their Meta(extra=...), which
names the parser in ``_PARSERS`` that runs before msgspec converts the value,
and an ``expects`` that error messages quote.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from msgspec import Meta

MASK = "***"

# --------------------------------------------------------------------------- value parsers

_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)")
_NUMBER = re.compile(r"\s*[+-]?(\d+(?:\.\d*)?|\.\d+)\s*")

_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KIB": 1024,
    "MIB": 1024**2,
    "GIB": 1024**3,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([A-Za-z]*)\s*")

_HOSTNAME = re.compile(
    r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?"
)


def parse_duration(value: str | int | float) -> float:
    """Seconds in ``value``: a number of seconds, or ``2s``, ``200ms``, ``1m30s``, ``1h``, ``1d``.

    Raises ValueError on anything else. Negative numbers are returned as they
    are, for the caller's range check to refuse with its own words.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if _NUMBER.fullmatch(text):
            return float(text)
        if text and _DURATION_PART.sub("", text).strip() == "":
            parts = _DURATION_PART.findall(text)
            return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)
    raise ValueError(f"bad duration {value!r} (write e.g. 2s, 200ms, 1m30s, 1h)")


def parse_size(value: str | int) -> int:
    """Bytes in ``value``: a number of bytes, or ``10MiB``, ``512KiB``, ``1MB``, ``1GB``, ``100B``.

    KiB/MiB/GiB are powers of 1024, KB/MB/GB powers of 1000; units are
    case-insensitive. Raises ValueError on anything else.
    """
    if isinstance(value, bool):
        raise ValueError(f"bad size {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        match = _SIZE.fullmatch(value)
        if match and match.group(2).upper() in _SIZE_UNITS:
            return int(float(match.group(1)) * _SIZE_UNITS[match.group(2).upper()])
    raise ValueError(f"bad size {value!r} (write e.g. 10MiB, 512KiB, 1MB or a number of bytes)")


def parse_address(value: str) -> tuple[str, int]:
    """``"host:port"`` → ``(host, port)``; IPv6 hosts are written in brackets, ``[::1]:2775``.

    The host is an IP address or a DNS name; the port 0..65535 (0 = any free
    port, for listeners). Raises ValueError on anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"bad address {value!r}: expected a string host:port")
    host, sep, port = value.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f"bad address {value!r}: expected host:port, e.g. 127.0.0.1:2775")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"bad address {value!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError(
            f"bad address {value!r}: write IPv6 addresses in brackets, e.g. [::1]:2775"
        )
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError(f"bad address {value!r}: {host!r} is not an IP address or host name")
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"bad address {value!r}: port must be a number from 0 to 65535")
    return host, int(port)


def format_address(address: tuple[str, int]) -> str:
    """The inverse of :func:`parse_address`."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_network(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"bad IP network {value!r}: expected a string such as 10.0.0.0/8")
    try:
        return str(ipaddress.ip_network(value.strip(), strict=True))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(
            f"bad IP network {value!r} (expected an address or network such as "
            "10.0.0.0/8, 192.0.2.7 or 2001:db8::/32)"
        ) from None
    raise ValueError(f"bad IP network {value!r}: host bits set (did you mean {network}?)")


def _parse_status(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value.strip(), 0)
        except ValueError:
            raise ValueError(f"bad status code {value!r} (write e.g. 0x66 or 102)") from None
    return value


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"bad timestamp {value!r} (write ISO 8601, e.g. 2026-06-30T18:00:00+08:00)"
            ) from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        raise ValueError(f"bad timestamp '{value}': give a time of day too, e.g. {value}T00:00:00Z")
    if not isinstance(value, datetime):
        raise ValueError(f"bad timestamp {value!r} (write ISO 8601, e.g. 2026-06-30T18:00:00Z)")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _parse_database_url(value: Any) -> Any:
    if isinstance(value, str) and not value.startswith(("sqlite:///", "mysql+asyncmy://")):
        raise ValueError(
            f"expected a URL starting with sqlite:/// or mysql+asyncmy://, got {_mask_url(value)!r}"
        )
    return value


def _parse_color(value: Any) -> Any:
    if isinstance(value, str):
        words = {"auto": "auto", "true": True, "yes": True, "on": True}
        words |= {"false": False, "no": False, "off": False}
        return words.get(value.strip().lower(), value)
    return value


def _upper(value: Any) -> Any:
    return value.strip().upper() if isinstance(value, str) else value


def _mask_url(url: str) -> str:
    """``scheme://user:secret@host/db`` → ``scheme://user:***@host/db``."""
    return re.sub(r"^([A-Za-z0-9+.-]+://[^:/@]*):[^@/]*@", rf"\1:{MASK}@", url)


# Pre-conversion parsers, keyed by the ``kind`` in a field's Meta(extra=...): they turn
# what an operator writes ("2s", "0x66", "[::1]:2775") into the stored type.
_PARSERS: dict[str, Callable[[Any], Any]] = {
    "duration": parse_duration,
    "size": parse_size,
    "address": parse_address,
    "network": _parse_network,
    "status": _parse_status,
    "timestamp": _parse_timestamp,
    "database_url": _parse_database_url,
    "color": _parse_color,
    "upper": _upper,
}

# ------------------------------------------------------------------------------- value types

_PRINTABLE_ASCII = r"^[\x20-\x7e]*$"

Duration = Annotated[
    float, Meta(gt=0, extra={"kind": "duration", "expects": "a positive duration such as 2s"})
]
Address = Annotated[tuple[str, int], Meta(extra={"kind": "address"})]
Port = Annotated[int, Meta(ge=1, le=65535)]
StatusCode = Annotated[
    int,
    Meta(ge=0, le=0xFFFFFFFF, extra={"kind": "status", "expects": "a status code 0..0xFFFFFFFF"}),
]
Network = Annotated[str, Meta(extra={"kind": "network"})]
# Bytes a connection may hold for a peer that does not read them (smpp/session.py).
WriteBufferSize = Annotated[
    int,
    Meta(ge=64 * 1024, le=1024**3, extra={"kind": "size", "expects": "64KiB to 1GiB"}),
]
Timestamp = Annotated[datetime, Meta(extra={"kind": "timestamp"})]


def _ascii(max_length: int, *, required: bool = False, secret: bool = False) -> Any:
    """An SMPP C-Octet String field: printable ASCII that fits ``max_length`` octets + NUL."""
    expects = f"{'1 to' if required else 'at most'} {max_length} printable ASCII characters"
    extra: dict[str, Any] = {"expects": f"{expects} (SMPP limit)"}
    if secret:
        extra["secret"] = True
    return Annotated[
        str,
        Meta(
            min_length=1 if required else 0,
            max_length=max_length,
            pattern=_PRINTABLE_ASCII,
            extra=extra,
        ),
    ]


SystemId = _ascii(15, required=True)
Password = _ascii(8, secret=True)
RequiredPassword = _ascii(8, required=True, secret=True)
SystemType = _ascii(12)
Name = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        extra={"expects": "1 to 64 letters, digits, '_', '.' or '-'"},
    ),
]
