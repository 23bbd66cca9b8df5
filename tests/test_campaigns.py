"""Campaign tables (smps/_native/campaigns.pyx): a spam wave among distinct texts,
windows that slide, eviction under a flood of distinct fingerprints, the merge of
several workers' tables, buffers that are not a table, a reader beside a writer in
another process (real shared memory), the space-saving guarantee, garbage."""

import math
import mmap
import os
import random
import string
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from smps._native.campaigns import (
    OTHER_CAUSE,
    OUTCOME_ALLOW,
    OUTCOME_BLOCK,
    OUTCOME_TEMPFAIL,
    CampaignTable,
    CampaignView,
    read_campaigns,
)
from smps._native.fingerprint import fingerprint

T0 = 1_800_000_000  # a multiple of 15 min and of 30 min: buckets and halves start here
CAUSE_NE, CAUSE_RULE = 0, 1  # the caller's ids: an NE account, a rule


def table(capacity: int = 1024) -> CampaignTable:
    return CampaignTable(bytearray(CampaignTable.size_for(capacity)), capacity)


def by_fingerprint(campaigns) -> dict:
    return {int(c.fingerprint, 16): c for c in campaigns}


def wave_and_background(rng: random.Random):
    """(time, text, sender, recipient, outcome, cause) of a wave of 2,000 messages
    that differ in a code number, a URL token and the recipient, from 50 senders,
    among 5,000 distinct texts, over 10 minutes; the first 500 of the wave allowed
    by an NE, the rest blocked by a rule."""
    wave = [
        (
            f"Your parcel is held. Pay the fee with code {rng.randrange(10**6)} at "
            f"hxxp://parcel-fee.example/{''.join(rng.choices(string.ascii_letters, k=6))}",
            b"86170%08d" % (i % 50),
            b"86139%08d" % i,
            OUTCOME_ALLOW if i < 500 else OUTCOME_BLOCK,
            CAUSE_NE if i < 500 else CAUSE_RULE,
        )
        for i in range(2000)
    ]
    background = [
        (
            " ".join("".join(rng.choices(string.ascii_lowercase, k=6)) for _ in range(4)),
            b"86138%08d" % rng.randrange(10**8),
            b"86139%08d" % rng.randrange(10**8),
            OUTCOME_ALLOW,
            CAUSE_NE,
        )
        for _ in range(5000)
    ]
    rest = wave[1:] + background[50:]
    rng.shuffle(rest)
    stream = background[:50] + wave[:1] + rest  # the wave starts before the table is full
    return [(T0 + 600 * n // len(stream), *message) for n, message in enumerate(stream)], wave


def test_a_wave_ranks_first_with_its_counts():
    rng = random.Random(22)
    stream, wave = wave_and_background(rng)
    t = table()
    for now, text, sender, recipient, outcome, cause in stream:
        t.observe(fingerprint(text), sender, recipient, now, outcome, cause, text, True)
    assert t.evictions > 0  # 5,000 distinct texts in 1,024 entries
    top = read_campaigns([t.buffer], 3600, T0 + 600, 10)
    first = top[0]
    assert first.fingerprint == f"{fingerprint(wave[0][0]):016x}"
    assert (first.messages, first.error, first.blocked) == (2000, 0, 1500)
    assert abs(first.senders - 50) <= 50 * 0.05
    assert abs(first.recipients - 2000) <= 2000 * 0.05
    assert first.outcomes == [(OUTCOME_BLOCK, CAUSE_RULE, 1500), (OUTCOME_ALLOW, CAUSE_NE, 500)]
    assert (first.example, first.content_allowed) == (wave[0][0], True)
    assert T0 <= first.first_seen <= first.last_seen <= T0 + 600
    assert sum(first.rate) == 2000 and len(first.rate) == 60  # a minute a bucket
    assert all(c.messages <= 1 + c.error for c in top[1:])  # the rest: one text each
    assert CampaignView([t.buffer]).active(3600, T0 + 600, 2) == 1


def test_windows_drop_old_counts():
    t = table()
    for i in range(10):
        t.observe(7, b"a%d" % i, b"b", T0, OUTCOME_ALLOW, CAUSE_NE)
    for i in range(5):
        t.observe(7, b"c%d" % i, b"b", T0 + 1000, OUTCOME_BLOCK, CAUSE_RULE)

    def seen(window, now):
        found = read_campaigns([t.buffer], window, now, 5)
        return (found[0].messages, found[0].blocked) if found else None

    assert seen(300, T0 + 1000) == (5, 5)
    assert seen(3600, T0 + 1000) == (15, 5)
    assert seen(86400, T0 + 1000) == (15, 5)
    assert seen(3600, T0 + 3600 + 500) == (5, 5)  # T0's minute left the hour
    assert seen(300, T0 + 3600 + 500) is None
    assert seen(86400, T0 + 86400 + 500) == (5, 5)  # T0's quarter of an hour left the day
    assert seen(86400, T0 + 86400 + 1800) is None


def test_a_message_leaves_a_window_within_a_bucket_of_its_length():
    t = table()
    t.observe(1, b"a", b"b", T0, OUTCOME_ALLOW, 0)  # the start of a 10 s bucket
    t.observe(2, b"a", b"b", T0 + 9, OUTCOME_ALLOW, 0)  # its end
    assert set(by_fingerprint(read_campaigns([t.buffer], 300, T0 + 299, 5))) == {1, 2}
    assert set(by_fingerprint(read_campaigns([t.buffer], 300, T0 + 300, 5))) == set()


def test_distinct_sets_take_turns_by_half_window():
    t = table()
    for i in range(10):  # in the first half (2.5 min) of 5 min windows
        t.observe(1, b"early%d" % i, b"b", T0 + 140 + i, OUTCOME_ALLOW, 0)
    for i in range(3):  # in the second
        t.observe(1, b"late%d" % i, b"b", T0 + 200 + i, OUTCOME_ALLOW, 0)
    (c,) = read_campaigns([t.buffer], 300, T0 + 299, 1)
    assert (c.messages, c.senders) == (13, 13)  # up to 16 per half: exact
    # From T0 + 300 the first half is the one before the previous: only "late" is
    # counted, though T0 + 140's bucket is still in the window (distinct counts cover
    # between W/2 and W).
    (c,) = read_campaigns([t.buffer], 300, T0 + 310, 1)
    assert (c.messages, c.senders) == (13, 3)


def test_eviction_keeps_the_heavy_hitters():
    rng = random.Random(7)
    heavy = [rng.randrange(1 << 64) for _ in range(10)]
    stream = [fp for fp in heavy for _ in range(1000)]
    stream += [rng.randrange(1 << 64) for _ in range(100_000)]
    rng.shuffle(stream)
    t = table()
    for fp in stream:
        t.observe(fp, b"s", b"r", T0, OUTCOME_ALLOW, 0)
    assert (t.used, t.observed) == (1024, 110_000)
    found = by_fingerprint(read_campaigns([t.buffer], 300, T0, 1024))
    for fp in heavy:
        assert found[fp].messages >= 1000 >= found[fp].messages - found[fp].error
    assert set(heavy) == {int(c.fingerprint, 16) for c in read_campaigns([t.buffer], 300, T0, 10)}


def test_counts_halve_hourly_so_new_campaigns_displace_old_ones():
    t = table(4)
    for fp in (1, 2, 3, 4):
        for _ in range(100):
            t.observe(fp, b"s", b"r", T0, OUTCOME_ALLOW, 0)
    t.observe(5, b"s", b"r", T0 + 10 * 3600, OUTCOME_ALLOW, 0)  # ten halvings: 100 -> 0
    (new,) = read_campaigns([t.buffer], 300, T0 + 10 * 3600, 5)
    assert (int(new.fingerprint, 16), new.messages, new.error) == (5, 1, 0)


def test_merging_tables_equals_one_table_fed_both():
    rng = random.Random(3)
    messages = [
        (
            rng.randrange(40),
            b"s%d" % rng.randrange(300),
            b"r%d" % rng.randrange(5000),
            T0 + rng.randrange(3000),
            outcome := rng.randrange(3),
            rng.randrange(3) if outcome < OUTCOME_TEMPFAIL else -1,  # 6 causes and none
        )
        for _ in range(20_000)
    ]
    messages.sort(key=lambda m: m[3])
    one, first, second = table(64), table(64), table(64)
    for n, (fp, *message) in enumerate(messages):
        one.observe(fp, *message, f"text {fp}")
        (first if n % 3 else second).observe(fp, *message, f"text {fp}")
    for window in (300, 3600, 86400):
        merged = read_campaigns([first.buffer, second.buffer], window, T0 + 3000, 100)
        alone = read_campaigns([one.buffer], window, T0 + 3000, 100)
        assert [(c.fingerprint, c.messages, c.blocked, c.rate, c.error) for c in merged] == [
            (c.fingerprint, c.messages, c.blocked, c.rate, c.error) for c in alone
        ]
        for m, a in zip(merged, alone, strict=True):
            assert sorted(m.outcomes) == sorted(a.outcomes)
            assert (m.first_seen, m.last_seen, m.example) == (a.first_seen, a.last_seen, a.example)
            if window == 300:  # up to 16 per table and half: exact, where one table estimates
                assert abs(m.senders - a.senders) <= 0.05 * a.senders + 1
            else:  # registers merged by maximum are the union's, whatever the split
                assert (m.senders, m.recipients) == (a.senders, a.recipients)


def test_distinct_counts_are_within_their_stated_error():
    def relative_error(n: int, seed: int) -> float:
        t = table(1)
        for i in range(n):
            t.observe(1, b"86138%08d-%d" % (i, seed), b"r", T0, OUTCOME_ALLOW, 0)
        return read_campaigns([t.buffer], 300, T0, 1)[0].senders / n - 1

    for n, trials, rms_bound in ((10, 5, 0.0), (50, 200, 0.025), (2000, 30, 0.035)):
        errors = [relative_error(n, seed) for seed in range(trials)]
        assert math.sqrt(sum(e * e for e in errors) / trials) <= rms_bound, (n, errors)


def test_causes_beyond_eight_count_as_other_and_examples_keep_160_characters():
    t = table()
    text = "Ünïcödé 日本 " * 20  # 220 characters
    for cause in range(10):
        t.observe(9, b"s", b"r", T0, OUTCOME_TEMPFAIL, cause, text if cause else None)
    t.observe(9, b"s", b"r", T0, OUTCOME_BLOCK, -1, "another text")  # no cause
    (c,) = read_campaigns([t.buffer], 300, T0, 1)
    assert sorted(c.outcomes) == sorted(
        [(OUTCOME_TEMPFAIL, cause, 1) for cause in range(8)]
        + [(OUTCOME_TEMPFAIL, OTHER_CAUSE, 2), (OUTCOME_BLOCK, OTHER_CAUSE, 1)]
    )
    assert (c.example, c.content_allowed) == (text[:160], False)


def test_the_table_fits_its_budget_and_refuses_bad_arguments():
    assert 16_000_000 <= CampaignTable.size_for() <= 17_000_000  # about 16 MB per worker
    with pytest.raises(ValueError, match="need"):
        CampaignTable(bytearray(CampaignTable.size_for(8) - 1), 8)
    with pytest.raises(ValueError, match="capacity"):
        CampaignTable(bytearray(100), 0)
    t = table(8)
    with pytest.raises(ValueError, match="outcome"):
        t.observe(1, b"s", b"r", T0, 3, 0)
    with pytest.raises(ValueError, match="time"):
        t.observe(1, b"s", b"r", -1, 0, 0)
    with pytest.raises(ValueError, match="window"):
        read_campaigns([t.buffer], 86401, T0, 5)


def test_a_foreign_or_other_version_buffer_is_refused():
    t = table(8)
    other_version = bytearray(t.buffer)
    struct.pack_into("<I", other_version, 8, 99)  # the layout version, after the magic
    with pytest.raises(ValueError, match="layout version 99"):
        CampaignView([other_version])
    with pytest.raises(ValueError, match="no campaign table"):
        read_campaigns([bytes(len(t.buffer))], 300, T0, 5)
    with pytest.raises(ValueError, match="no header"):
        read_campaigns([b"SMPS"], 300, T0, 5)
    cut = bytes(t.buffer)[: CampaignTable.size_for(8) - 1]
    with pytest.raises(ValueError, match="do not fit"):
        read_campaigns([cut], 300, T0, 5)


def test_an_entry_left_half_written_is_skipped():
    t = table(8)
    t.observe(1, b"s", b"r", T0, OUTCOME_ALLOW, 0)
    t.observe(2, b"s", b"r", T0, OUTCOME_ALLOW, 0)
    torn = bytearray(t.buffer)
    struct.pack_into("<I", torn, 64, 1)  # the first entry's sequence number, left odd
    view = CampaignView([torn])
    assert [int(c.fingerprint, 16) for c in view.campaigns(300, T0, 5)] == [2]
    assert view.torn == 1


def test_a_reader_beside_a_writer_in_another_process_sees_whole_entries():
    memory = mmap.mmap(-1, CampaignTable.size_for(64))  # MAP_SHARED: a fork shares it
    t = CampaignTable(memory, 64)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child writes
        for i in range(300_000):
            t.observe(1 + i % 3, b"s%d" % (i % 20), b"r%d" % i, T0 + i // 1000, OUTCOME_BLOCK, 1)
        os._exit(0)
    reads = 0
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        for c in read_campaigns([memory], 3600, T0 + 300, 5):
            # Each entry from one consistent copy: its counts agree with each other.
            assert c.blocked == c.messages == sum(c.rate)
            assert c.outcomes == [(OUTCOME_BLOCK, 1, c.messages)]
        reads += 1
    final = read_campaigns([memory], 3600, T0 + 300, 5)
    assert [c.messages for c in final] == [100_000] * 3
    assert reads > 0


@settings(max_examples=100)
@given(
    st.integers(4, 16),
    st.lists(st.integers(0, 60), min_size=1, max_size=2000),
)
def test_the_space_saving_guarantee(capacity, stream):
    # A skewed stream: small numbers often, so some exceed N / capacity.
    stream = [fp % (1 + fp % 7) * 1000 + fp + 1 for fp in stream]  # 0 is no fingerprint
    t = table(capacity)
    for fp in stream:
        t.observe(fp, b"s", b"r", T0, OUTCOME_ALLOW, 0)
    found = by_fingerprint(read_campaigns([t.buffer], 300, T0, capacity))
    for fp in set(stream):
        true = stream.count(fp)
        if true > len(stream) / capacity:
            assert fp in found
        if fp in found:
            assert found[fp].messages - found[fp].error <= true <= found[fp].messages


def _filled_table() -> CampaignTable:
    t = table(8)
    for i in range(200):
        t.observe(i % 11, b"s%d" % i, b"r%d" % (i % 40), T0 + i, i % 3, i % 10, f"text é {i}")
    return t


_FILLED = bytes(_filled_table().buffer)


_OFFSETS = st.integers(64, len(_FILLED) - 1) | st.integers(0, 63)  # entries, or the header


@given(st.lists(st.tuples(_OFFSETS, st.binary(min_size=1, max_size=64))), st.integers(0, 1 << 40))
def test_garbage_in_a_table_never_crashes_a_reader(patches, now):
    garbage = bytearray(_FILLED)
    for offset, data in patches:
        garbage[offset : offset + len(data)] = data
        del garbage[len(_FILLED) :]
    try:
        view = CampaignView([garbage, _FILLED])
    except ValueError as refused:  # a header patched into no table, or another one
        assert "campaign table" in str(refused)
        return
    for now_s in (T0 + 200, now):
        for window in (10, 300, 3600, 86400):
            for c in view.campaigns(window, now_s, 20):
                assert c.messages >= 0 and c.senders >= 0 and len(c.rate) > 0
            assert view.active(window, now_s, 1) >= 0


@given(st.binary(max_size=200))
def test_a_buffer_of_garbage_is_refused(garbage):
    with pytest.raises(ValueError, match="campaign table"):
        CampaignView([garbage])
