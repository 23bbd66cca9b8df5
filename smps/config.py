"""Configuration: one YAML file → frozen msgspec Structs, refused whole when anything is wrong.

The section and key names follow design.md 6.2 and are a contract with operators'
files: keys may be added, never renamed. Every key has a default except the
identity of things (an SMSC's name/host/port/system_id, an NE account's
system_id/password, a route's name), so an empty file is a valid configuration.

Value syntax:

- durations: ``2s``, ``200ms``, ``1m``, ``1h``, ``1d``, combinations such as
  ``1m30s``, or a plain number of seconds; stored as float seconds.
- sizes: ``10MiB``, ``512KiB``, ``1MB``, ``1GB``, ``100B`` or a plain number of bytes.
- addresses: ``host:port``; IPv6 in brackets, ``[::1]:2775``; stored as (host, port).
  In listen addresses port 0 asks the OS for a free port.
- IP allow-lists: addresses or networks (``10.0.0.0/8``, ``::1``), checked with
  :mod:`ipaddress`; stored normalised (``127.0.0.1`` → ``127.0.0.1/32``).
- SMPP status codes: integers or strings such as ``"0x66"``.
- timestamps without a UTC offset are taken as UTC.

Secrets may come from the environment instead of the file (the environment wins):

- ``SMPS_DATABASE_URL`` replaces ``database.url``;
- ``SMPS_SMSC_<NAME>_PASSWORD`` replaces the password of the SMSC named NAME;
- ``SMPS_NE_<SYSTEM_ID>_PASSWORD`` replaces the password of that NE account.

NAME and SYSTEM_ID are upper-cased with every character other than A-Z and
0-9 replaced by ``_``: SMSC ``smsc-1`` reads ``SMPS_SMSC_SMSC_1_PASSWORD``. A
variable that is set, even to the empty string, overrides. Values from the
environment are validated like values from the file.

Errors: :class:`~smps.errors.ConfigError`, whose str() is one line
``FILE: key.path: reason``. The first problem found is reported; secrets are
never echoed in an error.
"""

from __future__ import annotations

import argparse
import difflib
import ipaddress
import os
import re
import socket
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta, field
from msgspec import inspect as mi

from smps.errors import ConfigError

__all__ = [
    "DEFAULT_PATH",
    "Config",
    "DatabaseConfig",
    "FlowConfig",
    "HaConfig",
    "LeaseConfig",
    "LogConfig",
    "NeAccount",
    "NodeConfig",
    "PolicyConfig",
    "ReconnectConfig",
    "Route",
    "ServerConfig",
    "SmscConfig",
    "TlsClientConfig",
    "TlsServerConfig",
    "TraceConfig",
    "TraceRule",
    "WebConfig",
    "add_config_option",
    "default",
    "load",
    "loads",
    "parse_address",
    "parse_duration",
    "parse_size",
]

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


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base of every section: unknown keys are errors, values never change after loading."""


# ---------------------------------------------------------------------------------- sections


class NodeConfig(_Section):
    """This SMPS instance."""

    name: Annotated[str, Meta(min_length=1)] = field(default_factory=socket.gethostname)
    state_dir: str = "./var"
    workers: Annotated[
        Annotated[int, Meta(ge=1, le=1024)] | Literal["auto"],
        Meta(extra={"expects": "auto or an integer from 1 to 1024"}),
    ] = "auto"

    @property
    def worker_count(self) -> int:
        """``workers`` resolved: "auto" is the number of CPUs this process may run on."""
        if self.workers != "auto":
            return self.workers
        # sched_getaffinity honours taskset/cpuset limits, which os.cpu_count() ignores.
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0)) or 1
        return os.cpu_count() or 1


class LogConfig(_Section):
    """Logging: console and (optionally) a rotating file written by the master only."""

    level: Annotated[
        Literal["DEBUG", "INFO", "WARNING", "ERROR", "FATAL", "CRITICAL"],
        Meta(extra={"kind": "upper"}),
    ] = "INFO"
    file: str = "./var/log/smps.log"
    max_bytes: Annotated[int, Meta(ge=1, extra={"kind": "size", "expects": "a size > 0"})] = (
        10 * 1024 * 1024
    )
    # logging's RotatingFileHandler never rotates with backupCount=0, hence >= 1.
    backups: Annotated[int, Meta(ge=1, le=1000)] = 5
    color: Annotated[
        bool | Literal["auto"], Meta(extra={"kind": "color", "expects": "auto, true or false"})
    ] = "auto"
    stats_interval: Duration = 30.0


class DatabaseConfig(_Section):
    """Where decisions and trace events are kept; one batched writer per node."""

    url: Annotated[str, Meta(extra={"kind": "database_url", "secret": "url"})] = (
        "sqlite:///./var/smps.db"
    )
    batch_size: Annotated[int, Meta(ge=1, le=100_000)] = 500
    flush_interval: Duration = 0.2
    record: Literal["all", "non_allow", "none"] = "non_allow"
    retention_days: Annotated[int, Meta(ge=0)] = 30  # 0 = keep forever


class ReconnectConfig(_Section):
    """Exponential back-off between attempts to re-bind a lost SMSC connection."""

    initial: Duration = 1.0
    max: Duration = 30.0


class TlsClientConfig(_Section):
    """TLS towards an SMSC. ``ca`` empty = the system's trust store."""

    ca: str = ""
    cert: str = ""
    key: str = ""
    verify: bool = True


