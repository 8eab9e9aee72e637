"""The keyword options of an HTTP provider's call, and the retry policy.

Everything here is checked before any request is sent ("Bad input").
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from .. import defaults
from .._http import Timeouts
from .._mro import lookup
from .._values import seconds, whole_number
from ..errors import (
    CloudflareChallengeError,
    KoalaError,
    ProxyError,
    RateLimitError,
    ServerError,
    TransportError,
    UsageError,
)

__all__ = [
    "CHECKED_OPTIONS",
    "RequestOptions",
    "retry_wait",
]


@dataclass(frozen=True, slots=True)
class RequestOptions:
    """The keyword options of `create_async_generator`, checked.

    `api_endpoint` is the caller's own choice, None when not given; the provider
    decides what that means (`HTTPProvider.resolve_endpoint`). `extra` holds the
    other keywords, unchecked: a provider reads its own options there (and
    ignores the rest, as gpt4free callers pass options meant for others). It is
    left out of the repr, as it may hold a key.
    """

    api_endpoint: str | None
    timeouts: Timeouts
    max_retries: int
    retry_backoff: float
    max_retry_wait: float
    max_event_size: int
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> RequestOptions:
        """Check the keyword options; raise UsageError for a bad one."""
        endpoint = kwargs.get("api_endpoint")
        if endpoint is not None and not isinstance(endpoint, str):
            raise UsageError(
                f"api_endpoint must be an http(s) URL, not {type(endpoint).__name__}"
            )
        return cls(
            api_endpoint=endpoint or None,
            timeouts=Timeouts(
                connect=kwargs.get("connect_timeout", defaults.CONNECT_TIMEOUT),
                idle=kwargs.get("idle_timeout", defaults.IDLE_TIMEOUT),
                total=kwargs.get("timeout", defaults.TOTAL_TIMEOUT),
            ),
            max_retries=whole_number(kwargs, "max_retries", defaults.MAX_RETRIES),
            retry_backoff=seconds(kwargs, "retry_backoff", defaults.RETRY_BACKOFF),
            max_retry_wait=seconds(kwargs, "max_retry_wait", defaults.MAX_RETRY_WAIT),
            max_event_size=whole_number(
                kwargs, "max_event_size", defaults.MAX_EVENT_SIZE, minimum=1
            ),
            extra={k: v for k, v in kwargs.items() if k not in CHECKED_OPTIONS},
        )


#: The keywords `RequestOptions.from_kwargs` checks itself.
CHECKED_OPTIONS: Final = frozenset(
    (
        "api_endpoint",
        "timeout",
        "connect_timeout",
        "idle_timeout",
        "max_retries",
        "retry_backoff",
        "max_retry_wait",
        "max_event_size",
    )
)


def retry_wait(
    exc: KoalaError,
    attempt: int,
    options: RequestOptions,
    delivered: bool,
    time_left: float | None,
) -> float | None:
    """Return how long to wait before retrying after `exc`, or None to give up.

    Only failures before the first value are retried, at most `max_retries`
    times, and only when the wait ends before the deadline.
    """
    if delivered or attempt > options.max_retries:
        return None
    policy = lookup(_RETRY_POLICY, exc, None)
    if policy is None:
        return None
    wait = policy(exc, attempt, options)
    if wait is None or (time_left is not None and wait >= time_left):
        return None
    return wait


def _backoff(exc: KoalaError, attempt: int, options: RequestOptions) -> float:
    # Exponential backoff, jittered between half and all of the step so that
    # clients that failed together do not retry together.
    step = options.retry_backoff * 2.0 ** (attempt - 1)
    return min(step, options.max_retry_wait) * random.uniform(0.5, 1.0)


def _retry_after(
    exc: KoalaError, attempt: int, options: RequestOptions
) -> float | None:
    # docs/protocol.md, "Errors seen in the wild": 402 and 429 mean the quota is
    # used up; the server's own `Retry-After` is honoured when it is short enough.
    assert isinstance(exc, RateLimitError)
    if exc.retry_after is None:
        return _backoff(exc, attempt, options)
    if exc.retry_after > options.max_retry_wait:
        return None
    return exc.retry_after


_Policy = Callable[[KoalaError, int, RequestOptions], float | None]

#: Which failures are retried, and after how long; None: never. Looked up along
#: the error's MRO, so a subclass follows its parent unless named here.
_RETRY_POLICY: Final[Mapping[type[BaseException], _Policy | None]] = {
    TransportError: _backoff,  # connect errors, time-outs, cut connections
    ProxyError: None,  # a broken proxy or bad credentials stay broken
    RateLimitError: _retry_after,
    CloudflareChallengeError: None,  # a challenge is not passed by asking again
    ServerError: _backoff,
}
