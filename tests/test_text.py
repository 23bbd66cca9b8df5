"""Message text codec (smps._native.text): known vectors, national tables, UDH,
decode() robustness, and split() / reassemble() round trips."""

import importlib.machinery

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from smps._native import text
from smps._native.text import (
    decode,
    gsm7_decode,
    gsm7_encode,
    gsm7_length,
    is_gsm7,
    parse_udh,
    reassemble,
    split,
    ucs2_decode,
    ucs2_encode,
)

CONCAT = bytes.fromhex("05 00 03 42 02 01")


def test_module_is_compiled():
    assert text.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))


# --------------------------------------------------------------------------
# Known vectors (smpp-reference §8, §9)


def test_packing_vectors():
    assert gsm7_encode("Hello", packed=True) == bytes.fromhex("C8 32 9B FD 06")
    assert gsm7_encode("hi", packed=True) == bytes.fromhex("E8 34")
    assert gsm7_decode(bytes.fromhex("C8 32 9B FD 06"), packed=True) == ("Hello", 0)
    assert gsm7_decode(bytes.fromhex("E8 34"), packed=True) == ("hi", 0)


def test_udh_fill_bit_vector():
    body = gsm7_encode("Hi", packed=True, fill_bits=1)
    assert CONCAT + body == bytes.fromhex("05 00 03 42 02 01 90 69")
    result = decode(CONCAT + body, 0, 0x40, gsm7_packed=True)
    assert (result.text, result.encoding, result.note) == ("Hi", "gsm7-packed", "")
    assert result.udh.concat == (0x42, 2, 1)


def test_trailing_padding_at_and_cr():
    zero_padded = bytes.fromhex("31 D9 8C 56 B3 DD 00")  # careless sender
    cr_padded = bytes.fromhex("31 D9 8C 56 B3 DD 1A")  # 23.038 CR padding
    assert gsm7_encode("1234567", packed=True) == cr_padded
    assert gsm7_decode(zero_padded, packed=True) == ("1234567", 0)
    assert gsm7_decode(cr_padded, packed=True) == ("1234567", 0)
    # With the septet count known there is no ambiguity.
    assert gsm7_decode(zero_padded, packed=True, septets=8) == ("1234567@", 0)
    assert gsm7_decode(zero_padded, packed=True, septets=7) == ("1234567", 0)
    # Not in the padding position: a final '@' stays.
    assert gsm7_decode(gsm7_encode("12@", packed=True), packed=True) == ("12@", 0)


def test_ucs2_vectors():
    assert ucs2_encode("\U0001f600") == bytes.fromhex("D8 3D DE 00")
    assert ucs2_encode("€") == bytes.fromhex("20 AC")
    assert ucs2_decode(bytes.fromhex("D8 3D DE 00 20 AC")) == ("\U0001f600€", 0)
    assert not ucs2_encode("é").startswith(b"\xfe\xff")  # no BOM


def test_default_alphabet_traps():
    assert gsm7_encode("@$¤¡Ç§ñà") == bytes([0x00, 0x02, 0x24, 0x40, 0x09, 0x5F, 0x7D, 0x7F])
    assert gsm7_decode(bytes([0x00, 0x02, 0x24, 0x40, 0x09, 0x5F]))[0] == "@$¤¡Ç§"
    assert not is_gsm7("`")
    with pytest.raises(ValueError):
        gsm7_encode("a`b")


def test_extension_table():
    assert gsm7_encode("€") == b"\x1b\x65"
    assert gsm7_encode("^{}\\[~]|\x0c") == bytes.fromhex(
        "1B14 1B28 1B29 1B2F 1B3C 1B3D 1B3E 1B40 1B0A"
    )
    assert gsm7_decode(bytes.fromhex("1B14 1B28 1B29 1B2F 1B3C 1B3D 1B3E 1B40 1B65")) == (
        "^{}\\[~]|€",
        0,
    )
    assert gsm7_length("a€[") == 5