class TlsServerConfig(_Section):
    """TLS on a listener of SMPS's (SMPP for the NEs, HTTPS for the web side);
    ``verify_client`` requires client certificates signed by ``ca``."""

    cert: Annotated[str, Meta(min_length=1)]
    key: Annotated[str, Meta(min_length=1)]
    ca: str = ""
    verify_client: bool = False


class SmscConfig(_Section):
    """One SMSC that SMPS binds to as an ESME."""

    name: Name
    host: Annotated[str, Meta(min_length=1)]
    port: Port
    system_id: SystemId
    password: Password = ""
    system_type: SystemType = ""
    bind: Literal["receiver", "transceiver"] = "transceiver"
    binds: Annotated[int, Meta(ge=1, le=64)] = 1  # per worker
    enquire_link: Duration = 30.0
    response_timeout: Duration = 10.0
    reconnect: ReconnectConfig = field(default_factory=ReconnectConfig)
    # Unsent bytes for an SMSC that does not read; it is closed past either.
    write_buffer_max: WriteBufferSize = 4 * 1024 * 1024
    write_stall_timeout: Duration = 10.0
    # How data_coding 0 ("SMSC default alphabet") is read when decoding content.
    default_alphabet: Literal["gsm7", "latin1", "ascii"] = "gsm7"
    gsm7_packed: bool = False
    tls: TlsClientConfig | None = None


class ServerConfig(_Section):
    """SMPS's SMPP server, where NEs bind."""

    listen: Address = ("0.0.0.0", 2775)
    placement: Literal["balanced", "reuseport"] = "balanced"
    enquire_link: Duration = 30.0
    inactivity_timeout: Duration = 120.0
    bind_timeout: Duration = 10.0
    # A new connection must send one whole PDU within first_pdu_timeout (at most
    # bind_timeout); at most max_unbound connections that have not bound yet, and
    # max_unbound_per_address from one address: beyond them, closed at once.
    first_pdu_timeout: Duration = 5.0
    max_unbound: Annotated[int, Meta(ge=1)] = 1024
    max_unbound_per_address: Annotated[int, Meta(ge=1)] = 32
    max_pdu_size: Annotated[
        int,
        Meta(ge=1024, le=16 * 1024 * 1024, extra={"kind": "size", "expects": "1KiB to 16MiB"}),
    ] = 65536
    # Unsent bytes for an NE that does not read; it is closed past either.
    write_buffer_max: WriteBufferSize = 4 * 1024 * 1024
    write_stall_timeout: Duration = 10.0
    # Every refused bind is answered ESME_RBINDFAIL this long after it arrived,
    # whatever was wrong; `auth_lockout_failures` failed binds of one system_id
    # from one address lock that pair out for `auth_lockout` (smps.smpp.bind_guard).
    auth_failure_delay: Duration = 1.0
    auth_lockout_failures: Annotated[int, Meta(ge=1, le=1000)] = 5
    auth_lockout: Duration = 900.0
    tls: TlsServerConfig | None = None

    @property
    def first_pdu_deadline(self) -> float:
        """`first_pdu_timeout`, never longer than `bind_timeout`."""
        return min(self.first_pdu_timeout, self.bind_timeout)


class NeAccount(_Section):
    """One network element (one system_id); it may hold up to ``max_binds`` binds."""

    system_id: SystemId
    password: RequiredPassword
    allowed_ips: Annotated[
        list[Network], Meta(min_length=1, extra={"expects": "a list of at least one network"})
    ] = field(default_factory=lambda: ["127.0.0.1/32"])
    max_binds: Annotated[int, Meta(ge=1, le=1024)] = 4
    window: Annotated[int, Meta(ge=1, le=10_000)] = 64
    tps: Annotated[int, Meta(ge=0)] = 0  # 0 = unlimited
    mode: Literal["enforce", "monitor"] = "enforce"  # monitor: verdicts recorded, never acted on
    enabled: bool = True


