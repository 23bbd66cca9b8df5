"""Persistence: SQLAlchemy Core (asyncio) on SQLite or MySQL/MariaDB, Alembic migrations.

- :mod:`smps.store.db`: engines, migrations, the :class:`Store` handle;
- :mod:`smps.store.schema`: tables;
- :mod:`smps.store.writer`: the one batched writer of decisions and traces;
  its SQL in :mod:`smps.store.batch_sql`, its connections in
  :mod:`smps.store.writer_runners`, its failing state in :mod:`smps.store.write_health`,
  retention in :mod:`smps.store.retention`;
- :mod:`smps.store.spool`: its on-disk overflow;
- :mod:`smps.store.minute_counts`: per-minute verdict counts from running totals;
- :mod:`smps.store.entities`: configuration CRUD with audit (accounts, SMSCs, routes,
  trace rules, policy); :mod:`smps.store.file_sync`: the file's share of them;
- :mod:`smps.store.bind_accounts`, :mod:`smps.store.tracer_rules`: what the bind path
  and the tracer read;
- :mod:`smps.store.admin_users`, :mod:`smps.store.tokens`: UI users and API tokens;
- :mod:`smps.store.audit_log`, :mod:`smps.store.decision_queries`,
  :mod:`smps.store.trace_queries`: what the API and the UI read;
- :mod:`smps.store.common`: their errors, times and cursors;
- :mod:`smps.store.cli`: ``smps db upgrade``, ``smps token create``, ``smps user add``.
"""
