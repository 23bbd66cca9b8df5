"""Protocol tracing: chosen numbers, followed PDU by PDU through the proxy.

Call sequence (the dispatcher, for each original it reads)::

    trace = tracer.match(view, smsc)          # None for untraced: stop here
    if trace is not None:
        trace.received(pdu, view, smsc)       # the deliver_sm / data_sm from the SMSC
        trace.copy_sent(account, bind, worker, sequence, copy_pdu)   # per copy sent
        trace.dropped(reason, account=...)    # per copy that never went (queue full...)
        trace.answered(account, status, verdict, latency_ms, late, resp_pdu)  # per answer
        trace.answered(account, 0, "none", latency_ms, False, None, reason="timeout")
                                              # no answer: deadline, bind dropped
        trace.final(status, verdict, reason, resp_pdu)   # the resp sent to the SMSC
        trace.close()                         # decision complete: events go to the sink

`trace.dropped(reason)` without an account is the whole original refused
(throttled...), followed by `final` with the status sent. Keep the Trace on
the in-flight original; a call after `close()` goes to the sink directly.

Matching costs one call for an untraced message, whatever the rule count:
each address as sent is looked up in a set of every raw form that can
normalise (below) to a rule's number (``N``, ``+N``, ``00N``, ``0`` + national,
national) and its first octets in a set of the raw forms of every prefix cut
to the shortest; a number in neither cannot match and is neither normalised
nor decoded. One that passes is normalised and looked up in a dict of exact
numbers, then in a dict of prefixes per distinct prefix length.
Expiry is checked only for rules that matched; `prune_expired()` drops them.

Number normalisation (`normalise_address`, compiled in `smps._native.numbers`),
applied to both addresses and to rule numbers (rules as TON 0 / NPI 1), so
``13800138000``, ``+8613800138000`` and ``008613800138000`` are one subscriber
under ``country_code: "86"``:

====================  ==========================  ===========================
TON (NPI 0/1/6/8)     address as sent             normalised (cc = 86)
====================  ==========================  ===========================
1 international       8613800138000               8613800138000
1 (sloppy)            +8613800138000 / 0086...    8613800138000
2 national            13800138000                 8613800138000
2 (trunk 0)           013800138000                8613800138000
2 (sloppy)            +8613800138000              8613800138000
0 unknown, + or 00    +4467811223344              4467811223344
0, leading 0 (trunk)  013800138000                8613800138000
0, starts with cc,    8613800138000               8613800138000
  >= len(cc)+7 digits
0, 7..15-len(cc)      13800138000                 8613800138000
  digits (national)
0, <= 6 digits        10086                       10086 (short code)
0, longer             1234567890123456            unchanged
5 alphanumeric        MyBank                      MyBank (bytes, literal)
3, 4, 6 and others    1234                        unchanged
any, non-digits       ABC / +ABC                  unchanged
NPI 3/4/9/10/14/18    anything                    unchanged (not phone numbers)
no country code       digits after +/00 stripped  national forms unchanged
====================  ==========================  ===========================

"National length" is a guess that TON 0 cannot avoid: 7 digits is the
shortest national significant number in use, 15 (E.164) minus the country
code the longest. Foreign numbers in rules must be written with ``+`` or
``00``; prefix rules (``8613*``) are written in international form or with a
trunk ``0`` (prefixes are too short for the length analysis).

Content (decoded text, encoding, UDH) appears in events only when
``trace.decode_content`` is on and no matching rule turns it off; when it is
off, short_message and message_payload are replaced by ``<N octets hidden>``
in the fields and the hex. Passwords never appear.
"""

import itertools
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, Protocol

import msgspec

from smps._native import text
from smps._native.numbers import TON_UNKNOWN, normalise_address
from smps._native.pdu import command_name, decode
from smps.config import Config, TraceRule
from smps.errors import PduError

