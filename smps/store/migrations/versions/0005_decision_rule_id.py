"""Decisions name the screening rule that decided (rule_id), indexed: a rule may decide
few rows. On SQLite the index holds only the rows that have one.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 14:15:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rule_id", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_decisions_rule_id"),
            ["rule_id"],
            unique=False,
            sqlite_where=sa.text("rule_id IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_decisions_rule_id"))
        batch_op.drop_column("rule_id")
