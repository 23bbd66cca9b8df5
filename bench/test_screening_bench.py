"""The screening engine alone: what judging one original costs with the screening
scenario's rules (bench/screening_rules.py), by rule type and all together, over
a mix of 1,000 originals (80 % GSM 7-bit, 20 % UCS-2, each with a URL) that no
rule blocks. The load run (`smps bench --screening --compare-to ...`) measures the
same in the whole product.

Run: .venv/bin/python -m pytest bench/test_screening_bench.py --benchmark-enable -q
"""

import random
import time

import pytest
import yaml

from bench.screening_rules import screening_section
from smps._native import text
from smps._native.pdu import decode_sm, encode
from smps.config import loads
from smps.proxy import screening

ORIGINALS = 1_000
GROUPS = {
    "list": ["deny-senders"],
    "content": ["spam-words", "spam-regex"],
    "url": ["bad-urls"],
    "special": ["special"],
    "velocity": [f"velocity-{i}" for i in range(5)],
}


def traffic() -> list:
    rng = random.Random(1)
    views = []
    for i in range(ORIGINALS):
        message = (
            f"Dear customer {i}, your parcel is waiting at the depot. Pay the fee of 2 EUR "
            "at www.post-example.com today."
        )
        ucs2 = i % 5 == 0
        fields = {
            "source_addr_ton": 1, "source_addr_npi": 1,
            "source_addr": b"86138%08d" % rng.randrange(10**8),
            "dest_addr_ton": 1, "dest_addr_npi": 1,
            "destination_addr": b"86139%08d" % rng.randrange(10**8),
            "data_coding": 8 if ucs2 else 0,
            "short_message": message.encode("utf-16-be")[:140] if ucs2 else
            text.gsm7_encode(message),
        }  # fmt: skip
        views.append(decode_sm(encode(0x05, i + 1, fields)))
    return views


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    return screening_section(tmp_path_factory.mktemp("screening")), traffic()


@pytest.mark.parametrize("group", ["all", *GROUPS])
def test_judge(benchmark, scenario, group):
    section, views = scenario
    rules = [
        rule
        for rule in section["rules"]
        if group == "all" or any(rule["id"].startswith(p) for p in GROUPS[group])
    ]
    cfg = loads(yaml.safe_dump({"screening": {"enabled": True, "rules": rules}}))
    engine = screening.build_engine(cfg, screening.private_velocity_table(1 << 18))
    now = int(time.monotonic() * 1000)

    def judge_all():
        for view in views:
            engine.judge(view, "sim", now)

    benchmark.extra_info["per_original_us"] = "mean / 1000"
    benchmark(judge_all)
    assert all(engine.judge(view, "sim", now, False) is None for view in views[:50])


@pytest.mark.parametrize("entries", [10, 100_000, 1_000_000])
def test_list_file_load(benchmark, tmp_path, entries):
    """Checking and compiling a list rule whose entries are in a file (the bar: 100k
    in under a second, a million in a few)."""
    path = tmp_path / "deny.txt"
    path.write_text("".join(f"86138{i:08d}\n" for i in range(entries)))
    text = yaml.safe_dump({"screening": {"enabled": True, "rules": [
        {"id": "deny", "type": "list", "field": "source", "file": str(path)}]}})  # fmt: skip

    def load():
        return screening.build_engine(loads(text), screening.private_velocity_table(1024))

    engine = benchmark.pedantic(load, rounds=1 if entries > 100_000 else 3)
    assert engine.rules[0].id == "deny"
