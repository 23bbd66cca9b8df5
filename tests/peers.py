"""The test NE: binds to SMPS as a receiver and keeps every copy it gets, so that
tests can assert on the PDUs themselves (smps/sim/ne.py's SimNe only counts them)."""

import asyncio

import yaml

from smps import config as config_module
from smps._native.pdu import Status, decode_sm
from smps.smpp.client import SmscClient


def allow(_view):
    return Status.ROK


def hold(_view):
    return None


class Ne:
    """An NE binding to SMPS; answers each copy with ``verdict(view)``.

    ``verdict`` returns a status to answer (after ``delay`` seconds), or None to
    hold the copy in ``held`` until the test calls ``release``.
    """

    def __init__(self, port, system_id, password, verdict=allow, *, binds=1, delay=0.0):
        cfg = config_module.loads(
            yaml.safe_dump(
                {
                    "smsc": [
                        {
                            "name": system_id,
                            "host": "127.0.0.1",
                            "port": port,
                            "system_id": system_id,
                            "password": password,
                            "bind": "receiver",
                            "binds": binds,
                            "reconnect": {"initial": "50ms", "max": "200ms"},
                        }
                    ]
                }
            ),
            file="<test>",
        )
        self.verdict = verdict
        self.delay = delay
        self.received: list[bytes] = []
        self.held: list[tuple] = []
        self.client = SmscClient(cfg.smsc[0], self._on_copy)

    def _on_copy(self, session, pdu):
        self.received.append(pdu)
        status = self.verdict(decode_sm(pdu))
        if status is None:
            self.held.append((session, pdu))
        elif self.delay:
            asyncio.get_running_loop().call_later(self.delay, session.respond, pdu, status)
        else:
            session.respond(pdu, status)

    def release(self, status=Status.ROK):
        for session, pdu in self.held:
            session.respond(pdu, status)
        self.held.clear()
