"""`koala serve`: an OpenAI-compatible HTTP server in front of the Koala provider.

`create_app` builds the aiohttp.web application, `create_runner` hosts it,
`serve` runs it until Ctrl-C or SIGTERM (in several processes with `workers`),
and `cli` offers the `serve` command. The modules, one job each: `config`
(settings), `routes` (handlers), `streaming` (the hot path), `failures` (the
OpenAI error shape), `middleware` (errors, the API key, the body), `crosssite`
(web pages of other sites, DNS rebinding) with `hosts` (Host names), `cors`,
`accesslog`, `observe` (each request's end, for `metrics`, the Prometheus
series, and `tracing`, its span; `outcomes` names upstream failures),
`runner`, `openapi` (the `/openapi.json` document) with `components` (its
schemas, generated from the reply structs and the parameter tables);
`gateway/`, the named keys of `--keys` with their limits and usage.

The names are imported on first use, so that `koala --help`, which imports
`koala_chat.server.cli`, does not import aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

if TYPE_CHECKING:
    from .app import create_app, create_runner
    from .config import ServerConfig
    from .runner import serve

__all__ = ["ServerConfig", "create_app", "create_runner", "serve"]

_LAZY = {
    "ServerConfig": ".config",
    "create_app": ".app",
    "create_runner": ".app",
    "serve": ".runner",
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, __all__)
