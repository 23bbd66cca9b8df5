"""Seed inputs for the atheris targets: well-formed traffic the fuzzer mutates from.

Built from the codec at run time rather than kept as binary files; ``fuzz.run``
writes them into an empty corpus directory.
"""

from smps._native.pdu import CommandId as C
from smps._native.pdu import encode
from smps._native.text import gsm7_encode, split, ucs2_encode

SM_FIELDS = {"source_addr": b"46700000001", "destination_addr": b"46711111111"}


def session_input(
    *, smsc=False, bound=False, slow=False, copies=0, read=0, drain_every=1, stream=b""
) -> bytes:
    """An input of the session target (its module docstring gives the layout)."""
    flags = smsc | bound << 1 | slow << 2 | copies << 3
    return bytes([flags, read, drain_every]) + stream


def _deliver_sm(seq: int, short_message: bytes = b"hello", esm_class: int = 0, **extra) -> bytes:
    fields = {**SM_FIELDS, "esm_class": esm_class, "short_message": short_message, **extra}
    return encode(C.DELIVER_SM, seq, fields)


def pdus() -> dict[str, bytes]:
    """One PDU of each kind the two sides see."""
    _, (part, *_more) = split("x" * 200, ref=7)
    return {
        "bind_trx": encode(
            C.BIND_TRANSCEIVER,
            1,
            {"system_id": b"antispam", "password": b"pw", "interface_version": 0x34},
        ),
        "bind_rx": encode(C.BIND_RECEIVER, 2, {"system_id": b"antispam", "password": b"pw"}),
        "bind_trx_resp": encode(
            C.BIND_TRANSCEIVER_RESP, 1, {"system_id": b"SMSC"}, [(0x0210, b"\x34")]
        ),
        "bind_resp_refused": encode(C.BIND_TRANSCEIVER_RESP, 1, status=0x0D),
        "deliver_sm": _deliver_sm(3),
        "deliver_sm_udh": _deliver_sm(4, part, esm_class=0x40),
        "deliver_sm_ucs2": _deliver_sm(5, ucs2_encode("привет"), data_coding=8),
        "receipt": encode(
            C.DELIVER_SM,
            6,
            {**SM_FIELDS, "esm_class": 0x04},
            [(0x001E, b"abc\0"), (0x0427, b"\x02")],
        ),
        "data_sm": encode(C.DATA_SM, 7, SM_FIELDS, [(0x0424, b"payload"), (0x020C, b"\x00\x01")]),
        "deliver_sm_resp": encode(C.DELIVER_SM_RESP, 1, {"message_id": b""}),
        "enquire_link": encode(C.ENQUIRE_LINK, 8),
        "enquire_link_resp": encode(C.ENQUIRE_LINK_RESP, 2),
        "alert_notification": encode(
            C.ALERT_NOTIFICATION, 9, {"source_addr": b"1", "esme_addr": b"2"}
        ),
        "outbind": encode(C.OUTBIND, 10, {"system_id": b"smsc", "password": b"pw"}),
        "submit_sm": encode(C.SUBMIT_SM, 11, {**SM_FIELDS, "short_message": b"x"}),
        "generic_nack": encode(C.GENERIC_NACK, 3, status=3),
        "unbind": encode(C.UNBIND, 12),
        "unknown": encode(0x00000099, 13, {"body": b"??"}),
    }


def codec_seeds() -> dict[str, bytes]:
    seeds = dict(pdus())
    every = b"".join(seeds.values())
    seeds["stream"] = every
    seeds["stream_bad_length"] = every[:40] + b"\xff\xff\xff\xff" + every[44:]
    return seeds


def text_seeds() -> dict[str, bytes]:
    return {
        "gsm7": gsm7_encode("Hello {world} €"),
        "gsm7_packed": gsm7_encode("Hello {world} €", packed=True),
        "ucs2": ucs2_encode("Привет 👋"),
        "udh": bytes.fromhex("0b0003070201240101250101") + b"text",
        "udh16": bytes.fromhex("060804abcd0302") + b"text",
        "text": ("A long message, over one segment " * 8).encode(),
    }


def session_seeds() -> dict[str, bytes]:
    p = pdus()
    nack_bad = b"\x00\x00\x00\x08" + p["enquire_link"][4:]
    copies_answered = b"".join(
        encode(C.DELIVER_SM_RESP, seq, {"message_id": b""}) for seq in (1, 2, 3)
    )
    return {
        "ne_bind": session_input(stream=p["bind_trx"] + p["enquire_link"] + p["unbind"]),
        "ne_bind_twice": session_input(stream=p["bind_trx"] + p["bind_rx"] + p["submit_sm"]),
        "ne_copies": session_input(
            bound=True, copies=3, stream=copies_answered + p["generic_nack"]
        ),
        "ne_slow": session_input(
            bound=True, slow=True, copies=2, read=16, stream=p["enquire_link"] * 8
        ),
        "ne_bad_length": session_input(bound=True, stream=p["enquire_link"] + nack_bad),
        "ne_bytewise": session_input(read=1, stream=p["bind_trx"] + p["outbind"]),
        "smsc_bind": session_input(smsc=True, stream=p["bind_trx_resp"] + p["deliver_sm"]),
        "smsc_refused": session_input(smsc=True, stream=p["bind_resp_refused"]),
        "smsc_traffic": session_input(
            smsc=True,
            bound=True,
            stream=b"".join(
                p[name]
                for name in (
                    "deliver_sm",
                    "deliver_sm_udh",
                    "deliver_sm_ucs2",
                    "receipt",
                    "data_sm",
                    "enquire_link",
                    "alert_notification",
                    "enquire_link_resp",
                    "unknown",
                    "unbind",
                )
            ),
        ),
        "smsc_slow": session_input(
            smsc=True, bound=True, slow=True, read=40, stream=p["deliver_sm"] * 6
        ),
        "smsc_outbind": session_input(smsc=True, stream=p["outbind"] + p["bind_trx_resp"]),
    }


def screen_seeds() -> dict[str, bytes]:
    """Mode byte (fuzz/screen.py), then its input."""
    return {
        "judge": b"\x00" + b"\x01\x01\x0d8613800000666\x01\x01\x048613" + b"free iphone" * 4,
        "text": b"\x01" + b"\x00\x00" + b"see hxxp://x.bad[.]example now, code 1234",
        "entries": b"\x02prefix:86170 https://Bad.example/x",
        "velocity": b"\x03" + bytes(range(200)),
    }


SEEDS = {"codec": codec_seeds, "text": text_seeds, "session": session_seeds,
         "screen": screen_seeds}  # fmt: skip