def test_unknown_escape_shows_base_character_and_lone_esc_a_space():
    assert gsm7_decode(b"\x1b\x41B") == ("AB", 1)
    assert gsm7_decode(b"a\x1b\x1bb") == ("a b", 1)
    result = decode(b"ab\x1b", 0)
    assert (result.text, result.replaced) == ("ab ", 1)
    assert "unknown GSM escape" in result.note


# --------------------------------------------------------------------------
# National language tables (23.038 Annex A). Positions checked here were read
# off the spec's tables; they are the ones most often got wrong.


def test_turkish_locking_and_single_shift():
    # A.3.1: 0x04 is '€' (not 'é', which stays at 0x05), ı 0x07, Ğ ğ 0x0B 0x0C,
    # Ş ş 0x1C 0x1D, İ 0x40, ç 0x60. A.2.1 adds the same letters after ESC.
    locked = gsm7_encode("€éıĞğŞşİç", locking_shift=1, single_shift=1)
    assert locked == bytes([0x04, 0x05, 0x07, 0x0B, 0x0C, 0x1C, 0x1D, 0x40, 0x60])
    shifted = gsm7_encode("ğışİĞŞ", single_shift=1)
    assert shifted == bytes.fromhex("1B67 1B69 1B73 1B49 1B47 1B53")
    message = "Günaydın İstanbul, çay 5€"
    udh = bytes.fromhex("06 24 01 01 25 01 01")
    user_data = udh + gsm7_encode(message, locking_shift=1, single_shift=1)
    result = decode(user_data, 0, 0x40)
    assert result.text == message
    assert (result.udh.single_shift, result.udh.locking_shift, result.note) == (1, 1, "")
    # Without the tables the same octets read differently: the IE matters.
    assert decode(user_data[7:], 0).text != message


def test_spanish_single_shift_only():
    assert gsm7_encode("áíóúÁç", single_shift=2) == bytes.fromhex("1B61 1B69 1B6F 1B75 1B41 1B09")
    message = "¿Qué tal? Mañana a las 9, ¡salúdalo!"
    udh = bytes.fromhex("03 24 01 02")
    result = decode(udh + gsm7_encode(message, single_shift=2), 0, 0x40)
    assert (result.text, result.note) == (message, "")
    with pytest.raises(ValueError):
        gsm7_encode("a", locking_shift=2)
    # A (non-conforming) Spanish locking shift IE: default table, noted.
    result = decode(bytes.fromhex("03 25 01 02") + b"abc", 0, 0x40)
    assert result.text == "abc"
    assert "no locking shift table for language 2" in result.note


def test_portuguese_tables():
    # A.3.3: ê 0x04, ú 0x06, Ô 0x0B, ª 0x12, ∞ 0x15, ~ 0x60, ã 0x7B, õ 0x7C, ` 0x7D.
    assert gsm7_encode("êúÔª∞~ãõ`", locking_shift=3) == bytes(
        [0x04, 0x06, 0x0B, 0x12, 0x15, 0x60, 0x7B, 0x7C, 0x7D]
    )
    # A.2.3 with the default locking table: Ê ESC 0x1F, Ã ESC 0x5B, ô ESC 0x0C;
    # with the Portuguese one, the Greek capitals it lacks: Φ ESC 0x12, Ω ESC 0x15.
    assert gsm7_encode("ÊÃô", single_shift=3) == bytes.fromhex("1B1F 1B5B 1B0C")
    assert gsm7_encode("ΦΩ", locking_shift=3, single_shift=3) == bytes.fromhex("1B12 1B15")
    message = "Não, obrigação às 10h: Ônibus ∞ ª"
    udh = bytes.fromhex("06 25 01 03 24 01 03")
    result = decode(udh + gsm7_encode(message, locking_shift=3, single_shift=3), 0, 0x40)
    assert (result.text, result.note) == (message, "")