TAG_MESSAGE_PAYLOAD = 0x0424
CONCAT_TTL = 300.0  # seconds a partial concatenated set waits for its other parts
CONCAT_LIMIT = 10_000  # partial sets remembered at most
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))  # what str.isprintable() accepts of ASCII

TLV_NAMES = {
    0x0005: "dest_addr_subunit", 0x000D: "source_addr_subunit", 0x0019: "payload_type",
    0x001D: "additional_status_info_text", 0x001E: "receipted_message_id",
    0x0201: "privacy_indicator", 0x0204: "user_message_reference", 0x020A: "source_port",
    0x020B: "destination_port", 0x020C: "sar_msg_ref_num", 0x020D: "language_indicator",
    0x020E: "sar_total_segments", 0x020F: "sar_segment_seqnum", 0x0381: "callback_num",
    0x0423: "network_error_code", 0x0424: "message_payload", 0x0427: "message_state",
    0x0501: "ussd_service_op",
}  # fmt: skip


# ---- events ----------------------------------------------------------------------


class ConcatInfo(msgspec.Struct, frozen=True):
    """Where a segment belongs: `id` is the same for every part of one message."""

    id: str
    mechanism: str  # udh8 | udh16 | sar
    ref: int
    total: int
    part: int


class UdhInfo(msgspec.Struct, frozen=True, omit_defaults=True):
    length: int
    ies: list[str]  # "IEI:hex data", e.g. "00:420301"
    concat: list[int] | None = None  # ref, total, part
    ports: list[int] | None = None  # destination, origin
    single_shift: int = 0  # national language ids (1 = Turkish, ...)
    locking_shift: int = 0


class Reassembled(msgspec.Struct, frozen=True, omit_defaults=True):
    """The whole of a concatenated message, on the event of the part that completed it."""

    parts: list[str]  # message_id of each part, in part order
    text: str | None = None  # None unless every part allowed content
    encoding: str | None = None
    note: str | None = None


class TlvInfo(msgspec.Struct, frozen=True):
    tag: int
    name: str
    value: str


class TraceEvent(msgspec.Struct, frozen=True, omit_defaults=True):
    """One step of a traced original. Content fields are set only when allowed."""

    message_id: str
    ts_us: int  # epoch microseconds
    kind: str  # received | copy_sent | answered | timeout | final | dropped
    direction: str  # smsc->smps | smps->ne | ne->smps | smps->smsc | smps
    smsc: str
    source_addr: str  # normalised
    destination_addr: str
    source_addr_raw: str
    destination_addr_raw: str
    command: str = ""
    status: int | None = None
    sequence: int | None = None
    account: str | None = None
    bind: str | None = None
    worker: int | None = None
    verdict: str | None = None
    latency_ms: float | None = None
    late: bool | None = None
    reason: str | None = None
    rules: list[str] | None = None  # the rule numbers that matched (received only)
    content: bool = False  # whether content decoding was allowed for this message
    concat: ConcatInfo | None = None
    fields: dict[str, int | str] | None = None
    tlvs: list[TlvInfo] | None = None
    pdu_hex: str | None = None
    text: str | None = None
    encoding: str | None = None
    note: str | None = None
    udh: UdhInfo | None = None
    reassembled: Reassembled | None = None


class EventSink(Protocol):
    def put(self, event: TraceEvent) -> None: ...


# ---- numbers -----------------------------------------------------------------------


def normalise_rule_number(number: str, country_code: bytes) -> tuple[bytes, bool]:
    """(key, is_prefix) for a rule's number; see the module docstring."""
    number = number.strip()
    prefix = number.endswith("*")
    raw = number.rstrip("*").encode("utf-8")
    if not prefix:
        return normalise_address(raw, TON_UNKNOWN, 1, country_code), False
    digits = raw[1:] if raw[:1] == b"+" else raw[2:] if raw[:2] == b"00" else raw
    if digits is raw and digits[:1] == b"0" and country_code:
        digits = country_code + digits[1:]
    return digits, True


