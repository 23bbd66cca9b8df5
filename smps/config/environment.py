"""Secrets from the environment, which win over the file.

- ``SMPS_DATABASE_URL`` replaces ``database.url``;
- ``SMPS_SMSC_<NAME>_PASSWORD`` replaces the password of the SMSC named NAME;
- ``SMPS_NE_<SYSTEM_ID>_PASSWORD`` replaces the password of that NE account.

NAME and SYSTEM_ID are upper-cased with every character other than A-Z and
0-9 replaced by ``_``: SMSC ``smsc-1`` reads ``SMPS_SMSC_SMSC_1_PASSWORD``. A
variable that is set, even to the empty string, overrides. Values from the
environment are validated like values from the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

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
