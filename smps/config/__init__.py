"""Configuration: one YAML file → frozen msgspec Structs, refused whole when anything is wrong.

The package's public face; its modules, each with one job:

- :mod:`~smps.config.values`: value syntax (durations, sizes, addresses, IP
  networks, status codes, timestamps) and the constrained types that use it;
- :mod:`~smps.config.sections`: one Struct per section, and :class:`Config`, the file;
- :mod:`~smps.config.loading`: :func:`load`/:func:`loads` (YAML → Config), the
  ``-c/--config`` option;
- :mod:`~smps.config.environment`: secrets from ``SMPS_*`` variables, which win
  over the file;
- :mod:`~smps.config.schema`: the passes over raw data along the schema (parse
  operator syntax, present values back with secrets masked);
- :mod:`~smps.config.messages`: msgspec's errors in the operator's words;
- :mod:`~smps.config.checks`: rules that span keys;
- :mod:`~smps.config.rule_entries`: the screening rules' entries and patterns.

Errors: :class:`~smps.errors.ConfigError`, whose str() is one line
``FILE: key.path: reason``. The first problem found is reported; secrets are
never echoed in an error.
"""

from smps.config.checks import check_config, check_screening_rule
from smps.config.loading import (
    DEFAULT_PATH,
    add_config_option,
    default,
    default_path,
    load,
    loads,
)
from smps.config.schema import InvalidValue, format_path, prepare
from smps.config.sections import (
    Config,
    DatabaseConfig,
    FlowConfig,
    HaConfig,
    LeaseConfig,
    LogConfig,
    NeAccount,
    NodeConfig,
    PolicyConfig,
    ReconnectConfig,
    Route,
    RuleScope,
    ScreeningConfig,
    ScreeningRule,
    ServerConfig,
    SmscConfig,
    TlsClientConfig,
    TlsServerConfig,
    TraceConfig,
    TraceRule,
    WebConfig,
)
from smps.config.values import format_address, parse_address, parse_duration, parse_size

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
    "RuleScope",
    "ScreeningConfig",
    "ScreeningRule",
    "ServerConfig",
    "SmscConfig",
    "TlsClientConfig",
    "TlsServerConfig",
    "TraceConfig",
    "TraceRule",
    "WebConfig",
    "add_config_option",
    "default",
    "default_path",
    "format_address",
    "load",
    "loads",
    "parse_address",
    "parse_duration",
    "parse_size",
]

# The store validates one section edited in the UI with the file's own passes.
__all__ += ["InvalidValue", "check_config", "check_screening_rule", "format_path", "prepare"]
