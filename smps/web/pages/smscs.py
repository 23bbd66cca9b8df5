"""SMSC connections: the list with their live binds, the create and edit form, delete.

Changes apply live (the master rebinds only the connections whose address,
credentials, bind settings or TLS changed). An empty password on edit keeps the
stored one unless "remove the password" is ticked.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from smps.store import entities
from smps.web.node import LiveStatus
from smps.web.pages.common import Route
from smps.web.pages.entities import EntityPages
from smps.web.pages.forms import number_or_text, seconds

_NUMBERS = ("port", "binds")
_TEXT = ("name", "host", "system_id", "system_type", "bind", "default_alphabet")
_DURATIONS = ("enquire_link", "response_timeout", "reconnect_initial", "reconnect_max")


class _SmscPages(EntityPages):
    """The form flattens ``reconnect`` and ``tls`` into fields of their own and shows
    durations as typed in the file (``30s``)."""

    kind = entities.KINDS["smsc"]
    what = "SMSC connection"
    called = "smsc"
    new: ClassVar[Mapping[str, Any]] = {
        "name": "",
        "host": "",
        "port": "",
        "system_id": "",
        "system_type": "",
        "bind": "transceiver",
        "binds": 1,
        "enquire_link": "30s",
        "response_timeout": "10s",
        "reconnect_initial": "1s",
        "reconnect_max": "30s",
        "default_alphabet": "gsm7",
        "gsm7_packed": False,
        "tls": False,
        "tls_ca": "",
        "tls_cert": "",
        "tls_key": "",
        "tls_verify": True,
        "password_set": False,
        "file_managed": False,
    }

    def document(self, form: Mapping[str, Any], *, new: bool) -> dict[str, Any]:
        """The form as an API document. An empty password on edit keeps the stored one
        unless "remove the password" is ticked."""
        document: dict[str, Any] = {name: str(form.get(name, "")).strip() for name in _TEXT}
        for name in _NUMBERS:
            document[name] = number_or_text(str(form.get(name, "")).strip())
        for name in ("enquire_link", "response_timeout"):
            document[name] = str(form.get(name, "")).strip()
        document["reconnect"] = {
            "initial": str(form.get("reconnect_initial", "")).strip(),
            "max": str(form.get("reconnect_max", "")).strip(),
        }
        document["gsm7_packed"] = form.get("gsm7_packed") == "on"
        if form.get("tls") == "on":
            document["tls"] = {
                "ca": str(form.get("tls_ca", "")).strip(),
                "cert": str(form.get("tls_cert", "")).strip(),
                "key": str(form.get("tls_key", "")).strip(),
                "verify": form.get("tls_verify") == "on",
            }
        password = str(form.get("password", ""))
        if password or new or form.get("clear_password") == "on":
            document["password"] = password
        return document

    def echo(self, form: Mapping[str, Any]) -> dict[str, Any]:
        """What the user typed, to show again beside the error (never the password)."""
        names = (*_TEXT, *_NUMBERS, *_DURATIONS, "tls_ca", "tls_cert", "tls_key")
        echo: dict[str, Any] = {name: str(form.get(name, "")) for name in names}
        for flag in ("gsm7_packed", "tls", "tls_verify"):
            echo[flag] = form.get(flag) == "on"
        return echo

    def shown(self, smsc: Mapping[str, Any]) -> dict[str, Any]:
        """A stored SMSC as the form shows it (durations as ``30s``, TLS flattened)."""
        tls = smsc.get("tls") or {}
        return {
            **smsc,
            "enquire_link": seconds(smsc["enquire_link"]),
            "response_timeout": seconds(smsc["response_timeout"]),
            "reconnect_initial": seconds(smsc["reconnect"]["initial"]),
            "reconnect_max": seconds(smsc["reconnect"]["max"]),
            "tls": bool(smsc.get("tls")),
            "tls_ca": tls.get("ca", ""),
            "tls_cert": tls.get("cert", ""),
            "tls_key": tls.get("key", ""),
            "tls_verify": tls.get("verify", True),
        }

    def live(self, status: LiveStatus) -> dict[str, Any]:
        return {"live": {s.name: s for s in status.smsc}}


ROUTES: tuple[Route, ...] = _SmscPages().routes()
