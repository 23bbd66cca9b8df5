"""Decisions keep the content fingerprint of their message (fingerprint, 16 hex digits:
its campaign); NULL for a message without text.

Indexed, for the decisions filter on it: the decisions page links every row's
fingerprint to its decisions, and most fingerprints are one message's, which walking
the ids (as deciding_account's filter does) would look for through the whole table.

Each index costs the writer on every insert, and a fingerprint is a hash: its inserts
land anywhere in the tree, like the number indexes' under random numbers
(bench/test_writer_bench.py). On SQLite the index holds only the rows that have one,
so a message without text costs it nothing. MySQL has no partial indexes: there it is
a plain index, which every row pays for (the NULL ones cheaply: they go in id order,
each after the last). That is chosen over no index for the link on every row; 0004's
daily partitions keep it affordable: each has its own index tree, so the inserts land
in today's, which stays in the buffer pool, rather than in one tree of every day kept.
On MySQL a plain ADD COLUMN and ADD INDEX, which keep the partitions.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 12:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=16), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_decisions_fingerprint"),
            ["fingerprint"],
            unique=False,
            sqlite_where=sa.text("fingerprint IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_fingerprint"))
        batch_op.drop_column("fingerprint")