class Route(_Section):
    """Which NE accounts get a copy of which originals; an empty criterion matches anything."""

    name: Name
    accounts: Annotated[
        list[str], Meta(min_length=1, extra={"expects": "a list of at least one system_id"})
    ]
    source_prefix: list[str] = field(default_factory=list)
    destination_prefix: list[str] = field(default_factory=list)
    smsc: list[str] = field(default_factory=list)
    service_type: list[str] = field(default_factory=list)
    data_coding: list[Annotated[int, Meta(ge=0, le=255)]] = field(default_factory=list)


class PolicyConfig(_Section):
    """How NE verdicts become the answer to the SMSC."""

    timeout: Duration = 2.0
    on_timeout: Literal["allow", "block", "tempfail"] = "allow"
    on_no_ne: Literal["allow", "block", "tempfail"] = "allow"
    block_status: StatusCode = 0x66
    tempfail_status: StatusCode = 0x64
    ne_block_codes: list[StatusCode] = field(default_factory=lambda: [0x66, 0x65])
    inspect_receipts: bool = False
    concat_window: Duration = 60.0
    concat_sticky_block: bool = True


class FlowConfig(_Section):
    """Back-pressure: how many originals may be in flight per worker before pushing back."""

    max_inflight: Annotated[int, Meta(ge=1)] = 20_000
    on_overload: Literal["throttle", "pause"] = "throttle"


class TraceRule(_Section):
    """Trace every message to or from ``number`` (``"8613*"`` traces a prefix)."""

    number: Annotated[
        str,
        Meta(
            pattern=r"^\+?[0-9]+\*?$",
            extra={"expects": 'a quoted phone number or prefix, e.g. "8613800138000" or "8613*"'},
        ),
    ]
    side: Literal["both", "sender", "receiver"] = "both"
    expires: Timestamp | None = None
    decode_content: bool | None = None  # None = trace.decode_content


class TraceConfig(_Section):
    """Protocol tracing of chosen numbers."""

    decode_content: bool = False
    country_code: Annotated[
        str,
        Meta(
            pattern=r"^[0-9]{0,3}$",
            extra={"expects": 'a quoted country calling code, e.g. "86", or ""'},
        ),
    ] = ""
    rules: list[TraceRule] = field(default_factory=list)


class WebConfig(_Section):
    """Admin UI, REST API, /health and /metrics."""

    listen: Address = ("0.0.0.0", 8080)
    tls: TlsServerConfig | None = None  # HTTPS; the session cookie is then Secure
    health_strict: bool = False  # a degraded node answers /health with 503, not 200
    metrics_auth: bool = False  # /metrics needs an API bearer token (any role)


class LeaseConfig(_Section):
    """Database lease that fences a second active node when VRRP splits."""

    enabled: bool = False
    ttl: Duration = 5.0


class HaConfig(_Section):
    """Active/standby role, driven by keepalived when ``mode`` is keepalived."""

    mode: Literal["standalone", "keepalived"] = "standalone"
    initial_role: Literal["standby", "active"] = "standby"
    notify_fifo: str = ""
    lease: LeaseConfig = field(default_factory=LeaseConfig)


class Config(_Section):
    """The whole configuration file."""

    node: NodeConfig = field(default_factory=NodeConfig)
    log: LogConfig = field(default_factory=LogConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    smsc: list[SmscConfig] = field(default_factory=list)
    server: ServerConfig = field(default_factory=ServerConfig)
    ne_accounts: list[NeAccount] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)
    trace: TraceConfig = field(default_factory=TraceConfig)
    web: WebConfig = field(default_factory=WebConfig)
    ha: HaConfig = field(default_factory=HaConfig)

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain builtins with every secret replaced by ``***``.

        Written the way the file is written (addresses as ``host:port``,
        durations in seconds), so it can be logged and read back.
        """
        return _present(msgspec.to_builtins(self), _SCHEMA)


_SCHEMA = mi.type_info(Config)

# ------------------------------------------------------------------------------- public API


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and return the configuration in ``path``.

    ``env`` supplies the secret overrides described in the module docstring
    (default: ``os.environ``). Raises ConfigError on anything wrong.
    """
    file = os.fspath(path)
    try:
        with open(file, encoding="utf-8") as stream:
            text = stream.read()
    except FileNotFoundError:
        raise ConfigError("file not found", file=file) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a file", file=file) from None
    except PermissionError:
        raise ConfigError("permission denied", file=file) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text (byte {exc.start})", file=file) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=file) from None
    return loads(text, file=file, env=env)


