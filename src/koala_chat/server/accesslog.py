"""One access-log line per request: status, model, time to first piece, pieces.

Nothing secret goes in: no headers (so no API key), no query string, no body.
What the client chose (the path, the method, the model) is escaped with
`loggable`, so a request writes exactly one line, never one of its own making.
"""

from __future__ import annotations

import logging
from typing import Final

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from .logtext import loggable
from .streaming import RequestLog

__all__ = ["LOG_KEY", "AccessLogger"]

#: Where a completion handler leaves what the log line says about it.
LOG_KEY: Final = web.RequestKey("koala_chat.log", RequestLog)


class AccessLogger(AbstractAccessLogger):
    """Log `remote "METHOD /path" status api= model= ttfp= pieces= time=`.

    `api` names the wire format of a completion (`WireFormat.name`), `-` for
    other routes.
    """

    @property
    def enabled(self) -> bool:
        """Tell whether lines would be written at all (skip the work if not)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(
        self, request: web.BaseRequest, response: web.StreamResponse, time: float
    ) -> None:
        """Write the line for one finished request."""
        info = request.get(LOG_KEY) if isinstance(request, web.Request) else None
        api = model = ttfp = "-"
        pieces = 0
        if info is not None:
            api = info.format
            model = loggable(info.model) if info.model else "-"
            pieces = info.pieces
            if info.first_piece is not None:
                ttfp = f"{info.first_piece - info.started:.3f}s"
        self.logger.info(
            '%s "%s %s" %d api=%s model=%s ttfp=%s pieces=%d time=%.3fs',
            loggable(request.remote or "-"),
            loggable(request.method),
            loggable(request.path),
            response.status,
            api,
            model,
            ttfp,
            pieces,
            time,
        )
