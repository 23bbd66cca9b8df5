"""atheris target: message text (smps/_native/text.pyx).

Run: ``python -m fuzz.text [libFuzzer options] [corpus dir]`` (after ``make fuzz-build``).
The first input byte picks a mode; the rest is its input:

0. GSM 7-bit bytes, packed or not, any fill bits and language tables:
   gsm7_decode never raises, and a clean decode encodes back to text that
   decodes the same;
1. UTF-16BE bytes: ucs2_decode never raises, and a clean decode encodes
   back to the same bytes;
2. a UDH: parse_udh agrees with a plain reference reader (23.040 §9.2.3.24)
   and its IEs rebuild the header octet for octet;
3. decode() and reassemble() with any data_coding / esm_class / alphabet
   never raise;
4. a text: split() makes segments that fit a short message (140 octets
   of TP-UD, 160 septets unpacked) and that reassemble() turns back into
   the text.
"""

from fuzz import engine

with engine.instrumented():
    import atheris

    from smps._native.text import (
        decode,
        gsm7_decode,
        gsm7_encode,
        gsm7_length,
        parse_udh,
        reassemble,
        split,
        ucs2_decode,
        ucs2_encode,
    )

# (single shift, locking shift) language ids the tables have (Spanish: no locking table).
LANGUAGES = [(s, lk) for s in range(4) for lk in (0, 1, 3)]
ALPHABETS = ["gsm7", "ascii", "latin1"]
UDHI = 0x40


def check_gsm7(fdp) -> None:
    packed = fdp.ConsumeBool()
    fill = fdp.ConsumeIntInRange(0, 6)
    single, locking = fdp.PickValueInList(LANGUAGES)
    data = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    options = {
        "packed": packed,
        "fill_bits": fill,
        "single_shift": single,
        "locking_shift": locking,
    }
    text, replaced = gsm7_decode(data, **options)
    assert replaced >= 0
    if replaced:
        return
    tables = {"single_shift": single, "locking_shift": locking}
    encoded = gsm7_encode(text, **options)
    again, replaced = gsm7_decode(encoded, **options, septets=gsm7_length(text, **tables))
    assert (again, replaced) == (text, 0), "GSM 7-bit decode/encode round trip changed the text"


def check_ucs2(fdp) -> None:
    data = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    text, replaced = ucs2_decode(data)
    if not replaced:
        assert ucs2_encode(text) == data, "UCS-2 decode/encode round trip changed the bytes"
    else:
        assert text.count("\ufffd") >= replaced


def reference_udh(data: bytes):
    """(length, [(iei, data)], concat, ports) per 23.040 §9.2.3.24, or None if malformed."""
    if not data or data[0] + 1 > len(data):
        return None
    end, at, ies, concat, ports = data[0] + 1, 1, [], None, None
    while at < end:
        if at + 2 > end or at + 2 + data[at + 1] > end:
            return None
        iei, body = data[at], data[at + 2 : at + 2 + data[at + 1]]
        ies.append((iei, body))
        found = None
        if iei == 0x00 and len(body) == 3:
            found = (body[0], body[1], body[2])
        elif iei == 0x08 and len(body) == 4:
            found = (body[0] << 8 | body[1], body[2], body[3])
        if found is not None and found[1] and found[2] and found[2] <= found[1]:
            concat = found
        if iei == 0x04 and len(body) == 2:
            ports = (body[0], body[1])
        elif iei == 0x05 and len(body) == 4:
            ports = (body[0] << 8 | body[1], body[2] << 8 | body[3])
        at += 2 + len(body)
    return end, ies, concat, ports


def check_udh(fdp) -> None:
    data = fdp.ConsumeBytes(atheris.ALL_REMAINING)
    udh = parse_udh(data)
    expected = reference_udh(data)
    if expected is None:
        assert udh is None, "parse_udh accepted a malformed UDH"
        return
    assert udh is not None, "parse_udh refused a well-formed UDH"
    assert (udh.length, udh.ies, udh.concat, udh.ports) == expected
    rebuilt = bytes([udh.length - 1]) + b"".join(bytes([i, len(d)]) + d for i, d in udh.ies)
    assert rebuilt == data[: udh.length]
    repr(udh)


def check_decode(fdp) -> None:
    data_coding = fdp.ConsumeIntInRange(0, 255)
    esm_class = fdp.ConsumeIntInRange(0, 255)
    options = {"default_alphabet": fdp.PickValueInList(ALPHABETS), "gsm7_packed": fdp.ConsumeBool()}
    if fdp.ConsumeBool():
        data = fdp.ConsumeBytes(atheris.ALL_REMAINING)
        decoded = decode(data, data_coding, esm_class, **options)
        if esm_class & UDHI:
            udh = parse_udh(data)
            assert (decoded.udh is None) == (udh is None)
        else:
            assert decoded.udh is None
    else:
        parts = []
        for _ in range(fdp.ConsumeIntInRange(0, 5)):
            parts.append(
                (fdp.ConsumeIntInRange(0, 6), fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 160)))
            )
        decoded = reassemble(parts, data_coding, esm_class, **options)
    assert decoded.replaced >= 0 and isinstance(decoded.text, str)
    repr(decoded)


def check_split(fdp) -> None:
    packed = fdp.ConsumeBool()
    ref = fdp.ConsumeIntInRange(0, 255)
    max_single = fdp.PickValueInList([None, 1, 10, 70, 160])
    text = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 2000))
    try:
        data_coding, segments = split(text, ref=ref, packed=packed, max_single=max_single)
    except ValueError:
        assert len(text) > 255 * 60, "split refused a text that fits 255 parts"
        return
    # 140 octets of TP-UD; unpacked GSM 7-bit takes an octet per septet (160 at most).
    most = 160 if data_coding == 0 and not packed else 140
    assert all(len(s) <= most for s in segments), f"a segment is over {most} octets"
    # One segment without a UDH when the text fits one (at most max_single units).
    units = gsm7_length(text) if data_coding == 0 else len(ucs2_encode(text)) // 2
    single = min(160 if data_coding == 0 else 70, max_single or 160)
    esm_class = 0 if units <= single else UDHI
    if esm_class == 0:
        # No UDH: the one segment reads back as the text below (its octets alone prove
        # nothing: UTF-16 of U+0500 U+0300 starts 05 00 03 like a UDH).
        assert len(segments) == 1
    else:
        assert all(s[:3] == b"\5\0\3" for s in segments), "a part without its UDH"
    parts = list(enumerate(segments, 1))
    decoded = reassemble(parts, data_coding, esm_class, gsm7_packed=packed)
    # Packed GSM 7-bit: a final '@' or CR filling the last octet reads as padding (text.pyx).
    if not (packed and data_coding == 0 and text[-1:] in ("@", "\r")):
        assert decoded.text == text, "split/reassemble changed the text"
        assert decoded.replaced == 0 and not decoded.note


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    [check_gsm7, check_ucs2, check_udh, check_decode, check_split][fdp.ConsumeIntInRange(0, 4)](fdp)


if __name__ == "__main__":
    engine.run(test_one_input)