# ---- rules ---------------------------------------------------------------------------


class _Rule:
    __slots__ = ("decode_content", "expires_us", "number")

    def __init__(self, rule: TraceRule, decode_default: bool):
        self.number = rule.number
        self.expires_us = _epoch_us(rule.expires) if rule.expires is not None else None
        allowed = rule.decode_content if rule.decode_content is not None else decode_default
        self.decode_content = decode_default and allowed


class _Side:
    """Rules for one address: exact numbers plus prefixes keyed by length, and
    the raw forms that may match (a superset: `normalise_address` only strips
    ``+``, ``00`` or a trunk ``0`` and prepends the country code)."""

    __slots__ = ("exact", "lengths", "prefixes", "raw", "raw_stem", "raw_stems", "shortest",
                 "stems")  # fmt: skip

    def __init__(self) -> None:
        self.exact: dict[bytes, tuple[_Rule, ...]] = {}
        self.prefixes: dict[bytes, tuple[_Rule, ...]] = {}
        self.lengths: tuple[int, ...] = ()
        self.shortest = 0
        self.stems: frozenset[bytes] = frozenset()  # every prefix cut to the shortest length
        self.raw: frozenset[bytes] = frozenset()  # every address as sent that may be exact
        self.raw_stem = 0
        self.raw_stems: frozenset[bytes] = frozenset()  # raw prefix forms cut to raw_stem

    def add(self, key: bytes, prefix: bool, rule: _Rule) -> None:
        table = self.prefixes if prefix else self.exact
        table[key] = (*table.get(key, ()), rule)

    def seal(self, country_code: bytes) -> None:
        self.lengths = tuple(sorted({len(key) for key in self.prefixes}))
        self.shortest = self.lengths[0] if self.lengths else 0
        self.stems = frozenset(key[: self.shortest] for key in self.prefixes)
        self.raw = frozenset(f for key in self.exact for f in _raw_forms(key, country_code))
        stems = {f for key in self.prefixes for f in _raw_forms(key, country_code)}
        self.raw_stem = min(map(len, stems), default=0)
        self.raw_stems = frozenset(f[: self.raw_stem] for f in stems)

    def find(self, number: bytes) -> tuple[_Rule, ...] | None:
        found = self.exact.get(number)
        if number[: self.shortest] not in self.stems:  # one lookup rejects most numbers
            return found
        prefixes = self.prefixes
        for length in self.lengths:
            hit = prefixes.get(number[:length])
            if hit is not None:
                found = hit if found is None else found + hit
        return found


def _raw_forms(key: bytes, country_code: bytes) -> tuple[bytes, ...]:
    """Every start of an address as sent whose normalised form starts with `key`
    (for an exact key: every address that may normalise to it)."""
    forms = (key, b"+" + key, b"00" + key)
    if key.startswith(country_code):  # national, with or without the trunk 0
        national = key[len(country_code) :]
        return (*forms, b"0" + national, national)
    if country_code.startswith(key):  # a prefix of the country code: any national number
        return (*forms, b"")
    return forms


class _RuleIndex:
    __slots__ = ("country_code", "decode_default", "receiver", "rules", "sender")

    def __init__(self, rules: Iterable[TraceRule], decode_default: bool, country_code: str):
        self.rules = tuple(rules)
        self.decode_default = decode_default
        self.country_code = country_code.encode("ascii")
        self.sender = _Side()
        self.receiver = _Side()
        for rule in self.rules:
            key, prefix = normalise_rule_number(rule.number, self.country_code)
            compiled = _Rule(rule, decode_default)
            if rule.side in ("sender", "both"):
                self.sender.add(key, prefix, compiled)
            if rule.side in ("receiver", "both"):
                self.receiver.add(key, prefix, compiled)
        self.sender.seal(self.country_code)
        self.receiver.seal(self.country_code)


# ---- the tracer --------------------------------------------------------------------


def _now_us() -> int:
    return time.time_ns() // 1000


