"""The names ``smps store`` (smps/store/cli.py) still reaches as ``repo.X``.

Transitional: the queries now live in one module per concern (entities,
file_sync, bind_accounts, tracer_rules, admin_users, tokens, audit_log,
decision_queries, trace_queries; see :mod:`smps.store`). This module goes once
smps/store/cli.py imports from those modules directly.
"""

from smps.store.admin_users import MIN_PASSWORD, add_user
from smps.store.common import Conflict, now_us
from smps.store.tokens import create_token

__all__ = ["MIN_PASSWORD", "Conflict", "add_user", "create_token", "now_us"]
