"""The aiohttp.web application of `koala serve`.

    app = create_app(ServerConfig(api_key="..."))
    runner = create_runner(app)     # disconnects cancel handlers; graceful stop

The app owns one upstream connection pool for its whole life (keep-alive to
the Koala endpoint, closed on cleanup) and lends it to every request; with a
SOCKS proxy the provider opens its own per request instead. The pool's sockets
have a small receive buffer, so that a stream whose client stops reading holds
little of the upstream's reply in the process (`UPSTREAM_RCVBUF`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from .._contract.capabilities import capabilities_of
from .._contract.provider import ChatProvider
from .._http import proxy_scheme
from .accesslog import AccessLogger
from .apis import add_format_routes
from .config import ServerConfig, default_provider
from .cors import add_cors
from .crosssite import crosssite_middleware
from .images import add_image_routes
from .limits import ServerRunner
from .metrics import add_metrics, known_models
from .middleware import auth_middleware, body_middleware, error_middleware
from .observe import observe_middleware
from .routes import routes
from .state import STATE_KEY, ServerState
from .tracing import add_tracing
from .webpage import add_web_routes

if TYPE_CHECKING:
    from .gateway.gate import Gateway

__all__ = ["ACCESS_LOGGER", "UPSTREAM_RCVBUF", "create_app", "create_runner"]

#: The logger of the access log lines.
ACCESS_LOGGER = "koala_chat.server.access"

#: SO_RCVBUF of each upstream socket, set before it connects (the kernel
#: doubles it). asyncio reads up to 256 KiB a time, and aiohttp keeps what it
#: read past the point where the stream stopped; with the kernel's own
#: autotuned buffer a stalled stream held up to that much. 32 KiB still lets a
#: connection 200 ms away carry some 160 KB/s, far above any model's pace.
UPSTREAM_RCVBUF: Final = 32 * 1024


def create_app(
    config: ServerConfig, provider: ChatProvider | None = None
) -> web.Application:
    """Return the app serving `config` with `provider` (None: the default, Koala).

    What the provider offers (models, dialects, web search) is read once, from
    its declared capabilities under the configured options.

    Host it with `create_runner`, which turns on what the app relies on.
    """
    gateway = _gateway(config)
    middlewares: list[Middleware] = [
        *([gateway.usage_middleware] if gateway else []),
        error_middleware,
        crosssite_middleware(config.allowed_hosts, config.cors_origins),
        observe_middleware,
    ]
    if config.api_key is not None:
        middlewares.append(auth_middleware(config.api_key))
    elif gateway is not None:
        middlewares.append(gateway.key_middleware)
    middlewares.append(body_middleware(config.max_body, config.body_timeout))
    app = web.Application(middlewares=middlewares, client_max_size=config.max_body)
    add_cors(app, config.cors_origins)
    app.on_response_prepare.append(_no_sniffing)
    provider = provider or default_provider()
    options = config.provider_options
    capabilities = capabilities_of(provider, **options)
    app[STATE_KEY] = ServerState(
        config, provider, options, capabilities, gateway=gateway
    )
    add_format_routes(app)
    app.add_routes(routes)
    add_image_routes(app)
    add_web_routes(app)
    app[STATE_KEY].active = add_metrics(app, known_models(capabilities)).active
    add_tracing(app)
    app.cleanup_ctx.append(_upstream_pool)
    if gateway is not None:
        app.cleanup_ctx.append(gateway.lifetime)
    return app


def _gateway(config: ServerConfig) -> Gateway | None:
    """Return the gateway of `config.keys_file` (`--keys`); None without one."""
    if config.keys_file is None:
        return None
    from .gateway.gate import Gateway

    return Gateway(config.keys_file, config.gateway_state())


def create_runner(app: web.Application) -> web.AppRunner:
    """Return a runner for `app` that cancels a handler whose client left.

    It holds clients to the limits of `koala_chat.server.limits`: the time to
    send a request head, the number of open connections, no decompression of
    request bodies. Cleaning the runner up stops accepting, lets open streams
    run for the configured grace period, then cancels them.
    """
    config = app[STATE_KEY].config
    return ServerRunner(
        app,
        max_connections=config.max_connections,
        handler_cancellation=True,
        access_log_class=AccessLogger,
        access_log=logging.getLogger(ACCESS_LOGGER),
        shutdown_timeout=config.grace,
        # aiohttp closes a connection whose next request head has not fully
        # arrived this long after the connection or the previous response.
        keepalive_timeout=config.head_timeout,
        # Inflating happens in the parser, before any size limit or the key
        # check; body_middleware refuses compressed bodies instead.
        auto_decompress=False,
    )


async def _no_sniffing(request: web.Request, response: web.StreamResponse) -> None:
    """Tell browsers to take every response as its Content-Type says.

    A JSON reply, or an error that repeats what the client sent, must never be
    run as a script or rendered as a page.
    """
    response.headers.setdefault("X-Content-Type-Options", "nosniff")


async def _upstream_pool(app: web.Application) -> AsyncIterator[None]:
    """Lend one connection pool to all upstream requests; close it at the end."""
    state = app[STATE_KEY]
    proxy = state.options.get("proxy")
    if "connector" in state.options or (
        proxy and proxy_scheme(proxy).startswith("socks")
    ):
        yield
        return
    connector = aiohttp.TCPConnector(
        limit=state.config.max_streams, socket_factory=_upstream_socket
    )
    options = state.options
    state.options = options.merged(connector=connector)
    try:
        yield
    finally:
        state.options = options
        await connector.close()


def _upstream_socket(addr_info: aiohttp.AddrInfoType) -> socket.socket:
    """Return a socket for an upstream connection, its receive buffer small."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UPSTREAM_RCVBUF)
    except OSError:
        sock.close()
        raise
    return sock