class Tracer:
    """Trace rules of one worker, and the factory of `Trace` objects."""

    def __init__(
        self,
        sink: EventSink,
        rules: Iterable[TraceRule] = (),
        *,
        decode_content: bool = False,
        country_code: str = "",
        node: str = "smps",
        worker: int = 0,
        clock: Callable[[], int] = _now_us,
        concat_ttl: float = CONCAT_TTL,
        concat_limit: int = CONCAT_LIMIT,
    ):
        self.sink = sink
        self.clock = clock
        self._ids = itertools.count(1)
        self._id_prefix = f"{node}-{worker}-{clock():x}-"
        self._alphabets: dict[str, tuple[str, bool]] = {}
        self.concat = ConcatTracker(int(concat_ttl * 1e6), concat_limit)
        self._index: _RuleIndex
        self.set_rules(rules, decode_content, country_code)

    @classmethod
    def from_config(cls, config: Config, sink: EventSink, *, worker: int = 0, **kwargs: Any):
        tracer = cls(sink, node=config.node.name, worker=worker, **kwargs)
        tracer.apply_config(config)
        return tracer

    def apply_config(self, config: Config) -> None:
        """Rules, content policy and each SMSC's default alphabet, live."""
        self._alphabets = {s.name: (s.default_alphabet, s.gsm7_packed) for s in config.smsc}
        trace = config.trace
        self.set_rules(trace.rules, trace.decode_content, trace.country_code)

    def set_rules(
        self, rules: Iterable[TraceRule], decode_content_default: bool, country_code: str
    ) -> None:
        """Replace every rule at once; a message in `match` sees old or new, never a mix."""
        self._index = _RuleIndex(rules, decode_content_default, country_code)

    @property
    def rules(self) -> tuple[TraceRule, ...]:
        return self._index.rules

    def prune_expired(self) -> int:
        """Drop expired rules (they already stopped matching); returns how many."""
        index = self._index
        now = self.clock()
        live = [r for r in index.rules if r.expires is None or _epoch_us(r.expires) > now]
        dropped = len(index.rules) - len(live)
        if dropped:
            self.set_rules(live, index.decode_default, index.country_code.decode())
        return dropped

    def match(self, view: Any, smsc: str) -> "Trace | None":
        """A Trace when a live rule selects this original, else None."""
        index = self._index
        if not index.rules:
            return None
        sender, receiver = index.sender, index.receiver
        source, destination = view.source_addr, view.destination_addr
        stems = sender.raw_stems  # empty without prefix rules: no slice then
        maybe_src = source in sender.raw or (stems and source[: sender.raw_stem] in stems)
        if not maybe_src:
            stems = receiver.raw_stems
            if destination not in receiver.raw and not (
                stems and destination[: receiver.raw_stem] in stems
            ):
                return None  # the 99 % case: neither address can normalise to a rule's number
        cc = index.country_code
        src = normalise_address(source, view.source_addr_ton, view.source_addr_npi, cc)
        dst = normalise_address(destination, view.dest_addr_ton, view.dest_addr_npi, cc)
        hits = (sender.find(src) or ()) if maybe_src else ()
        found = receiver.find(dst)
        if found:
            hits += found
        if not hits:
            return None
        now = self.clock()
        live = [rule for rule in hits if rule.expires_us is None or rule.expires_us > now]
        if not live:
            return None
        return Trace(
            self,
            f"{self._id_prefix}{next(self._ids)}",
            smsc,
            src.decode("latin-1"),
            dst.decode("latin-1"),
            source.decode("latin-1"),
            destination.decode("latin-1"),
            all(rule.decode_content for rule in live),
            sorted({rule.number for rule in live}),
        )

    def alphabet(self, smsc: str) -> tuple[str, bool]:
        """(default_alphabet, gsm7_packed) for data_coding 0 from this SMSC."""
        return self._alphabets.get(smsc, ("gsm7", False))


