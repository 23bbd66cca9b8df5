"""Per-minute verdict counts from running totals (smps.store.minute_counts), and the
writer turning them into minute_counters rows on each engine."""

# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
from smps.store.minute_counts import TotalsDelta
from smps.store.writer import DecisionWriter
from tests.helpers import until
from tests.store_db import database_url, scalar, store  # noqa: F401


def test_growth_since_the_last_reading_per_source():
    delta = TotalsDelta()
    assert delta.step("w0", {("", "allow"): 5, ("ne", "block"): 1}) == {
        ("", "allow"): 5,
        ("ne", "block"): 1,
    }
    assert delta.step("w1", {("", "allow"): 2}) == {("", "allow"): 2}  # another source
    assert delta.step("w0", {("", "allow"): 9, ("ne", "block"): 1}) == {("", "allow"): 4}
    # A total that went down started again from zero (an account removed and added).
    assert delta.step("w0", {("", "allow"): 9, ("ne", "block"): 0}) == {}
    assert delta.step("w0", {("", "allow"): 9, ("ne", "block"): 3}) == {("ne", "block"): 3}
    delta.forget("w0")  # its process ended; the next one counts from zero
    assert delta.step("w0", {("", "allow"): 1}) == {("", "allow"): 1}


async def test_writer_counts_growth_in_the_minute_it_was_read(store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    minute = 29_000_000
    writer.add_totals("w0", {("", "allow"): 10, ("antispam", "block"): 2}, now=minute * 60.0)
    writer.add_totals("w0", {("", "allow"): 25, ("antispam", "block"): 2}, now=minute * 60 + 30)
    writer.add_totals("w0", {("", "allow"): 26, ("antispam", "block"): 3}, now=minute * 60 + 61)
    writer.add_totals("w1", {("", "allow"): 4}, now=minute * 60 + 62)
    await until(lambda: writer.batches >= 1 and not writer.pending)
    await writer.close()

    async def count(where: str) -> int:
        return await scalar(store, f"SELECT SUM(count) FROM minute_counters WHERE {where}")

    assert await count(f"minute = {minute} AND account = '' AND verdict = 'allow'") == 25
    assert await count(f"minute = {minute + 1} AND account = '' AND verdict = 'allow'") == 5
    assert await count(f"minute = {minute} AND account = 'antispam'") == 2
    assert await count(f"minute = {minute + 1} AND account = 'antispam'") == 1