def loads(text: str, file: str = "<string>", env: Mapping[str, str] | None = None) -> Config:
    """Validate the YAML ``text`` as if read from ``file`` (used in error messages)."""
    raw = _parse_yaml(text, file)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(
            f"the top level must be a mapping of sections, got {_describe(raw, False)}", file=file
        )
    from_env = _apply_env(raw, os.environ if env is None else env)
    try:
        converted = _prepare(raw, _SCHEMA, ())
        config = msgspec.convert(converted, Config)
        _check(config)
    except _Invalid as invalid:
        raise invalid.error(file, from_env) from None
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), raw).error(file, from_env) from None
    return config


def default() -> Config:
    """The configuration of an empty file, without environment overrides."""
    return Config()


DEFAULT_PATH = "config/smps.yaml"  # relative to the working directory


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The -c/--config option of every command that reads the configuration file."""
    parser.add_argument(
        "-c",
        "--config",
        default=DEFAULT_PATH,
        metavar="FILE",
        help=f"configuration file (default: {DEFAULT_PATH})",
    )


# ----------------------------------------------------------------------------------- YAML


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """SafeLoader that refuses duplicate keys: PyYAML would silently keep the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *anchor" may override; SafeConstructor merges it
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool | None):
                continue  # unhashable keys are PyYAML's to refuse
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.MarkedYAMLError as exc:
        where = ""
        if exc.problem_mark is not None:
            where = f"line {exc.problem_mark.line + 1}, column {exc.problem_mark.column + 1}: "
        problem = exc.problem or "invalid YAML"
        if exc.context and not exc.context.startswith("while "):
            problem = f"{exc.context}, {problem}"  # e.g. "expected a single document ..."
        problem = " ".join(problem.split())
        raise ConfigError(f"{where}YAML syntax error: {problem}", file=file) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML syntax error: {' '.join(str(exc).split())}", file=file) from None


# ------------------------------------------------------------------------------ environment

_ENV_DATABASE_URL = "SMPS_DATABASE_URL"


def _env_name(kind: str, name: str) -> str:
    return f"SMPS_{kind}_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_PASSWORD"