class Trace:
    """The events of one traced original, kept until `close()`."""

    __slots__ = ("_events", "_last_pdu", "_last_rendered", "closed", "content", "destination",
                 "destination_raw", "message_id", "rules", "smsc", "source", "source_raw",
                 "tracer")  # fmt: skip

    def __init__(self, tracer, message_id, smsc, source, destination, source_raw,
                 destination_raw, content, rules):  # fmt: skip
        self.tracer = tracer
        self.message_id = message_id
        self.smsc = smsc
        self.source = source
        self.destination = destination
        self.source_raw = source_raw
        self.destination_raw = destination_raw
        self.content = content  # content decoding allowed for this message
        self.rules = rules
        self.closed = False
        self._events: list[TraceEvent] = []
        self._last_pdu: bytes | None = None
        self._last_rendered: dict[str, Any] = {}

    def received(self, pdu: bytes, view: Any, smsc: str) -> None:
        """The original as read from the SMSC."""
        extra: dict[str, Any] = {"rules": self.rules}
        if self.content:
            alphabet, packed = self.tracer.alphabet(smsc)
            decoded = text.decode(view.user_data, view.data_coding, view.esm_class,
                                  default_alphabet=alphabet, gsm7_packed=packed)  # fmt: skip
            extra.update(text=decoded.text, encoding=decoded.encoding,
                         note=decoded.note or None, udh=_udh_info(decoded.udh))  # fmt: skip
        concat = _concat_of(view)
        if concat is not None:
            extra.update(self._link(concat, view, smsc))
        self._add("received", "smsc->smps", pdu, **extra)

    def copy_sent(self, account: str, bind: str, worker: int, sequence: int, pdu: bytes) -> None:
        self._add("copy_sent", "smps->ne", pdu, account=account, bind=bind, worker=worker,
                  sequence=sequence)  # fmt: skip

    def answered(
        self,
        account: str,
        status: int,
        verdict: str,
        latency_ms: float,
        late: bool,
        pdu: bytes | None,
        reason: str = "",
    ) -> None:
        """An NE's answer; pdu None = no answer (deadline, bind dropped: say which in reason)."""
        kind = "answered" if pdu is not None else "timeout"
        self._add(kind, "ne->smps", pdu, account=account, status=status, verdict=verdict,
                  latency_ms=latency_ms, late=late, reason=reason or None)  # fmt: skip

    def final(self, status: int, verdict: str, reason: str, pdu: bytes) -> None:
        """The response sent to the SMSC."""
        self._add("final", "smps->smsc", pdu, status=status, verdict=verdict, reason=reason)

    def dropped(self, reason: str, account: str | None = None) -> None:
        """A copy (with account) or the original itself was not handled: throttled, queue full."""
        self._add("dropped", "smps", None, account=account, reason=reason)

    def close(self) -> None:
        """The decision is complete: hand the events to the sink."""
        if self.closed:
            return
        self.closed = True
        put = self.tracer.sink.put
        for event in self._events:
            put(event)
        self._events.clear()

    def _add(self, kind: str, direction: str, pdu: bytes | None, **extra: Any) -> None:
        if pdu is not None:
            if pdu != self._last_pdu:  # copies are the original's bytes: rendered once
                self._last_pdu = pdu
                self._last_rendered = render_pdu(pdu, self.content)
            sequence, status = extra.get("sequence"), extra.get("status")
            extra.update(self._last_rendered)
            if sequence is not None:
                extra["sequence"] = sequence
            if status is not None:
                extra["status"] = status
        event = TraceEvent(
            message_id=self.message_id,
            ts_us=self.tracer.clock(),
            kind=kind,
            direction=direction,
            smsc=self.smsc,
            source_addr=self.source,
            destination_addr=self.destination,
            source_addr_raw=self.source_raw,
            destination_addr_raw=self.destination_raw,
            content=self.content,
            **extra,
        )
        if self.closed:
            self.tracer.sink.put(event)
        else:
            self._events.append(event)

    def _link(self, concat: tuple[str, int, int, int], view: Any, smsc: str) -> dict[str, Any]:
        mechanism, ref, total, part = concat
        key = (self.source, self.destination, ref, total, mechanism)
        data = view.user_data if self.content else None
        group, complete = self.tracer.concat.add(
            key, part, self.message_id, data, view.data_coding, self.tracer.clock()
        )
        out: dict[str, Any] = {"concat": ConcatInfo(group, mechanism, ref, total, part)}
        if complete is not None:
            out["reassembled"] = complete.reassemble(
                mechanism, view.esm_class, *self.tracer.alphabet(smsc)
            )
        return out


