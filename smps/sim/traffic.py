"""The message mix the simulated SMSC sends: realistic originals, pre-encoded once.

A load generator must cost far less per message than the proxy it measures,
so nothing is built per message. `Traffic` builds a pool of messages up front
— each one or three encoded PDUs with sequence number 0 (the session patches
its own in) — in the proportions of a `Mix`, shuffled, and then cycles
through it. The kinds:

- ``gsm7``: GSM 7-bit text (data_coding 0, unpacked septets as SMPP carries
  them) using the extension table: € { } [ ] ~ ^ \\ |
- ``ucs2``: UCS-2 text (data_coding 8) with emoji, i.e. surrogate pairs, a
  ZWJ sequence and a flag;
- ``concat``: a three-part message, GSM 7-bit or UCS-2 (every fourth, unless
  `LongMessages.ucs2` is off), its parts tied together as `LongMessages`
  says: by default the 8-bit concatenation UDH (``05 00 03 ref 03 n``,
  esm_class 0x40), parts in order; also the 16-bit UDH (``06 08 04 ref ref
  03 n``) and the SAR TLVs, and a share of the messages with their parts
  out of order;
- ``receipt``: a delivery receipt (esm_class 0x04) with the DLR text and the
  receipted_message_id / message_state TLVs.

A share of the single-part messages goes out as data_sm (text in
message_payload) instead of deliver_sm. Sources and destinations are drawn
from number ranges; optionally a set of "traced" numbers appears as source or
destination in a given share of the messages, for the tracing path.

Reusing the pool would repeat a concatenated message's (source, destination,
reference) triple every cycle, which SMPS's sticky concat block would treat
as one message. So a concat message's reference is advanced by one on every
pass over the pool; a triple comes back only after 256 passes (65,536 with a
16-bit or SAR reference). With the default number ranges (10^8 sources and
destinations) two long messages of a pool practically never share a
(source, destination) pair, so no reference is in flight twice either.
"""

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from smps._native import text
from smps._native.pdu import CommandId, encode

KINDS = ("gsm7", "ucs2", "concat", "receipt")

ESM_UDHI = 0x40
ESM_RECEIPT = 0x04
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427
TLV_MESSAGE_PAYLOAD = 0x0424
TLV_SAR_MSG_REF_NUM = 0x020C
TLV_SAR_TOTAL_SEGMENTS = 0x020E
TLV_SAR_SEGMENT_SEQNUM = 0x020F
CONCAT_PARTS = 3
CONCAT_STYLES = ("udh8", "udh16", "sar")
# Orders other than 1, 2, 3 a long message's parts may go out in.
_REORDERINGS = ((2, 1, 0), (1, 0, 2), (0, 2, 1), (1, 2, 0), (2, 0, 1))

_GSM7_TEXTS = (
    "Your verification code is #. Do not share it with anyone.",
    "Balance: €# left. Top up at shop.example [ref #] ~ thanks!",
    "Meet at {room 4} at 7pm ^_^ bring the keys | call me if late",
    r"Backup saved to C:\data\# | status [OK] {done}",
    "Hi! Parcel # arrives today between 10:00 and 12:00. Reply STOP to opt out.",
    "PROMO ~ 20% off with code # | valid till Sunday, min. spend €10 [T&C]",
)
_UCS2_TEXTS = (
    "您的验证码是#，请勿泄露给他人。😀",
    "明天见 👍🎉 会议室 #",
    "Привет! Код подтверждения # 🔐",
    "家族旅行 👨‍👩‍👧 🇨🇳 订单 # 已确认",
    "Café ☕ à # heures ? 😉",
)
_GSM7_LONG = (
    "Dear customer, your monthly statement # is ready. Charges: €12.50 data, €3.20 calls "
    "[roaming excluded]. Use code {SAVE10} ~ 10% off next month. Questions? Visit "
    "help.example | reply HELP ^ or call 1234. Our shop at Main St. \\ 5th Ave is open "
    "9-18h. Thank you for staying with us for another year. Your loyalty points: #. "
    "Redeem them before 31/12 for vouchers, data bundles or donations. Terms apply."
)
_UCS2_LONG = (
    "尊敬的客户：您本月的账单#已生成，共计人民币128.50元 📄。其中流量费用68元，通话费用"
    "42.50元，短信费用18元。如有疑问请回复帮助或致电客服热线10086 ☎️。本月积分#分，可在"
    "年底前兑换流量包、话费券或公益捐赠 🎁。感谢您一直以来的支持与信任，祝您生活愉快 😊🌸！"
)
_RECEIPT_STATES = (  # (DLR stat, message_state TLV value, err), most receipts are good news
    ("DELIVRD", 2, "000"),
    ("DELIVRD", 2, "000"),
    ("DELIVRD", 2, "000"),
    ("UNDELIV", 5, "001"),
    ("EXPIRED", 3, "000"),
)


