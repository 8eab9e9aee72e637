"""The one place where aiohttp's exceptions are caught and raised as ours.

`ErrorTranslation(url, timeouts, proxy, headers)` is a context manager put
around the code that talks to aiohttp and aiohttp-socks: sending a request,
closing its response, reading a reply (an async generator's whole body). What
escapes it is ours (`translate_error` says which error, `safe_cause` whether
the original may be chained as its cause); everything else passes through
untouched: `CancelledError`, `GeneratorExit`, `KeyboardInterrupt`, and our own
errors, except that an error of ours raised inside is scrubbed in place of the
credentials the request sent (`headers`), should it quote a reply that echoed
them (an excerpt of an event's data, say).

A plain (synchronous) context manager and a small object: translating needs no
awaiting, and an open stream inside it holds no generator frame of its own
(benchmarks/bench_load.py counts the cost of each open stream).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import TracebackType

from .._secrets import Scrubber, scrub_error
from ..errors import KoalaError
from .timeouts import Timeouts
from .translate import FOREIGN_ERRORS, safe_cause, translate_error

__all__ = ["ErrorTranslation"]


class ErrorTranslation:
    """Raise our error for an aiohttp or aiohttp-socks exception raised inside.

    Example:
        >>> with ErrorTranslation(url, timeouts, proxy):
        ...     response = await session.get(url)

    Raises:
        ProxyError, ConnectError, TransportError, KoalaTimeoutError: for the
            foreign exception, chained to it unless its message leaks a secret.
    """

    __slots__ = ("headers", "proxy", "timeouts", "url")

    def __init__(
        self,
        url: str,
        timeouts: Timeouts,
        proxy: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.url = url
        self.timeouts = timeouts
        self.proxy = proxy
        self.headers = headers

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Raise ours for a foreign `exc`; let anything else pass (returns None)."""
        # Ours first: KoalaTimeoutError is also the builtin TimeoutError, which
        # FOREIGN_ERRORS holds for aiohttp's total time limit.
        if exc is None:
            return
        if isinstance(exc, KoalaError):
            if not exc.key_sent and (scrub := Scrubber.for_headers(self.headers)):
                scrub_error(exc, scrub)
                exc.key_sent = True
            return
        if isinstance(exc, FOREIGN_ERRORS):
            headers = self.headers
            raise translate_error(
                exc, self.url, self.timeouts, self.proxy, headers=headers
            ) from safe_cause(exc, self.url, self.proxy, headers=headers)
