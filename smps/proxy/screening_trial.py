"""Trying a message on the screening rules without counting it: what
``POST /api/v1/screening/test``, the admin UI's Screening page and ``smps screen
test`` answer.

The message is made into a deliver_sm as an SMSC would send it and judged by the
node's live rules, compiled into an engine of the trial's own (its hits stay out
of ``smps_screening_hits_total``) over the node's real velocity counts: the
table the workers share (the master maps it too), or the single-process node's.
``Engine.judge(count=False)`` leaves every count as it was, so a message tried
any number of times uses up no sender's allowance; a velocity rule fires when the
sender's allowance is already used up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Annotated

import msgspec
from msgspec import Meta

from smps._native import screen
from smps._native.pdu import CommandId, decode_sm, encode
from smps._native.text import gsm7_encode, plain_text, ucs2_encode
from smps.config import Config, InvalidValue
from smps.proxy.screening import ACTION_NAMES, Engine, VelocityTable, build_engine

Octet = Annotated[int, Meta(ge=0, le=255)]
Ton = Annotated[int, Meta(ge=0, le=6)]
Address = Annotated[str, Meta(min_length=1, max_length=20)]  # deliver_sm: 21 with the NUL

TAG_MESSAGE_PAYLOAD = 0x0424
SHORT_MESSAGE_MAX = 254
TON_ALPHANUMERIC = 5


class TrialMessage(msgspec.Struct, forbid_unknown_fields=True, frozen=True, kw_only=True):
    """A message to try. A TON left out is 5 (alphanumeric) for an address with
    letters, else 0 (unknown: the number is read the way the tracer reads it, so
    ``+86...``, ``0086...`` and national forms all work). ``dcs`` left out: GSM
    7-bit (data_coding 0) when the text fits it, else UCS-2 (8). ``smsc`` is the
    SMSC the message comes from (its ``default_alphabet``); default the first."""

    source: Address
    destination: Address
    text: str = ""
    source_ton: Ton | None = None
    dest_ton: Ton | None = None
    pid: Octet = 0
    dcs: Octet | None = None
    smsc: str | None = None


class FiredRule(msgspec.Struct, frozen=True):
    id: str
    type: str
    action: str


class TrialResult(msgspec.Struct, frozen=True, kw_only=True):
    """``verdict``: ``block`` or ``allow`` when a rule decided (``rule``), else
    ``none`` (monitor rules may have fired; the NEs' verdict stands). ``status`` is
    what the SMSC gets at once (``policy.block_status``, or 0 for an allow rule
    with ``skip_ne``), None when the NEs decide; ``ne_copies`` whether the NEs get
    a copy. ``fired``: every rule that fired, in order (none runs after a decision)."""

    verdict: str
    rule: str | None
    status: int | None
    ne_copies: bool
    fired: list[FiredRule]
    enabled: bool  # screening.enabled: off, no rule runs
    data_coding: int  # how the text was sent


class ScreeningTrial:
    """Tries messages on the live rules of ``config()`` (called per trial), over
    ``velocity``; the engine is built again only when the configuration changed."""

    def __init__(self, config: Callable[[], Config], velocity: VelocityTable):
        self.config = config
        self.velocity = velocity
        self._built: tuple[Config, Engine | None] | None = None
        self._lock = asyncio.Lock()  # one trial at a time: an engine's scratch is its own

    async def try_message(self, message: TrialMessage) -> TrialResult:
        """``run`` off the event loop: building the engine again after a change reads
        every list file and compiles every pattern."""
        async with self._lock:
            return await asyncio.to_thread(self.run, message)

    def _engine(self, config: Config) -> Engine | None:
        if self._built is None or self._built[0] is not config:
            self._built = (config, build_engine(config, self.velocity))
        return self._built[1]

    def run(self, message: TrialMessage) -> TrialResult:
        """Judge ``message``; InvalidValue names the field it cannot be sent with,
        EntryError says which list file went bad."""
        config = self.config()
        smsc = _smsc(config, message.smsc)
        pdu, data_coding = _deliver_sm(message, config, smsc)
        engine = self._engine(config)
        judged = None
        if engine is not None:
            judged = engine.judge(decode_sm(pdu), smsc, int(time.monotonic() * 1000), False)
        return _result(config, judged, data_coding)


def _smsc(config: Config, name: str | None) -> str:
    if name is None:
        return config.smsc[0].name if config.smsc else ""
    if name not in {s.name for s in config.smsc}:
        raise InvalidValue(("smsc",), f"no SMSC {name!r} on this node")
    return name


def _deliver_sm(message: TrialMessage, config: Config, smsc: str) -> tuple[bytes, int]:
    """(the deliver_sm, its data_coding)."""
    alphabet, packed = next(
        ((s.default_alphabet, s.gsm7_packed) for s in config.smsc if s.name == smsc),
        ("gsm7", False),
    )
    codings = (0, 8) if message.dcs is None else (message.dcs,)
    for data_coding in codings:
        user_data = _user_data(message.text, data_coding, alphabet, packed)
        if user_data is not None:
            break
    else:
        written = "GSM 7-bit or UCS-2" if message.dcs is None else f"data_coding {data_coding}"
        raise InvalidValue(("text",), f"cannot be written in {written} ({alphabet} by default)")
    source_ton = _ton(message.source, message.source_ton)
    dest_ton = _ton(message.destination, message.dest_ton)
    fields: dict[str, int | bytes] = {
        "source_addr_ton": source_ton,
        "source_addr_npi": _npi(source_ton),
        "source_addr": message.source.encode(),
        "dest_addr_ton": dest_ton,
        "dest_addr_npi": _npi(dest_ton),
        "destination_addr": message.destination.encode(),
        "protocol_id": message.pid,
        "data_coding": data_coding,
        "short_message": user_data if len(user_data) <= SHORT_MESSAGE_MAX else b"",
    }
    tlvs = [(TAG_MESSAGE_PAYLOAD, user_data)] if len(user_data) > SHORT_MESSAGE_MAX else []
    return encode(CommandId.DELIVER_SM, 1, fields, tlvs), data_coding


def _ton(address: str, ton: int | None) -> int:
    if ton is not None:
        return ton
    return 0 if address.removeprefix("+").isdigit() else TON_ALPHANUMERIC


def _npi(ton: int) -> int:
    return 0 if ton == TON_ALPHANUMERIC else 1  # unknown, or ISDN/E.164


def _user_data(text: str, data_coding: int, alphabet: str, packed: bool) -> bytes | None:
    """The octets that carry ``text`` under ``data_coding``, found by reading each way
    of writing it back as the engine reads it; None when none gives the text again.
    Binary data codings carry no text: the text's UTF-8 octets go as they are."""
    for write in (lambda: gsm7_encode(text, packed=packed), lambda: ucs2_encode(text),
                  lambda: text.encode("latin-1")):  # fmt: skip
        try:
            data = write()
        except ValueError:  # not in that alphabet (UnicodeEncodeError is one too)
            continue
        read = plain_text(data, data_coding, 0, alphabet, packed)
        if read is None:
            return text.encode("utf-8")
        if read == text:
            return data
    return None


def _result(config: Config, judged: screen.Judgement | None, data_coding: int) -> TrialResult:
    rules = {rule.id: rule for rule in config.screening.rules}
    fired = [
        FiredRule(rule_id, rules[rule_id].type, rules[rule_id].action)
        for rule_id in (judged.fired if judged is not None else [])
    ]
    action = ACTION_NAMES[judged.action] if judged is not None else "monitor"
    if action == "block":
        status, ne_copies = config.policy.block_status, False
    elif action == "allow" and judged.skip_ne:
        status, ne_copies = 0, False
    else:
        status, ne_copies = None, True
    return TrialResult(
        verdict=action if action != "monitor" else "none",
        rule=judged.rule if action != "monitor" else None,
        status=status,
        ne_copies=ne_copies,
        fired=fired,
        enabled=config.screening.enabled,
        data_coding=data_coding,
    )
