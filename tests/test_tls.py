"""SMPP over TLS: SMPS's NE server with `server.tls`, and SMPS's client side
(`smsc[].tls`) binding to it — both sides of the TLS options with a real
self-signed certificate."""

import shutil
import subprocess

import pytest

from smps._native.pdu import CommandId, encode
from smps.smpp.client import SmscClient
from smps.smpp.server import NeServer
from tests.helpers import until

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


async def test_ne_binds_over_tls_and_receives_copies(make_config, certificate):
    cert, key = certificate
    cfg = make_config(
        server={"listen": "127.0.0.1:0", "tls": {"cert": cert, "key": key}},
        ne_accounts=[{"system_id": "antispam", "password": "pw1"}],
    )
    server = NeServer(cfg.server, cfg.ne_accounts, copy_timeout=2.0)
    port = await server.start()
    seen = []

    def verdict(session, pdu):
        seen.append(pdu)
        session.respond(pdu, 0x66)

    ne_cfg = make_config(
        smsc=[{"name": "ne", "host": "127.0.0.1", "port": port, "system_id": "antispam",
               "password": "pw1", "bind": "receiver", "tls": {"ca": cert}}]
    )  # fmt: skip
    ne = SmscClient(ne_cfg.smsc[0], verdict)
    ne.start()
    try:
        await until(lambda: server.registry.count("antispam") == 1)
        (session,) = server.registry.by_account["antispam"]
        assert session.transport.get_extra_info("ssl_object") is not None
        answers = []
        copy = encode(CommandId.DELIVER_SM, 0, {"short_message": b"over tls"})
        session.send(copy, lambda ctx, status, pdu: answers.append(status))
        await until(lambda: answers)
        assert answers == [0x66] and len(seen) == 1
    finally:
        await ne.stop()
        await server.stop()


async def test_client_refuses_untrusted_certificate(make_config, certificate):
    cert, key = certificate
    cfg = make_config(
        server={"listen": "127.0.0.1:0", "tls": {"cert": cert, "key": key}},
        ne_accounts=[{"system_id": "antispam", "password": "pw1"}],
    )
    server = NeServer(cfg.server, cfg.ne_accounts, copy_timeout=2.0)
    port = await server.start()
    # Without the certificate as CA, verification fails: never bound, never a crash.
    ne_cfg = make_config(
        smsc=[{"name": "ne", "host": "127.0.0.1", "port": port, "system_id": "antispam",
               "password": "pw1", "bind": "receiver", "tls": {},
               "reconnect": {"initial": "50ms", "max": "100ms"}}]
    )  # fmt: skip
    ne = SmscClient(ne_cfg.smsc[0])
    ne.start()
    try:
        await until(lambda: len(ne.attempt_times) >= 3)
        assert ne.binds_up == 0 and server.registry.count("antispam") == 0
    finally:
        await ne.stop()
        await server.stop()
