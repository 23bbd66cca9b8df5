"""The test NEs: `Ne` binds to SMPS as a receiver and keeps every copy it gets,
so that tests can assert on the PDUs themselves (smps/sim/ne.py's SimNe only
counts them); `bind` and `bind_status` bind once with smpplib, an independent
SMPP implementation, from a chosen loopback address; `raw_exchange` and
`connect_raw` send what no well-behaved NE would."""

import asyncio
import socket
import time

import smpplib.client
import smpplib.exceptions
import yaml

from smps import config as config_module
from smps._native.pdu import Framer, Status, decode, decode_sm
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


class SmpplibNe(smpplib.client.Client):
    """smpplib's client, connecting from `source` (any 127.x address is loopback)."""

    def __init__(self, port, source="127.0.0.1"):
        super().__init__("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
        self.source = source

    def _create_socket(self):
        sock = super()._create_socket()
        sock.bind((self.source, 0))
        return sock


def bind(port, kind="transceiver", system_id="antispam", password="pw1", source="127.0.0.1"):
    """A bound smpplib client (the caller disconnects it); raises PDUError when refused."""
    client = SmpplibNe(port, source)
    client.connect()
    try:
        getattr(client, f"bind_{kind}")(system_id=system_id, password=password)
    except smpplib.exceptions.PDUError:
        client.disconnect()
        raise
    return client


def bind_status(port, **kwargs):
    """The status a bind gets (the client is disconnected either way)."""
    try:
        client = bind(port, **kwargs)
    except smpplib.exceptions.PDUError as exc:
        return exc.args[1]
    client.disconnect()
    return Status.ROK


def timed_bind_status(port, **kwargs):
    """(status, seconds from connecting to the answer) of one bind."""
    started = time.monotonic()
    status = bind_status(port, **kwargs)
    return status, time.monotonic() - started


def raw_exchange(port, payload, *, read_until_close=True, timeout=3.0):
    """Send bytes on a raw socket; return the PDUs received and whether the server closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        framer, pdus, closed = Framer(), [], False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                break
            if not data:
                closed = True
                break
            framer.feed(data)
            pdus.extend(decode(p) for p in framer)
            if pdus and not read_until_close:
                break
        return pdus, closed


def connect_raw(port, source="127.0.0.1", payload=b"\0"):
    """A connection from `source` that sends `payload` (by default one byte of a
    PDU that never comes) and then nothing; the caller closes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
    sock.sendall(payload)
    return sock


def closed_by_server(sock, timeout=5.0):
    """True once the server closed or reset `sock`; False if it stays open `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