# ---- concatenated messages ---------------------------------------------------------


class ConcatSet:
    """The parts of one concatenated message seen so far."""

    __slots__ = ("content", "created_us", "data_coding", "id", "parts", "total")

    def __init__(self, group_id: str, total: int, data_coding: int, now_us: int):
        self.id = group_id
        self.total = total
        self.data_coding = data_coding
        self.created_us = now_us
        self.content = True  # every part so far allowed content and had the same coding
        self.parts: dict[int, tuple[str, bytes | None]] = {}

    def reassemble(self, mechanism: str, esm_class: int, alphabet: str, packed: bool):
        numbers = sorted(self.parts)
        ids = [self.parts[n][0] for n in numbers]
        if not self.content:
            return Reassembled(parts=ids)
        udhi = 0x40 if mechanism != "sar" else 0
        decoded = text.reassemble(
            [(n, self.parts[n][1]) for n in numbers],
            self.data_coding,
            (esm_class & ~0x40) | udhi,
            default_alphabet=alphabet,
            gsm7_packed=packed,
        )
        return Reassembled(ids, decoded.text, decoded.encoding, decoded.note or None)


class ConcatTracker:
    """Partial concatenated sets by (source, destination, ref, total, mechanism),
    kept `ttl_us` at most and `limit` at most; a part seen twice replaces itself."""

    def __init__(self, ttl_us: int, limit: int):
        self.ttl_us = ttl_us
        self.limit = limit
        self._sets: OrderedDict[tuple, ConcatSet] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sets)

    def add(
        self, key: tuple, part: int, message_id: str, data: bytes | None, data_coding: int,
        now_us: int,
    ) -> tuple[str, ConcatSet | None]:  # fmt: skip
        """(group id, the set when this part completed it)."""
        self._expire(now_us)
        total = key[3]
        found = self._sets.get(key)
        if found is None:
            found = ConcatSet(message_id, total, data_coding, now_us)
            self._sets[key] = found
            if len(self._sets) > self.limit:
                self._sets.popitem(last=False)
        if data is None or data_coding != found.data_coding:
            found.content = False
        found.parts[part] = (message_id, data if found.content else None)
        if len(found.parts) == total:
            del self._sets[key]
            return found.id, found
        return found.id, None

    def _expire(self, now_us: int) -> None:
        sets = self._sets
        cutoff = now_us - self.ttl_us
        while sets:
            oldest = next(iter(sets.values()))
            if oldest.created_us > cutoff:
                return
            sets.popitem(last=False)


def _concat_of(view: Any) -> tuple[str, int, int, int] | None:
    """(mechanism, ref, total, part) of a valid segment, or None."""
    if view.udhi:
        udh = text.parse_udh(view.user_data)
        if udh is not None and udh.concat is not None:
            ref, total, part = udh.concat
            if 1 <= part <= total:
                return ("udh16" if udh.ref_bits == 16 else "udh8", ref, total, part)
            return None
    sar = view.sar
    if sar is not None and 1 <= sar[2] <= sar[1]:
        return ("sar", *sar)
    return None


# ---- rendering PDUs ----------------------------------------------------------------


