"""Content fingerprints (smps/_native/fingerprint.pyx): the normal form against a
model written plainly in Python, with text in every layout a str has and blocks of
16 characters cut anywhere, and XXH64 against the reference implementation's values."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smps._native.fingerprint import fingerprint, normalised


def _host_before(text: str, j: int) -> bool:
    def tld(c: str) -> bool:
        return (c.isascii() and c.isalpha()) or not (c.isascii() or c.isspace() or c.isdigit())

    def label(c: str) -> bool:
        return (c.isascii() and (c.isalnum() or c == "-")) or not (c.isascii() or c.isspace())

    letters = 0
    while j >= 0 and tld(text[j]):
        j, letters = j - 1, letters + 1
    if letters < 2 or j < 1:
        return False
    if text[j] == ".":
        j -= 1
    elif text[j] in ")]}":
        opening = {")": "(", "]": "[", "}": "{"}[text[j]]
        if j >= 3 and text[j - 2 : j] == opening + ".":
            j -= 3
        elif j >= 5 and text[j - 4 : j].lower() == opening + "dot":
            j -= 5
        else:
            return False
    else:
        return False
    return j >= 0 and label(text[j])


def _in_path(c: str) -> bool:
    if c.isascii():
        return not c.isspace()
    return not c.isspace() and (c.isdigit() or c.lower().isascii())


def model(text: str) -> str:
    """The normal form as fingerprint.pyx's docstring states it."""
    text = text.lstrip()
    out, last, i = [], None, 0
    while i < len(text):
        c = text[i]
        i += 1
        if c.isspace():
            out.append("" if last == "space" else " ")
            last = "space"
        elif c.isdigit():
            out.append("" if last == "digit" else "#")
            last = "digit"
        elif c in "/?" and _host_before(text, i - 2):
            out.append("/")
            while i < len(text) and _in_path(text[i]):
                i += 1
            last = None
        else:
            out.append(c.lower())
            last = None
    return "".join(out).removesuffix(" ")


def test_case_digits_and_whitespace_fold():
    assert fingerprint("Your code 1234 ") == fingerprint("  your  CODE 98")
    assert fingerprint("your code 1234") != fingerprint("your code")
    assert fingerprint("ab") != fingerprint("a b")
    assert normalised("Code\t\n1234  5678 END ") == "code # # end"


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Pay at bad.example/x7Gh2 now", "Pay at bad.example/Qq91 now"),
        ("hxxp://bad.example/x7Gh2", "hxxp://bad.example/Qq91"),
        ("https://Bad.Example/a/b?c=1#d", "https://bad.example/zz"),
        ("www.x.co.uk?id=123 then", "www.x.co.uk/?id=987 then"),
        ("bad[.]example/abc", "bad[.]example/xyz"),
        ("bad(dot)example/abc", "bad(DOT)example/q"),
        ("点击bad.example/x7Gh2领取", "点击bad.example/Qq91领取"),
    ],
)
def test_url_paths_fold(first, second):
    assert fingerprint(first) == fingerprint(second)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("bad.example/x", "good.example/x"),  # the host counts
        ("bad.example/x", "bad.example"),
        ("bad.example/x more", "bad.example/x"),  # the path ends at whitespace
        ("1.5/kg", "1.5/lb"),  # not a host
        ("and/or", "and/nor"),
        ("e.g/x", "e.g/y"),  # a last label of one letter
    ],
)
def test_what_does_not_fold(first, second):
    assert fingerprint(first) != fingerprint(second)


@pytest.mark.parametrize(
    ("text", "xxh64"),
    [  # XXH64 (seed 0) of these octets by the reference implementation (PyPI xxhash 3.6.0)
        ("", 0xEF46DB3751D8E999),
        ("abc", 0x44BC2CF5AD770999),
        ("abcdefghijkl", 0x4B09B7D3A233D4B3),
        ("your code # expires", 0x3035E4489921BA74),
        ("abcdefghijklmnopqrstuvwxyz abcdefghijklmnopqrstuvwxyz!", 0x7AA56C4A4926B03A),
        ("campaign fingerprints: xxh of the normal form, all told!", 0x655E0798DEE33FB0),
        ("é日本 ok", 0x4D07C9E84DB62A6F),
        ("x" * 1000, 0x4CB9A3B69CB700E1),  # longer than the stack buffer
    ],
)
def test_the_hash_is_xxh64_of_the_normal_form(text, xxh64):
    assert normalised(text) == text
    assert fingerprint(text) == xxh64


# Characters that change the normal form, in runs that cross the 16-character blocks;
# "€" and "🎉" put the text in the 2- and 4-octet layouts, "é" keeps it in Latin-1.
_PIECES = st.sampled_from(
    [
        *"aZ 0 9\t\n\r\x1c.-/?[](){}:é€ΔЖ日한\u00a0\u3000\u2028١²",
        *("bad.example/", "hxxp://", "www.x.co.uk?q=1", "[.]", "(dot)", "  ", "1234", "🎉"),
    ]
)
_ASCII = st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOP .,!0123456789  \t"))


@given(st.lists(_PIECES | _ASCII | _ASCII | _ASCII, max_size=120).map("".join))
def test_the_normal_form_is_the_model(text):
    assert normalised(text) == model(text)
    assert fingerprint(normalised(text)) == fingerprint(text)


@given(st.text(max_size=400))
def test_any_text(text):
    assert 0 <= fingerprint(text) < 1 << 64
    if not any(len(c.lower()) != 1 for c in text):  # the model's lower() is the full mapping
        assert normalised(text) == model(text)
