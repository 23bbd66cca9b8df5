"""Decisions carry the HA lease epoch (the fencing token) they were made under; the
index on deciding_account goes (a handful of values: walking the ids serves the filter,
and every index costs the writer).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 06:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("epoch", sa.BigInteger(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_decisions_deciding_account"))


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_decisions_deciding_account"), ["deciding_account"], unique=False
        )
        batch_op.drop_column("epoch")