@dataclass(frozen=True)
class Mix:
    """Relative weights of the message kinds (need not add up to 100)."""

    gsm7: float = 70.0
    ucs2: float = 20.0
    concat: float = 10.0
    receipt: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> "Mix":
        """``"gsm7=70,ucs2=20,concat=10,receipt=0"``; kinds left out weigh 0."""
        weights = dict.fromkeys(KINDS, 0.0)
        for item in spec.split(","):
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or name not in weights:
                raise ValueError(
                    f"bad mix item {item.strip()!r}: write kind=weight with kind one of "
                    f"{', '.join(KINDS)}"
                )
            try:
                weights[name] = float(value)
            except ValueError:
                raise ValueError(f"bad mix weight {value.strip()!r} for {name}") from None
        return cls(**weights)

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("mix weights must be >= 0 and not all 0")

    def weights(self) -> dict[str, float]:
        return {kind: getattr(self, kind) for kind in KINDS}

    def shares(self) -> dict[str, float]:
        """Each kind's share of the messages, 0..1."""
        weights = self.weights()
        total = sum(weights.values())
        return {kind: w / total for kind, w in weights.items()}


STANDARD_MIX = Mix()
"""The standard scenario (docs/architecture.md §6): 70 % GSM7, 20 % UCS-2, 10 % 3-part."""


@dataclass(frozen=True)
class LongMessages:
    """How the three-part (``concat``) messages of a pool are built.

    `styles` are taken in turn, message by message: ``udh8`` (UDH IEI 0x00,
    8-bit reference), ``udh16`` (IEI 0x08, 16-bit reference; parts of 152
    septets / 66 UTF-16 units, what is left beside the longer UDH) and
    ``sar`` (no UDH: sar_msg_ref_num, sar_total_segments and
    sar_segment_seqnum TLVs). `reordered` is the share of messages whose
    parts go out in another order (each its own, fixed). `ucs2`: every
    fourth message in UCS-2, else all in GSM 7-bit (unpacked, data_coding 0).
    """

    styles: tuple[str, ...] = ("udh8",)
    reordered: float = 0.0
    ucs2: bool = True

    def __post_init__(self) -> None:
        if not self.styles or not set(self.styles) <= set(CONCAT_STYLES):
            raise ValueError(f"long message styles are some of {', '.join(CONCAT_STYLES)}")
        if not 0.0 <= self.reordered <= 1.0:
            raise ValueError("reordered must be within 0..1")


STANDARD_LONG = LongMessages()
"""The standard scenario's long messages: 8-bit UDH, parts in order, a quarter UCS-2."""


