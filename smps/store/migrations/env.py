"""Alembic environment: SMPS runs migrations on a connection it passes in.

`smps.store.db.upgrade` opens the connection (async engine, `run_sync`) and
hands it over in ``config.attributes["connection"]``; there is no alembic.ini
and no offline mode. SQLite needs batch mode for ALTER TABLE.
"""

from alembic import context

from smps.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `smps db upgrade` (smps.store.db.upgrade)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
