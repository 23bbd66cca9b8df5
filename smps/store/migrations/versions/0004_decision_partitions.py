"""MySQL/MariaDB: decisions in daily partitions by decided_us (see smps/store/partitions.py).

The primary key becomes (id, decided_us), as MySQL requires of a partitioned
table; partitions: everything before today, today, DAYS_AHEAD days, and pmax.
Rebuilds the table (one copy). Nothing changes on SQLite.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 06:20:00.000000

"""

import time

from alembic import op

from smps.store.partitions import DAYS_AHEAD, day_of, partition_sql

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "mysql":
        return
    today = day_of(time.time_ns() // 1000)
    days = [today.fromordinal(today.toordinal() + n) for n in range(-1, DAYS_AHEAD + 1)]
    op.execute(
        "ALTER TABLE decisions DROP PRIMARY KEY, ADD PRIMARY KEY (id, decided_us) "
        "PARTITION BY RANGE (decided_us) ("
        + ", ".join(partition_sql(day) for day in days)
        + ", PARTITION pmax VALUES LESS THAN MAXVALUE)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "mysql":
        return
    op.execute("ALTER TABLE decisions REMOVE PARTITIONING")
    op.execute("ALTER TABLE decisions DROP PRIMARY KEY, ADD PRIMARY KEY (id)")
