"""The database schema, one SQLAlchemy Core ``MetaData`` for both engines.

Conventions (the migrations in ``migrations/versions`` must match this file):

- Times are integers: microseconds since the Unix epoch, UTC, in columns named
  ``*_us``; the per-minute counters key on ``minute``, minutes since the epoch.
  Integers compare, index and travel the same way on SQLite and MySQL, with no
  time-zone or DATETIME(6) surprises.
- Autoincrement keys are ``BIGINT`` on MySQL and ``INTEGER`` on SQLite (where
  only ``INTEGER PRIMARY KEY`` is the rowid alias that autoincrements).
- MySQL tables are InnoDB in utf8mb4. Constraint and index names follow
  ``NAMING`` so Alembic's SQLite batch mode can find them again (primary keys
  stay unnamed: MySQL ignores, and warns about, a primary key's name).
- Configuration entities (NE accounts, SMSC connections, routes, trace rules,
  screening rules, policy) keep their identity in a key column and everything else in a JSON
  ``settings`` document shaped like the matching struct in ``smps.config``:
  new config keys need no migration, and the API validates with the same
  structs as the file. ``file_managed`` marks rows that come from the YAML
  file (read-only through the API). Secrets live in their own columns, never
  in ``settings``: NE account passwords as salted Argon2id hashes; SMSC passwords
  in clear, because SMPS has to present them to the SMSC.
- A decision's per-NE results are one JSON array in the decision row rather
  than a child table: the writer then inserts one row per decision instead of
  one plus one per NE (about 4x fewer rows with three NEs), the results are
  only ever read whole together with their decision, and per-account numbers
  come from ``minute_counters``, which the writer keeps as it inserts.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
}

metadata = MetaData(naming_convention=NAMING)

Id = BigInteger().with_variant(Integer(), "sqlite")
"""Autoincrement key: BIGINT on MySQL, INTEGER (the rowid alias) on SQLite."""

_MYSQL = {"mysql_engine": "InnoDB", "mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}


def _entity(name: str, key_column: Column, *secrets: Column) -> Table:
    """A configuration entity table: id, unique key, secrets, JSON settings, provenance."""
    return Table(
        name,
        metadata,
        Column("id", Id, primary_key=True, autoincrement=True),
        key_column,
        *secrets,
        Column("settings", JSON, nullable=False),
        Column("file_managed", Boolean, nullable=False, default=False),
        Column("created_us", BigInteger, nullable=False),
        Column("updated_us", BigInteger, nullable=False),
        **_MYSQL,
    )


ne_accounts = _entity(
    "ne_accounts",
    Column("system_id", String(16), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
)

smsc = _entity(
    "smsc",
    Column("name", String(64), nullable=False, unique=True),
    Column("password", String(64), nullable=False, default=""),
)

routes = _entity("routes", Column("name", String(64), nullable=False, unique=True))

trace_rules = _entity("trace_rules", Column("number", String(32), nullable=False, unique=True))

# A rule's own ``id`` is its key, kept in ``rule_id`` (every table's ``id`` is its row
# number). The engine applies rules in order: the file's in the file's order
# (``file_position``, rewritten by each sync), then the API's (NULL there) by ``id``.
screening_rules = _entity(
    "screening_rules",
    Column("rule_id", String(64), nullable=False, unique=True),
    Column("file_position", Integer, nullable=True),
)

# The policy is one document; the table holds at most the row with name "policy".
policy = _entity("policy", Column("name", String(16), nullable=False, unique=True))

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("role", String(16), nullable=False),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("created_us", BigInteger, nullable=False),
    **_MYSQL,
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False),
    # SHA-256 of the token: tokens are 256 random bits, so a fast hash is enough.
    Column("token_hash", LargeBinary(32), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=True),
    Column("last_used_us", BigInteger, nullable=True),
    Column("revoked", Boolean, nullable=False, default=False),
    **_MYSQL,
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ts_us", BigInteger, nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(16), nullable=False),  # create | update | delete
    Column("entity", String(32), nullable=False),
    Column("entity_key", String(64), nullable=False),
    Column("before", JSON, nullable=True),  # secrets masked
    Column("after", JSON, nullable=True),
    **_MYSQL,
)

decisions = Table(
    "decisions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("arrived_us", BigInteger, nullable=False),
    Column("decided_us", BigInteger, nullable=False, index=True),
    Column("smsc", String(64), nullable=False),
    Column("command", String(16), nullable=False),
    Column("sequence", BigInteger, nullable=False),
    Column("source_addr", String(65), nullable=False),
    Column("source_ton", Integer, nullable=False),
    Column("source_npi", Integer, nullable=False),
    Column("destination_addr", String(65), nullable=False),
    Column("dest_ton", Integer, nullable=False),
    Column("dest_npi", Integer, nullable=False),
    Column("esm_class", Integer, nullable=False),
    Column("data_coding", Integer, nullable=False),
    Column("concat_ref", Integer, nullable=True),
    Column("concat_part", Integer, nullable=True),
    Column("concat_total", Integer, nullable=True),
    Column("verdict", String(16), nullable=False),
    Column("reason", String(16), nullable=False),
    Column("status", BigInteger, nullable=False),
    # Not indexed, like verdict and reason: a handful of NE accounts, so a filter on
    # one finds its rows quickly walking the ids newest first (each index costs the writer).
    Column("deciding_account", String(16), nullable=True),
    Column("results", Text, nullable=False),  # JSON array of smps.proxy.records.NeResult
    # The HA lease epoch (fencing token) the node held when it decided; NULL without a lease.
    Column("epoch", BigInteger, nullable=True),
    # The screening rule that decided; NULL for the rest. Indexed, unlike deciding_account:
    # one rule may decide few of the rows, which walking the ids would take long to find.
    # On SQLite only its non-NULL rows are (what most decisions then cost the index: nothing).
    Column("rule_id", String(64), nullable=True),
    # A whole message's parts (the SMSC's sequence number of each, in part order, 0 for
    # one that never came) as a JSON array, like results: read back by the same typed
    # decoder, and queryable with the JSON functions of SQLite and MariaDB alike.
    # NULL for a message that came in one piece or a part judged alone.
    Column("parts", Text, nullable=True),
    # The message's content fingerprint, 16 hex digits (its campaign); NULL for one
    # without text. Indexed for the decisions filter, which the decisions page links
    # from every row: most fingerprints are one message's, which walking the ids would
    # take long to find. Like rule_id's, on SQLite only its non-NULL rows are; MySQL
    # indexes every row (what that costs the writer: migration 0008).
    Column("fingerprint", String(16), nullable=True),
    **_MYSQL,
)
Index(
    "ix_decisions_rule_id",
    decisions.c.rule_id,
    sqlite_where=decisions.c.rule_id.is_not(None),
)
# The numbers and the fingerprint: plain indexes on MySQL; on SQLite keyed by the time
# bucket first (decided_us / NUMBER_BUCKET_US), so that inserts land in the newest
# bucket's pages instead of anywhere in the tree (migration 0009); the decisions filter
# probes them bucket by bucket (smps.store.decision_queries).
NUMBER_BUCKET_US = 1 << 23  # about 8.4 s
_BUCKET = literal_column(f"decided_us / {NUMBER_BUCKET_US}")
Index("ix_decisions_source_addr", decisions.c.source_addr).ddl_if(dialect="mysql")
Index("ix_decisions_destination_addr", decisions.c.destination_addr).ddl_if(dialect="mysql")
Index("ix_decisions_fingerprint", decisions.c.fingerprint).ddl_if(dialect="mysql")
Index("ix_decisions_source_bucket", _BUCKET, decisions.c.source_addr).ddl_if(dialect="sqlite")
Index("ix_decisions_destination_bucket", _BUCKET, decisions.c.destination_addr).ddl_if(
    dialect="sqlite"
)
Index(
    "ix_decisions_fingerprint_bucket",
    _BUCKET,
    decisions.c.fingerprint,
    sqlite_where=decisions.c.fingerprint.is_not(None),
).ddl_if(dialect="sqlite")

traces = Table(
    "traces",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, index=True),
    Column("ts_us", BigInteger, nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("source_addr", String(65), nullable=False),
    Column("destination_addr", String(65), nullable=False),
    Column("account", String(16), nullable=True),
    Column("event", Text, nullable=False),  # the whole event as JSON
    **_MYSQL,
)
# The numbers: on SQLite only the received events, the one row per message the filter
# reads (smps.store.trace_queries), not the other seven or so (migration 0010).
Index("ix_traces_source_addr", traces.c.source_addr, sqlite_where=traces.c.kind == "received")
Index(
    "ix_traces_destination_addr",
    traces.c.destination_addr,
    sqlite_where=traces.c.kind == "received",
)

minute_counters = Table(
    "minute_counters",
    metadata,
    Column("minute", BigInteger, primary_key=True),  # minutes since the epoch, UTC
    # "" counts final verdicts sent to the SMSC; an account name counts that NE's verdicts.
    Column("account", String(16), primary_key=True),
    Column("verdict", String(16), primary_key=True),
    Column("count", BigInteger, nullable=False),
    **_MYSQL,
)

writer_batches = Table(
    "writer_batches",
    metadata,
    # The writer's idempotency ledger: a batch's id is inserted in the same
    # transaction as its rows, so a batch retried after an unknown outcome (or
    # replayed from the spool) is recognised as already written.
    Column("batch_id", String(32), primary_key=True),
    Column("committed_us", BigInteger, nullable=False, index=True),
    **_MYSQL,
)

ha_lease = Table(
    "ha_lease",
    metadata,
    # The active node's lease (smps/ha/lease.py): one row per cluster. ``epoch`` grows
    # by one at every takeover and is the fencing token; times are the
    # database server's clock, so the nodes' clocks never have to agree.
    Column("name", String(32), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("epoch", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("acquired_us", BigInteger, nullable=False),
    Column("renewed_us", BigInteger, nullable=False),
    **_MYSQL,
)

ENTITY_TABLES = {
    "ne_accounts": ne_accounts,
    "smsc": smsc,
    "routes": routes,
    "trace_rules": trace_rules,
    "screening_rules": screening_rules,
    "policy": policy,
}