def _apply_env(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Put secrets from ``env`` into ``raw``; returns {key path: variable} of what was replaced.

    Entries of the wrong shape are left alone for validation to report.
    """
    replaced: dict[str, str] = {}
    if _ENV_DATABASE_URL in env and isinstance(raw.setdefault("database", {}), dict):
        raw["database"]["url"] = env[_ENV_DATABASE_URL]
        replaced["database.url"] = _ENV_DATABASE_URL
    for section, kind, key in (("smsc", "SMSC", "name"), ("ne_accounts", "NE", "system_id")):
        entries = raw.get(section)
        if not isinstance(entries, list):
            continue
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and isinstance(entry.get(key), str):
                variable = _env_name(kind, entry[key])
                if variable in env:
                    entry["password"] = env[variable]
                    replaced[f"{section}[{index}].password"] = variable
    return replaced


# ------------------------------------------------------------------- schema-driven passes

_Path = tuple[str | int, ...]


def _format_path(path: _Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}" if out else part
    return out


class _Invalid(Exception):
    """One refused value, before the file name and environment origin are known."""

    def __init__(self, path: _Path, reason: str):
        super().__init__(reason)
        self.path = path
        self.reason = reason

    def error(self, file: str, from_env: Mapping[str, str]) -> ConfigError:
        key = _format_path(self.path)
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


def _prepare(value: Any, t: mi.Type, path: _Path) -> Any:
    """Copy of raw YAML data with operator syntax ("2s", "0x66", "host:port") parsed."""
    inner, extra = _unwrap(t)
    parser = _PARSERS.get(extra.get("kind", ""))
    if parser is not None and value is not None:
        try:
            value = parser(value)
        except ValueError as exc:
            raise _Invalid(path, str(exc)) from None
    if isinstance(inner, mi.UnionType):
        member = _member_for(inner, value)
        return value if member is None else _prepare(value, member, path)
    if isinstance(inner, mi.StructType) and isinstance(value, dict):
        fields = {f.encode_name: f for f in inner.fields}
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise _Invalid((*path, _describe(key, False)), "keys must be strings")
            out[key] = _prepare(item, fields[key].type, (*path, key)) if key in fields else item
        return out
    if isinstance(inner, mi.ListType) and isinstance(value, list):
        return [_prepare(item, inner.item_type, (*path, i)) for i, item in enumerate(value)]
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


# -------------------------------------------------------------- msgspec errors, in our words

_MSGSPEC_ERROR = re.compile(r"^(?P<message>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.S)
_PATH_PART = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "true or false",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


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


def _raw_at(raw: Any, path: _Path) -> tuple[bool, Any]:
    for part in path:
        if isinstance(raw, list) and isinstance(part, int) and part < len(raw):
            raw = raw[part]
        elif not isinstance(raw, dict) or part not in raw:
            return False, None
        else:
            raw = raw[part]
    return True, raw


def _translate(message: str, raw: dict[str, Any]) -> _Invalid:
    """A msgspec ValidationError message → (key path, reason in the operator's words)."""
    match = _MSGSPEC_ERROR.match(message)
    text, path = match.group("message"), _split_path(match.group("path") or "$")
    t, extra, keys = _resolve(path)
    if found := re.fullmatch(r"Object contains unknown field `(.*)`", text):
        key = found.group(1)
        hint = difflib.get_close_matches(key, keys, n=1)
        return _Invalid(
            (*path, key), "unknown key" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        )
    if found := re.fullmatch(r"Object missing required field `(.*)`", text):
        return _Invalid((*path, found.group(1)), "required key missing")
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
    return _Invalid(path, reason)


# --------------------------------------------------------------------- cross-field checks


def _check(config: Config) -> None:
    """Rules that span keys: unique names, references that resolve, ranges that relate."""
    smsc_names = _unique(config.smsc, "smsc", "name", "SMSC name")
    accounts = _unique(config.ne_accounts, "ne_accounts", "system_id", "account")
    _unique(config.routes, "routes", "name", "route name")
    _env_names_distinct(config.smsc, "smsc", "name", "SMSC")
    _env_names_distinct(config.ne_accounts, "ne_accounts", "system_id", "NE")

    for i, smsc in enumerate(config.smsc):
        if smsc.reconnect.max < smsc.reconnect.initial:
            raise _Invalid(
                ("smsc", i, "reconnect", "max"),
                f"must be at least reconnect.initial ({smsc.reconnect.initial:g}s), "
                f"got {smsc.reconnect.max:g}s",
            )
        if smsc.tls is not None and bool(smsc.tls.cert) != bool(smsc.tls.key):
            missing = "key" if smsc.tls.cert else "cert"
            raise _Invalid(("smsc", i, "tls", missing), "cert and key go together; one is missing")

    for i, route in enumerate(config.routes):
        for j, system_id in enumerate(route.accounts):
            if system_id not in accounts:
                raise _Invalid(("routes", i, "accounts", j), f"unknown NE account {system_id!r}")
        for j, name in enumerate(route.smsc):
            if name not in smsc_names:
                raise _Invalid(("routes", i, "smsc", j), f"unknown SMSC {name!r}")

    # A zero status is ESME_ROK: the SMSC would deliver a message SMPS meant to stop.
    for key in ("block_status", "tempfail_status"):
        if getattr(config.policy, key) == 0:
            raise _Invalid(("policy", key), "must not be 0 (ESME_ROK means delivered)")
    for j, code in enumerate(config.policy.ne_block_codes):
        if code == 0:
            raise _Invalid(("policy", "ne_block_codes", j), "must not be 0 (ESME_ROK means allow)")

    if _same_listener(config.server.listen, config.web.listen):
        raise _Invalid(
            ("web", "listen"),
            f"{format_address(config.web.listen)} clashes with server.listen "
            f"{format_address(config.server.listen)}",
        )


def _unique(entries: list[Any], section: str, key: str, what: str) -> dict[str, int]:
    first: dict[str, int] = {}
    for i, entry in enumerate(entries):
        value = getattr(entry, key)
        if value in first:
            raise _Invalid(
                (section, i, key),
                f"duplicate {what} {value!r} (first at {section}[{first[value]}])",
            )
        first[value] = i
    return first


def _env_names_distinct(entries: list[Any], section: str, key: str, kind: str) -> None:
    """Two names that map to one SMPS_*_PASSWORD variable could not be told apart."""
    first: dict[str, str] = {}
    for i, entry in enumerate(entries):
        name = getattr(entry, key)
        variable = _env_name(kind, name)
        if variable in first:
            raise _Invalid(
                (section, i, key),
                f"{name!r} and {first[variable]!r} share the environment variable {variable}",
            )
        first[variable] = name


def _same_listener(a: tuple[str, int], b: tuple[str, int]) -> bool:
    if a[1] == 0 or a[1] != b[1]:
        return False
    wildcards = {"0.0.0.0", "::", ""}
    return a[0] == b[0] or a[0] in wildcards or b[0] in wildcards
