"""SQLite: the decisions' number indexes (source_addr, destination_addr, fingerprint)
keyed by the time bucket first, so that inserts land in the current bucket's part of
each tree, not all over it.

A number or a fingerprint is as good as random: under a plain index each new row
dirties a leaf page of its own, which the commit writes to the WAL and a checkpoint
again, and once the trees outgrow the cache each insert reads a page too: a stored
row cost the writer more the bigger the table (the creep of issue 23). Keyed by
``decided_us / 8388608`` (NUMBER_BUCKET_US, 2^23 µs: about 8.4 s) first, a
transaction's inserts fall into the one or two newest buckets, whose pages stay few
and hot whatever the table's size (bench/test_writer_bench.py and bench/README.md).
The decisions filter on a number probes the index once per bucket of its window
(smps.store.decision_queries).

MySQL keeps its plain indexes: there InnoDB's change buffer takes the random inserts,
the daily partitions (0004) bound each tree, and the server's CPU is not the master's.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-11 09:00:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

BUCKET = "decided_us / 8388608"  # smps.store.schema.NUMBER_BUCKET_US, written out: frozen here


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_decisions_source_addr", table_name="decisions")
    op.drop_index("ix_decisions_destination_addr", table_name="decisions")
    op.drop_index("ix_decisions_fingerprint", table_name="decisions")
    op.execute(f"CREATE INDEX ix_decisions_source_bucket ON decisions ({BUCKET}, source_addr)")
    op.execute(
        f"CREATE INDEX ix_decisions_destination_bucket ON decisions ({BUCKET}, destination_addr)"
    )
    op.execute(
        f"CREATE INDEX ix_decisions_fingerprint_bucket ON decisions ({BUCKET}, fingerprint) "
        "WHERE fingerprint IS NOT NULL"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.drop_index("ix_decisions_source_bucket", table_name="decisions")
    op.drop_index("ix_decisions_destination_bucket", table_name="decisions")
    op.drop_index("ix_decisions_fingerprint_bucket", table_name="decisions")
    op.create_index("ix_decisions_source_addr", "decisions", ["source_addr"])
    op.create_index("ix_decisions_destination_addr", "decisions", ["destination_addr"])
    op.execute(
        "CREATE INDEX ix_decisions_fingerprint ON decisions (fingerprint) "
        "WHERE fingerprint IS NOT NULL"
    )
