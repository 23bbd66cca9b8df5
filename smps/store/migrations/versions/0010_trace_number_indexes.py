"""SQLite: the traces' number indexes (source_addr, destination_addr) hold only the
``received`` events, the one row per traced message that the traced-messages filter
reads (smps.store.trace_queries: its conditions start with kind = 'received', which
lets SQLite use a partial index).

Every event of a traced message repeats its numbers, about eight a message, and a
number is as good as random: each of those rows dirtied a leaf page of each index,
written to the WAL at the commit and again at the checkpoint, and more so as the
trees outgrew the cache (issue 23's creep; migration 0009 did the same for the
decisions). MySQL keeps its plain indexes (no partial ones there; the server's CPU).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-11 10:00:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for column in ("source_addr", "destination_addr"):
        op.drop_index(f"ix_traces_{column}", table_name="traces")
        op.execute(f"CREATE INDEX ix_traces_{column} ON traces ({column}) WHERE kind = 'received'")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for column in ("source_addr", "destination_addr"):
        op.drop_index(f"ix_traces_{column}", table_name="traces")
        op.create_index(f"ix_traces_{column}", "traces", [column])