def render_pdu(pdu: bytes, content: bool) -> dict[str, Any]:
    """command, status, sequence, fields, tlvs and pdu_hex of one PDU, with
    short_message / message_payload hidden unless `content`, passwords always."""
    try:
        decoded = decode(pdu)
    except PduError as exc:
        return {
            "command": command_name(int.from_bytes(pdu[4:8])) if len(pdu) >= 8 else "",
            "status": int.from_bytes(pdu[8:12]) if len(pdu) >= 12 else None,
            "sequence": int.from_bytes(pdu[12:16]) if len(pdu) >= 16 else None,
            "pdu_hex": pdu.hex() if content else _hidden_hex(pdu, [(16, len(pdu))]),
            "note": f"undecodable: {exc}",
        }
    fields: dict[str, int | str] = {}
    for name, value in decoded.fields.items():
        if isinstance(value, int):
            fields[name] = value
        elif name == "password":
            fields[name] = "<hidden>"
        elif name == "short_message" and not content:
            fields[name] = _hidden(len(value))
        elif name == "short_message":
            fields[name] = value.hex()
        else:
            fields[name] = _show_bytes(value)
    tlvs = [
        TlvInfo(
            tag,
            TLV_NAMES.get(tag, f"0x{tag:04X}"),
            _hidden(len(value)) if tag == TAG_MESSAGE_PAYLOAD and not content else value.hex(),
        )
        for tag, value in decoded.tlvs
    ]
    secret = not content or "password" in decoded.fields
    return {
        "command": decoded.name,
        "status": decoded.command_status,
        "sequence": decoded.sequence,
        "fields": fields or None,
        "tlvs": tlvs or None,
        "pdu_hex": _hidden_hex(pdu, _secret_spans(pdu, decoded, content)) if secret
        else pdu.hex(),
    }  # fmt: skip


def _secret_spans(pdu: bytes, decoded: Any, content: bool) -> list[tuple[int, int]]:
    """Octet ranges of the PDU that must not be shown."""
    if "password" in decoded.fields:
        return [(16, len(pdu))]  # binds never carry anything worth the risk
    if content:
        return []
    tlv_start = len(pdu) - sum(4 + len(value) for _, value in decoded.tlvs)
    spans = []
    short_message = decoded.fields.get("short_message")
    if short_message:
        spans.append((tlv_start - len(short_message), tlv_start))
    at = tlv_start
    for tag, value in decoded.tlvs:
        if tag == TAG_MESSAGE_PAYLOAD and value:
            spans.append((at + 4, at + 4 + len(value)))
        at += 4 + len(value)
    for start, end in spans:
        if not (16 <= start <= end <= len(pdu)):
            return [(16, len(pdu))]  # layout not understood: hide the whole body
    return spans


def _hidden_hex(pdu: bytes, spans: list[tuple[int, int]]) -> str:
    out, at = [], 0
    for start, end in spans:
        out.append(pdu[at:start].hex())
        out.append(_hidden(end - start))
        at = end
    out.append(pdu[at:].hex())
    return "".join(out)


def _hidden(octets: int) -> str:
    return f"<{octets} octets hidden>"


def _show_bytes(value: bytes) -> str:
    """Printable ASCII as text, anything else as 0x-hex."""
    if not value.translate(None, _PRINTABLE_ASCII):
        return value.decode("ascii")
    return "0x" + value.hex()


def _udh_info(udh: Any) -> UdhInfo | None:
    if udh is None:
        return None
    return UdhInfo(
        length=udh.length,
        ies=[f"{iei:02X}:{data.hex()}" for iei, data in udh.ies],
        concat=list(udh.concat) if udh.concat is not None else None,
        ports=list(udh.ports) if udh.ports is not None else None,
        single_shift=udh.single_shift,
        locking_shift=udh.locking_shift,
    )


def _epoch_us(when: datetime) -> int:
    """A rule's expiry in epoch µs; a naive datetime is local time."""
    return int(when.timestamp() * 1_000_000)
