"""Message-text micro benchmarks: each native operation next to the pure-Python
baseline (bench/baseline_text.py) doing the same work on the same input.

Run: .venv/bin/python -m pytest bench/test_text_bench.py --benchmark-enable -q
"""

import pytest

from bench import baseline_text as baseline
from smps._native import text

# A full single message: 160 septets, three of the characters ESC pairs.
GSM_TEXT = (
    "Meeting moved to 10:30 [room B], bring the €20 deposit. "
    + ("Thanks, see you there! " * 5)[:101]
)
assert text.gsm7_length(GSM_TEXT) == 160
GSM_UNPACKED = text.gsm7_encode(GSM_TEXT)
GSM_PACKED = text.gsm7_encode(GSM_TEXT, packed=True)
# 70 UTF-16 units: Cyrillic with one emoji (a surrogate pair).
UCS2_TEXT = ("Привет! Встреча перенесена на завтра, в 10:30. До встречи 😀 ")[:60] + "ещё раз!!"
UCS2_DATA = text.ucs2_encode(UCS2_TEXT)
# WAP-push style UDH: 16-bit ports + 8-bit concat, then text.
UDH_DATA = bytes.fromhex("0B 05 04 0B 84 23 F0 00 03 12 03 02") + b"payload"

IMPLEMENTATIONS = {
    "native": {
        "gsm7_unpacked": lambda: text.gsm7_decode(GSM_UNPACKED),
        "gsm7_packed": lambda: text.gsm7_decode(GSM_PACKED, packed=True),
        "ucs2": lambda: text.ucs2_decode(UCS2_DATA),
        "parse_udh": lambda: text.parse_udh(UDH_DATA),
    },
    "baseline": {
        "gsm7_unpacked": lambda: baseline.gsm7_decode(GSM_UNPACKED),
        "gsm7_packed": lambda: baseline.gsm7_decode_packed(GSM_PACKED),
        "ucs2": lambda: baseline.ucs2_decode(UCS2_DATA),
        "parse_udh": lambda: baseline.parse_udh(UDH_DATA),
    },
}


def test_both_implementations_do_the_same_work():
    native, python = IMPLEMENTATIONS["native"], IMPLEMENTATIONS["baseline"]
    assert len(UCS2_DATA) == 140
    assert native["gsm7_unpacked"]() == python["gsm7_unpacked"]() == (GSM_TEXT, 0)
    assert native["gsm7_packed"]() == python["gsm7_packed"]() == (GSM_TEXT, 0)
    assert native["ucs2"]() == python["ucs2"]() == (UCS2_TEXT, 0)
    udh, expected = native["parse_udh"](), python["parse_udh"]()
    assert {name: getattr(udh, name) for name in expected} == expected


@pytest.mark.parametrize("impl", ["native", "baseline"])
@pytest.mark.parametrize("work", ["gsm7_unpacked", "gsm7_packed", "ucs2", "parse_udh"])
def test_text(benchmark, work, impl):
    benchmark.group = work
    benchmark(IMPLEMENTATIONS[impl][work])
