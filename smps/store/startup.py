"""The database side of a node's start-up, shared by the single-process node
(smps.app) and the runtime's master: open the store (migrations to head,
refusing a schema newer than this SMPS knows), upsert the configuration file's
entities, and start the one batched writer.
"""

import logging
from contextlib import AsyncExitStack

from smps.config import Config
from smps.store import file_sync
from smps.store.db import Store
from smps.store.writer import DecisionWriter

log = logging.getLogger("smps.store")


async def open_database(config: Config, stack: AsyncExitStack) -> tuple[Store, DecisionWriter]:
    """(store, running writer); ``stack`` closes the writer (spooling what is
    left) and then the store."""
    store = await Store.open(config.database.url)
    stack.push_async_callback(store.close)
    await file_sync.sync_file_config(store, config)
    writer = DecisionWriter.from_config(store, config)
    await writer.start()
    stack.push_async_callback(writer.close)
    log.info("database %s ready", store.dialect)
    return store, writer
