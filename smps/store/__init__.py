"""Persistence: SQLAlchemy Core (asyncio) on SQLite or MySQL/MariaDB, Alembic migrations.

- :mod:`smps.store.db`: engines, migrations, the :class:`Store` handle;
- :mod:`smps.store.schema`: tables;
- :mod:`smps.store.writer`: the one batched writer of decisions and traces;
- :mod:`smps.store.spool`: its on-disk overflow;
- :mod:`smps.store.minute_counts`: per-minute verdict counts from running totals;
- :mod:`smps.store.repo`: configuration CRUD with audit, tokens, queries;
- :mod:`smps.store.cli`: ``smps db upgrade``, ``smps token create``, ``smps user add``.
"""