def test_unsupported_language_is_noted_not_raised():
    result = decode(bytes.fromhex("03 24 01 09") + b"abc", 0, 0x40)
    assert result.text == "abc"
    assert "no single shift table for language 9" in result.note
    with pytest.raises(ValueError):
        gsm7_decode(b"abc", single_shift=9)


# --------------------------------------------------------------------------
# UDH (23.040 §9.2.3.24)


def test_udh_concat_8_and_16_bit():
    udh = parse_udh(bytes.fromhex("05 00 03 42 03 02") + b"text")
    assert (udh.length, udh.concat, udh.ref_bits) == (6, (0x42, 3, 2), 8)
    assert udh.ies == [(0x00, b"\x42\x03\x02")]
    udh = parse_udh(bytes.fromhex("06 08 04 12 34 05 01"))
    assert (udh.length, udh.concat, udh.ref_bits) == (7, (0x1234, 5, 1), 16)


def test_udh_ports_and_shifts():
    wap = parse_udh(bytes.fromhex("0B 05 04 0B 84 23 F0 00 03 12 03 02"))
    assert wap.ports == (2948, 9200)
    assert wap.concat == (0x12, 3, 2)
    assert [iei for iei, _ in wap.ies] == [0x05, 0x00]
    assert parse_udh(bytes.fromhex("04 04 02 10 20")).ports == (0x10, 0x20)
    shifts = parse_udh(bytes.fromhex("06 24 01 01 25 01 03"))
    assert (shifts.single_shift, shifts.locking_shift, shifts.concat, shifts.ports) == (
        1,
        3,
        None,
        None,
    )


def test_udh_unknown_ies_kept_and_invalid_concat_ignored():
    udh = parse_udh(bytes.fromhex("09 70 02 AA BB 00 03 01 00 01"))  # total 0: ignore
    assert udh.concat is None and udh.ref_bits == 0
    assert udh.ies == [(0x70, b"\xaa\xbb"), (0x00, b"\x01\x00\x01")]
    assert parse_udh(bytes.fromhex("05 00 03 01 02 03")).concat is None  # part > total
    assert parse_udh(b"\x00abc").length == 1  # empty UDH is well formed


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes.fromhex("05 00 03 42 02"),  # UDHL + 1 > length
        bytes.fromhex("05 00 04 42 02 01"),  # IE runs past UDHL
        bytes.fromhex("03 00 03 42 02 01"),  # IE runs past UDHL (short UDHL)
        bytes.fromhex("01 00 41"),  # IEI without IEDL
    ],
)
def test_malformed_udh(data):
    assert parse_udh(data) is None
    result = decode(data, 0, 0x40)
    assert result.udh is None
    assert "malformed UDH" in result.note


def test_malformed_udh_with_plausible_length_still_skips_header():
    result = decode(bytes.fromhex("03 00 03 42") + b"abc", 0, 0x40)
    assert result.text == "abc"


def test_packed_after_16_bit_concat_has_no_fill():
    udh = bytes.fromhex("06 08 04 01 02 02 01")
    body = gsm7_encode("Hello", packed=True, fill_bits=0)
    result = decode(udh + body, 0, 0x40, gsm7_packed=True)
    assert (result.text, result.udh.concat) == ("Hello", (0x0102, 2, 1))


# --------------------------------------------------------------------------
# decode(): data_coding mapping (smpp-reference §7) and replacement notes


