# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""Decision rows as the writer stores them: the same on both engines, whatever the
strings hold (MySQL's rows are rendered by smps.store.batch_sql.mysql_values), and
found by the decisions filter on SQLite's bucketed number indexes (migration 0009)."""

import time

import pytest

from smps.proxy.records import NeResult
from smps.store import decision_queries, schema
from smps.store.batch_sql import mysql_values
from smps.store.decision_queries import DecisionQuery
from smps.store.rows import decision_row
from smps.store.writer import DecisionWriter
from tests.helpers import until
from tests.store_db import database_url, make_decision, store  # noqa: F401

# What a PDU's addresses (latin-1) or the configuration may hold: quotes, backslashes,
# control characters, SQL words, characters outside ASCII.
AWKWARD = [
    "it's",
    'say "hi"',
    "back\\slash\\",
    "\\'; DROP TABLE decisions; --",
    "nul\x00byte",
    "line\nbreak\r\x1a\t",
    "NULL",
    "caf\xe9 \x85\x9f",
    "",
]


def awkward_decision(i: int, text: str, at: float):
    results = [
        NeResult(text[:16] or "ne", "block", 0x66, 1.5, False, True),
        NeResult("fraud", "allow", 0, None, True, False),
    ]
    return make_decision(
        i,
        at=at,
        smsc=f"smsc {text}"[:64],
        source_addr=text[:65],
        destination_addr=f"{text}{i}"[:65],
        deciding_account=text[:16] or None,
        results=results,
        rule_id=text or None,
        parts=[i, 0, i + 2],
        fingerprint=f"{i:016x}",
        concat_ref=i,
        concat_part=1,
        concat_total=3,
    )


async def test_rows_read_back_as_written_on_each_engine(store, tmp_path):
    at = time.time()
    decisions = [awkward_decision(i, text, at + i) for i, text in enumerate(AWKWARD)]
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.set_epoch(3)
    await writer.start()
    for decision in decisions:
        writer.put(decision)
    await until(lambda: writer.written == len(decisions), timeout=60)
    await writer.close()
    stored = await decision_queries.query_decisions(store, DecisionQuery(), limit=100)
    assert writer.dropped == 0
    assert [d.epoch for d in stored] == [3] * len(decisions)
    fields = decisions[0].__struct_fields__
    assert [[getattr(d, f) for f in fields] for d in reversed(stored)] == [
        [getattr(d, f) for f in fields] for d in decisions
    ]


@pytest.mark.parametrize("text", AWKWARD)
async def test_the_number_filters_find_awkward_numbers(store, tmp_path, text):
    at = time.time()
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    writer.put(awkward_decision(0, text, at))
    writer.put(awkward_decision(1, "8613800138000", at))
    await until(lambda: writer.written == 2, timeout=60)
    await writer.close()
    for query in (DecisionQuery(src=text), DecisionQuery(dst=f"{text}0")):
        found = await decision_queries.query_decisions(store, query, limit=10)
        assert [d.sequence for d in found] == [0]


async def test_number_filters_over_many_buckets_newest_first_by_id(store, tmp_path):
    """Decisions spread over a day (some ten thousand buckets of NUMBER_BUCKET_US);
    some arrive late (spooled: older decided_us, newer ids). The filter returns them
    by id, newest first, in pages, with the time window applied, as without buckets."""
    day_us = 86_400_000_000
    start = time.time() - 86_400
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    count = 300
    for i in range(count):
        # the last 30 decided early but written last, as after a spool replay
        offset = (i - 270) * 1000 if i >= 270 else i * day_us / count
        writer.put(
            make_decision(
                i,
                at=start + offset / 1e6,
                source_addr=f"86138{i % 3}",
                fingerprint=f"{i % 7:016x}",
            )
        )
    await until(lambda: writer.written == count, timeout=60)
    await writer.close()
    assert day_us // schema.NUMBER_BUCKET_US > 10_000

    expected = [i + 1 for i in reversed(range(count)) if i % 3 == 1]  # ids, newest first
    pages, before = [], None
    while True:
        page = await decision_queries.query_decisions(
            store, DecisionQuery(src="861381"), limit=17, before_id=before
        )
        if not page:
            break
        pages.extend(d.id for d in page)
        before = page[-1].id
    assert pages == expected

    since = round(start * 1e6) + day_us // 2 - 1000  # from the 150th on
    found = await decision_queries.query_decisions(
        store, DecisionQuery(fingerprint=f"{2:016x}", since_us=since), limit=500
    )
    assert [d.id for d in found] == [i + 1 for i in reversed(range(150, 270)) if i % 7 == 2]
    assert (
        await decision_queries.query_decisions(store, DecisionQuery(dst="nobody"), limit=10) == []
    )


def test_mysql_values_refuses_a_wrong_type_rather_than_write_it_unquoted():
    row = decision_row(make_decision(1), None)
    assert mysql_values(row).startswith("(")
    with pytest.raises(TypeError):
        mysql_values((row[0], "1); DROP TABLE decisions; --", *row[2:]))
    with pytest.raises(ValueError):
        mysql_values((*row[:13], "1) --", *row[14:]))  # a nullable number
    assert "'it''s'" in mysql_values((*row[:5], "it's", *row[6:]))
