"""Decisions of a whole message (the parts of a long SMS judged as one) name the
SMSC's sequence number of each part (parts), JSON array text; NULL for the rest.

Not indexed: read with its row, never searched. On MySQL a plain ADD COLUMN, which
keeps the daily partitions (0004).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 09:00:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("parts", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("parts")
