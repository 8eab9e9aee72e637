"""The keyword options of `Koala.create_async_generator`, and the retry policy.

Everything here is checked before any request is sent ("Bad input").
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any, Final

from .. import defaults
from ..errors import (
    CloudflareChallengeError,
    KoalaError,
    ProxyError,
    RateLimitError,
    ServerError,
    TransportError,
    UsageError,
)
from ..requests import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_TOTAL_TIMEOUT,
    Timeouts,
)
from ..sse import DEFAULT_MAX_EVENT_SIZE

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_MAX_RETRY_WAIT",
    "DEFAULT_RETRY_BACKOFF",
    "ENDPOINT_VARIABLE",
    "RequestOptions",
    "retry_wait",
]

ENDPOINT_VARIABLE: Final = defaults.ENDPOINT_VARIABLE
DEFAULT_MAX_RETRIES: Final = defaults.MAX_RETRIES
DEFAULT_RETRY_BACKOFF: Final = defaults.RETRY_BACKOFF
DEFAULT_MAX_RETRY_WAIT: Final = defaults.MAX_RETRY_WAIT


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """The keyword options of `create_async_generator`, checked."""

    api_endpoint: str | None
    timeouts: Timeouts
    max_retries: int
    retry_backoff: float
    max_retry_wait: float
    max_event_size: int

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> RequestOptions:
        """Check the keyword options; raise UsageError for a bad one."""
        endpoint = kwargs.get("api_endpoint") or os.environ.get(ENDPOINT_VARIABLE)
        return cls(
            api_endpoint=endpoint or None,
            timeouts=Timeouts(
                connect=kwargs.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
                idle=kwargs.get("idle_timeout", DEFAULT_IDLE_TIMEOUT),
                total=kwargs.get("timeout", DEFAULT_TOTAL_TIMEOUT),
            ),
            max_retries=_count(kwargs, "max_retries", DEFAULT_MAX_RETRIES),
            retry_backoff=_seconds(kwargs, "retry_backoff", DEFAULT_RETRY_BACKOFF),
            max_retry_wait=_seconds(kwargs, "max_retry_wait", DEFAULT_MAX_RETRY_WAIT),
            max_event_size=_count(
                kwargs, "max_event_size", DEFAULT_MAX_EVENT_SIZE, minimum=1
            ),
        )


def _count(kwargs: dict[str, Any], name: str, default: int, *, minimum: int = 0) -> int:
    value = kwargs.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise UsageError(f"{name} must be a whole number >= {minimum}, not {value!r}")
    return value


def _seconds(kwargs: dict[str, Any], name: str, default: float) -> float:
    value = kwargs.get(name, default)
    # `not value >= 0` also refuses NaN, which every comparison answers False.
    if not isinstance(value, int | float) or isinstance(value, bool) or not value >= 0:
        raise UsageError(f"{name} must be a number of seconds >= 0, not {value!r}")
    return float(value)


def retry_wait(
    exc: KoalaError,
    attempt: int,
    options: RequestOptions,
    delivered: bool,
    time_left: float | None,
) -> float | None:
    """Return how long to wait before retrying after `exc`, or None to give up."""
    if delivered or attempt > options.max_retries:
        return None
    retryable = (RateLimitError, ServerError, TransportError)
    if not isinstance(exc, retryable) or isinstance(
        exc, ProxyError | CloudflareChallengeError
    ):
        return None
    if isinstance(exc, RateLimitError) and exc.retry_after is not None:
        if exc.retry_after > options.max_retry_wait:
            return None
        wait = exc.retry_after
    else:
        # Exponential backoff, jittered between half and all of the step so that
        # clients that failed together do not retry together.
        step = options.retry_backoff * 2 ** (attempt - 1)
        wait = min(step, options.max_retry_wait) * random.uniform(0.5, 1.0)
    if time_left is not None and wait >= time_left:
        return None
    return wait
