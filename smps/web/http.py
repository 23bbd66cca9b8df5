"""The master's HTTP server: /health, /metrics, the admin UI and /api/v1.

aiohttp runs inside the master's existing event loop (AppRunner + TCPSite), so
the admin side shares no thread or process with the data plane's hot path.
With ``web.tls`` it serves HTTPS, with the same certificate options (and
helper) as the SMPP listener's ``server.tls``.
"""

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from smps.config import TlsServerConfig
from smps.errors import ConfigError
from smps.smpp.server import server_ssl_context
from smps.store.db import Store
from smps.web.api.base import authenticate

HealthProbe = Callable[[], tuple[bool, dict[str, Any]]]
"""Returns (ready, body): ready selects 200 or 503, body is the JSON answer."""

HEALTH = web.AppKey("health", HealthProbe)
METRICS_AUTH = web.AppKey("metrics_auth", Store)  # set: /metrics needs one of its API tokens


def degraded(
    ready: bool, body: dict[str, Any], reasons: list[str], *, strict: bool
) -> tuple[bool, dict[str, Any]]:
    """/health's answer with ``reasons`` the node serves worse for (an SMSC down, the
    database writer failing): status "degraded" unless already worse, the reasons
    listed, and not ready (503) only under ``web.health_strict``."""
    body["reasons"] = [*body.get("reasons", ()), *reasons]
    if reasons:
        if body["status"] == "ok":
            body["status"] = "degraded"
        ready = ready and not strict
    return ready, body


REGISTRY = web.AppKey("registry", CollectorRegistry)


async def _health(request: web.Request) -> web.Response:
    ready, body = request.app[HEALTH]()
    return web.json_response(body, status=200 if ready else 503)


async def _metrics(request: web.Request) -> web.Response:
    store = request.app.get(METRICS_AUTH)
    if store is not None:
        identity = await authenticate(request, store)  # any role may read the metrics
        if isinstance(identity, web.Response):
            return identity
    # generate_latest walks every collector; keep it off the loop so a slow
    # collector cannot stall other requests.
    payload = await asyncio.get_running_loop().run_in_executor(
        None, generate_latest, request.app[REGISTRY]
    )
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def make_app(
    health: HealthProbe, registry: CollectorRegistry, *, metrics_auth: Store | None = None
) -> web.Application:
    """/health and /metrics; with ``metrics_auth`` (``web.metrics_auth``), /metrics
    asks for a bearer token of that store's API tokens (``smps token create``)."""
    app = web.Application()
    app[HEALTH] = health
    app[REGISTRY] = registry
    if metrics_auth is not None:
        app[METRICS_AUTH] = metrics_auth
    app.router.add_get("/health", _health)
    app.router.add_get("/metrics", _metrics)
    return app


class HttpServer:
    """Serves an aiohttp application on one host:port inside the running loop;
    over TLS when ``tls`` (``web.tls``) is given."""

    def __init__(self, app: web.Application, *, tls: TlsServerConfig | None = None):
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        self._tls = tls
        self.port: int | None = None

    async def start(self, host: str, port: int) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        context = None
        if self._tls is not None:
            try:
                context = server_ssl_context(self._tls)
            except OSError as exc:  # missing file, bad PEM (ssl.SSLError), wrong key
                reason = f"cannot load the certificate or key: {exc}"
                raise ConfigError(reason, path="web.tls") from None
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port, reuse_address=True, ssl_context=context)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self.port

    async def close(self) -> None:
        await self._runner.cleanup()
