"""The wire formats `koala serve` speaks, and the format each path belongs to.

Adding a format is one module under `formats/` (a `WireFormat`, its `FORMAT`
and its `routes`) and one line in `_MODULES`.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Final

from aiohttp import web

from .formats import chat, completions, messages, ollama, responses
from .formats.base import WireFormat

__all__ = ["FORMATS", "add_format_routes", "format_for", "outside_openapi"]

_MODULES: Final[tuple[ModuleType, ...]] = (
    chat,
    responses,
    completions,
    messages,
    ollama,
)

#: Every format, the first the one of any path no other claims.
FORMATS: Final[tuple[WireFormat[Any], ...]] = tuple(m.FORMAT for m in _MODULES)

#: (prefix, format), the longest prefix first.
_BY_PREFIX: Final = sorted(
    ((prefix, fmt) for fmt in FORMATS for prefix in fmt.paths),
    key=lambda entry: -len(entry[0]),
)


def format_for(path: str) -> WireFormat[Any]:
    """Return the format whose errors a request for `path` gets."""
    for prefix, fmt in _BY_PREFIX:
        if path.startswith(prefix):
            return fmt
    return FORMATS[0]


#: Routes of no wire format that `/openapi.json` leaves out: the Prometheus
#: scrape, whose format is Prometheus's own.
_NOT_IN_OPENAPI: Final = frozenset({"/metrics"})


def outside_openapi(path: str) -> bool:
    """Tell whether `path` is a route `/openapi.json` leaves out.

    Those of a format it leaves out, and the scrape of the metrics.
    """
    return path in _NOT_IN_OPENAPI or not format_for(path).in_openapi


def add_format_routes(app: web.Application) -> None:
    """Add the routes of every format to `app`."""
    for module in _MODULES:
        app.add_routes(module.routes)
