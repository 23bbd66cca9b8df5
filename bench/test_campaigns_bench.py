"""Campaigns: a text's fingerprint (target: at most 0.3 µs per original for a
160-character GSM text), a message counted in a worker's campaign table (target:
well under 1 µs), and the master's merged read of the workers' tables.

Run: .venv/bin/python -m pytest bench/test_campaigns_bench.py --benchmark-enable -q
"""

import random

import pytest

from smps._native import text
from smps._native.campaigns import OUTCOME_ALLOW, CampaignTable, read_campaigns
from smps._native.fingerprint import fingerprint

T0 = 1_800_000_000
CALLS = 1_000  # observe: calls per round, so the per-call figure is the mean / 1000

# A full single GSM message: 160 characters, digits, a URL with a path.
GSM_160 = (
    "Your parcel 4821 is held at the depot. Pay the 2 EUR fee today at "
    "hxxp://parcel-fee.example/x7Gh2 or call 0800 123 456. Reply STOP to opt out of all these texts"
)
assert len(GSM_160) == 160 and text.gsm7_length(GSM_160) == 160
TEXTS = {
    "gsm_160": GSM_160,
    "gsm_70": GSM_160[:70],
    "gsm_160_euro": GSM_160[:150] + " 2 € only",  # one character beyond Latin-1
    "ucs2_70": "您的包裹4821已到达，请于今天在 bad.example/x7Gh2 支付2欧元费用或致电0800123456。",
}


@pytest.mark.parametrize("name", list(TEXTS))
def test_fingerprint(benchmark, name):
    benchmark.group = "fingerprint"
    benchmark(fingerprint, TEXTS[name])


def messages(distinct: bool, rng: random.Random) -> list:
    """CALLS messages for observe: one campaign from 50 senders to ever new
    recipients, or a new fingerprint each (a full table evicts one per message)."""
    return [
        (
            rng.randrange(1, 1 << 64) if distinct else 42,
            b"86170%08d" % rng.randrange(50),
            b"86139%08d" % rng.randrange(10**8),
            T0 + i // 100,
            OUTCOME_ALLOW,
            1,
            GSM_160,
        )
        for i in range(CALLS)
    ]


@pytest.mark.parametrize("stream", ["one_campaign", "distinct_texts"])
def test_observe(benchmark, stream):
    rng = random.Random(1)
    table = CampaignTable(bytearray(CampaignTable.size_for()))
    for _ in range(3):  # fill the table
        for message in messages(True, rng):
            table.observe(*message)
    batch = messages(stream == "distinct_texts", rng)
    observe = table.observe

    def observe_all():
        for fp, sender, recipient, now, outcome, cause, example in batch:
            observe(fp, sender, recipient, now, outcome, cause, example)

    benchmark.group = "observe"
    benchmark.extra_info["per_call_us"] = f"mean / {CALLS}"
    benchmark(observe_all)
    assert table.used == table.capacity


def test_read_two_workers(benchmark):
    """What the master's merge of two full tables costs: the top 50 of the last hour."""
    rng = random.Random(2)
    tables = []
    for _ in range(2):
        table = CampaignTable(bytearray(CampaignTable.size_for()))
        for i in range(20_000):
            fp = rng.randrange(200) if i % 2 else rng.randrange(1, 1 << 64)
            table.observe(fp, b"s%d" % rng.randrange(500), b"r%d" % i, T0 + i // 10, 0, 1, "x")
        tables.append(table)
    buffers = [table.buffer for table in tables]
    benchmark.group = "read"
    found = benchmark(read_campaigns, buffers, 3600, T0 + 2000, 50)
    assert len(found) == 50 and found[0].messages > found[-1].messages