@pytest.mark.parametrize(
    ("dcs", "payload", "expected_text", "encoding"),
    [
        (0x00, b"Hi\x00", "Hi@", "gsm7"),
        (0x01, b"Hi@", "Hi@", "ascii"),
        (0x03, b"caf\xe9", "café", "latin1"),
        (0x08, b"\x00H\x00i", "Hi", "ucs2"),
        (0x02, b"\x01\xab", "01 ab", "binary"),
        (0x04, b"\x01\xab", "01 ab", "binary"),
        (0x10, b"Hi\x00", "Hi@", "gsm7"),  # general group, class 0 (flash)
        (0x14, b"\x01", "01", "binary"),  # general group, 8-bit
        (0x18, b"\x00H", "H", "ucs2"),  # general group, UCS2
        (0xC8, b"Hi", "Hi", "gsm7"),  # MWI discard
        (0xD1, b"Hi", "Hi", "gsm7"),  # MWI store
        (0xE0, b"\x00H", "H", "ucs2"),  # MWI store, UCS2
        (0xF0, b"Hi", "Hi", "gsm7"),  # class 0, GSM7
        (0xF6, b"\x7f\x00", "7f 00", "binary"),  # class 2, 8-bit (SIM OTA)
    ],
)
def test_data_coding_mapping(dcs, payload, expected_text, encoding):
    result = decode(payload, dcs)
    assert (result.text, result.encoding, result.note, result.replaced) == (
        expected_text,
        encoding,
        "",
        0,
    )


@pytest.mark.parametrize(
    ("dcs", "words"), [(0x05, "not decoded"), (0x80, "not decoded"), (0x24, "compressed")]
)
def test_undecoded_codings_shown_as_hex_with_note(dcs, words):
    result = decode(b"\x01\x02", dcs)
    assert (result.text, result.encoding) == ("01 02", "binary")
    assert words in result.note


def test_default_alphabet_is_a_setting():
    assert decode(b"caf\xe9", 0, default_alphabet="latin1").text == "café"
    assert decode(b"a_b", 0, default_alphabet="ascii").text == "a_b"
    assert decode(b"a\x11b", 0).text == "a_b"
    assert decode(gsm7_encode("Hello", packed=True), 0, gsm7_packed=True).text == "Hello"
    with pytest.raises(ValueError):
        decode(b"", 0, default_alphabet="ebcdic")


def test_gsm7_invalid_octets_are_replaced_and_counted():
    result = decode(b"ok\x80\xff\xc3", 0)
    assert result.text == "ok\ufffd\ufffd\ufffd"
    assert result.replaced == 3
    assert result.note == "3 undecodable octets replaced"
    ascii_result = decode(b"a\xe9", 1)
    assert (ascii_result.text, ascii_result.replaced) == ("a\ufffd", 1)


def test_ucs2_odd_length_and_lone_surrogates():
    odd = decode(b"\x00A\x00", 8)
    assert (odd.text, odd.replaced, odd.note) == ("A\ufffd", 1, "odd UCS-2 length")
    lone_high = decode(b"\xd8\x3d\x00A", 8)
    assert (lone_high.text, lone_high.replaced) == ("\ufffdA", 1)
    assert "lone surrogate" in lone_high.note
    lone_low = decode(b"\xde\x00", 8)
    assert lone_low.text == "\ufffd"
    assert ucs2_decode(b"\xd8\x3d") == ("\ufffd", 1)


@given(
    st.binary(max_size=300), st.integers(0, 255), st.sampled_from([0, 0x40, 0x43]), st.booleans()
)
@example(b"\xff\xfd", 8, 0, False)  # U+FFFD sent as UCS-2 text: shown, not counted
def test_decode_never_raises_and_counts_each_replacement_once(data, dcs, esm_class, packed):
    result = decode(data, dcs, esm_class, gsm7_packed=packed)
    assert isinstance(result.text, str)
    # Each replacement stands for one character of the text, and is explained.
    assert 0 <= result.replaced <= len(result.text)
    if result.replaced:
        assert result.note
    # Every U+FFFD shown is a counted replacement, or one the sender encoded (FF FD).
    assert result.text.count("\ufffd") <= result.replaced + data.count(b"\xff\xfd")


# --------------------------------------------------------------------------
# Round trips