@dataclass(frozen=True)
class NumberRange:
    """Phone numbers first..last inclusive, all written with first's digit count."""

    first: int
    last: int
    width: int

    @classmethod
    def parse(cls, spec: str) -> "NumberRange":
        """``"8613800000000-8613899999999"`` or a single number."""
        low, _sep, high = spec.strip().partition("-")
        high = high or low
        if not (low.isdigit() and high.isdigit()) or len(high) != len(low) or int(high) < int(low):
            raise ValueError(
                f"bad number range {spec!r}: write FIRST-LAST with the same number of digits"
            )
        if len(low) > 20:
            raise ValueError(f"bad number range {spec!r}: SMPP addresses hold 20 digits at most")
        return cls(int(low), int(high), len(low))

    def pick(self, rng: random.Random) -> bytes:
        return b"%0*d" % (self.width, rng.randint(self.first, self.last))


DEFAULT_SOURCES = NumberRange.parse("8613800000000-8613899999999")
DEFAULT_DESTINATIONS = NumberRange.parse("8613900000000-8613999999999")


class Traffic:
    """A cycling pool of pre-encoded originals in the proportions of a Mix.

    ``next(traffic)`` returns ``(kind, pdus)``: a tuple of one PDU, or of
    three for a concatenated message, in the order to send them.
    """

    def __init__(
        self,
        mix: Mix = STANDARD_MIX,
        *,
        sources: NumberRange = DEFAULT_SOURCES,
        destinations: NumberRange = DEFAULT_DESTINATIONS,
        traced: Sequence[bytes] = (),
        traced_ratio: float = 0.0,
        data_sm_ratio: float = 0.05,
        long: LongMessages = STANDARD_LONG,
        pool_size: int = 4096,
        seed: int = 1,
    ):
        if not 0.0 <= traced_ratio <= 1.0 or not 0.0 <= data_sm_ratio <= 1.0:
            raise ValueError("traced_ratio and data_sm_ratio must be within 0..1")
        if traced_ratio and not traced:
            raise ValueError("traced_ratio > 0 needs at least one traced number")
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.mix = mix
        self.long = long
        self._rng = random.Random(seed)
        self._sources = sources
        self._destinations = destinations
        kinds = _apportion(mix.shares(), pool_size)
        self._rng.shuffle(kinds)
        traced_slots = set(self._rng.sample(range(pool_size), round(traced_ratio * pool_size)))
        singles = [i for i, kind in enumerate(kinds) if kind in ("gsm7", "ucs2")]
        data_sm_slots = set(self._rng.sample(singles, round(data_sm_ratio * len(singles))))
        # Pool entries: (kind, pdus, where each PDU's concat reference is, its size in bytes);
        # a single-part message has no reference: () and 0.
        self._pool: list[tuple[str, tuple[bytes, ...], tuple[int, ...], int]] = []
        self._longs = 0  # long messages built so far: whose turn of LongMessages.styles
        for index, kind in enumerate(kinds):
            source, destination = sources.pick(self._rng), destinations.pick(self._rng)
            if index in traced_slots:
                number = traced[index % len(traced)]
                if index % 2:
                    source = number
                else:
                    destination = number
            self._pool.append(
                self._build(kind, index, source, destination, as_data_sm=index in data_sm_slots)
            )
        self.has_singles = any(len(pdus) == 1 for _kind, pdus, _at, _size in self._pool)
        self._index = 0
        self._pass = 0

    @property
    def pool(self) -> list[tuple[str, tuple[bytes, ...]]]:
        """The messages of one pass, in sending order (references as in pass 0)."""
        return [(kind, pdus) for kind, pdus, _at, _size in self._pool]

    def pool_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(KINDS, 0)
        for kind, _pdus, _at, _size in self._pool:
            counts[kind] += 1
        return counts

    def __iter__(self) -> Iterator[tuple[str, tuple[bytes, ...]]]:
        return self

    def __next__(self) -> tuple[str, tuple[bytes, ...]]:
        kind, pdus, ref_at, size = self._pool[self._index]
        self._index += 1
        if self._index == len(self._pool):
            self._index = 0
            self._pass += 1
        if ref_at and self._pass:
            at = ref_at[0]
            ref = int.from_bytes(pdus[0][at : at + size], "big") + self._pass
            new = (ref & ((1 << 8 * size) - 1)).to_bytes(size, "big")
            pdus = tuple(
                pdu[:at] + new + pdu[at + size :] for pdu, at in zip(pdus, ref_at, strict=True)
            )
        return kind, pdus

    # ---- building the pool -------------------------------------------------

    def _build(
        self, kind: str, index: int, source: bytes, destination: bytes, *, as_data_sm: bool
    ) -> tuple[str, tuple[bytes, ...], tuple[int, ...], int]:
        rng = self._rng
        code = f"{rng.randrange(1_000_000):06d}"
        if kind == "receipt":
            return kind, (self._receipt(source, destination, index),), (), 0
        if kind == "concat":
            return kind, *self._long_message(index, source, destination, code)
        samples = _GSM7_TEXTS if kind == "gsm7" else _UCS2_TEXTS
        message = samples[index % len(samples)].replace("#", code)
        data_coding, (user_data,) = text.split(message, ref=0)
        if as_data_sm:
            return kind, (_data_sm(source, destination, user_data, data_coding),), (), 0
        return kind, (_deliver_sm(source, destination, user_data, data_coding, 0),), (), 0

    def _long_message(
        self, index: int, source: bytes, destination: bytes, code: str
    ) -> tuple[tuple[bytes, ...], tuple[int, ...], int]:
        """A three-part message in this pool's turn of styles: its PDUs in sending
        order, where each one's reference is, and the reference's size."""
        long = self.long
        style = long.styles[self._longs % len(long.styles)]
        self._longs += 1
        message = (_UCS2_LONG if long.ucs2 and index % 4 == 3 else _GSM7_LONG).replace("#", code)
        if style == "udh8":
            data_coding, parts = text.split(message, ref=index & 0xFF)
            _check_parts(parts)
            pdus = [_deliver_sm(source, destination, part, data_coding, ESM_UDHI) for part in parts]
            # The reference is byte 3 of the UDH, and the user data ends the body.
            ref_at, size = [len(pdus[0]) - len(parts[0]) + 3] * CONCAT_PARTS, 1
        elif style == "udh16":
            data_coding, payloads = _long_parts(message, udh_octets=7)
            ref = (index & 0xFFFF).to_bytes(2, "big")
            parts = [
                b"\x06\x08\x04" + ref + bytes((CONCAT_PARTS, number)) + payload
                for number, payload in enumerate(payloads, 1)
            ]
            pdus = [_deliver_sm(source, destination, part, data_coding, ESM_UDHI) for part in parts]
            ref_at, size = [len(pdus[0]) - len(parts[0]) + 3] * CONCAT_PARTS, 2
        else:  # sar
            data_coding, payloads = _long_parts(message, udh_octets=6)
            ref = (index & 0xFFFF).to_bytes(2, "big")
            pdus = [
                encode(
                    CommandId.DELIVER_SM,
                    0,
                    _sm_fields(source, destination, payload, data_coding, 0),
                    [
                        (TLV_SAR_MSG_REF_NUM, ref),
                        (TLV_SAR_TOTAL_SEGMENTS, bytes((CONCAT_PARTS,))),
                        (TLV_SAR_SEGMENT_SEQNUM, bytes((number,))),
                    ],
                )
                for number, payload in enumerate(payloads, 1)
            ]
            # The three TLVs (6 + 5 + 5 octets) end the PDU; the reference is 4 octets in.
            ref_at, size = [len(pdu) - 12 for pdu in pdus], 2
        if long.reordered and self._rng.random() < long.reordered:
            order = self._rng.choice(_REORDERINGS)
            pdus, ref_at = [pdus[i] for i in order], [ref_at[i] for i in order]
        return tuple(pdus), tuple(ref_at), size

    def _receipt(self, handset: bytes, sender: bytes, index: int) -> bytes:
        """A receipt travels back: from the handset the original went to, to its sender."""
        rng = self._rng
        message_id = b"%010X" % rng.getrandbits(40)
        stat, state, err = _RECEIPT_STATES[index % len(_RECEIPT_STATES)]
        month, day, hour, minute = (
            rng.randint(1, 12),
            rng.randint(1, 28),
            rng.randint(0, 23),
            rng.randint(0, 58),
        )
        submitted = f"24{month:02d}{day:02d}{hour:02d}{minute:02d}"
        done = f"24{month:02d}{day:02d}{hour:02d}{minute + 1:02d}"
        dlr = (
            f"id:{message_id.decode()} sub:001 dlvrd:{'001' if state == 2 else '000'} "
            f"submit date:{submitted} done date:{done} stat:{stat} err:{err} "
            f"text:{_GSM7_TEXTS[index % len(_GSM7_TEXTS)][:20]}"
        )
        return encode(
            CommandId.DELIVER_SM,
            0,
            _sm_fields(handset, sender, text.gsm7_encode(dlr), 0, ESM_RECEIPT),
            [(TLV_RECEIPTED_MESSAGE_ID, message_id + b"\0"), (TLV_MESSAGE_STATE, bytes((state,)))],
        )


