"""The sections of the configuration file, one frozen msgspec Struct each.

The section and key names (config/smps.yaml documents each) are a contract with operators'
files: keys may be added, never renamed. Every key has a default except the
identity of things (an SMSC's name/host/port/system_id, an NE account's
system_id/password, a route's name), so an empty file is a valid configuration.
"""

from __future__ import annotations

import os
import socket
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, field
from msgspec import inspect as mi

from smps.config.schema import _present
from smps.config.values import (
    Address,
    Duration,
    Name,
    Network,
    Password,
    Port,
    RequiredPassword,
    StatusCode,
    SystemId,
    SystemType,
    Timestamp,
    WriteBufferSize,
)

DEFAULT_CONCAT_HOLD = 1.0  # seconds, policy.concat_hold when not given (or the timeout)


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base of every section: unknown keys are errors, values never change after loading."""


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
    # A long message as one copy (reassembled, in message_payload) or as its parts.
    concat: Literal["message", "segments"] = "message"
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
    # Whole-message verdicts (docs/concatenation.md): the parts of a long message are
    # held until all are here (at most concat_hold from the first), then judged as one.
    concat_hold: Duration | None = None  # None: 1 s, or the timeout when that is shorter
    on_incomplete: Literal["judge_parts", "allow", "tempfail"] = "judge_parts"
    concat_max_held: Annotated[int, Meta(ge=0, le=10_000_000)] = 100_000  # 0: parts judged alone

    @property
    def hold(self) -> float:
        """How long the parts of a message wait for the others, from the first."""
        if self.concat_hold is not None:
            return self.concat_hold
        return min(DEFAULT_CONCAT_HOLD, self.timeout)


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


class RuleScope(_Section):
    """Only messages from these senders / to these recipients (list-rule entries:
    numbers, ``prefix:`` prefixes, alphanumeric sender IDs); empty = anyone."""

    source: list[str] = field(default_factory=list)
    destination: list[str] = field(default_factory=list)


class ScreeningRule(_Section):
    """One rule of the screening engine; which keys apply depends on ``type``
    (config/smps.yaml and docs/screening.md say which). The key ``field`` hides
    msgspec's ``field`` in this class body, hence ``msgspec.field`` below."""

    id: Name
    type: Literal["list", "keyword", "regex", "url", "velocity", "special", "fingerprint"]
    action: Literal["block", "allow", "monitor"] = "block"
    enabled: bool = True
    description: str = ""
    skip_ne: bool = False  # allow rules: no NE copy either
    scope: RuleScope | None = None
    field: Literal["source", "destination"] | None = None  # list rules
    entries: list[str] = msgspec.field(default_factory=list)  # list, url, fingerprint rules
    file: str | None = None  # list and url rules: more entries, one a line
    patterns: list[str] = msgspec.field(default_factory=list)  # keyword and regex rules
    key: Literal["source", "destination", "pair", "fingerprint"] | None = None  # velocity
    limit: Annotated[int, Meta(ge=1, le=1_000_000_000)] | None = None
    window: (
        Annotated[
            float,
            Meta(ge=1, le=86_400, extra={"kind": "duration", "expects": "a duration, 1s to 24h"}),
        ]
        | None
    ) = None
    kinds: list[Literal["silent", "flash", "binary", "wap_push"]] = msgspec.field(
        default_factory=list
    )


class ScreeningConfig(_Section):
    """The built-in screening engine: rules SMPS applies itself, before any NE copy."""

    enabled: bool = False
    # Velocity counters shared by the workers (64 octets each); applies at restart.
    velocity_keys: Annotated[int, Meta(ge=1024, le=1 << 28)] = 1 << 18
    rules: list[ScreeningRule] = field(default_factory=list)


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
    screening: ScreeningConfig = field(default_factory=ScreeningConfig)
    web: WebConfig = field(default_factory=WebConfig)
    ha: HaConfig = field(default_factory=HaConfig)

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain builtins with every secret replaced by ``***``.

        Written the way the file is written (addresses as ``host:port``,
        durations in seconds), so it can be logged and read back.
        """
        return _present(msgspec.to_builtins(self), _SCHEMA)


_SCHEMA = mi.type_info(Config)
