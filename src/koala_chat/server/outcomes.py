"""The reason an upstream request failed, in a word a metric or a span may carry.

`upstream_reason` names the class of a failure (`UPSTREAM_REASONS`, looked up
along the error class's MRO as `failures.STATUSES` is): few values, nothing the
upstream wrote, no URL. The server notes it on the request's `RequestLog`
where the failure is seen (`observe.observe_middleware` before a reply starts,
`streaming` during one); `metrics` counts it and `tracing` puts it in the
request's span. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from .._mro import lookup
from ..errors import (
    AuthenticationError,
    CloudflareChallengeError,
    ConnectError,
    CreditsExhaustedError,
    EmulationError,
    KoalaError,
    KoalaTimeoutError,
    PlanError,
    ProtocolError,
    RateLimitError,
    ServerError,
    StatusError,
    TransportError,
    UsageError,
)

__all__ = ["UPSTREAM_REASONS", "upstream_reason"]

#: The reason of each upstream failure; None for the client's own errors
#: (`UsageError`, `ModelNotFoundError`), which are no failure of the upstream.
UPSTREAM_REASONS: Final[Mapping[type[BaseException], str | None]] = {
    UsageError: None,
    RateLimitError: "rate_limit",
    CloudflareChallengeError: "challenge",
    AuthenticationError: "auth",
    CreditsExhaustedError: "credits",
    PlanError: "plan",
    ServerError: "server_error",
    StatusError: "status",
    KoalaTimeoutError: "timeout",
    ConnectError: "unreachable",
    TransportError: "unreachable",
    # The reply came, but held no valid JSON or tool call, asked twice.
    EmulationError: "emulation",
    ProtocolError: "protocol",
    KoalaError: "other",
}


def upstream_reason(exc: BaseException) -> str | None:
    """Return the reason `exc` names (see `UPSTREAM_REASONS`); None for none."""
    return lookup(UPSTREAM_REASONS, exc, None)