def _long_parts(message: str, *, udh_octets: int) -> tuple[int, list[bytes]]:
    """(data_coding, user data of each part without a UDH): GSM 7-bit (unpacked)
    when the text allows, else UCS-2, in parts as long as a UDH of `udh_octets`
    leaves room for (153 septets / 67 units beside 6, 152 / 66 beside 7); an
    escape or surrogate pair is never cut. SAR parts take the 6-octet sizes,
    as SMSCs split them."""
    gsm7 = text.is_gsm7(message)
    room = (160 if gsm7 else 140) - (-(-udh_octets * 8 // 7) if gsm7 else udh_octets)
    capacity = room if gsm7 else room // 2
    parts: list[bytes] = []
    part: list[bytes] = []
    used = 0
    for char in message:
        chunk = text.gsm7_encode(char) if gsm7 else char.encode("utf-16-be")
        cost = len(chunk) if gsm7 else len(chunk) // 2
        if used + cost > capacity:
            parts.append(b"".join(part))
            part, used = [], 0
        part.append(chunk)
        used += cost
    parts.append(b"".join(part))
    _check_parts(parts)
    return (0 if gsm7 else 8), parts


def _check_parts(parts: list[bytes]) -> None:
    if len(parts) != CONCAT_PARTS:
        raise AssertionError(f"concat sample text gives {len(parts)} parts, not 3")


def _apportion(shares: dict[str, float], size: int) -> list[str]:
    """`size` kinds in the given shares, by largest remainder (exact totals)."""
    exact = {kind: share * size for kind, share in shares.items()}
    counts = {kind: int(value) for kind, value in exact.items()}
    by_remainder = sorted(exact, key=lambda kind: exact[kind] - counts[kind], reverse=True)
    for kind in by_remainder[: size - sum(counts.values())]:
        counts[kind] += 1
    return [kind for kind in KINDS for _ in range(counts[kind])]


def _sm_fields(
    source: bytes, destination: bytes, user_data: bytes, data_coding: int, esm_class: int
) -> dict[str, int | bytes]:
    return {
        "source_addr_ton": 1,
        "source_addr_npi": 1,
        "source_addr": source,
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": destination,
        "esm_class": esm_class,
        "data_coding": data_coding,
        "short_message": user_data,
    }


def _deliver_sm(
    source: bytes, destination: bytes, user_data: bytes, data_coding: int, esm_class: int
) -> bytes:
    return encode(
        CommandId.DELIVER_SM, 0, _sm_fields(source, destination, user_data, data_coding, esm_class)
    )


def _data_sm(source: bytes, destination: bytes, user_data: bytes, data_coding: int) -> bytes:
    fields = _sm_fields(source, destination, b"", data_coding, 0)
    del fields["short_message"]
    return encode(CommandId.DATA_SM, 0, fields, [(TLV_MESSAGE_PAYLOAD, user_data)])