DEFAULT_GSM7 = sorted(
    set(text.DEFAULT_LOCKING.replace("\x1b", "")) | set(text.DEFAULT_SINGLE_SHIFT.values())
)
gsm7_text = st.text(alphabet=DEFAULT_GSM7, max_size=400)


@given(gsm7_text)
def test_gsm7_unpacked_round_trip(message):
    assert gsm7_decode(gsm7_encode(message)) == (message, 0)


@given(gsm7_text, st.integers(0, 6))
def test_gsm7_packed_round_trip(message, fill):
    packed = gsm7_encode(message, packed=True, fill_bits=fill)
    septets = gsm7_length(message)
    assert len(packed) == ((fill + 7 * septets + 7) // 8 if septets else 0)
    assert gsm7_decode(packed, packed=True, fill_bits=fill, septets=septets) == (message, 0)
    # Without the count, only a final '@'/CR that exactly fills the last octet
    # is ambiguous (module docstring).
    assume(not message.endswith(("@", "\r")))
    assert gsm7_decode(packed, packed=True, fill_bits=fill) == (message, 0)


@pytest.mark.parametrize(("nli", "locking"), [(1, 1), (2, 0), (3, 3)])
def test_national_tables_round_trip(nli, locking):
    lock = (text.LOCKING_TABLES[locking] or "").replace("\x1b", "")
    chars = "".join(sorted(set(lock) | set(text.SINGLE_SHIFT_TABLES[nli].values())))
    encoded = gsm7_encode(chars, single_shift=nli, locking_shift=locking)
    assert gsm7_decode(encoded, single_shift=nli, locking_shift=locking) == (chars, 0)


@given(st.text(max_size=300))
def test_ucs2_round_trip(message):
    assert ucs2_decode(ucs2_encode(message)) == (message, 0)


def _gsm_part_ends_inside_escape(septets: bytes) -> bool:
    i = 0
    while i < len(septets):
        i += 2 if septets[i] == 0x1B else 1
    return i > len(septets)


def _check_parts(data_coding, parts, packed):
    assert 1 <= len(parts) <= 255
    for number, part in enumerate(parts, 1):
        if len(parts) == 1:
            body = part
        else:
            assert part[:5] == bytes((5, 0, 3, 99, len(parts)))
            assert part[5] == number
            body = part[6:]
        if data_coding == 8:
            assert len(part) <= 140
            assert len(body) % 2 == 0
            assert not 0xD8 <= body[-2] <= 0xDB  # never ends on a high surrogate
        elif packed:
            assert len(part) <= 140
        else:
            assert len(part) <= 159 if len(parts) > 1 else len(part) <= 160
            assert not _gsm_part_ends_inside_escape(body)


@given(gsm7_text.filter(bool), st.booleans())
def test_split_reassemble_gsm7(message, packed):
    if packed:
        assume(not message.endswith(("@", "\r")))
    data_coding, parts = split(message, ref=99, packed=packed)
    assert data_coding == 0
    _check_parts(data_coding, parts, packed)
    esm_class = 0x40 if len(parts) > 1 else 0
    result = reassemble(list(enumerate(parts, 1)), 0, esm_class, gsm7_packed=packed)
    assert (result.text, result.note, result.replaced) == (message, "", 0)


@given(st.text(min_size=1, max_size=400))
def test_split_reassemble_unicode(message):
    data_coding, parts = split(message, ref=99)
    assume(data_coding == 8)
    _check_parts(data_coding, parts, False)
    esm_class = 0x40 if len(parts) > 1 else 0
    shuffled = list(reversed(list(enumerate(parts, 1))))
    result = reassemble(shuffled, 8, esm_class)
    assert (result.text, result.note) == (message, "")


# --------------------------------------------------------------------------
# split() / reassemble() details


def test_split_single_and_concatenated_sizes():
    assert split("a" * 160, ref=1) == (0, [b"a" * 160])
    data_coding, parts = split("a" * 161, ref=1)
    assert [len(p) for p in parts] == [159, 14]
    assert parts[0][:6] == bytes.fromhex("05 00 03 01 02 01")
    data_coding, parts = split("ж" * 71, ref=1)
    assert data_coding == 8
    assert [len(p) for p in parts] == [140, 14]
    assert split("a" * 100, ref=1, max_single=50)[1][0][:3] == b"\x05\x00\x03"


def test_split_never_cuts_escape_pair():
    parts = split("a" * 152 + "€" + "b" * 10, ref=1)[1]
    assert parts[0] == CONCAT[:3] + bytes((0x01, 2, 1)) + b"a" * 152
    assert parts[1][6:8] == b"\x1b\x65"


def test_split_keeps_emoji_sequences_whole():
    family = "👨\u200d👩\u200d👧"
    parts = split("a" * 63 + family, ref=1)[1]
    assert ucs2_decode(parts[0][6:])[0] == "a" * 63
    assert ucs2_decode(parts[1][6:])[0] == family
    parts = split("a" * 64 + "🇩🇪🇫🇷", ref=1)[1]
    assert ucs2_decode(parts[1][6:])[0] == "🇩🇪🇫🇷"


def test_split_packed_avoids_ambiguous_part_end():
    message = "a" * 152 + "@" + "b" * 10
    parts = split(message, ref=1, packed=True)[1]
    result = reassemble(list(enumerate(parts, 1)), 0, gsm7_packed=True)
    assert result.text == message


def test_split_rejects_bad_ref_and_too_many_parts():
    with pytest.raises(ValueError):
        split("a", ref=256)
    with pytest.raises(ValueError):
        split("a" * 153 * 256, ref=1)


def test_emoji_split_across_parts_reassembles():
    payload = ucs2_encode("a\U0001f600")  # 00 61 D8 3D DE 00
    parts = [
        (2, bytes.fromhex("05 00 03 07 02 02") + payload[4:]),
        (1, bytes.fromhex("05 00 03 07 02 01") + payload[:4]),
    ]
    result = reassemble(parts, 8)
    assert (result.text, result.note) == ("a\U0001f600", "")
    assert result.udh.concat == (7, 2, 1)
    # Each part alone shows the broken pair.
    assert "lone surrogate" in decode(parts[1][1], 8, 0x40).note


def test_escape_at_end_of_part_applies_to_next():
    parts = [(1, CONCAT + b"ab\x1b"), (2, bytes.fromhex("05 00 03 42 02 02") + b"\x65c")]
    assert reassemble(parts, 0).text == "ab€c"


def test_reassemble_notes_missing_parts_and_replaces_duplicates():
    def part(number, body):
        return number, bytes((5, 0, 3, 9, 3, number)) + body

    result = reassemble([part(1, b"one "), part(3, b"three"), part(1, b"ONE ")], 0)
    assert result.text == "ONE three"
    assert result.note == "missing parts 2"
    assert reassemble([], 8).note == "no parts"


def test_reassemble_sar_parts_without_udh():
    result = reassemble([(2, b"world"), (1, b"hello ")], 0, 0)
    assert (result.text, result.udh, result.note) == ("hello world", None, "")


@given(
    st.binary(max_size=200),
    st.integers(0, 255),
    st.sampled_from([0, 0x40]),
    st.sampled_from(["gsm7", "ascii", "latin1"]),
    st.booleans(),
)
def test_plain_text_is_the_text_decode_finds(data, data_coding, esm_class, alphabet, packed):
    """The screening engine's lean decoder reads what the tracer's decode() reads."""
    decoded = text.decode(data, data_coding, esm_class, default_alphabet=alphabet,
                          gsm7_packed=packed)  # fmt: skip
    plain = text.plain_text(data, data_coding, esm_class, alphabet, packed)
    assert plain == (None if decoded.encoding == "binary" else decoded.text)
