"""What each request ends as, for the metrics and the trace: one middleware.

`observe_middleware` runs inside the cross-site check and outside the key
check, so a 429 that any later middleware or the handler raises is counted.
It learns the status the client gets as `error_middleware` will answer: a
`FailureError`'s own, a `KoalaError`'s from `failures.STATUSES`, an aiohttp
error's own, 500 for anything else, and 499 (as nginx logs it) for a request
cancelled before its handler returned: the client left, or the server's stop
cut it. An upstream failure before the reply starts is noted on the request's
log here; one during a stream in `streaming.py`.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from .._mro import lookup
from ..errors import KoalaError
from .accesslog import LOG_KEY
from .failures import STATUSES, FailureError
from .metrics import METRICS_KEY
from .middleware import key_name
from .outcomes import upstream_reason
from .tracing import SPANS_KEY

__all__ = ["CANCELLED", "count_limited", "observe_middleware"]

#: The status recorded for a request cancelled before it was answered.
CANCELLED = 499


@web.middleware
async def observe_middleware(
    request: web.Request, handler: Handler
) -> web.StreamResponse:
    """Record the request's end in the metrics and, when tracing, its span."""
    status = CANCELLED
    cause: str | None = None
    try:
        response = await handler(request)
    except FailureError as exc:
        failure = exc.failure
        status, cause = failure.status, failure.cause or failure.code
        raise
    except KoalaError as exc:
        status, _, cause = lookup(STATUSES, exc, (502, "", None))
        if (log := request.get(LOG_KEY)) is not None:
            log.error = upstream_reason(exc)
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    except Exception:
        status = 500
        raise
    else:
        status = response.status
        return response
    finally:
        _ended(request, status, cause)


def _ended(request: web.Request, status: int, cause: str | None) -> None:
    """Add the request that ended with `status` (for `cause`) to the record."""
    if status == 429:
        count_limited(request, cause or "-")
    log = request.get(LOG_KEY)
    if log is None:
        return
    app = request.app
    app[METRICS_KEY].record(log, status, key_name(request))
    spans = app.get(SPANS_KEY)
    if spans is not None:
        spans.record(request, log, status, cause)


def count_limited(request: web.Request, cause: str) -> None:
    """Count one 429 answer to `request`, for `cause` (a short fixed word).

    Every 429 that a handler or a middleware after `observe_middleware`
    raises as a `FailureError` is counted already, its cause the failure's
    own (`Failure.cause`: `key_limit` for a key's limit) or else its code
    (`too_many_streams`; `rate_limit_exceeded` for the upstream's own): call
    this only for one answered some other way.
    """
    request.app[METRICS_KEY].count_limited(cause, key_name(request))
