"""Loading: a YAML file → a validated :class:`~smps.config.sections.Config`, or one
:class:`~smps.errors.ConfigError` naming the file and the key path of the first problem."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from typing import Any

import msgspec
import yaml

from smps.config.checks import check_config
from smps.config.environment import _apply_env
from smps.config.messages import _translate
from smps.config.schema import InvalidValue, _describe, prepare
from smps.config.sections import _SCHEMA, Config
from smps.errors import ConfigError


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
        converted = prepare(raw, _SCHEMA, ())
        config = msgspec.convert(converted, Config)
        check_config(config)
    except InvalidValue as invalid:
        raise invalid.error(file, from_env) from None
    except msgspec.ValidationError as exc:
        raise _translate(str(exc), raw).error(file, from_env) from None
    return config


def default() -> Config:
    """The configuration of an empty file, without environment overrides."""
    return Config()


DEFAULT_PATH = "config/smps.yaml"  # relative to the working directory
SYSTEM_PATH = "/etc/smps/smps.yaml"
PATH_VARIABLE = "SMPS_CONFIG"


def default_path() -> str:
    """The configuration file of a command run without -c: ``$SMPS_CONFIG``, else
    ``./config/smps.yaml`` if it exists, else ``/etc/smps/smps.yaml`` if it exists, else
    ``./config/smps.yaml`` (whose "file not found" then says what is missing). So
    `smps status`, `smps token` and the rest work from any directory on an installed node."""
    named = os.environ.get(PATH_VARIABLE)
    if named:
        return named
    for candidate in (DEFAULT_PATH, SYSTEM_PATH):
        if os.path.exists(candidate):
            return candidate
    return DEFAULT_PATH


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """The -c/--config option of every command that reads the configuration file."""
    parser.add_argument(
        "-c",
        "--config",
        default=default_path(),
        metavar="FILE",
        help=f"configuration file (default: ${PATH_VARIABLE}, else ./{DEFAULT_PATH}, "
        f"else {SYSTEM_PATH}: the first that is set or exists)",
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
