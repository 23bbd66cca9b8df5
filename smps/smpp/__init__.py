"""SMPP sessions over asyncio Protocols: session core, SMSC client, NE server."""
