"""atheris target: the screening engine (smps/_native/screen.pyx, velocity.pyx,
numbers.pyx) and the syntax of its entries (smps/config/rule_entries.py).

Run: ``python -m fuzz.screen [libFuzzer options] [corpus dir]`` (after ``make fuzz-build``).
The first input byte picks a mode; the rest is its input:

0. a deliver_sm made of fuzzed fields (addresses, TONs/NPIs, esm_class,
   protocol_id, data_coding, user data with or without a UDH), judged by an
   engine with a rule of every type: judge never raises, a trial
   (``count=False``) finds what the counted run finds (unless the full table
   pushed a counting key out meanwhile), and a decision names a rule that fired;
1. a text: find_domains gives domains of two labels or more made of the
   text's characters, fingerprint a 64-bit number that the text's normal form
   has too, plain_text agrees with decode();
2. a list entry and a URL entry: parsed, or refused with EntryError alone;
3. operations on one velocity table in memory of a fuzzed size (take,
   give_back, count at times that go forward): no count ever passes its limit
   (ASan watches the raw pointers into the shared memory).
"""

import contextlib

from fuzz import engine

with engine.instrumented():
    import mmap

    import atheris
    import yaml

    from smps._native import screen
    from smps._native.fingerprint import fingerprint, normalised
    from smps._native.numbers import normalise_address
    from smps._native.pdu import decode_sm, encode
    from smps._native.text import decode, plain_text
    from smps._native.velocity import VelocityTable, velocity_table_size
    from smps.config import loads
    from smps.config.rule_entries import EntryError, domain_entry, list_entry
    from smps.proxy import screening

RULES = [
    {"id": "senders", "type": "list", "field": "source",
     "entries": ["8613800000666", "prefix:86170", "FAKEBANK"]},
    {"id": "vip", "type": "list", "field": "destination", "entries": ["prefix:8613999"],
     "action": "allow"},
    {"id": "words", "type": "keyword", "patterns": ["free iphone", "€uro", "😀"],
     "scope": {"source": ["prefix:86"]}},
    {"id": "regex", "type": "regex", "patterns": [r"loan\s+at\s+\d+%", r"(?:win){2,}"]},
    {"id": "urls", "type": "url", "entries": ["bad.example", "xn--80ak6aa92e.com"]},
    {"id": "special", "type": "special", "kinds": ["silent", "flash", "binary", "wap_push"],
     "action": "monitor"},
    {"id": "flood", "type": "velocity", "key": "pair", "limit": 3, "window": "10s"},
    {"id": "wave", "type": "velocity", "key": "fingerprint", "limit": 2, "window": "1h"},
]  # fmt: skip
CONFIG = {"trace": {"country_code": "86"}, "screening": {"enabled": True, "rules": RULES}}
ENGINE = screening.build_engine(
    loads(yaml.safe_dump(CONFIG)), screening.private_velocity_table(4096)
)
ALPHABETS = ["gsm7", "ascii", "latin1"]
NOW = 10**9


def check_judge(fdp) -> None:
    fields = {
        "source_addr_ton": fdp.ConsumeIntInRange(0, 6),
        "source_addr_npi": fdp.ConsumeIntInRange(0, 18),
        "source_addr": fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20)).replace(b"\0", b""),
        "dest_addr_ton": fdp.ConsumeIntInRange(0, 6),
        "dest_addr_npi": fdp.ConsumeIntInRange(0, 18),
        "destination_addr": fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 20)).replace(b"\0", b""),
        "esm_class": fdp.ConsumeIntInRange(0, 255),
        "protocol_id": fdp.ConsumeIntInRange(0, 255),
        "data_coding": fdp.ConsumeIntInRange(0, 255),
        "short_message": fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 254)),
    }
    view = decode_sm(encode(0x05, 1, fields))
    now = NOW + fdp.ConsumeIntInRange(0, 10**7)
    trial = ENGINE.judge(view, "smsc", now, False)
    evictions = ENGINE.table.evictions
    judged = ENGINE.judge(view, "smsc", now)
    if judged is not None:
        assert judged.rule in judged.fired
        assert judged.action in (screen.ACTION_BLOCK, screen.ACTION_ALLOW, screen.ACTION_MONITOR)
    if ENGINE.table.evictions != evictions:
        return  # the full table pushed a counting key out: its count started again
    # A trial counts nothing, and finds what the counted run finds at the same instant.
    assert (trial is None) == (judged is None), (trial, judged)
    if judged is not None:
        assert (trial.action, trial.rule, trial.fired) == (judged.action, judged.rule,
                                                           judged.fired)  # fmt: skip


def check_text(fdp) -> None:
    data_coding = fdp.ConsumeIntInRange(0, 255)
    esm_class = fdp.PickValueInList([0, 0x40])
    alphabet = fdp.PickValueInList(ALPHABETS)
    packed = fdp.ConsumeBool()
    data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 300))
    decoded = decode(data, data_coding, esm_class, default_alphabet=alphabet, gsm7_packed=packed)
    plain = plain_text(data, data_coding, esm_class, alphabet, packed)
    assert plain == (None if decoded.encoding == "binary" else decoded.text)
    text = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 400)).casefold()
    for domain in screen.find_domains(text):
        labels = domain.split(".")
        assert len(labels) >= 2 and all(labels), domain
    assert 0 <= fingerprint(text) < 1 << 64
    assert fingerprint(normalised(text)) == fingerprint(text)  # the normal form is one
    address = fdp.ConsumeBytes(20)
    normalise_address(address, fdp.ConsumeIntInRange(0, 7), fdp.ConsumeIntInRange(0, 20), b"86")


def check_entries(fdp) -> None:
    for parse in (list_entry, domain_entry):
        with contextlib.suppress(EntryError):  # a refusal is fine, anything else is not
            parse(fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 80)))


def check_velocity(fdp) -> None:
    table = VelocityTable(mmap.mmap(-1, velocity_table_size(fdp.ConsumeIntInRange(1, 5000))),
                          True)  # fmt: skip
    now = NOW
    limit = fdp.ConsumeIntInRange(1, 5)
    window = fdp.ConsumeIntInRange(1, 100_000)
    for _ in range(fdp.ConsumeIntInRange(0, 200)):
        key = fdp.ConsumeIntInRange(0, 2**64 - 1)
        now += fdp.ConsumeIntInRange(0, 2 * window)
        op = fdp.ConsumeIntInRange(0, 2)
        if op == 0:
            table.take(key, now, window, limit)
        elif op == 1:
            table.give_back(key, now, window)
        assert table.count(key, now, window) <= limit


def test_one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    [check_judge, check_text, check_entries, check_velocity][fdp.ConsumeIntInRange(0, 3)](fdp)


if __name__ == "__main__":
    engine.run(test_one_input)
